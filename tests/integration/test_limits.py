"""Timeouts and hostile clients: each bounded, and a legitimate client on
another connection is served throughout."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from tricorn.asgi.types import ASGIReceive, ASGISend, Scope

from ..conftest import running_server
from .apps import HELLO, echo, hello
from .client import RawClient, get

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("both_http1_parsers")]


async def _served(url: str) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 200


async def test_keep_alive_timeout_closes_idle_connections() -> None:
    async with (
        running_server(hello, keep_alive_timeout=0.3) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(get("/"))
        assert (await client.response()).status == 200
        started = time.monotonic()
        assert await client.is_closed(timeout=3)
        assert 0.2 < time.monotonic() - started < 2.5


async def test_keep_alive_timeout_before_the_first_request() -> None:
    async with (
        running_server(hello, keep_alive_timeout=0.3) as url,
        await RawClient.connect(url) as client,
    ):
        assert await client.is_closed(timeout=3)


async def test_slowloris_head_is_cut_off_by_header_read_timeout() -> None:
    async with (
        running_server(hello, header_read_timeout=0.5, keep_alive_timeout=5) as url,
        await RawClient.connect(url) as client,
    ):
        started = time.monotonic()
        head = get("/", *(f"X-{i}: {i}" for i in range(50)))
        closed = False
        with anyio.fail_after(4):
            for byte in head[:-2]:  # a byte every 20 ms never completes the head
                try:
                    await client.send(bytes([byte]))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    closed = True
                    break
                await anyio.sleep(0.02)
            data = await client.read_all()
        assert closed or data == b"" or data.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 2.0
        await _served(url)


async def test_slow_body_is_cut_off_by_body_read_timeout() -> None:
    async with (
        running_server(echo, body_read_timeout=0.3) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(get("/", "Content-Length: 100", method="POST") + b"abc")
        started = time.monotonic()
        await client.read_all(timeout=3)
        assert time.monotonic() - started < 2.5
        await _served(url)


async def test_read_timeout() -> None:
    async with (
        running_server(echo, read_timeout=0.3) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(get("/", "Content-Length: 100", method="POST"))
        started = time.monotonic()
        await client.read_all(timeout=3)
        assert time.monotonic() - started < 2.5


async def test_keep_alive_max_requests() -> None:
    async with (
        running_server(hello, keep_alive_max_requests=2) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(get("/"))
        first = await client.response()
        await client.send(get("/"))
        second = await client.response()
        assert first.headers.get(b"connection") != b"close"
        assert second.headers.get(b"connection") == b"close"
        assert await client.is_closed()


async def test_max_connections_closes_idle_keep_alive_first() -> None:
    async with (
        running_server(hello, max_connections=2) as url,
        await RawClient.connect(url) as a,
        await RawClient.connect(url) as b,
    ):
        for client in (a, b):
            await client.send(get("/"))
            assert (await client.response()).status == 200
        # both connections are idle keep-alive: a third client gets served
        await _served(url)
        assert await a.is_closed() or await b.is_closed()


async def test_max_connections_queues_accepts_while_busy() -> None:
    gate = anyio.Event()

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/wait":
                await gate.wait()
            await hello(scope, receive, send)

    async with running_server(app, max_connections=1) as url, await RawClient.connect(url) as busy:
        await busy.send(get("/wait"))
        await anyio.sleep(0.2)
        async with anyio.create_task_group() as tg:
            result: list[int] = []

            async def other() -> None:
                async with httpx.AsyncClient() as client:
                    result.append((await client.get(url)).status_code)

            tg.start_soon(other)
            await anyio.sleep(0.3)
            assert result == []  # not accepted: the busy connection holds the slot
            gate.set()
            assert (await busy.response()).status == 200
            await busy.stream.aclose()
        assert result == [200]


async def test_pipelining_flood_from_a_client_that_never_reads() -> None:
    async with (
        running_server(hello, keep_alive_max_requests=10**9) as url,
        await RawClient.connect(url) as client,
    ):
        request = get("/")
        sent = 0
        with anyio.move_on_after(2):
            while sent < 200_000_000:
                await client.send(request * 1000)
                sent += len(request) * 1000
        # the server stopped reading: kernel buffers filled and send blocked
        assert sent < 200_000_000
        await _served(url)


async def test_huge_body_to_an_app_that_never_reads_it() -> None:
    async with running_server(hello) as url, await RawClient.connect(url) as client:
        await client.send(get("/", "Content-Length: 1000000000", method="POST"))
        await client.send(b"x" * 100000)
        reply = await client.response()
        assert reply.body == HELLO
        assert reply.headers.get(b"connection") == b"close"
        assert await client.is_closed()


async def test_server_keeps_serving_during_many_bad_clients() -> None:
    async with running_server(hello, header_read_timeout=1.0) as url:
        clients = [await RawClient.connect(url) for _ in range(50)]
        try:
            for client in clients:
                await client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            await _served(url)
        finally:
            for client in clients:
                await client.stream.aclose()


async def test_write_timeout_closes_a_connection_whose_client_stopped_reading() -> None:
    outcome: list[str] = []
    done = anyio.Event()

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/stream":
            await hello(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:  # far more than the socket buffers hold
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except OSError:
            outcome.append("send raised")
        finally:
            done.set()

    async with (
        running_server(app, write_timeout=0.5, keep_alive_timeout=0.5) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(get("/stream"))  # ... and never read the response
        started = time.monotonic()
        with anyio.fail_after(5):
            await done.wait()
        assert time.monotonic() - started < 4
        await _served(url)
    assert outcome == ["send raised"]
