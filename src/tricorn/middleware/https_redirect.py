"""Redirect cleartext requests to HTTPS, for the ``insecure_bind`` port.

HTTP requests get ``308 Permanent Redirect`` (the method and body are kept,
unlike 301) to the same path and query on ``https://``; WebSocket
handshakes on ``ws://`` are refused with the same redirect through the
``websocket.http.response`` extension when the server offers it (tricorn
does), else closed. Requests already on HTTPS pass through. With
``alt_svc`` the redirect also advertises HTTP/3, so a browser's next
request can go straight to QUIC.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HTTPToHTTPSRedirectMiddleware"]


class HTTPToHTTPSRedirectMiddleware:
    """See the module docstring.

    :param app: the ASGI application served on HTTPS.
    :param host: the host (and port, if not 443) to redirect to; default:
        the request's ``Host`` header without its port.
    :param alt_svc: an ``Alt-Svc`` value for the redirect, e.g.
        ``'h3=":443"; ma=86400'``.
    """

    def __init__(self, app: Any, host: str | None = None, alt_svc: str | None = None) -> None:
        self.app = app
        self.host = host
        self.alt_svc = alt_svc.encode("latin-1") if alt_svc else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope.get("scheme") in ("https", "wss"):
            await self.app(scope, receive, send)
            return
        location = self._location(scope)
        headers = [(b"location", location), (b"content-length", b"0")]
        if self.alt_svc is not None:
            headers.append((b"alt-svc", self.alt_svc))
        if kind == "http":
            await send({"type": "http.response.start", "status": 308, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            message = {"type": "websocket.http.response.start", "status": 308, "headers": headers}
            await send(message)
            await send({"type": "websocket.http.response.body", "body": b""})
        else:
            await send({"type": "websocket.close", "code": 1008})

    def _location(self, scope: dict[str, Any]) -> bytes:
        host = self.host
        if host is None:
            host = ""
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                    break
            # Drop the port: [v6]:port or name:port.
            host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
            host = host or (scope.get("server") or ("localhost", None))[0]
        scheme = "wss" if scope["type"] == "websocket" else "https"
        path = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string", b"")
        target = bytes(path) + (b"?" + query if query else b"")
        return f"{scheme}://{host}".encode("latin-1") + target
