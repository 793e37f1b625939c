"""What an idle HTTP/1.1 server holds in memory: none of the libraries and
modules that only some configurations or protocols use.

Each is imported on first use (an HTTP/2 connection, a WebSocket handshake,
a WSGI app, ``metrics_bind``, ``--version``, a misspelt key, QUIC with
several workers, a logging config), so a worker that never sees them does
not carry them: together about 6 MiB of resident memory per worker (idle
``-w 0 -k asyncio``: 32.0 MiB before, 26.0 MiB after; issue 7 wants no
more than Hypercorn's, docs/performance.md "Memory"). The check runs a
real server in a fresh interpreter, serves one request and lists what was
imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

NOT_AT_IDLE = (
    "h2",
    "hpack",
    "hyperframe",
    "wsproto",
    "aioquic",
    "importlib.metadata",
    "email",
    "logging.config",
    "ctypes",
    "difflib",
    "tricorn.asgi.wsgi",
    "tricorn.asgi.websocket",
    "tricorn.metrics",
    "tricorn.protocol.http2",
    "tricorn.protocol.websocket",
)

SERVE_ONE = textwrap.dedent(
    """
    import json, socket, sys
    import anyio
    from tricorn import _backend
    from tricorn.cli import config_from_args
    from tricorn.server.serve import serve

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        config = config_from_args(["-b", "127.0.0.1:0", "--no-access-log"], {})
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            urls = await tg.start(lambda task_status: serve(
                app, config, io=_backend, shutdown_trigger=done.wait,
                task_status=task_status))
            port = int(urls[0].rsplit(":", 1)[1])
            def get():
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                    return s.recv(100)
            answer = await anyio.to_thread.run_sync(get)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            done.set()

    anyio.run(main, backend=sys.argv[1])
    print(json.dumps(sorted(sys.modules)))
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_http1_server_imports_no_optional_protocol_code(backend: str):
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE, backend],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    unwanted = set(NOT_AT_IDLE)
    if backend == "trio":
        unwanted.add("asyncio")  # (the loop's clock is read without it)
        unwanted.discard("ctypes")  # (trio imports it itself)
    assert not sorted(unwanted & loaded)


QUIC_IDLE = textwrap.dedent(
    """
    import json, sys
    import anyio
    from tricorn import _backend
    from tricorn.cli import config_from_args
    from tricorn.server.serve import serve

    async def app(scope, receive, send):
        pass

    async def main():
        certs = sys.argv[1]
        config = config_from_args([
            "-b", "127.0.0.1:0", "--quic-bind", "127.0.0.1:0", "--no-access-log",
            "--certfile", f"{certs}/localhost.pem", "--keyfile", f"{certs}/localhost-key.pem",
        ], {})
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: serve(
                app, config, io=_backend, shutdown_trigger=done.wait,
                task_status=task_status))
            await anyio.sleep(0.2)  # the datagram receiver is waiting
            done.set()

    anyio.run(main, backend="trio")
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_a_trio_server_with_quic_does_not_import_asyncio():
    pytest.importorskip("aioquic")
    pytest.importorskip("trio")
    done = subprocess.run(
        [sys.executable, "-c", QUIC_IDLE, str(SRC.parent / "certs")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "tricorn.server.quic" in loaded
    assert "asyncio" not in loaded  # (1.5 MiB: the datagram receiver does without it)


@pytest.mark.parametrize("seconds", [0, 784111777, 951782400, 1_700_000_000.9, 4_102_444_799])
def test_http_date_is_what_email_would_give(seconds: float):
    from email.utils import formatdate

    from tricorn.server.context import http_date

    assert http_date(seconds) == formatdate(seconds, usegmt=True).encode("ascii")


def test_version_is_read_only_when_asked(capsys: pytest.CaptureFixture[str]):
    from tricorn.cli import _compiled, _version, build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    build = " (compiled)" if _compiled() else ""
    assert capsys.readouterr().out == f"tricorn {_version()}{build}\n"
