"""Graceful shutdown: listeners close first, in-flight requests finish within
graceful_timeout, idle connections close."""

from __future__ import annotations

import sys

import anyio
import pytest

from tricorn import serve
from tricorn.asgi.types import ASGIReceive, ASGISend, Scope

from ..conftest import make_config
from .apps import HELLO, hello, sleeps_forever
from .client import RawClient, address, get

pytestmark = pytest.mark.anyio


async def test_in_flight_request_finishes_and_new_connections_are_refused() -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await release.wait()
        await hello(scope, receive, send)

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        urls = await tg.start(
            lambda task_status: serve(
                app, make_config(), shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        url = urls[0]
        async with await RawClient.connect(url) as busy, await RawClient.connect(url) as idle:
            await busy.send(get("/"))
            await started.wait()
            stop.set()
            await anyio.sleep(0.2)
            host, port = address(url)
            with pytest.raises(OSError):
                await anyio.connect_tcp(host, port)
            assert await idle.is_closed()
            release.set()
            reply = await busy.response()
            assert reply.body == HELLO
            assert reply.headers.get(b"connection") == b"close"
            assert await busy.is_closed()


async def test_graceful_timeout_cancels_what_is_left() -> None:
    cancelled = anyio.Event()
    app = sleeps_forever(cancelled)

    stop = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            urls = await tg.start(
                lambda task_status: serve(
                    app,
                    make_config(graceful_timeout=0.3),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            async with await RawClient.connect(urls[0]) as client:
                await client.send(get("/"))
                await anyio.sleep(0.1)
                stop.set()
                await cancelled.wait()
                assert await client.is_closed()
    # Nothing the server handled stays the thread's handled exception: the
    # compiled build's coroutines once left this cancellation there (a
    # later connection raised it; see tests/unit/test_compiled_build.py).
    assert sys.exc_info() == (None, None, None)
