"""Mount several ASGI applications under path prefixes.

``DispatcherMiddleware({"/api": api, "/admin": admin, "": site})`` sends each
request to the application with the longest prefix that matches the path at
a segment boundary (``/api`` matches ``/api`` and ``/api/x``, not
``/apiary``). The prefix is appended to the scope's ``root_path``; ``path``
stays the full path, as the ASGI spec and Starlette's ``Mount`` have it.
A path no prefix matches gets 404 (HTTP) or a refused handshake
(WebSocket).

Lifespan goes to the application mounted at ``""`` only, if there is one
(running several lifespans at once needs a task group, which would tie
this module to an event loop library); other applications see none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DispatcherMiddleware"]

_NOT_FOUND = b"Not Found"


class DispatcherMiddleware:
    """Route by path prefix (see the module docstring).

    :param mounts: prefix -> ASGI application; prefixes start with ``/``
        (or are ``""`` for the fallback) and do not end with ``/``.
    :raises ValueError: a prefix that breaks those rules.
    """

    def __init__(self, mounts: Mapping[str, Any]) -> None:
        for prefix in mounts:
            if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
                raise ValueError(f"mount prefix {prefix!r}: start with '/', no trailing '/'")
        self.mounts = sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)
        self.fallback = mounts.get("")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            if self.fallback is not None:
                await self.fallback(scope, receive, send)
                return
            await _empty_lifespan(receive, send)
            return
        path: str = scope["path"]
        for prefix, app in self.mounts:
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                mounted = dict(scope)
                mounted["root_path"] = scope.get("root_path", "") + prefix
                await app(mounted, receive, send)
                return
        await _not_found(kind, receive, send)


async def _empty_lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def _not_found(kind: str, receive: Any, send: Any) -> None:
    if kind == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(_NOT_FOUND))]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": _NOT_FOUND})
