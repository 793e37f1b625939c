"""HTTP/3 with several worker processes: every datagram of a QUIC connection
reaches the worker that owns it (the connection-ID routing of
``tricorn.sockets``), also when the client changes its connection ID or its
address. Subprocess tests: ``tricorn -w 2`` from a TOML file."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from ..cli.test_cli_serve import free_port, tricorn, write_app
from ..conftest import TLSFiles
from .h3client import H3Client, h3_connect
from .test_h2_clients import worker_class, write_toml

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork"),
]

PID_APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def config_file(
    tmp_path: Path, tls: TLSFiles, anyio_backend: tuple[str, dict[str, Any]], **extra: Any
) -> tuple[int, Path, dict[str, str]]:
    env = write_app(tmp_path, "pid_app", PID_APP)
    port = free_port()
    config = write_toml(
        tmp_path / "h3w.toml",
        app="pid_app:app",
        bind=[f"127.0.0.1:{port}"],
        quic_bind=[f"127.0.0.1:{port}"],
        certfile=tls.certfile,
        keyfile=tls.keyfile,
        workers=2,
        worker_class=worker_class(anyio_backend),
        **extra,
    )
    return port, config, env


async def pids_of(client: H3Client, count: int) -> set[int]:
    pids = set()
    for _ in range(count):
        response = await client.request("GET", "/", timeout=10)
        assert response.status == 200
        pids.add(int(bytes(response.body)))
    return pids


async def test_two_workers_twenty_connections(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port, config, env = config_file(tmp_path, tls_files, anyio_backend)
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        results: dict[int, set[int]] = {}

        async def one(index: int) -> None:
            async with h3_connect("127.0.0.1", port, handshake_timeout=20) as client:
                pids = await pids_of(client, 3)
                client.quic.change_connection_id()  # a new connection ID ...
                pids |= await pids_of(client, 3)
                await client.rebind()  # ... and a new address (NAT rebinding)
                pids |= await pids_of(client, 3)
                results[index] = pids

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(20):
                    tg.start_soon(one, index)
        assert child.terminate() == 0, child.stderr()
    assert len(results) == 20
    # Every request of a connection was served by one worker ...
    assert all(len(pids) == 1 for pids in results.values()), results
    # ... and the connections were spread over both.
    served = set().union(*results.values())
    assert len(served) == 2, served
    assert "WARNING" not in child.stderr(), child.stderr()


async def test_a_killed_worker_is_replaced_and_quic_still_served(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port, config, env = config_file(tmp_path, tls_files, anyio_backend)
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        seen: set[int] = set()
        with anyio.fail_after(30):
            while len(seen) < 2:  # new connections until both workers answered
                async with h3_connect("127.0.0.1", port) as client:
                    seen |= await pids_of(client, 1)
        victim = min(seen)
        os.kill(victim, signal.SIGKILL)
        with anyio.fail_after(30):
            fresh: set[int] = set()
            while len(fresh - {victim}) < 2:
                async with h3_connect("127.0.0.1", port) as client:
                    fresh |= await pids_of(client, 1)
                await anyio.sleep(0.05)
        assert victim not in fresh
        assert child.terminate() == 0, child.stderr()
    assert "died (signal SIGKILL)" in child.stderr()
