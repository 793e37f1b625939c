"""HTTP/2 server push and early hints, with no framework.

``/`` first sends a ``103 Early Hints`` with ``Link: rel=preload`` headers for
``/style.css`` and ``/app.js`` (``http.response.early_hint``), then pushes both
(``http.response.push``), then serves a small HTML page that uses them.
``/style.css`` and ``/app.js`` are ordinary, cacheable GET responses: the
pushed copies are produced by the same code, since tricorn serves a push by
calling the application with a ``GET`` scope for the pushed path.

Each extension is used only when the scope offers it: push exists only on
HTTP/2 streams the client opened (not on pushed streams, and never on
HTTP/1.1); a client that sent ``SETTINGS_ENABLE_PUSH = 0`` is offered push but
tricorn drops the messages quietly. Run it with (from the repository root)::

    tricorn -c config/push.toml

and watch with ``nghttp -nv https://localhost:8443/`` (see docs/push.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CACHE = b"public, max-age=3600"

# path -> (content type, body); what "/" preloads and pushes.
ASSETS: dict[str, tuple[bytes, bytes]] = {
    "/style.css": (
        b"text/css; charset=utf-8",
        b"body { font-family: sans-serif; margin: 2em; }\nh1 { color: #345; }\n",
    ),
    "/app.js": (
        b"text/javascript; charset=utf-8",
        b'document.getElementById("status").textContent = "app.js ran";\n',
    ),
}

LINKS = [
    b"</style.css>; rel=preload; as=style",
    b"</app.js>; rel=preload; as=script",
]

PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tricorn push example</title>
<link rel="stylesheet" href="/style.css">
<script src="/app.js" defer></script>
</head>
<body>
<h1>Hello over HTTP/2</h1>
<p id="status">app.js has not run.</p>
</body>
</html>
"""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/`` with early hints and pushes; the two assets; 404 elsewhere."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        raise NotImplementedError(f"unsupported scope type {scope['type']!r}")
    path = scope["path"]
    if path == "/":
        await index(scope, send)
    elif path in ASSETS and scope["method"] in ("GET", "HEAD"):
        content_type, body = ASSETS[path]
        await respond(send, 200, content_type, body, [(b"cache-control", CACHE)])
    else:
        await respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")


async def index(scope: Scope, send: Send) -> None:
    extensions = scope.get("extensions") or {}
    if "http.response.early_hint" in extensions:
        await send({"type": "http.response.early_hint", "links": LINKS})
    if "http.response.push" in extensions:
        for asset in ASSETS:
            # Headers of the pushed (GET) request: what the browser would send.
            await send({"type": "http.response.push", "path": asset, "headers": []})
    await respond(
        send,
        200,
        b"text/html; charset=utf-8",
        PAGE,
        [(b"link", b", ".join(LINKS)), (b"cache-control", b"no-cache")],
    )


async def respond(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    """Complete startup and shutdown; nothing to set up for this app."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
