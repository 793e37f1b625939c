"""The real ``tricorn`` command serving: ``python -m tricorn`` in a child
process, run from the repository root on a free port, talked to over TCP.

Every child is bounded by timeouts and killed by its pid in a ``finally``;
stdout and stderr go to files, so a chatty server never blocks on a full pipe.
Bad configuration that stops tricorn before it serves is covered by
test_cli_config.py (unknown TOML key with its hint, bad TOML value, bad flag,
bad environment variable, bad logging settings); the shipped config files are
loaded by tests/unit/config/test_load.py.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tricorn.cli import EXIT_STARTUP

REPO = Path(__file__).resolve().parents[2]
DEV_CA = REPO / "certs" / "dev-ca.pem"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
HELLO = b"Hello, world!"


def free_port() -> int:
    """A port nobody listens on right now (bind to port 0, then let it go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_listening(self, port: int) -> None:
        """Poll until ``port`` accepts a connection; fail if the child exits."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"tricorn exited with {self.proc.returncode}: {self.stderr()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        pytest.fail(f"tricorn did not listen on {port} within {START_TIMEOUT} s: {self.stderr()}")

    def terminate(self) -> int:
        """SIGTERM; the exit status, which must come within STOP_TIMEOUT."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tricorn still running {timeout} s later: {self.stderr()}")


@contextmanager
def tricorn(tmp_path: Path, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Child]:
    """Start ``python -m tricorn ARGS`` in the repository root."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TRICORN_")}
    child_env.update(env or {})
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tricorn", *args],
            cwd=REPO,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own process group: tests may signal the group
        )
    try:
        yield Child(proc, out, err)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


def write_app(directory: Path, name: str, source: str) -> dict[str, str]:
    """Write module ``name`` into ``directory``; the env that makes it importable."""
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return {"PYTHONPATH": str(directory)}


# --- serving and stopping ------------------------------------------------------------------


def test_serves_then_stops_on_sigterm(tmp_path: Path):
    port = free_port()
    with tricorn(tmp_path, "examples.hello:app", "-b", f"127.0.0.1:{port}") as child:
        child.wait_listening(port)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert (response.status_code, response.content) == (200, HELLO)
        started = time.monotonic()
        assert child.terminate() == 0, child.stderr()
        assert time.monotonic() - started < 3
        assert refuses(port)
    assert "Running on http://127.0.0.1:" in child.stderr()


SLOW_APP = """
    import os
    from pathlib import Path

    import anyio

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        Path(os.environ["SLOW_APP_MARKER"]).touch()
        await anyio.sleep(float(os.environ["SLOW_APP_SECONDS"]))
        body = b"finished"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
"""


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextmanager
def slow_request_in_flight(
    tmp_path: Path, seconds: float, *flags: str
) -> Iterator[tuple[Child, concurrent.futures.Future[tuple[int, bytes]], int]]:
    """Serve SLOW_APP, and yield once a GET is inside the app (it answers
    after ``seconds``): the child, the request's future and the port."""
    marker = tmp_path / "request-started"
    env = write_app(tmp_path, "slow_app", SLOW_APP)
    env.update(SLOW_APP_MARKER=str(marker), SLOW_APP_SECONDS=str(seconds))
    port = free_port()
    with (
        tricorn(tmp_path, "slow_app:app", "-b", f"127.0.0.1:{port}", *flags, env=env) as child,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        child.wait_listening(port)
        in_flight = pool.submit(get, port)
        try:
            deadline = time.monotonic() + 5
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert marker.exists(), child.stderr()
            yield child, in_flight, port
        finally:
            if child.proc.poll() is None:
                os.kill(child.proc.pid, signal.SIGKILL)  # so the request ends too


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path):
    flags = ("--graceful-timeout", "10")
    with slow_request_in_flight(tmp_path, 1.5, *flags) as (child, request, port):
        child.proc.send_signal(signal.SIGTERM)
        # The listening socket closes at once, while the request is still running.
        deadline = time.monotonic() + 1
        while not refuses(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert refuses(port)
        assert child.proc.poll() is None
        assert request.result(timeout=10) == (200, b"finished")
        assert child.wait() == 0, child.stderr()


def test_graceful_timeout_cuts_off_a_request_that_takes_too_long(tmp_path: Path):
    with slow_request_in_flight(tmp_path, 60, "--graceful-timeout", "0.5") as (child, request, _):
        started = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait() == 0, child.stderr()
        assert time.monotonic() - started < 3
        with pytest.raises((http.client.HTTPException, OSError)):
            request.result(timeout=5)
    assert "graceful_timeout (0.5 s) passed; cancelling 1 connection(s)" in child.stderr()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigterm_to_the_whole_process_group_still_drains(tmp_path: Path, workers: str):
    """systemd's default KillMode=control-group, dumb-init and ``kill -TERM
    -PGID`` signal every process: the workers get the supervisor's SIGTERM and
    the manager's. That is one graceful shutdown, not "second signal: now"."""
    flags = ("--graceful-timeout", "10", "-w", workers)
    with slow_request_in_flight(tmp_path, 1.0, *flags) as (child, request, _):
        os.killpg(child.proc.pid, signal.SIGTERM)
        assert request.result(timeout=10) == (200, b"finished")
        assert child.wait() == 0, child.stderr()
    assert "stopping now" not in child.stderr()


def test_sighup_without_workers_is_refused_and_serving_goes_on(tmp_path: Path):
    port = free_port()
    with tricorn(tmp_path, "examples.hello:app", "-w", "0", "-b", f"127.0.0.1:{port}") as child:
        child.wait_listening(port)
        assert get(port) == (200, HELLO)  # serving: the signal handlers are in place
        child.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert get(port) == (200, HELLO)
        assert child.terminate() == 0, child.stderr()
    assert "SIGHUP ignored: reloading needs workers >= 1" in child.stderr()


@pytest.mark.parametrize(
    ("workers", "messages"),
    [
        ("0", ["second SIGTERM: stopping now"]),
        # The supervisor tells its worker with SIGQUIT: a repeated SIGTERM
        # alone would be ignored (see the process-group test below).
        ("1", ["second SIGTERM: stopping the workers now", "SIGQUIT: stopping now"]),
    ],
)
def test_a_second_sigterm_stops_at_once(tmp_path: Path, workers: str, messages: list[str]):
    flags = ("--graceful-timeout", "60", "-w", workers)
    with slow_request_in_flight(tmp_path, 60, *flags) as (child, request, _):
        child.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert child.proc.poll() is None
        started = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait() == 0, child.stderr()
        assert time.monotonic() - started < 3
        with pytest.raises((http.client.HTTPException, OSError)):
            request.result(timeout=5)
    for message in messages:
        assert message in child.stderr()


FAILING_STARTUP_APP = """
    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
"""


def test_lifespan_startup_failure_exits_non_zero(tmp_path: Path):
    env = write_app(tmp_path, "failing_app", FAILING_STARTUP_APP)
    port = free_port()
    with tricorn(tmp_path, "failing_app:app", "-b", f"127.0.0.1:{port}", env=env) as child:
        assert child.wait() == EXIT_STARTUP
    lines = child.stderr().splitlines()
    assert lines == ["tricorn: startup failed: lifespan startup failed: no database"]
    assert refuses(port)


def test_a_port_in_use_exits_non_zero(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with tricorn(tmp_path, "examples.hello:app", "-b", f"127.0.0.1:{port}") as child:
            assert child.wait() == EXIT_STARTUP
    assert child.stderr().splitlines() == [
        f"tricorn: startup failed: cannot bind 127.0.0.1:{port}: Address already in use"
    ]


def test_a_config_error_found_while_starting_is_one_line(tmp_path: Path):
    # The certificate is read inside the event loop, when TLS is set up.
    argv = (
        "examples.hello:app",
        "-b",
        "127.0.0.1:0",
        "--certfile",
        "no.pem",
        "--keyfile",
        "no.pem",
    )
    with tricorn(tmp_path, *argv) as child:
        assert child.wait() == 2
    lines = child.stderr().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: certfile = 'no.pem': ")


# --- worker classes ------------------------------------------------------------------------


def test_trio_worker_serves_an_app_that_uses_trio(tmp_path: Path):
    port = free_port()
    argv = ("examples.trio_app:app", "-k", "trio", "-b", f"127.0.0.1:{port}")
    with tricorn(tmp_path, *argv) as child:
        child.wait_listening(port)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert response.status_code == 200
        assert "task 0 slept 0.03s" in response.text
        assert " on trio " in response.text
        assert child.terminate() == 0, child.stderr()


def test_trio_app_refuses_to_start_on_asyncio(tmp_path: Path):
    port = free_port()
    with tricorn(tmp_path, "examples.trio_app:app", "-b", f"127.0.0.1:{port}") as child:
        assert child.wait() == EXIT_STARTUP
    assert "needs the trio worker" in child.stderr()


def test_uvloop_worker_serves(tmp_path: Path):
    port = free_port()
    argv = ("examples.hello:app", "-k", "uvloop", "-b", f"127.0.0.1:{port}")
    with tricorn(tmp_path, *argv) as child:
        child.wait_listening(port)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert (response.status_code, response.content) == (200, HELLO)
        assert child.terminate() == 0, child.stderr()


# --- where settings come from --------------------------------------------------------------


def test_development_config_serves_tls_with_the_dev_certificates(tmp_path: Path):
    # development.toml binds TLS on 8443 and cleartext on 8000; the flags replace
    # both lists (CLI > file) while certfile/keyfile still come from the file.
    tls_port, plain_port = free_port(), free_port()
    argv = (
        "-c",
        "config/development.toml",
        "-b",
        f"127.0.0.1:{tls_port}",
        "--insecure-bind",
        f"127.0.0.1:{plain_port}",
    )
    with tricorn(tmp_path, *argv) as child:
        child.wait_listening(tls_port)
        child.wait_listening(plain_port)
        context = ssl.create_default_context(cafile=str(DEV_CA))
        with httpx.Client(verify=context, timeout=5) as client:
            response = client.get(f"https://localhost:{tls_port}/")
        assert (response.status_code, response.content) == (200, HELLO)
        assert response.http_version == "HTTP/1.1"
        plain = httpx.get(f"http://127.0.0.1:{plain_port}/", timeout=5)
        assert (plain.status_code, plain.content) == (200, HELLO)
        curl = shutil.which("curl")
        if curl is not None:  # the CI script installs it; httpx has checked TLS already
            result = subprocess.run(
                [
                    curl,
                    "-sS",
                    "--max-time",
                    "5",
                    "--cacert",
                    DEV_CA,
                    f"https://localhost:{tls_port}/",
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )
            assert (result.returncode, result.stdout) == (0, HELLO), result.stderr
        assert child.terminate() == 0, child.stderr()
    assert f"https://127.0.0.1:{tls_port}" in child.stderr()
    assert f"http://127.0.0.1:{plain_port}" in child.stderr()
    assert not any(f":{port} " in child.stderr() for port in (8443, 8000))


def test_environment_variables_alone_configure_the_server(tmp_path: Path):
    port = free_port()
    env = {
        "TRICORN_APP": "examples.hello:app",
        "TRICORN_BIND": f"127.0.0.1:{port}",
        "TRICORN_INCLUDE_SERVER_HEADER": "false",
    }
    with tricorn(tmp_path, env=env) as child:
        child.wait_listening(port)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert (response.status_code, response.content) == (200, HELLO)
        assert "server" not in response.headers
        assert child.terminate() == 0, child.stderr()


def test_access_log_to_stdout(tmp_path: Path):
    port = free_port()
    argv = ("examples.hello:app", "-b", f"127.0.0.1:{port}", "--access-logfile", "-")
    with tricorn(tmp_path, *argv) as child:
        child.wait_listening(port)
        response = httpx.get(
            f"http://127.0.0.1:{port}/logged?x=1", headers={"user-agent": "cli-test"}, timeout=5
        )
        assert response.status_code == 200
        assert child.terminate() == 0, child.stderr()
    lines = [line for line in child.stdout().splitlines() if "/logged" in line]
    assert len(lines) == 1, child.stdout()
    # Hypercorn's prefix ("[date] [pid] [INFO] "), then its default access-log format.
    assert "] [INFO] 127.0.0.1:" in lines[0]
    assert lines[0].endswith(f'"GET /logged 1.1" 200 {len(HELLO)} "-" "cli-test"')
