"""Echo the request body back, streaming, with the request's content type.

Each ``http.request`` chunk is sent back as an ``http.response.body`` chunk as
soon as it arrives (``more_body=True``), so a large upload is echoed without
being held in memory and the server's backpressure reaches the client. The
response has no Content-Length, so HTTP/1.1 sends it chunked.

    tricorn examples.echo:app
    curl --data-binary @README.md -H 'content-type: text/markdown' http://127.0.0.1:8000/
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_CONTENT_TYPE = b"application/octet-stream"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Stream the request body back to the client."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        raise NotImplementedError(f"unsupported scope type {scope['type']!r}")
    content_type = DEFAULT_CONTENT_TYPE
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return  # the client went away; nothing left to send to
        more_body = message.get("more_body", False)
        body = message.get("body", b"")
        if body or not more_body:
            await send({"type": "http.response.body", "body": body, "more_body": more_body})


async def lifespan(receive: Receive, send: Send) -> None:
    """Complete startup and shutdown; nothing to set up for this app."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
