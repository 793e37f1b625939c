"""Lifespan: startup/shutdown, state copied into scopes, failure, apps
without lifespan support."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest

from tricorn import serve
from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.errors import StartupFailure

from ..conftest import make_config, running_server

pytestmark = pytest.mark.anyio


async def test_state_reaches_every_request_as_a_copy() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            scope["state"]["db"] = "connected"
            events.append("startup")
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            events.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        value = scope["state"]["db"]
        scope["state"]["db"] = "mutated"  # must not leak into the next request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": value.encode()})

    async with running_server(app) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).text == "connected"
        assert (await client.get(url)).text == "connected"
    assert events == ["startup", "shutdown"]


async def test_startup_failure_stops_the_server() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(StartupFailure, match="no database"):
        await serve(app, make_config())


async def test_startup_timeout() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await receive()
        await anyio.sleep_forever()

    with anyio.fail_after(5), pytest.raises(StartupFailure, match="timed out"):
        await serve(app, make_config(startup_timeout=0.2))


async def test_app_without_lifespan_support_is_served(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            raise ValueError("unsupported scope")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    with caplog.at_level(logging.DEBUG, logger="tricorn.error"):
        async with running_server(app) as url, httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 204
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_shutdown_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})

    with caplog.at_level(logging.ERROR, logger="tricorn.error"):
        async with running_server(app):
            pass
    assert any("flush failed" in r.getMessage() for r in caplog.records)


async def test_shutdown_timeout() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> Any:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with running_server(app, shutdown_timeout=0.2):
            pass
