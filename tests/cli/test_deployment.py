"""Deployment as docs/deployment.md describes it: systemd socket activation
(listening sockets inherited as fd 3, 4, ... with LISTEN_FDS/LISTEN_PID set,
``--bind fd://N``), and the example files under examples/deploy/ checked by
their own tools where those are installed.

The tests play systemd's part: they bind the sockets, keep them open for
the whole test, and start ``python -m tricorn`` through a small wrapper that
moves them to fd 3, 4, ... and sets LISTEN_FDS and LISTEN_PID, as systemd
does after its fork. One test uses systemd's own ``systemd-socket-activate``
when it is installed. Every child is killed by its pid in a ``finally``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from tricorn.config import load_config

from ..conftest import TLSFiles
from ..integration.h3client import h3_connect
from .test_cli_serve import REPO, STOP_TIMEOUT, Child, free_port, tricorn, write_app
from .test_workers import PID_APP, children, reload_under_load, wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and inherited fds")

DEPLOY = REPO / "examples" / "deploy"
ANSWER_TIMEOUT = 10.0

# Moves the inherited sockets (argv[1], comma-separated fds) to 3, 4, ...,
# sets what systemd sets, and becomes ``python ARGS`` (same pid).
ACTIVATE = """
import fcntl, os, sys
sources = [int(fd) for fd in sys.argv[1].split(",")]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in sources]
for fd in sources:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)  # inheritable, as systemd passes them
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(sources))
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def listening(kind: int = socket.SOCK_STREAM, *, path: Path | None = None) -> socket.socket:
    """A socket bound on 127.0.0.1 (port 0), or at unix ``path``, listening
    if it is a stream socket: what a ``.socket`` unit's ListenStream= (or
    ListenDatagram=) makes."""
    sock = socket.socket(socket.AF_INET if path is None else socket.AF_UNIX, kind)
    try:
        if path is None:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
        else:
            sock.bind(str(path))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


@contextmanager
def activated(
    workdir: Path,
    sockets: Sequence[socket.socket],
    *args: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Child]:
    """Start ``python -m tricorn ARGS`` with ``sockets`` as fd 3, 4, ...
    (in that order); the test keeps its own copies open, as systemd does."""
    workdir.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("TRICORN_", "LISTEN_"))}
    child_env.update(env or {})
    fds = [sock.fileno() for sock in sockets]
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    argv = [sys.executable, "-c", ACTIVATE, ",".join(map(str, fds)), "-m", "tricorn", *args]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield Child(proc, out, err)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


def request(connect: socket.socket, timeout: float = ANSWER_TIMEOUT) -> tuple[int, bytes]:
    """GET / on a connected socket (HTTP/1.1, Connection: close)."""
    with connect as sock:
        sock.settimeout(timeout)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data[:100]
    return int(head.split()[1]), body


def connect_to(listener: socket.socket) -> socket.socket:
    """A client connection to ``listener``'s address."""
    if listener.family == socket.AF_UNIX:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        return client
    return socket.create_connection(listener.getsockname()[:2], timeout=5)


def first_answer(child: Child, listener: socket.socket) -> int:
    """The pid that answers the first request. The socket accepts from the
    start (the kernel queues connections, as under systemd), so readiness
    means: a request is answered."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        if child.proc.poll() is not None:
            pytest.fail(f"tricorn exited with {child.proc.returncode}: {child.stderr()}")
        try:
            status, body = request(connect_to(listener), timeout=1.0)
        except (TimeoutError, ConnectionError):
            if time.monotonic() > deadline:
                pytest.fail(f"no answer within {ANSWER_TIMEOUT} s: {child.stderr()}")
            continue
        assert status == 200
        return int(body)


# --- socket activation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix", "workers"),
    [(False, "0"), (False, "2"), (True, "1")],
    ids=["tcp-w0", "tcp-w2", "unix-w1"],
)
def test_socket_activation_serves_on_fd_3(tmp_path: Path, unix: bool, workers: str) -> None:
    env = write_app(tmp_path, "pid_app", PID_APP)
    args = ["pid_app:app", "-w", workers, "-b", "fd://3"]
    with listening(path=tmp_path / "app.sock" if unix else None) as sock:
        with activated(tmp_path / "run", [sock], *args, env=env) as child:
            pid = first_answer(child, sock)
            expected = {child.proc.pid} if workers == "0" else children(child.proc.pid)
            assert pid in expected
            if workers == "2":
                # Both workers serve on the one inherited socket.
                served: set[int] = set()

                def both_served() -> bool:
                    served.add(int(request(connect_to(sock))[1]))
                    return len(served) == 2

                wait_for(both_served)
                assert served == children(child.proc.pid)
            assert child.terminate() == 0, child.stderr()
        log = child.stderr()
        # The log names the socket's real address, not "fd://3".
        assert re.search(r"Running on http://(127\.0\.0\.1:\d+|unix:/)", log), log
        # Stopping tricorn does not close systemd's copy: it still accepts.
        connect_to(sock).close()


def test_several_sockets_keep_their_order_tls_and_cleartext(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    """fd 3 serves TLS (h2 by ALPN) from ``bind``, fd 4 cleartext from
    ``insecure_bind``: the order of a .socket unit's Listen* lines."""
    env = write_app(tmp_path, "pid_app", PID_APP)
    with listening() as secure, listening() as plain:
        args = ["pid_app:app", "-b", "fd://3", "--insecure-bind", "fd://4"]
        args += ["--certfile", tls_files.certfile, "--keyfile", tls_files.keyfile]
        with activated(tmp_path / "run", [secure, plain], *args, env=env) as child:
            first_answer(child, plain)
            context = ssl.create_default_context(cafile=tls_files.ca_file)
            with httpx.Client(verify=context, http2=True, timeout=ANSWER_TIMEOUT) as client:
                response = client.get(f"https://localhost:{secure.getsockname()[1]}/")
            assert response.status_code == 200
            assert response.http_version == "HTTP/2"
            assert child.terminate() == 0, child.stderr()


def test_connections_wait_in_the_backlog_while_tricorn_restarts(tmp_path: Path) -> None:
    """The socket stays open in its owner (systemd) between two runs of
    tricorn: a client that connects meanwhile is served by the next run,
    not refused."""
    env = write_app(tmp_path, "pid_app", PID_APP)
    with listening() as sock:
        with activated(tmp_path / "first", [sock], "pid_app:app", "-b", "fd://3", env=env) as first:
            first_answer(first, sock)
            assert first.terminate() == 0, first.stderr()
        waiting = connect_to(sock)  # accepted by the kernel, nobody serving
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        with activated(
            tmp_path / "second", [sock], "pid_app:app", "-b", "fd://3", env=env
        ) as second:
            waiting.settimeout(ANSWER_TIMEOUT)
            with waiting:
                reply = b""
                while chunk := waiting.recv(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 "), reply[:100]
            assert int(reply.partition(b"\r\n\r\n")[2]) in children(second.proc.pid)
            assert second.terminate() == 0, second.stderr()


def test_sighup_on_inherited_sockets_replaces_workers_without_a_failed_request(
    tmp_path: Path,
) -> None:
    """``ExecReload=kill -HUP $MAINPID`` with socket activation."""
    env = write_app(tmp_path, "pid_app", PID_APP)
    config = tmp_path / "tricorn.toml"
    config.write_text(
        'app = "pid_app:app"\nbind = ["fd://3"]\nworkers = 2\ngraceful_timeout = 5.0\n'
    )
    with listening() as sock:
        port = sock.getsockname()[1]
        with activated(tmp_path / "run", [sock], "-c", str(config), env=env) as child:
            first_answer(child, sock)
            load, _ = reload_under_load(child, port, served_after=20)
            assert child.terminate() == 0, child.stderr()
    assert load.failures == []


def test_an_inherited_udp_socket_serves_http3(tmp_path: Path, tls_files: TLSFiles) -> None:
    """ListenDatagram= → ``quic_bind = ["fd://4"]``, with one worker."""
    with listening() as tcp, listening(socket.SOCK_DGRAM) as udp:
        port = udp.getsockname()[1]
        args = ["examples.hello:app", "-b", "fd://3", "--quic-bind", "fd://4"]
        args += ["--certfile", tls_files.certfile, "--keyfile", tls_files.keyfile]
        with activated(tmp_path / "run", [tcp, udp], *args) as child:
            context = ssl.create_default_context(cafile=tls_files.ca_file)
            wait_for(lambda: "(QUIC)" in child.stderr() or child.proc.poll() is not None)
            with httpx.Client(verify=context, timeout=ANSWER_TIMEOUT) as client:
                response = client.get(f"https://localhost:{tcp.getsockname()[1]}/")
            assert response.headers["alt-svc"] == f'h3=":{port}"; ma=86400'

            async def get() -> bytes:
                with anyio.fail_after(ANSWER_TIMEOUT):
                    async with h3_connect("127.0.0.1", port) as h3:
                        return bytes((await h3.request("GET", "/")).body)

            assert anyio.run(get) == b"Hello, world!"
            assert child.terminate() == 0, child.stderr()


def test_an_inherited_udp_socket_cannot_serve_several_workers(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    """QUIC routing needs one UDP socket per worker, which tricorn binds
    itself: ``fd://`` in quic_bind with workers >= 2 stops at startup."""
    with listening() as tcp, listening(socket.SOCK_DGRAM) as udp:
        args = ["examples.hello:app", "-w", "2", "-b", "fd://3", "--quic-bind", "fd://4"]
        args += ["--certfile", tls_files.certfile, "--keyfile", tls_files.keyfile]
        with activated(tmp_path / "run", [tcp, udp], *args) as child:
            assert child.wait(timeout=ANSWER_TIMEOUT) != 0
    assert "cannot share fd://4 between 2 workers" in child.stderr()


SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


@pytest.mark.skipif(SOCKET_ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_systemd_socket_activate_starts_tricorn_on_the_first_connection(tmp_path: Path) -> None:
    """systemd's own tool: it listens, and on the first connection becomes
    tricorn with the socket as fd 3 and LISTEN_FDS/LISTEN_PID set."""
    assert SOCKET_ACTIVATE is not None
    write_app(tmp_path, "pid_app", PID_APP)
    port = free_port()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    argv = [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}", f"--setenv=PYTHONPATH={tmp_path}"]
    argv += [sys.executable, "-m", "tricorn", "pid_app:app", "-w", "2", "-b", "fd://3"]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
    child = Child(proc, out, err)
    try:
        wait_for(lambda: "Listening on" in child.stderr() or proc.poll() is not None)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200
            pid = int(response.read())
        finally:
            conn.close()
        assert pid in children(proc.pid)  # the tool exec'd tricorn: same pid
        assert child.terminate() == 0, child.stderr()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


SLOW_STARTUP_APP = """
    import os
    from pathlib import Path

    import anyio

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await anyio.sleep(1.5)
                    Path(os.environ["STARTED_MARKER"]).touch()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def test_requests_are_answered_only_after_lifespan_startup(tmp_path: Path) -> None:
    """What a probe sees: TCP connects succeed as soon as tricorn has bound
    its socket, but the first response comes after lifespan startup."""
    env = write_app(tmp_path, "slow_startup", SLOW_STARTUP_APP)
    marker = tmp_path / "started"
    env["STARTED_MARKER"] = str(marker)
    port = free_port()
    with tricorn(tmp_path, "slow_startup:app", "-b", f"127.0.0.1:{port}", env=env) as child:
        child.wait_listening(port)  # a TCP connect succeeds...
        assert not marker.exists()  # ...while startup still runs
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT)
        try:
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        assert marker.exists()  # the answer waited for startup
        assert child.terminate() == 0, child.stderr()


# --- the example files ----------------------------------------------------------------------

UNITS = ["tricorn.service", "tricorn-activated.socket", "tricorn-activated.service"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_example_systemd_units_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    tricorn = Path(sys.executable).with_name("tricorn")
    if not tricorn.exists():
        pytest.skip("the tricorn script is not installed beside this Python")
    for name in UNITS:
        text = (DEPLOY / name).read_text().replace("/srv/app/.venv/bin/tricorn", str(tricorn))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tricorn" not in result.stderr, result.stderr  # no warning about our units


def unit_setting(name: str, key: str) -> str:
    """The value of ``key=`` in unit ``name`` (continuation lines joined)."""
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    match = re.search(rf"^{key}=(.*)$", text, re.MULTILINE)
    assert match is not None, f"{name} has no {key}="
    return match.group(1).strip()


@pytest.mark.parametrize("name", ["tricorn.service", "tricorn-activated.service"])
def test_example_units_stop_gracefully(name: str) -> None:
    """The stop and reload settings docs/deployment.md asks for, against the
    config file the units name."""
    assert unit_setting(name, "KillMode") == "mixed"
    assert unit_setting(name, "KillSignal") == "SIGTERM"
    assert unit_setting(name, "ExecReload") == "/bin/kill -HUP $MAINPID"
    production = load_config(config_path=str(REPO / "config" / "production.toml"))
    stop = float(unit_setting(name, "TimeoutStopSec"))
    assert stop > production.graceful_timeout + production.shutdown_timeout


def test_example_socket_unit_matches_the_service_fds() -> None:
    """The service names fd 3.. for the socket unit's Listen* lines in order."""
    listens = re.findall(r"^Listen\w+=", (DEPLOY / "tricorn-activated.socket").read_text(), re.M)
    fds = re.findall(r"fd://(\d+)", unit_setting("tricorn-activated.service", "ExecStart"))
    assert sorted(int(fd) for fd in fds) == list(range(3, 3 + len(listens)))


def test_socket_activated_unit_command_line_serves(tmp_path: Path, tls_files: TLSFiles) -> None:
    """The ExecStart of tricorn-activated.service, with config/production.toml
    made local (certificate, QUIC port, pid file), on four inherited sockets."""
    production = (REPO / "config" / "production.toml").read_text()
    quic_port = free_port()
    local = (
        production.replace("/etc/tricorn/fullchain.pem", tls_files.certfile)
        .replace("/etc/tricorn/privkey.pem", tls_files.keyfile)
        .replace(
            'quic_bind = ["0.0.0.0:443", "[::]:443"]', f'quic_bind = ["127.0.0.1:{quic_port}"]'
        )
        .replace("/run/tricorn/tricorn.pid", str(tmp_path / "tricorn.pid"))
    )
    assert str(quic_port) in local
    config = tmp_path / "production.toml"
    config.write_text(local)
    argv = unit_setting("tricorn-activated.service", "ExecStart").split()
    assert argv[1:3] == ["-c", "/etc/tricorn/production.toml"]
    args = ["-c", str(config), *argv[3:], "--workers", "2"]
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(listening()) for _ in range(4)]
        child = stack.enter_context(activated(tmp_path / "run", sockets, *args))
        context = ssl.create_default_context(cafile=tls_files.ca_file)
        wait_for(lambda: child.stderr().count("Running on") >= 2 * 5)
        with httpx.Client(verify=context, http2=True, timeout=ANSWER_TIMEOUT) as client:
            for secure in sockets[:2]:
                response = client.get(f"https://localhost:{secure.getsockname()[1]}/")
                assert (response.status_code, response.http_version) == (200, "HTTP/2")
                assert response.headers["alt-svc"] == f'h3=":{quic_port}"; ma=86400'
            for plain in sockets[2:]:
                response = client.get(f"http://127.0.0.1:{plain.getsockname()[1]}/x")
                assert response.status_code == 308
        assert child.terminate() == 0, child.stderr()


def configmap_toml() -> str:
    """The ``tricorn.toml: |`` block of the Kubernetes manifest's ConfigMap."""
    lines = (DEPLOY / "kubernetes.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "tricorn.toml: |")
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    block = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block) + "\n"


def manifest_number(key: str) -> float:
    text = (DEPLOY / "kubernetes.yaml").read_text()
    match = re.search(rf"^\s*{key}:\s*\"?(\d+)", text, re.MULTILINE)
    assert match is not None, key
    return float(match.group(1))


def test_example_kubernetes_manifest_timing(tmp_path: Path) -> None:
    """The ConfigMap is a valid tricorn config, and the grace period covers
    preStop, the drain and lifespan shutdown."""
    path = tmp_path / "tricorn.toml"
    path.write_text(configmap_toml())
    config = load_config(config_path=str(path))
    grace = manifest_number("terminationGracePeriodSeconds")
    pre_stop = manifest_number("seconds")
    assert grace > pre_stop + config.graceful_timeout + config.shutdown_timeout
    assert config.workers == manifest_number("cpu")  # one worker per core of the limit
    port = config.bind[0].rsplit(":", 1)[1]
    assert f"containerPort: {port}" in (DEPLOY / "kubernetes.yaml").read_text()
