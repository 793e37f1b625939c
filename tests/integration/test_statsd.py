"""statsd metrics (statsd_host, statsd_prefix, dogstatsd_tags), received by
a UDP socket standing in for the statsd server."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tricorn.asgi.types import ASGIReceive, ASGISend, Scope

from ..cli.test_cli_serve import free_port, tricorn
from ..conftest import running_server
from .apps import hello
from .test_h2_clients import worker_class, write_toml

pytestmark = pytest.mark.anyio


async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    if scope["path"] == "/missing":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif scope["path"] == "/boom":
        raise RuntimeError("boom")
    else:
        await hello(scope, receive, send)


async def collect(udp: Any, count: int) -> list[str]:
    lines: list[str] = []
    with anyio.move_on_after(5):
        while len(lines) < count:
            packet, _ = await udp.receive()
            lines.append(packet.decode())
    return lines


async def test_requests_statuses_durations_and_errors() -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as udp:
        port = udp.extra(anyio.abc.SocketAttribute.local_port)
        settings = {
            "statsd_host": f"127.0.0.1:{port}",
            "statsd_prefix": "web",
            "dogstatsd_tags": "env:test",
        }
        async with running_server(app, **settings) as url, httpx.AsyncClient() as client:
            for path in ("/", "/", "/missing", "/boom"):
                await client.get(url + path)
            # 4 requests x 3 lines, and the app error's log counter.
            lines = await collect(udp, 13)
    assert lines.count("web.hypercorn.requests:1|c|@1.0|#env:test") == 4
    assert lines.count("web.hypercorn.request.status.200:1|c|@1.0|#env:test") == 2
    assert lines.count("web.hypercorn.request.status.404:1|c|@1.0|#env:test") == 1
    assert lines.count("web.hypercorn.request.status.500:1|c|@1.0|#env:test") == 1
    durations = [line for line in lines if line.startswith("web.hypercorn.request.duration:")]
    assert len(durations) == 4
    assert all(line.endswith("|ms|#env:test") for line in durations)
    assert "web.hypercorn.log.exception:1|c|@1.0|#env:test" in lines


async def test_statsd_from_the_toml_file_with_workers(
    tmp_path: Path, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        port = free_port()
        config = write_toml(
            tmp_path / "statsd.toml",
            app="examples.hello:app",
            bind=[f"127.0.0.1:{port}"],
            workers=2,
            statsd_host=f"127.0.0.1:{udp.getsockname()[1]}",
            worker_class=worker_class(anyio_backend),
        )
        with tricorn(tmp_path, "-c", str(config)) as child:
            child.wait_listening(port)
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
            lines = {udp.recv(512).decode() for _ in range(3)}
            assert child.terminate() == 0, child.stderr()
    assert "hypercorn.requests:1|c|@1.0" in lines
    assert "hypercorn.request.status.200:1|c|@1.0" in lines
