"""WSGI apps started by the real ``tricorn`` command: the ``wsgi:`` prefix
on the command line, and a TOML file alone (``app``, ``wsgi_max_body_size``,
``wsgi_max_threads``), under asyncio and trio."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .test_cli_serve import free_port, tricorn, write_app

WORKER_CLASSES = ["asyncio", "trio"]

# ``app(*args)`` cannot be told from an ASGI 2 app: only the prefix makes it WSGI.
UNDETECTABLE = """
    def app(*args):
        environ, start_response = args
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"forced WSGI on " + environ["SERVER_PROTOCOL"].encode()]
"""

ECHO = """
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [
            ("X-Multiprocess", str(environ["wsgi.multiprocess"])),
            ("X-Path-Info", environ["PATH_INFO"]),
        ])
        return [body]
"""


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_wsgi_prefix_on_the_command_line(tmp_path: Path, worker_class: str) -> None:
    env = write_app(tmp_path, "undetectable_wsgi", UNDETECTABLE)
    port = free_port()
    args = ["wsgi:undetectable_wsgi:app", "-b", f"127.0.0.1:{port}", "-k", worker_class]
    with tricorn(tmp_path, *args, env=env) as child:
        child.wait_listening(port)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert child.terminate() == 0, child.stderr()
    assert response.status_code == 200
    assert response.content == b"forced WSGI on HTTP/1.1"


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_wsgi_app_from_a_toml_file(tmp_path: Path, worker_class: str) -> None:
    env = write_app(tmp_path, "echo_wsgi", ECHO)
    port = free_port()
    config = tmp_path / "wsgi.toml"
    config.write_text(
        f'app = "echo_wsgi:app"\n'
        f'bind = ["127.0.0.1:{port}"]\n'
        f'worker_class = "{worker_class}"\n'
        f"workers = 2\n"
        f"wsgi_max_body_size = 100\n"
        f"wsgi_max_threads = 2\n"
    )
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        url = f"http://127.0.0.1:{port}/some/path"
        fits = httpx.post(url, content=b"x" * 100, timeout=5)
        too_big = httpx.post(url, content=b"x" * 101, timeout=5)
        assert child.terminate() == 0, child.stderr()
    assert fits.status_code == 200
    assert fits.content == b"x" * 100
    assert fits.headers["x-path-info"] == "/some/path"
    assert fits.headers["x-multiprocess"] == "True"  # workers = 2
    assert too_big.status_code == 413


def test_unknown_prefix_is_a_config_error(tmp_path: Path) -> None:
    env = write_app(tmp_path, "echo_wsgi", ECHO)
    with tricorn(
        tmp_path, "rsgi:echo_wsgi:app", "-b", f"127.0.0.1:{free_port()}", env=env
    ) as child:
        assert child.wait() == 2
    assert "rsgi:echo_wsgi:app" in child.stderr()
