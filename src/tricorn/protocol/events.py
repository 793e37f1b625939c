"""The protocol-agnostic event vocabulary of tricorn.

Every protocol adapter (HTTP/1.1, HTTP/2; HTTP/3 later; the WebSocket
framing they share) turns bytes into these events and these events into bytes. Nothing
from h11, h2, aioquic or wsproto crosses the adapter boundary.

Rule 1: every event that concerns a request carries ``stream_id``. HTTP/1.1 is
the one-stream case: its adapter numbers the requests of a connection 1, 3,
5, ... (odd, like HTTP/2 client streams) and never has two open at once.

Inbound (adapter -> core):  Request, Body, EndBody, Trailers, StreamClosed,
                            ConnectionClosed, ProtocolSwitch, Writable,
                            WebSocketMessage, WebSocketClose
Outbound (core -> adapter): InformationalResponse, Response, Data, EndData,
                            Trailers, ResetStream, PushPromise, ReadyForBody,
                            BodyConsumed, WebSocketAccept, WebSocketMessage,
                            WebSocketClose

A WebSocket is a stream too: its ``Request`` has ``protocol="websocket"``;
the application answers ``WebSocketAccept`` (or an HTTP response: a
denial), and from then on messages flow both ways until one
``WebSocketClose`` each way.

Headers are ``list[tuple[bytes, bytes]]`` with lower-cased names everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "Body",
    "BodyConsumed",
    "ConnectionClosed",
    "ConnectionInfo",
    "Data",
    "EndBody",
    "EndData",
    "Event",
    "Headers",
    "InformationalResponse",
    "ProtocolSwitch",
    "PushPromise",
    "ReadyForBody",
    "Request",
    "ResetStream",
    "Response",
    "StreamClosed",
    "Trailers",
    "WebSocketAccept",
    "WebSocketClose",
    "WebSocketMessage",
    "Writable",
]

Headers = list[tuple[bytes, bytes]]

# How an event is written: a slotted dataclass (equality, repr and
# ``__match_args__`` come from ``dataclass``), each field ``Final`` (read-only
# for the type checker: an event is never changed once built; mypy checks src
# and tests), and its own ``__init__``. The ``__init__`` is written out, not
# generated, for the compiled build (setup.py): mypyc compiles a method the
# source spells out, while ``dataclass``'s generated one stays interpreted, and
# several events are built per request. Built so, a compiled event is a C
# struct whose fields the compiled core reads directly (h1-hello: 105k -> 91k
# instructions a request). Interpreted, the written ``__init__`` is the one
# ``dataclass`` would have generated. (A frozen dataclass sets each field
# through ``object.__setattr__``: 2.5 us a Request, 0.7 us so.)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Facts about one connection, built once when it is accepted.

    :param client: the peer's ``(host, port)``, or ``None`` (e.g. UNIX sockets).
    :param server: our ``(host, port)``, or ``(path, None)`` for UNIX sockets.
    :param scheme: ``"http"`` or ``"https"``.
    :param alpn: the negotiated ALPN protocol, if any.
    :param tls: the ASGI ``tls`` extension dictionary, or ``None`` in cleartext.
    """

    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: Literal["http", "https"] = "http"
    alpn: str | None = None
    tls: dict[str, Any] | None = None


# ---------------------------------------------------------------- inbound


@dataclass(slots=True)
class Request:
    """A request head. ``target`` is the raw request-target (path and query)."""

    stream_id: Final[int]
    method: Final[bytes]
    target: Final[bytes]
    headers: Final[Headers]
    http_version: Final[str]  # "1.0", "1.1", "2", "3"
    scheme: Final[str | None]  # from :scheme on HTTP/2 and HTTP/3
    authority: Final[bytes | None]  # from :authority on HTTP/2 and HTTP/3
    expect_continue: Final[bool]
    trailers_accepted: Final[bool]  # the client sent ``TE: trailers``
    raw_headers: Final[Headers | None]  # original case, when h11_pass_raw_headers
    protocol: Final[str | None]  # "websocket": an upgrade / extended CONNECT

    def __init__(
        self,
        stream_id: int,
        method: bytes,
        target: bytes,
        headers: Headers,
        http_version: str,
        scheme: str | None = None,
        authority: bytes | None = None,
        expect_continue: bool = False,
        trailers_accepted: bool = False,
        raw_headers: Headers | None = None,
        protocol: str | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.method = method
        self.target = target
        self.headers = headers
        self.http_version = http_version
        self.scheme = scheme
        self.authority = authority
        self.expect_continue = expect_continue
        self.trailers_accepted = trailers_accepted
        self.raw_headers = raw_headers
        self.protocol = protocol


@dataclass(slots=True)
class Body:
    """A chunk of request body."""

    stream_id: Final[int]
    data: Final[bytes]

    def __init__(self, stream_id: int, data: bytes) -> None:
        self.stream_id = stream_id
        self.data = data


@dataclass(slots=True)
class EndBody:
    """The request body is complete."""

    stream_id: Final[int]

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True)
class StreamClosed:
    """The stream ended abnormally: the peer reset it or went away."""

    stream_id: Final[int]
    error_code: Final[int | None]

    def __init__(self, stream_id: int, error_code: int | None = None) -> None:
        self.stream_id = stream_id
        self.error_code = error_code


@dataclass(slots=True)
class ConnectionClosed:
    """The connection is over: the adapter wants the core to flush what is
    queued and close the transport. ``reason`` is for logging."""

    reason: Final[str]

    def __init__(self, reason: str = "") -> None:
        self.reason = reason


@dataclass(slots=True)
class ProtocolSwitch:
    """The connection switches protocol (``h2c`` upgrade, prior-knowledge
    HTTP/2, WebSocket). ``data`` is every byte the adapter has not consumed;
    ``request`` is the request that asked for the switch, if any."""

    to: Final[str]
    data: Final[bytes]
    request: Final[Request | None]
    settings: Final[bytes | None]  # the HTTP2-Settings header, decoded
    body: Final[bytes]  # the upgrading request's complete body

    def __init__(
        self,
        to: str,
        data: bytes = b"",
        request: Request | None = None,
        settings: bytes | None = None,
        body: bytes = b"",
    ) -> None:
        self.to = to
        self.data = data
        self.request = request
        self.settings = settings
        self.body = body


@dataclass(slots=True)
class Writable:
    """The stream's queued response data went out (the peer opened its
    flow-control window): a ``send()`` waiting on it may go on."""

    stream_id: Final[int]

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True)
class WebSocketMessage:
    """One whole WebSocket message: ``str`` for text, ``bytes`` for binary
    (inbound from the peer, outbound from the application)."""

    stream_id: Final[int]
    data: Final[bytes | str]

    def __init__(self, stream_id: int, data: bytes | str) -> None:
        self.stream_id = stream_id
        self.data = data


@dataclass(slots=True)
class WebSocketClose:
    """The WebSocket's end. Inbound: the peer's close code and reason, or
    ``1006`` when the connection ended without a Close (sent once). Outbound:
    the application closes with ``code``."""

    stream_id: Final[int]
    code: Final[int]
    reason: Final[str]

    def __init__(self, stream_id: int, code: int = 1000, reason: str = "") -> None:
        self.stream_id = stream_id
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------- outbound


@dataclass(slots=True)
class WebSocketAccept:
    """The application accepts the WebSocket: the adapter answers the
    handshake (``101`` on HTTP/1.1, ``200`` on HTTP/2 and HTTP/3) with the
    chosen subprotocol, the negotiated extensions and ``headers``."""

    stream_id: Final[int]
    subprotocol: Final[str | None]
    headers: Final[Headers]

    def __init__(
        self, stream_id: int, subprotocol: str | None = None, headers: Headers | None = None
    ) -> None:
        self.stream_id = stream_id
        self.subprotocol = subprotocol
        self.headers = [] if headers is None else headers


@dataclass(slots=True)
class InformationalResponse:
    """A 1xx response (100 Continue, 103 Early Hints)."""

    stream_id: Final[int]
    status: Final[int]
    headers: Final[Headers]

    def __init__(self, stream_id: int, status: int, headers: Headers | None = None) -> None:
        self.stream_id = stream_id
        self.status = status
        self.headers = [] if headers is None else headers


@dataclass(slots=True)
class Response:
    """The final response head; with ``body``, the first of the body too,
    and with ``end`` the end of the response: exactly as if ``Data(body)``
    (when not empty) and ``EndData`` followed. A small response is then
    one event, not three."""

    stream_id: Final[int]
    status: Final[int]
    headers: Final[Headers]
    body: Final[bytes]
    end: Final[bool]

    def __init__(
        self, stream_id: int, status: int, headers: Headers, body: bytes = b"", end: bool = False
    ) -> None:
        self.stream_id = stream_id
        self.status = status
        self.headers = headers
        self.body = body
        self.end = end


@dataclass(slots=True)
class Data:
    """A chunk of response body."""

    stream_id: Final[int]
    data: Final[bytes]

    def __init__(self, stream_id: int, data: bytes) -> None:
        self.stream_id = stream_id
        self.data = data


@dataclass(slots=True)
class EndData:
    """The response is complete."""

    stream_id: Final[int]

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True)
class Trailers:
    """Trailing headers: inbound for request trailers; outbound they also end
    the response."""

    stream_id: Final[int]
    headers: Final[Headers]

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


@dataclass(slots=True)
class ResetStream:
    """Abort a stream (HTTP/1.1: close the connection; HTTP/2: RST_STREAM)."""

    stream_id: Final[int]
    error_code: Final[int]  # INTERNAL_ERROR

    def __init__(self, stream_id: int, error_code: int = 2) -> None:
        self.stream_id = stream_id
        self.error_code = error_code


@dataclass(slots=True)
class PushPromise:
    """Server push of ``path`` with ``headers`` on behalf of ``stream_id``."""

    stream_id: Final[int]
    path: Final[bytes]
    headers: Final[Headers]

    def __init__(self, stream_id: int, path: bytes, headers: Headers) -> None:
        self.stream_id = stream_id
        self.path = path
        self.headers = headers


@dataclass(slots=True)
class ReadyForBody:
    """The application asked for the request body for the first time
    (HTTP/1.1 answers a waiting ``Expect: 100-continue`` now)."""

    stream_id: Final[int]

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


@dataclass(slots=True)
class BodyConsumed:
    """The application took ``amount`` bytes of request body (HTTP/2 and
    HTTP/3 credit the flow-control window now, not on arrival). On a
    WebSocket: one message (``amount`` 1), or the inbound ``WebSocketClose``
    (``amount`` 0: a Close held back after a protocol error may go now)."""

    stream_id: Final[int]
    amount: Final[int]

    def __init__(self, stream_id: int, amount: int) -> None:
        self.stream_id = stream_id
        self.amount = amount


Event = (
    Request
    | Body
    | EndBody
    | StreamClosed
    | ConnectionClosed
    | ProtocolSwitch
    | InformationalResponse
    | Response
    | Data
    | EndData
    | Trailers
    | ResetStream
    | PushPromise
    | ReadyForBody
    | BodyConsumed
    | Writable
    | WebSocketAccept
    | WebSocketMessage
    | WebSocketClose
)
