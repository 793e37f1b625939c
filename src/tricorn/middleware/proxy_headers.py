"""Trusted proxy headers: ``Forwarded`` (RFC 7239) and ``X-Forwarded-For``
/ ``-Proto`` / ``-Host`` / ``-Prefix``, believed only when the connection
comes from an address in ``forwarded_allow_ips`` (default: nobody).

From a trusted peer, the scope gets:

* ``client``: walking the forwarded-for list from the right (nearest hop
  first), the first address that is not itself a trusted proxy (all
  trusted: the leftmost), with port 0 unless ``Forwarded`` gave one;
* ``scheme``: that hop's protocol (``http``/``https``; ``ws``/``wss`` for a
  WebSocket);
* the ``host`` header: that hop's host;
* ``root_path``: ``X-Forwarded-Prefix`` in front of the configured one.

``Forwarded`` wins over the ``X-Forwarded-*`` family when both are present.
Values that do not parse are ignored (the connection's own facts stand).
An untrusted peer's headers are left as they are: the application sees
them, but the scope is not changed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

__all__ = ["ProxyHeadersMiddleware", "TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class TrustedProxies:
    """The ``forwarded_allow_ips`` setting, parsed once.

    :param allowed: addresses, networks, or ``"*"`` (everyone).
    """

    __slots__ = ("_all", "_networks")

    def __init__(self, allowed: Sequence[str]) -> None:
        self._all = "*" in allowed
        self._networks: list[_Network] = [
            ipaddress.ip_network(item, strict=False) for item in allowed if item != "*"
        ]

    def __bool__(self) -> bool:
        return self._all or bool(self._networks)

    def trusts(self, host: str | None) -> bool:
        """Whether ``host`` is a trusted proxy."""
        if self._all:
            return True
        if host is None or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def apply(self, scope: dict[str, Any]) -> None:
        """Rewrite ``scope`` from its forwarding headers (the caller checked
        that the peer is trusted)."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        xfp = xfh = prefix = None
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value)
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                xfp = value
            elif name == b"x-forwarded-host":
                xfh = value
            elif name == b"x-forwarded-prefix":
                prefix = value
        if forwarded:
            hops = _parse_forwarded(b",".join(forwarded).decode("latin-1"))
        elif xff:
            fors = _split(b",".join(xff).decode("latin-1"))
            protos = _split(xfp.decode("latin-1")) if xfp else []
            hosts = _split(xfh.decode("latin-1")) if xfh else []
            hops = [
                {
                    "for": address,
                    "proto": _aligned(protos, len(fors), i),
                    "host": _aligned(hosts, len(fors), i),
                }
                for i, address in enumerate(fors)
            ]
        else:
            hops = [{"proto": xfp.decode("latin-1").strip()}] if xfp else []
            if xfh:
                hops = [{**(hops[0] if hops else {}), "host": xfh.decode("latin-1").strip()}]
        if hops:
            self._apply_hop(scope, self._client_hop(hops))
        if prefix:
            text = prefix.decode("latin-1").strip().rstrip("/")
            if text.startswith("/"):
                scope["root_path"] = text + scope.get("root_path", "")

    def _client_hop(self, hops: list[dict[str, str | None]]) -> dict[str, str | None]:
        """The hop that names the client: from the right, the first whose
        address is not a trusted proxy."""
        for hop in reversed(hops):
            host, _ = _host_port(hop.get("for"))
            if host is None or not self.trusts(host):
                return hop
        return hops[0]

    @staticmethod
    def _apply_hop(scope: dict[str, Any], hop: dict[str, str | None]) -> None:
        host, port = _host_port(hop.get("for"))
        if host is not None:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                pass  # an obfuscated identifier (RFC 7239 §6.3): not an address
            else:
                scope["client"] = (host, port or 0)
        proto = (hop.get("proto") or "").strip().lower()
        if proto in _SCHEMES:
            secure = _SCHEMES[proto] == "https"
            if scope["type"] == "websocket":
                scope["scheme"] = "wss" if secure else "ws"
            else:
                scope["scheme"] = "https" if secure else "http"
        forwarded_host = (hop.get("host") or "").strip()
        if forwarded_host and all(32 < ord(c) < 127 for c in forwarded_host):
            value = forwarded_host.encode("latin-1")
            scope["headers"] = [
                (name, value if name == b"host" else old) for name, old in scope["headers"]
            ]


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _aligned(values: list[str], count: int, index: int) -> str | None:
    """The entry of a list parallel to X-Forwarded-For: same index when the
    lengths agree, else the last (set by the nearest proxy)."""
    if not values:
        return None
    return values[index] if len(values) == count else values[-1]


def _host_port(node: str | None) -> tuple[str | None, int | None]:
    """``for=`` / X-Forwarded-For node: ``1.2.3.4``, ``1.2.3.4:80``,
    ``[2001:db8::1]:80``, ``2001:db8::1``, ``unknown``, ``_hidden``."""
    if not node:
        return None, None
    node = node.strip().strip('"')
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host, port = node, ""
    return host, int(port) if port.isdigit() and int(port) <= 65535 else None


def _parse_forwarded(value: str) -> list[dict[str, str | None]]:
    """RFC 7239 elements (comma-separated; pairs separated by ``;``)."""
    hops: list[dict[str, str | None]] = []
    for element in _quoted_split(value, ","):
        hop: dict[str, str | None] = {}
        for pair in _quoted_split(element, ";"):
            key, sep, item = pair.partition("=")
            if sep:
                hop[key.strip().lower()] = item.strip().strip('"')
        if hop:
            hops.append(hop)
    return hops


def _quoted_split(value: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


class ProxyHeadersMiddleware:
    """The same rewriting as ``forwarded_allow_ips``, as a plain ASGI
    middleware (for apps served by other servers too, or with trust decided
    per mount). The scope's ``client`` must be one of ``trusted``.

    :param app: the ASGI application.
    :param trusted: addresses, networks or ``"*"`` (default: ``127.0.0.1``).
    """

    def __init__(self, app: Any, trusted: Sequence[str] = ("127.0.0.1",)) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if self.proxies.trusts(client[0] if client else None):
                scope = dict(scope)
                self.proxies.apply(scope)
        await self.app(scope, receive, send)
