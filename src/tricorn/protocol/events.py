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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

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

_T = TypeVar("_T")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform

    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def _event(cls: type[_T]) -> type[_T]:
        """Events are frozen, slotted dataclasses (see below)."""

else:

    def _event(cls: type[_T]) -> type[_T]:
        # Frozen for the type checker, which rejects every assignment to an
        # event's field (mypy checks src and tests). At run time the class
        # is a plain slotted dataclass: a frozen one sets each field through
        # object.__setattr__, which made a Request cost 2.5 us to build
        # (0.7 us so), several per request on the hot path.
        return dataclass(slots=True)(cls)


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


@_event
class Request:
    """A request head. ``target`` is the raw request-target (path and query)."""

    stream_id: int
    method: bytes
    target: bytes
    headers: Headers
    http_version: str  # "1.0", "1.1", "2", "3"
    scheme: str | None = None  # from :scheme on HTTP/2 and HTTP/3
    authority: bytes | None = None  # from :authority on HTTP/2 and HTTP/3
    expect_continue: bool = False
    trailers_accepted: bool = False  # the client sent ``TE: trailers``
    raw_headers: Headers | None = None  # original case, when h11_pass_raw_headers
    protocol: str | None = None  # "websocket": an upgrade / extended CONNECT


@_event
class Body:
    """A chunk of request body."""

    stream_id: int
    data: bytes


@_event
class EndBody:
    """The request body is complete."""

    stream_id: int


@_event
class StreamClosed:
    """The stream ended abnormally: the peer reset it or went away."""

    stream_id: int
    error_code: int | None = None


@_event
class ConnectionClosed:
    """The connection is over: the adapter wants the core to flush what is
    queued and close the transport. ``reason`` is for logging."""

    reason: str = ""


@_event
class ProtocolSwitch:
    """The connection switches protocol (``h2c`` upgrade, prior-knowledge
    HTTP/2, WebSocket). ``data`` is every byte the adapter has not consumed;
    ``request`` is the request that asked for the switch, if any."""

    to: str
    data: bytes = b""
    request: Request | None = None
    settings: bytes | None = None  # the HTTP2-Settings header, decoded
    body: bytes = b""  # the upgrading request's complete body


@_event
class Writable:
    """The stream's queued response data went out (the peer opened its
    flow-control window): a ``send()`` waiting on it may go on."""

    stream_id: int


@_event
class WebSocketMessage:
    """One whole WebSocket message: ``str`` for text, ``bytes`` for binary
    (inbound from the peer, outbound from the application)."""

    stream_id: int
    data: bytes | str


@_event
class WebSocketClose:
    """The WebSocket's end. Inbound: the peer's close code and reason, or
    ``1006`` when the connection ended without a Close (sent once). Outbound:
    the application closes with ``code``."""

    stream_id: int
    code: int = 1000
    reason: str = ""


# ---------------------------------------------------------------- outbound


@_event
class WebSocketAccept:
    """The application accepts the WebSocket: the adapter answers the
    handshake (``101`` on HTTP/1.1, ``200`` on HTTP/2 and HTTP/3) with the
    chosen subprotocol, the negotiated extensions and ``headers``."""

    stream_id: int
    subprotocol: str | None = None
    headers: Headers = field(default_factory=list)


@_event
class InformationalResponse:
    """A 1xx response (100 Continue, 103 Early Hints)."""

    stream_id: int
    status: int
    headers: Headers = field(default_factory=list)


@_event
class Response:
    """The final response head; with ``body``, the first of the body too,
    and with ``end`` the end of the response: exactly as if ``Data(body)``
    (when not empty) and ``EndData`` followed. A small response is then
    one event, not three."""

    stream_id: int
    status: int
    headers: Headers
    body: bytes = b""
    end: bool = False


@_event
class Data:
    """A chunk of response body."""

    stream_id: int
    data: bytes


@_event
class EndData:
    """The response is complete."""

    stream_id: int


@_event
class Trailers:
    """Trailing headers: inbound for request trailers; outbound they also end
    the response."""

    stream_id: int
    headers: Headers


@_event
class ResetStream:
    """Abort a stream (HTTP/1.1: close the connection; HTTP/2: RST_STREAM)."""

    stream_id: int
    error_code: int = 2  # INTERNAL_ERROR


@_event
class PushPromise:
    """Server push of ``path`` with ``headers`` on behalf of ``stream_id``."""

    stream_id: int
    path: bytes
    headers: Headers


@_event
class ReadyForBody:
    """The application asked for the request body for the first time
    (HTTP/1.1 answers a waiting ``Expect: 100-continue`` now)."""

    stream_id: int


@_event
class BodyConsumed:
    """The application took ``amount`` bytes of request body (HTTP/2 and
    HTTP/3 credit the flow-control window now, not on arrival). On a
    WebSocket: one message (``amount`` 1), or the inbound ``WebSocketClose``
    (``amount`` 0: a Close held back after a protocol error may go now)."""

    stream_id: int
    amount: int


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
