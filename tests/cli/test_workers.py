"""Worker processes (``workers >= 1``): crash restarts, rolling reload with
certificate rotation under load, max_requests recycling, SIGTTIN/SIGTTOU,
the pid file. Subprocess tests against ``python -m tricorn``."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from .test_cli_serve import Child, free_port, tricorn, write_app

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")

PID_APP = """
    import os

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = str(os.getpid()).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
"""


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def reloader_helpers(stderr: str) -> set[int]:
    """The pid of the reloader's watchfiles process, a child of the
    supervisor that is not a worker (none when the reloader polls)."""
    return {int(pid) for pid in re.findall(r"\(watchfiles, in process (\d+)\)", stderr)}


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.05)


def get_pid(port: int, context: ssl.SSLContext | None = None) -> int:
    """One request on a fresh connection; the pid of the worker that answered."""
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=10
        )
    else:
        connection = http.client.HTTPSConnection("localhost", port, timeout=10, context=context)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        return int(response.read())
    finally:
        connection.close()


class Load:
    """Threads sending requests back to back (a fresh connection each) until
    stopped: what a steady stream of clients sees."""

    def __init__(self, port: int, threads: int = 4, context: ssl.SSLContext | None = None):
        self.port = port
        self.context = context
        self.ok = 0
        self.failures: list[BaseException] = []
        self.pids: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pid = get_pid(self.port, self.context)
            except BaseException as exc:
                with self._lock:
                    self.failures.append(exc)
            else:
                with self._lock:
                    self.ok += 1
                    self.pids.append(pid)

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=15)


@contextmanager
def pid_server(tmp_path: Path, *flags: str) -> Iterator[tuple[Child, int]]:
    env = write_app(tmp_path, "pid_app", PID_APP)
    port = free_port()
    with tricorn(tmp_path, "pid_app:app", "-b", f"127.0.0.1:{port}", *flags, env=env) as child:
        child.wait_listening(port)
        yield child, port


def test_a_killed_worker_is_restarted_while_the_others_serve(tmp_path: Path) -> None:
    with pid_server(tmp_path, "-w", "2") as (child, port):
        parent = child.proc.pid
        wait_for(lambda: len(children(parent)) == 2)
        with Load(port).running() as load:
            wait_for(lambda: load.ok > 20)
            victim = min(children(parent))
            survivor = children(parent) - {victim}
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(children(parent) - {victim} - survivor) == 1)
            (replacement,) = children(parent) - {victim} - survivor
            served = load.ok
            wait_for(lambda: load.ok > served + 40)
        assert children(parent) == survivor | {replacement}  # the survivor never stopped
        assert child.terminate() == 0, child.stderr()
    # Only requests in flight on the killed worker can fail: one per thread at most.
    assert len(load.failures) <= 4, load.failures
    assert f"(pid {victim}) died (signal SIGKILL): restarting it" in child.stderr()


def test_max_requests_recycles_the_worker(tmp_path: Path) -> None:
    with pid_server(tmp_path, "-w", "1", "--max-requests", "5") as (child, port):
        pids = [get_pid(port) for _ in range(16)]
        assert child.terminate() == 0, child.stderr()
    assert len(set(pids)) >= 3  # every 5 requests a fresh worker
    # (A retiring worker still answers a client it accepted just before it
    # stopped accepting: one more, with these sequential requests.)
    assert all(pids.count(pid) <= 6 for pid in set(pids))
    assert "max_requests (5) reached" in child.stderr()


def test_sigttin_and_sigttou_change_the_worker_count(tmp_path: Path) -> None:
    with pid_server(tmp_path, "-w", "1") as (child, port):
        parent = child.proc.pid
        wait_for(lambda: len(children(parent)) == 1)
        os.kill(parent, signal.SIGTTIN)
        wait_for(lambda: len(children(parent)) == 2)
        os.kill(parent, signal.SIGTTOU)
        wait_for(lambda: len(children(parent)) == 1)
        assert get_pid(port) in children(parent)
        assert child.terminate() == 0, child.stderr()


def test_sigttou_right_after_sigttin_stops_the_new_worker(tmp_path: Path) -> None:
    """The SIGTERM for a worker that has just been forked, before it set
    its own signal handlers, still stops it (it went to the supervisor's
    handler the fork left in the child, and the worker served on)."""
    with pid_server(tmp_path, "-w", "1") as (child, port):
        parent = child.proc.pid
        wait_for(lambda: len(children(parent)) == 1)
        for _ in range(5):
            os.kill(parent, signal.SIGTTIN)
            os.kill(parent, signal.SIGTTOU)
            time.sleep(0.05)
        wait_for(lambda: len(children(parent)) == 1)
        assert get_pid(port) in children(parent)
        assert child.terminate() == 0, child.stderr()


def test_pid_file_names_the_supervisor_and_goes_away(tmp_path: Path) -> None:
    pid_path = tmp_path / "tricorn.pid"
    with pid_server(tmp_path, "-w", "2", "--pid", str(pid_path)) as (child, port):
        wait_for(pid_path.exists)
        assert int(pid_path.read_text()) == child.proc.pid
        assert get_pid(port) in children(child.proc.pid)
        assert child.terminate() == 0, child.stderr()
    assert not pid_path.exists()


def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    with pid_server(tmp_path, "-w", "2") as (child, _port):
        wait_for(lambda: len(children(child.proc.pid)) == 2)
        workers = children(child.proc.pid)
        os.kill(child.proc.pid, signal.SIGKILL)
        child.proc.wait(timeout=5)

        def gone() -> bool:
            return not any(os.path.exists(f"/proc/{pid}") for pid in workers)

        wait_for(gone)


# ---------------------------------------------------------------- SIGHUP


def write_config(path: Path, port: int, **values: object) -> None:
    lines = ['app = "pid_app:app"', f'bind = ["127.0.0.1:{port}"]', "workers = 2"]
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")


def reload_under_load(child: Child, port: int, served_after: int = 40) -> tuple[Load, set[int]]:
    """SIGHUP the supervisor of two workers while clients keep coming; return
    once every worker was replaced and ``served_after`` more requests were
    answered: the load, and the workers before the reload."""
    wait_for(lambda: len(children(child.proc.pid)) == 2)
    before = children(child.proc.pid)
    with Load(port).running() as load:
        wait_for(lambda: load.ok > 20)
        os.kill(child.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reload done" in child.stderr())
        wait_for(lambda: not (children(child.proc.pid) & before))
        served = load.ok
        wait_for(lambda: load.ok > served + served_after)
    return load, before


def test_sighup_replaces_every_worker_without_a_failed_request(tmp_path: Path) -> None:
    env = write_app(tmp_path, "pid_app", PID_APP)
    port = free_port()
    config = tmp_path / "tricorn.toml"
    write_config(config, port, graceful_timeout=5.0)
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        load, before = reload_under_load(child, port)
        after = children(child.proc.pid)
        assert child.terminate() == 0, child.stderr()
    assert load.failures == []
    assert len(after) == 2
    assert not after & before
    assert set(load.pids[-8:]) <= after


def test_sighup_with_a_broken_config_keeps_serving(tmp_path: Path) -> None:
    env = write_app(tmp_path, "pid_app", PID_APP)
    port = free_port()
    config = tmp_path / "tricorn.toml"
    write_config(config, port)
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        wait_for(lambda: len(children(child.proc.pid)) == 2)
        before = children(child.proc.pid)
        config.write_text(config.read_text() + "keep_alive_timout = 5\n")
        os.kill(child.proc.pid, signal.SIGHUP)
        wait_for(lambda: "not reloaded" in child.stderr())
        assert children(child.proc.pid) == before
        assert get_pid(port) in before
        assert child.terminate() == 0, child.stderr()
    assert "keep_alive_timout" in child.stderr()


def test_sighup_rotates_the_certificate_without_a_failed_request(
    tmp_path: Path, ca: trustme.CA
) -> None:
    env = write_app(tmp_path, "pid_app", PID_APP)
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"

    def issue() -> bytes:
        cert = ca.issue_cert("localhost", "127.0.0.1")
        certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        keyfile.write_bytes(cert.private_key_pem.bytes())
        return cert.cert_chain_pems[0].bytes()

    first = issue()
    port = free_port()
    config = tmp_path / "tricorn.toml"
    write_config(config, port, certfile=str(certfile), keyfile=str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        assert served_certificate(port, context) == pem_to_der(first)
        with Load(port, context=context).running() as load:
            wait_for(lambda: load.ok > 20)
            second = issue()
            os.kill(child.proc.pid, signal.SIGHUP)
            wait_for(lambda: "reload done" in child.stderr())
            served = load.ok
            wait_for(lambda: load.ok > served + 20)
            assert served_certificate(port, context) == pem_to_der(second)
        assert child.terminate() == 0, child.stderr()
    assert load.failures == []


def served_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


# ---------------------------------------------------------------- use_reloader

VERSIONED_APP = """
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"VERSION"})
"""


def get_body(port: int) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read()
    finally:
        connection.close()


def test_reload_replaces_the_workers_when_a_source_file_changes(tmp_path: Path) -> None:
    env = write_app(tmp_path, "versioned", VERSIONED_APP.replace("VERSION", "one"))
    port = free_port()
    args = ("versioned:app", "-b", f"127.0.0.1:{port}", "-w", "2", "--reload")
    with tricorn(tmp_path, *args, env=env) as child:
        child.wait_listening(port)
        assert get_body(port) == b"one"
        before = children(child.proc.pid) - reloader_helpers(child.stderr())
        time.sleep(1.1)  # (a coarse file system clock still sees a new mtime)
        write_app(tmp_path, "versioned", VERSIONED_APP.replace("VERSION", "two"))
        wait_for(lambda: get_body(port) == b"two", timeout=20)
        wait_for(lambda: not children(child.proc.pid) & before)
        assert child.terminate() == 0, child.stderr()
    assert "versioned.py changed: reloading" in child.stderr()


def test_reload_needs_worker_processes(tmp_path: Path) -> None:
    with tricorn(tmp_path, "examples.hello:app", "-w", "0", "--reload") as child:
        assert child.wait() == 2
    assert child.stderr().startswith("config error: use_reloader")
    assert len(child.stderr().splitlines()) == 1


SLOW_SHUTDOWN_APP = """
    import anyio

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await anyio.sleep(6)  # longer than graceful_timeout + the kill margin
            print("lifespan shutdown done", flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
"""


def get_status(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_supervisor_waits_for_the_lifespan_shutdown(tmp_path: Path) -> None:
    """A worker is killed only after graceful_timeout + shutdown_timeout (and a
    margin), so a slow lifespan shutdown within shutdown_timeout completes."""
    env = write_app(tmp_path, "slow_shutdown", SLOW_SHUTDOWN_APP)
    port = free_port()
    flags = ("-w", "1", "--graceful-timeout", "0.1", "--shutdown-timeout", "20")
    with tricorn(
        tmp_path, "slow_shutdown:app", "-b", f"127.0.0.1:{port}", *flags, env=env
    ) as child:
        child.wait_listening(port)
        wait_for(lambda: get_status(port) == 200)  # the worker serves: lifespan started
        child.proc.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0, child.stderr()
    assert "lifespan shutdown done" in child.stdout()
    assert "did not stop: killing it" not in child.stderr()
