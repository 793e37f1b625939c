"""Field handling shared by the HTTP/2 and HTTP/3 adapters.

HTTP/2 (RFC 9113 §8.2-8.3) and HTTP/3 (RFC 9114 §4.2-4.3) put the same rules
on a request's header section: lower-case names, pseudo-header fields first
and only the request ones, no connection-specific fields, ``TE`` only as
``trailers``, one ``:authority`` that agrees with ``Host``, and extended
CONNECT (``:protocol``, RFC 8441 / RFC 9220). The two adapters differ only
in how a malformed request is answered (RST_STREAM PROTOCOL_ERROR or a
stream error H3_MESSAGE_ERROR), so the checks live here once.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

from ..errors import AppProtocolError
from .events import Headers, Response

__all__ = [
    "CONNECTION_SPECIFIC",
    "NAME",
    "NO_BODY_STATUS",
    "OUT_VALUE_BAD",
    "STATUS",
    "VALUE_BAD",
    "WS_OWN_FIELDS",
    "Parsed",
    "parse_priority",
    "parse_request",
    "push_fields",
    "queue_response",
    "response_head",
    "trailer_fields",
]

NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-z]+")  # lower-case tokens only
VALUE_BAD = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")  # RFC 9113 §8.2.1, RFC 9114 §4.2
OUT_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # what we refuse to send
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
NO_BODY_STATUS = frozenset((204, 304))
STATUS: dict[int, bytes] = {code: str(code).encode() for code in range(100, 600)}
# WebSocket handshake fields the server writes itself; the application's are dropped.
WS_OWN_FIELDS = frozenset(
    (b"sec-websocket-protocol", b"sec-websocket-extensions", b"content-length")
)
_PRIORITY_ITEM = re.compile(rb"\s*(u|i)\s*(?:=\s*(\?[01]|\d+))?\s*$")


def response_head(status: int, headers: Headers) -> Headers:
    """``:status`` and the app's headers, minus connection-specific ones
    (RFC 9113 §8.2.2: dropped, not an error)."""
    head: Headers = [(b":status", STATUS[status])]
    good = _GOOD_FIELDS
    for field in headers:
        if field not in good:
            name, value = field
            if name in CONNECTION_SPECIFIC:
                continue
            if NAME.fullmatch(name) is None:
                raise AppProtocolError(f"invalid header name {name!r}")
            if OUT_VALUE_BAD.search(value) is not None:
                raise AppProtocolError(f"invalid value for header {name!r}: {value!r}")
            if len(good) >= 4096:
                good.clear()
            good.add(field)
        head.append(field)
    return head


# Response fields already checked (most responses repeat their headers).
_GOOD_FIELDS: set[tuple[bytes, bytes]] = set()


class _Chunks(Protocol):
    def append(self, chunk: bytes, /) -> None: ...


class OutboundStream(Protocol):
    """What :func:`queue_response` sets on an adapter's stream."""

    head_request: bool
    head: Headers | None
    no_body: bool
    want_end: bool

    @property
    def pending(self) -> _Chunks:
        """The body chunks not framed yet."""


def queue_response(stream: OutboundStream, event: Response) -> None:
    """A final response on an HTTP/2 or HTTP/3 stream: its head to frame,
    and the body and the end it may carry (see :class:`Response`).

    :raises AppProtocolError: a header the protocol cannot carry.
    """
    stream.head = response_head(event.status, event.headers)
    stream.no_body = no_body = stream.head_request or event.status in NO_BODY_STATUS
    if event.body and not no_body:
        stream.pending.append(event.body)
    if event.end:
        stream.want_end = True


def trailer_fields(headers: Headers) -> Headers:
    trailers: Headers = []
    for name, value in headers:
        if name in CONNECTION_SPECIFIC or name[:1] == b":":
            continue
        if NAME.fullmatch(name) is None or OUT_VALUE_BAD.search(value) is not None:
            raise AppProtocolError(f"invalid trailer {name!r}: {value!r}")
        trailers.append((name, value))
    return trailers


# Request fields already validated, for the clients that repeat them
# (bounded: past _MEMORY entries a set starts over). _PLAIN_FIELDS holds
# regular fields whose names parse_request does not look at.
_MEMORY = 4096
_PLAIN_FIELDS: set[tuple[bytes, bytes]] = set()
_GOOD_PSEUDO: set[tuple[bytes, bytes]] = set()
_NOTED = frozenset((b"te", b"cookie", b"host", b"content-length", b"priority"))


def _remember(memory: set[tuple[bytes, bytes]], field: tuple[bytes, bytes]) -> None:
    if len(memory) >= _MEMORY:
        memory.clear()
    memory.add(field)


class Parsed(NamedTuple):
    method: bytes
    scheme: str
    authority: bytes | None
    path: bytes
    headers: Headers
    length: int | None
    urgency: int
    incremental: bool
    te: bool
    protocol: bytes | None  # RFC 8441 :protocol (extended CONNECT)


def parse_request(raw: list[tuple[bytes, bytes]]) -> Parsed | str:
    """Validate a request header block (RFC 9113 §8.2-8.3); a reason string
    if it is malformed. A block seen lately is answered from memory (with
    its own copy of the headers): clients repeat whole requests (polling,
    health checks, a page's assets differ in one or two fields)."""
    key = tuple(raw)
    known = _REQUESTS.get(key)
    if known is not None:
        m, s, a, p, headers, length, urgency, incremental, te, protocol = known
        return Parsed(m, s, a, p, list(headers), length, urgency, incremental, te, protocol)
    parsed = _parse_request(raw)
    if type(parsed) is Parsed:
        if len(_REQUESTS) >= _REQUEST_MEMORY:
            _REQUESTS.clear()
        _REQUESTS[key] = parsed._replace(headers=list(parsed.headers))
    return parsed


_REQUEST_MEMORY = 256  # request blocks remembered; then the memory starts over
_REQUESTS: dict[tuple[tuple[bytes, bytes], ...], Parsed] = {}


def _parse_request(raw: list[tuple[bytes, bytes]]) -> Parsed | str:
    method = scheme = authority = path = None
    headers: Headers = []
    cookies: list[bytes] = []
    regular = False
    host: bytes | None = None
    length: int | None = None
    urgency, incremental = 3, False
    te = False
    protocol: bytes | None = None
    plain = _PLAIN_FIELDS
    for field in raw:
        if field in plain:  # a regular field seen before: valid, nothing to note
            regular = True
            headers.append(field)
            continue
        name, value = field
        if name[:1] == b":":
            if regular:
                return "pseudo-header after a regular field"
            if name == b":method":
                if method is not None:
                    return "duplicate :method"
                method = value
            elif name == b":path":
                if path is not None:
                    return "duplicate :path"
                path = value
            elif name == b":scheme":
                if scheme is not None:
                    return "duplicate :scheme"
                scheme = value
            elif name == b":authority":
                if authority is not None:
                    return "duplicate :authority"
                authority = value
            elif name == b":protocol":
                if protocol is not None:
                    return "duplicate :protocol"
                protocol = value
            else:
                return f"pseudo-header {name!r} not allowed in requests"
            if field not in _GOOD_PSEUDO:
                if VALUE_BAD.search(value):
                    return f"invalid {name!r}"
                _remember(_GOOD_PSEUDO, field)
            continue
        regular = True
        if NAME.fullmatch(name) is None:
            return f"invalid field name {name!r}"
        if VALUE_BAD.search(value) is not None:
            return f"invalid value for {name!r}"
        if name in CONNECTION_SPECIFIC:
            return f"connection-specific field {name!r}"
        if name not in _NOTED:
            _remember(plain, field)
        elif name == b"te":
            if value.lower() != b"trailers":
                return "TE other than trailers"
            te = True
        elif name == b"cookie":
            cookies.append(value)
            continue
        elif name == b"host":
            if host is not None:
                return "duplicate host"
            host = value
        elif name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                return "invalid content-length"
            length = int(value)
        elif name == b"priority":
            urgency, incremental = parse_priority(value, urgency, incremental)
        headers.append((name, value))
    if method is None:
        return "missing :method"
    if protocol is not None:
        # RFC 8441 §4: only on CONNECT, which then has :scheme and :path too.
        if method != b"CONNECT" or authority is None:
            return ":protocol outside an extended CONNECT with :authority"
    elif method == b"CONNECT":
        if scheme is not None or path is not None or authority is None:
            return "CONNECT needs :authority only"
        return Parsed(
            method, "http", authority, b"", headers, length, urgency, incremental, te, None
        )
    if scheme is None or path is None:
        return "missing :scheme or :path"
    if not path or (path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS")):
        return "invalid :path"
    if NAME.fullmatch(method.lower()) is None:
        return "invalid :method"
    if authority is not None:
        if host is None:
            headers.insert(0, (b"host", authority))
        elif host != authority:
            return "host differs from :authority"
    elif host is not None:
        authority = host
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    return Parsed(
        method,
        scheme.decode("latin-1"),
        authority,
        path,
        headers,
        length,
        urgency,
        incremental,
        te,
        protocol,
    )


def parse_priority(value: bytes, urgency: int, incremental: bool) -> tuple[int, bool]:
    """An RFC 9218 priority field value; unknown or bad members are ignored."""
    for member in value.split(b","):
        match = _PRIORITY_ITEM.match(member)
        if match is None:
            continue
        key, arg = match.groups()
        if key == b"u":
            if arg is not None and arg.isdigit() and int(arg) <= 7:
                urgency = int(arg)
        else:
            incremental = arg is None or arg == b"?1"
    return urgency, incremental


def push_fields(
    path: bytes, headers: Headers, scheme: str, authority: bytes | None
) -> tuple[Headers, Headers] | None:
    """A pushed request's fields (RFC 9113 §8.4, RFC 9114 §4.6): the
    PUSH_PROMISE header section, and the headers of the request the server
    serves to itself (with ``host``). ``None`` if ``path`` is unusable.
    Pseudo-headers, connection-specific and invalid fields the application
    gave are dropped."""
    if path[:1] != b"/" or VALUE_BAD.search(path):
        return None
    promise: Headers = [(b":method", b"GET"), (b":scheme", scheme.encode()), (b":path", path)]
    if authority is not None:
        promise.append((b":authority", authority))
    extra = [
        (name, value)
        for name, value in headers
        if name not in CONNECTION_SPECIFIC
        and name[:1] != b":"
        and NAME.fullmatch(name)
        and not OUT_VALUE_BAD.search(value)
    ]
    promise += extra
    if authority is not None and not any(name == b"host" for name, _ in extra):
        extra.insert(0, (b"host", authority))
    return promise, extra
