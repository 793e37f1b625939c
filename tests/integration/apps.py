"""Small ASGI applications the integration tests serve."""

from __future__ import annotations

from typing import Any

import anyio

from tricorn.asgi.types import ASGIApp, ASGIReceive, ASGISend, Scope

HELLO = b"Hello, world!"


async def hello(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})


async def read_body(receive: ASGIReceive) -> bytes:
    """The whole request body, read message by message."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def echo(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """Streams the request body back (chunked)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


async def scope_json(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """Answers with the scope (JSON-safe parts)."""
    import json

    def safe(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, dict):
            return {k: safe(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [safe(v) for v in value]
        return value

    if scope["type"] != "http":
        return
    body = json.dumps(safe(dict(scope))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def slow(delay: float) -> Any:
    """Sleeps ``delay`` seconds before answering."""

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await anyio.sleep(delay)
        await hello(scope, receive, send)

    return app


def sleeps_forever(cancelled: anyio.Event) -> ASGIApp:
    """An app that never answers; ``cancelled`` is set when it is cancelled."""

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    return app
