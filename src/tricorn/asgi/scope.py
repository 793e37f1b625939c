"""Build ASGI scopes from a :class:`~tricorn.protocol.events.Request`.

Pure functions: no I/O, no clock. The per-connection parts of a scope (client,
server, scheme, extensions) are computed once per connection by
:class:`ScopeFactory`; each request adds only what it carries.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

from ..middleware.proxy_headers import TrustedProxies
from ..protocol.events import ConnectionInfo, Headers, Request
from .types import Scope

__all__ = ["ASGI_VERSION", "ScopeFactory", "split_target"]

ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.4"}

# Extensions every HTTP connection offers; "tls" is added on TLS connections.
_HTTP_EXTENSIONS: Final[dict[str, dict[str, Any]]] = {
    "http.response.trailers": {},
    "http.response.early_hint": {},
    "http.response.pathsend": {},
}


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request-target into ``(raw_path, query_string)``.

    The absolute form (``GET http://host/p?q HTTP/1.1``, RFC 9112 §3.2.2) is
    reduced to its path; ``*`` (OPTIONS) stays as it is.
    """
    if target[:1] != b"/" and b"://" in target[:8]:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        query = rest.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            target = b"/" + (rest[query:] if query != -1 else b"")
        else:
            target = rest[slash:]
    raw_path, _, query_string = target.partition(b"?")
    return raw_path, query_string


def decode_path(raw_path: bytes) -> str:
    """Percent-decode, then decode UTF-8 (invalid sequences become U+FFFD)."""
    if 37 not in raw_path:  # (no "%"; see ScopeFactory.http)
        return raw_path.decode("utf-8", "replace")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


class ScopeFactory:
    """Makes the scopes of one connection.

    :param info: the connection's facts.
    :param root_path: the configured ``root_path`` (Hypercorn's meaning: it is
        reported, not prepended to ``path``).
    :param state: the lifespan state; each scope gets a shallow copy.
    :param proxies: ``forwarded_allow_ips``; when the peer is one of them,
        every scope is rewritten from its forwarding headers.
    """

    __slots__ = (
        "_base",
        "_extensions",
        "_http",
        "_proxies",
        "_push_extensions",
        "_state",
        "_tls",
    )

    def __init__(
        self,
        info: ConnectionInfo,
        root_path: str,
        state: dict[str, Any],
        proxies: TrustedProxies | None = None,
    ) -> None:
        peer = info.client[0] if info.client is not None else None
        self._proxies = proxies if proxies and proxies.trusts(peer) else None
        extensions = dict(_HTTP_EXTENSIONS)
        if info.tls is not None:
            extensions["tls"] = info.tls
        self._extensions = extensions
        # Made by the first request that needs them (HTTP/2 and HTTP/3 pushes;
        # WebSockets): most connections never do, and every idle one pays.
        self._push_extensions: dict[str, Any] | None = None
        self._tls = info.tls
        self._state = state
        self._base: dict[str, Any] = {
            "asgi": ASGI_VERSION,
            "scheme": info.scheme,
            "root_path": root_path,
            "client": info.client,
            "server": info.server,
        }
        # Every key of an http scope, in its order: a copy of this (one
        # memcpy) and a store per key cost 1.9k instructions where building
        # the dict afresh, which resizes it twice on the way, cost 3.1k.
        self._http: dict[str, Any] = {
            **self._base,
            "type": "http",
            "http_version": "",
            "method": "",
            "path": "",
            "raw_path": b"",
            "query_string": b"",
            "headers": [],
            "extensions": None,
            "state": None,
        }

    def http(self, request: Request) -> Scope:
        """The ``http`` scope of ``request``."""
        target = request.target
        # (``63 in`` -- the byte "?" as an int -- is a memchr; ``find`` parses
        # its arguments first, and ``b"?" in`` tries the needle as an int
        # and builds a TypeError to drop.)
        if target[:1] == b"/":  # (split_target's common case, inline)
            if 63 not in target:
                raw_path, query_string = target, b""
            else:
                raw_path, _, query_string = target.partition(b"?")
        else:
            raw_path, query_string = split_target(target)
        version = request.http_version
        stream_id = request.stream_id
        scope = self._http.copy()
        scope["http_version"] = version
        scope["method"] = request.method.decode("ascii")
        if 37 not in raw_path:  # (no "%")
            scope["path"] = raw_path.decode("utf-8", "replace")
        else:
            scope["path"] = decode_path(raw_path)
        scope["raw_path"] = raw_path
        scope["query_string"] = query_string
        scope["headers"] = request.headers
        # Push is offered on client request streams (HTTP/2: odd; HTTP/3:
        # client-initiated bidirectional), not on pushed ones.
        if (version == "2" and stream_id % 2 == 1) or (version == "3" and stream_id % 4 == 0):
            push = self._push_extensions
            if push is None:
                push = self._push_extensions = {**self._extensions, "http.response.push": {}}
            scope["extensions"] = dict(push)
        else:
            scope["extensions"] = dict(self._extensions)
        scope["state"] = dict(self._state)
        if request.scheme is not None:
            scope["scheme"] = request.scheme
        if self._proxies is not None:
            self._proxies.apply(scope)
        return scope

    def websocket(self, request: Request) -> Scope:
        """The ``websocket`` scope of ``request`` (an upgrade or an extended
        CONNECT): scheme ``ws`` or ``wss``, the offered subprotocols."""
        raw_path, query_string = split_target(request.target)
        scope = dict(self._base)
        scheme = request.scheme if request.scheme is not None else scope["scheme"]
        scope["type"] = "websocket"
        scope["http_version"] = request.http_version
        scope["scheme"] = "wss" if scheme == "https" else "ws"
        scope["path"] = decode_path(raw_path)
        scope["raw_path"] = raw_path
        scope["query_string"] = query_string
        scope["headers"] = request.headers
        scope["subprotocols"] = subprotocols(request.headers)
        extensions: dict[str, Any] = {"websocket.http.response": {}}
        if self._tls is not None:
            extensions["tls"] = self._tls
        scope["extensions"] = extensions
        scope["state"] = dict(self._state)
        if self._proxies is not None:
            self._proxies.apply(scope)
        return scope


def subprotocols(headers: Headers) -> list[str]:
    """The subprotocols a WebSocket client offers
    (``Sec-WebSocket-Protocol``), in its order."""
    offered: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for item in value.decode("latin-1").split(","):
                if item.strip():
                    offered.append(item.strip())
    return offered
