"""WebSocket examples: an echo server and a broadcast chat room.

    tricorn examples.websocket:echo            # ws://127.0.0.1:8000/ echoes every message
    tricorn examples.websocket:chat            # every message goes to every client

The same apps serve WebSockets over HTTP/1.1 (``Upgrade: websocket``) and
over HTTP/2 (RFC 8441 extended CONNECT, e.g. with ``--certfile``/``--keyfile``).
"""

from __future__ import annotations

from typing import Any

Scope = dict[str, Any]


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Echo every text and binary message back (what Autobahn expects)."""
    if not await _accepted(scope, receive, send):
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


_clients: set[Any] = set()


async def chat(scope: Scope, receive: Any, send: Any) -> None:
    """Broadcast every text message to every connected client."""
    if not await _accepted(scope, receive, send):
        return
    _clients.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            for client in list(_clients):
                try:
                    await client({"type": "websocket.send", "text": text})
                except OSError:  # that client has gone: it leaves on its own
                    _clients.discard(client)
    finally:
        _clients.discard(send)


async def _accepted(scope: Scope, receive: Any, send: Any) -> bool:
    """Accept a WebSocket; answer lifespan and plain HTTP (``False``)."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return False
    if scope["type"] != "websocket":
        await _plain_http(send)
        return False
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    return True


async def _plain_http(send: Any) -> None:
    body = b"This endpoint speaks WebSocket.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [(b"upgrade", b"websocket"), (b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return
