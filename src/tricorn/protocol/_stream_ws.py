"""WebSockets on one stream of a multiplexed connection, shared by the
HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220) adapters (with the bodyless
answers both give themselves).

In both, an extended CONNECT with ``:protocol = websocket`` becomes a
WebSocket once the application accepts it (``200``); from then on the
stream's DATA carry the frames both ways, through a
:class:`~tricorn.protocol.websocket.WebSocketFramer`. What differs between
the two protocols (how input is credited, where the clock comes from) are
the hooks at the bottom of :class:`StreamWebSockets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..errors import AppProtocolError
from ._fields import STATUS, WS_OWN_FIELDS, response_head
from ._ws_settings import WSSettings
from .events import Event, Headers, WebSocketAccept, WebSocketMessage

if TYPE_CHECKING:  # (the framing and wsproto: imported by the first WebSocket)
    from .websocket import WebSocketFramer

__all__ = ["StreamWebSockets", "WSStream"]


class WSStream(Protocol):
    """The stream state the shared code reads and writes."""

    ws: WebSocketFramer | None
    ws_early: list[bytes] | None  # a WebSocket request: its DATA before the accept
    ws_headers: Headers  # the request's headers, for the extension offers
    ws_queued: int  # messages delivered to the application, not yet taken
    head: Headers | None  # a response head not yet framed
    ended_in: bool
    ended_out: bool
    want_end: bool
    pending: Any  # outbound chunks (a deque or a list)


class StreamWebSockets:
    """Mixed into an adapter that has ``_sending``, ``_websockets``,
    ``_events`` and ``_shutdown`` as the HTTP/2 and HTTP/3 adapters do."""

    _sending: dict[int, Any]
    _websockets: dict[int, Any]
    _events: list[Event]
    _shutdown: bool

    def _connect(
        self, stream_id: int, stream: WSStream, protocol: bytes | None, headers: Headers
    ) -> bool:
        """A CONNECT request: ``True`` if it is a WebSocket handshake to hand
        to the application; else it is answered here (``False``): a tunnel
        or another protocol is not served (501), a bad handshake gets 426 or
        400. It never turns into a WebSocket by accident."""
        if protocol != b"websocket":
            self._answer(stream_id, stream, 501)
            return False
        from .websocket import handshake_problem

        problem = handshake_problem(headers, key_required=False)
        if problem is not None:
            self._answer(stream_id, stream, problem[0], problem[1])
            return False
        stream.ws_early = []
        stream.ws_headers = headers
        return True

    def _accept_websocket(self, stream_id: int, stream: WSStream, event: WebSocketAccept) -> None:
        """``200`` on the CONNECT stream; its DATA are WebSocket frames now."""
        early = stream.ws_early
        if early is None or stream.ws is not None or stream.head is not None:
            raise AppProtocolError("websocket.accept without a WebSocket handshake to answer")
        from .websocket import WebSocketFramer, accept_fields

        settings = self._ws_settings()
        fields: Headers = []
        extensions = accept_fields(stream.ws_headers, event, settings, WS_OWN_FIELDS, fields)
        stream.head = response_head(200, fields)
        self._sending[stream_id] = stream
        stream.ws = WebSocketFramer(stream_id, settings, extensions, self._ws_clock())
        self._websockets[stream_id] = stream
        self._ws_accepted(stream)
        events: list[Event] = []
        if early:
            stream.ws_early = []
            self._ws_receive(stream_id, stream, b"".join(early), events)
        if stream.ended_in:
            events += stream.ws.receive_eof()
        elif self._shutdown:  # accepted while shutting down: Close 1001 at once
            events += stream.ws.begin_shutdown()
        self._ws_out(stream_id, stream)
        self._events += events

    def _ws_receive(
        self, stream_id: int, stream: WSStream, data: bytes, events: list[Event]
    ) -> None:
        ws = stream.ws
        assert ws is not None
        for event in ws.receive(data, self._ws_clock()):
            if type(event) is WebSocketMessage:
                stream.ws_queued += 1
            events.append(event)
        self._ws_out(stream_id, stream)
        self._ws_credit(stream_id, stream)

    def _ws_out(self, stream_id: int, stream: WSStream) -> None:
        """Queue the framer's bytes as the stream's DATA; end the stream once
        the WebSocket is over."""
        ws = stream.ws
        if ws is None or stream.ended_out:
            return
        data = ws.data_to_send()
        if data:
            stream.pending.append(data)
            self._sending[stream_id] = stream
        if ws.done and not stream.want_end:
            stream.want_end = True
            self._sending[stream_id] = stream
            self._websockets.pop(stream_id, None)

    # ------------------------------------------------------------ hooks

    def _ws_settings(self) -> WSSettings:
        raise NotImplementedError

    def _answer(
        self, stream_id: int, stream: WSStream, status: int, headers: Headers | None = None
    ) -> None:
        """A response the adapter gives itself, without a body (CONNECT not
        served, a refused handshake, 431 on HTTP/3)."""
        stream.head = [(b":status", STATUS[status]), *(headers or ()), (b"content-length", b"0")]
        stream.want_end = True
        self._sending[stream_id] = stream

    def _ws_clock(self) -> float:
        """The time of the latest input (the framer's timers count from it)."""
        raise NotImplementedError

    def _ws_accepted(self, stream: Any) -> None:
        """The stream became a WebSocket (its early input is re-counted)."""

    def _ws_credit(self, stream_id: int, stream: Any) -> None:
        """The application took a message, or the framer consumed input."""
