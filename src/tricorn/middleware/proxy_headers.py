"""Trusted proxy headers: ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` /
``-Prefix``, or ``Forwarded`` (RFC 7239), believed only from trusted proxies
(default: nobody).

One family is read, never both: ``forwarded_headers`` says which one the
proxies write (``x-forwarded``, the default, as nginx, HAProxy, cloud load
balancers and Kubernetes ingresses do; or ``forwarded``). The other family
is left alone, because a proxy passes through whatever a client sent in the
headers it does not set itself: believing those would let the client choose
its own address.

Two settings say who the proxies are:

* ``forwarded_allow_ips``, by address. The connection's peer must be listed.
  Then ``client`` is, walking the forwarded-for list from the right (nearest
  hop first), the first address that is not itself listed (all listed: the
  leftmost); ``scheme`` and ``host`` come from that hop (X-Forwarded-Proto
  and -Host values at the same position when the lists have X-Forwarded-For's
  length, else their last value); ``X-Forwarded-Prefix`` is taken whole.
* ``forwarded_trusted_hops`` = N > 0, by count: there are exactly N proxies
  in front of tricorn and each one *appends* one value to the headers it
  sets (one element to ``Forwarded``). Whatever the client sent comes
  before those, so the Nth value from the right is the one the outermost
  proxy wrote: ``client``, ``scheme``, ``host`` and the prefix are each
  header's Nth value from the right (repeated header lines count as one
  comma-separated list, as Hypercorn's ProxyFixMiddleware and Werkzeug's
  ProxyFix read them). A header with fewer than N values did not pass
  through N proxies, so it is ignored (the peer's own facts stand): that is
  what stops a client from naming itself. The peer's
  address does not matter, unless ``forwarded_allow_ips`` is set too: then
  the peer must also be listed (both checks, never either), and the count
  alone picks the values.

In both modes ``client`` gets port 0 unless ``Forwarded`` gave one;
``scheme`` is ``http``/``https`` (``ws``/``wss`` for a WebSocket); the
``host`` header is replaced; the prefix goes in front of the configured
``root_path``. Values that do not parse (an unbalanced quote in
``Forwarded``, an obfuscated ``for=_hidden``) are ignored. An untrusted
peer's headers are left as they are: the application sees them, but the
scope is not changed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

__all__ = ["ProxyHeadersMiddleware", "TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_SINGLE = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix")
FAMILIES = {
    "x-forwarded": frozenset({b"x-forwarded-for", *_SINGLE}),
    "forwarded": frozenset({b"forwarded"}),
}
"""The header names of each ``forwarded_headers`` choice."""
_Hop = dict[str, str | None]
"""One proxy's report: ``for``, ``proto``, ``host`` (the Forwarded names)."""


class TrustedProxies:
    """The ``forwarded_allow_ips`` and ``forwarded_trusted_hops`` settings,
    parsed once (see the module docstring).

    :param allowed: addresses, networks, or ``"*"`` (everyone).
    :param hops: the number of proxies in front; 0: trust by address only.
    :param headers: the family the proxies write: ``"x-forwarded"`` or
        ``"forwarded"``.
    :raises ValueError: ``hops`` is negative, or ``headers`` is neither.
    """

    __slots__ = ("_all", "_hops", "_names", "_networks")

    def __init__(self, allowed: Sequence[str], hops: int = 0, headers: str = "x-forwarded") -> None:
        if hops < 0:
            raise ValueError(f"hops must be >= 0, not {hops}")
        if headers not in FAMILIES:
            raise ValueError(f"headers must be one of {sorted(FAMILIES)}, not {headers!r}")
        self._names = FAMILIES[headers]
        self._all = "*" in allowed
        self._hops = hops
        self._networks: list[_Network] = [
            ipaddress.ip_network(item, strict=False) for item in allowed if item != "*"
        ]

    def __bool__(self) -> bool:
        return self._all or bool(self._networks) or self._hops > 0

    def trusts(self, host: str | None) -> bool:
        """Whether the forwarding headers of a connection from ``host`` are
        believed: it is listed, or only a hop count is set."""
        if not self._all and not self._networks:
            return self._hops > 0
        return self._listed(host)

    def _listed(self, host: str | None) -> bool:
        """Whether ``host`` is in ``forwarded_allow_ips``."""
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
        found: dict[bytes, list[str]] = {}
        names = self._names
        for name, value in scope["headers"]:
            if name in names:
                found.setdefault(name, []).append(value.decode("latin-1"))
        if not found:
            return
        hop, prefix = self._counted(found) if self._hops else self._walked(found)
        if hop:
            self._apply_hop(scope, hop)
        text = (prefix or "").strip().rstrip("/")
        if text.startswith("/"):
            scope["root_path"] = text + scope.get("root_path", "")

    def _walked(self, found: dict[bytes, list[str]]) -> tuple[_Hop | None, str | None]:
        """By address: the hop that names the client, and the prefix."""
        # The last line of the single-valued headers wins.
        xfp, xfh, prefix = (found.get(name, [None])[-1] for name in _SINGLE)
        if b"forwarded" in found:
            hops = _parse_forwarded(",".join(found[b"forwarded"]))
        elif b"x-forwarded-for" in found:
            fors = _split(",".join(found[b"x-forwarded-for"]))
            protos = _split(xfp) if xfp else []
            hosts = _split(xfh) if xfh else []
            hops = [
                {
                    "for": address,
                    "proto": _aligned(protos, len(fors), i),
                    "host": _aligned(hosts, len(fors), i),
                }
                for i, address in enumerate(fors)
            ]
        else:
            hops = [{"proto": xfp, "host": xfh}]
        return (self._client_hop(hops) if hops else None), prefix

    def _counted(self, found: dict[bytes, list[str]]) -> tuple[_Hop | None, str | None]:
        """By hop count: each header's Nth value from the right."""
        n = self._hops

        def nth(name: bytes) -> str | None:
            values = _split(",".join(found.get(name, ())))
            return values[-n] if len(values) >= n else None

        elements = _parse_forwarded(",".join(found.get(b"forwarded", ())))
        if len(elements) >= n:
            hop = elements[-n]
        else:
            hop = {"for": nth(b"x-forwarded-for"), "proto": nth(b"x-forwarded-proto")}
            hop["host"] = nth(b"x-forwarded-host")
        return hop, nth(b"x-forwarded-prefix")

    def _client_hop(self, hops: list[dict[str, str | None]]) -> dict[str, str | None]:
        """The hop that names the client: from the right, the first whose
        address is not a trusted proxy."""
        for hop in reversed(hops):
            host, _ = _host_port(hop.get("for"))
            if host is None or not self._listed(host):
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
    # (isascii: str.isdigit is also true of superscripts, which int() refuses)
    digits = port.isascii() and port.isdigit()
    return host, int(port) if digits and int(port) <= 65535 else None


def _parse_forwarded(value: str) -> list[dict[str, str | None]]:
    """RFC 7239 elements (comma-separated; pairs separated by ``;``). An
    unbalanced quote makes the whole header malformed: a client's stray quote
    must not swallow the elements the proxies appended after it."""
    if value.replace('\\"', "").count('"') % 2:
        return []
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
    """The same rewriting as ``forwarded_allow_ips`` and
    ``forwarded_trusted_hops``, as a plain ASGI middleware (for apps served by
    other servers too, or with trust decided per mount). The scope's
    ``client`` must be one of ``trusted`` unless ``trusted`` is empty and
    ``trusted_hops`` is set.

    :param app: the ASGI application.
    :param trusted: addresses, networks or ``"*"`` (default: ``127.0.0.1``).
    :param trusted_hops: the number of proxies in front (Hypercorn's
        ``ProxyFixMiddleware`` name); each header's Nth value from the right
        is used. 0 (the default): by address only.
    :param headers: which family the proxies write, ``"x-forwarded"`` (the
        default) or ``"forwarded"``; the other one is ignored.
    :raises ValueError: ``trusted_hops`` is negative, or ``headers`` unknown.
    """

    def __init__(
        self,
        app: Any,
        trusted: Sequence[str] = ("127.0.0.1",),
        *,
        trusted_hops: int = 0,
        headers: str = "x-forwarded",
    ) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted, trusted_hops, headers)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if self.proxies.trusts(client[0] if client else None):
                scope = dict(scope)
                self.proxies.apply(scope)
        await self.app(scope, receive, send)
