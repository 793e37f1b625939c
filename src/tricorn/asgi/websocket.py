"""One ASGI ``websocket`` call per WebSocket, whatever carries it.

Theory of operation
-------------------
:class:`WebSocketCycle` runs ``app(scope, receive, send)`` for one
WebSocket request, talking to the connection only through a
:class:`~tricorn.asgi.http.StreamPort`, like the HTTP cycle: the same code
serves WebSockets over HTTP/1.1, HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220).
Framing, pings and the closing handshake happen in the protocol layer; the
cycle sees whole messages (``WebSocketMessage``) and one ``WebSocketClose``.

Rule 1: the only state is ``self.state``; which app message is legal in
which state is the table ``_TRANSITIONS``.

* ``websocket.connect`` is the first ``receive()``;
* ``websocket.accept`` answers the handshake (subprotocol, extra headers);
* ``websocket.close`` before accepting is a ``403``; the
  ``websocket.http.response`` extension sends any other response instead
  (status, headers, a streamed body);
* then messages both ways; the peer's close (or the connection's loss:
  ``1006``) is ``websocket.disconnect`` with its code and reason, and
  later sends raise :class:`~tricorn.errors.ClientDisconnected`.

The app-error policy is ``_POLICY`` at the bottom: before the handshake is
answered an application error is a ``500``; after it, Close ``1011``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..errors import AppProtocolError, ClientDisconnected
from ..protocol.events import (
    Data,
    EndData,
    Event,
    Headers,
    ResetStream,
    Response,
    StreamClosed,
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
)
from .cycle import Cycle, DefaultFields
from .http import StreamPort, app_headers
from .types import ASGIApp, Message, Scope

__all__ = ["WebSocketCycle"]

log: Final = logging.getLogger("tricorn.error")

_ABNORMAL: Final = 1006
_INTERNAL_ERROR: Final = 1011
_ERROR_BODY: Final = b"Internal Server Error"
_NOT_FOUND: Final = b"Not Found"


class State(enum.Enum):
    """Where the WebSocket is. Values are only for reprs."""

    HANDSHAKE = "waiting for websocket.accept, websocket.close or a denial response"
    CONNECTED = "connected"
    RESPONSE = "sending the denial response"
    CLOSED = "closed"

    __hash__ = object.__hash__  # (identity: see asgi.http.State)


# The members as module constants: on Python 3.11 every State.X goes
# through EnumType.__getattr__ (about 900 instructions; several a request).
_HANDSHAKE: Final = State.HANDSHAKE
_CONNECTED: Final = State.CONNECTED
_RESPONSE: Final = State.RESPONSE
_CLOSED: Final = State.CLOSED


class WebSocketCycle(Cycle):
    """Runs one ASGI WebSocket call (the parameters: :class:`~tricorn.asgi.cycle.Cycle`)."""

    __slots__ = ("_close", "_connected", "_head", "_send_message", "state")

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        port: StreamPort,
        default_headers: DefaultFields,
    ) -> None:
        super().__init__(app, scope, port, default_headers)
        self.state = _HANDSHAKE
        self._connected = False  # websocket.connect was received
        self._close: tuple[int, str] | None = None  # the code and reason, once closed
        self._head: Response | None = None  # a denial's head, held for its body
        # A message's way out: the port's own (a shortcut past the event
        # path, see Stream.send_message) if it has one.
        self._send_message: Callable[[bytes | str], Awaitable[None]] = getattr(
            port, "send_message", self._send_event
        )

    # ------------------------------------------------------------ receive

    async def receive(self) -> Message:
        """ASGI ``receive``: ``websocket.connect``, then messages, then
        ``websocket.disconnect`` (sticky)."""
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        while self._close is None:
            event = await self._port.receive()
            kind = type(event)
            if kind is WebSocketMessage:
                data = event.data
                if type(data) is str:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            if kind is WebSocketClose:
                assert isinstance(event, WebSocketClose)
                self._closed(event.code, event.reason)
            elif kind is StreamClosed:
                self._closed(_ABNORMAL, "")
            # (Body, EndBody: the request head's empty body)
        code, reason = self._close
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    def _closed(self, code: int, reason: str) -> None:
        self._close = (code, reason)
        self.state = _CLOSED
        self._port.finish()

    # ------------------------------------------------------------ send

    async def send(self, message: Message) -> None:
        """ASGI ``send``: validate ``message`` against the state table.

        :raises ClientDisconnected: the WebSocket is closed.
        :raises AppProtocolError: the message is not allowed now, or malformed.
        """
        try:
            message_type = message["type"]
        except (KeyError, TypeError):
            raise AppProtocolError(f"ASGI message without a type: {message!r}") from None
        state = self.state
        if state is _CONNECTED and message_type == "websocket.send":
            await self._on_send(message)  # (the table's answer, without its lookups)
            return
        if state is _CLOSED:
            raise ClientDisconnected("the WebSocket is closed")
        handler = _TRANSITIONS[state].get(message_type)
        if handler is None:
            raise AppProtocolError(
                f"unexpected ASGI message {message_type!r} while {self.state.value}"
            )
        await handler(self, message)

    async def _on_accept(self, message: Message) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise AppProtocolError(f"websocket.accept subprotocol must be a str: {subprotocol!r}")
        headers = app_headers(message.get("headers", ()))
        self._add_defaults(headers)
        self.status = 101 if self.scope.get("http_version") in ("1.0", "1.1") else 200
        self.response_headers = headers
        await self._emit(WebSocketAccept(self._port.stream_id, subprotocol, headers))
        self.state = _CONNECTED

    async def _on_send(self, message: Message) -> None:
        text = message.get("text")
        data = message.get("bytes")
        if type(text) is str and data is None:
            payload: bytes | str = text  # (the common case first)
        elif (data is None) == (text is None):
            raise AppProtocolError("websocket.send needs exactly one of bytes and text")
        elif data is not None:
            if type(data) is not bytes:
                if not isinstance(data, bytes | bytearray | memoryview):
                    raise AppProtocolError(f"websocket.send bytes must be bytes: {type(data)!r}")
                data = bytes(data)
            payload = data
        elif isinstance(text, str):
            payload = text
        else:
            raise AppProtocolError(f"websocket.send text must be a str: {type(text)!r}")
        try:  # (_emit, inlined: once per message)
            await self._send_message(payload)
        except ClientDisconnected:
            if self._close is None:
                self._closed(_ABNORMAL, "")
            raise
        self.sent_bytes += len(payload)

    async def _send_event(self, payload: bytes | str) -> None:
        """``_send_message`` for a port without ``send_message``."""
        await self._port.send(WebSocketMessage(self._port.stream_id, payload))

    async def _on_close(self, message: Message) -> None:
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        if type(code) is not int or not 1000 <= code <= 4999:
            raise AppProtocolError(f"websocket.close code must be an int 1000-4999: {code!r}")
        if not isinstance(reason, str):
            raise AppProtocolError(f"websocket.close reason must be a str: {reason!r}")
        if self.state is _HANDSHAKE:  # refused before accepting
            await self._respond(403, [], b"")
        else:
            await self._emit(WebSocketClose(self._port.stream_id, code, reason))
        self._closed(code, reason)

    async def _on_response_start(self, message: Message) -> None:
        status = message.get("status")
        if type(status) is not int or not 200 <= status <= 599:  # a final response
            raise AppProtocolError(
                f"websocket.http.response.start status must be an int 200-599: {status!r}"
            )
        headers = app_headers(message.get("headers", ()))
        self._add_defaults(headers)
        self.status = status
        self.response_headers = headers
        self._head = Response(self._port.stream_id, status, headers)
        self.state = _RESPONSE

    async def _on_response_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if not isinstance(body, bytes):
            if not isinstance(body, bytearray | memoryview):
                raise AppProtocolError(
                    f"websocket.http.response.body body must be bytes: {type(body)!r}"
                )
            body = bytes(body)
        stream_id = self._port.stream_id
        events: list[Event] = [] if self._head is None else [self._head]
        if body:
            events.append(Data(stream_id, body))
        more = bool(message.get("more_body", False))
        if not more:
            events.append(EndData(stream_id))
        if events:
            await self._emit(*events)
        self._head = None
        self.sent_bytes += len(body)
        if not more:
            self._closed(1000, "")

    async def _respond(self, status: int, headers: Headers, body: bytes) -> None:
        """A whole response of our own (a refusal, an error)."""
        headers = [*headers, (b"content-length", b"%d" % len(body))]
        self._add_defaults(headers)
        self.status = status
        self.response_headers = headers
        stream_id = self._port.stream_id
        events: list[Event] = [Response(stream_id, status, headers)]
        if body:
            events.append(Data(stream_id, body))
        events.append(EndData(stream_id))
        await self._emit(*events)

    async def refuse(self) -> None:
        """Answer 404 without calling the app (a Host not in ``server_names``)."""
        try:
            await self._respond(404, [(b"content-type", b"text/plain; charset=utf-8")], _NOT_FOUND)
        except ClientDisconnected:
            pass
        self._closed(_ABNORMAL, "")

    async def _emit(self, *events: Event) -> None:
        try:
            await self._port.send(*events)
        except ClientDisconnected:
            if self._close is None:
                self._closed(_ABNORMAL, "")
            raise

    # ------------------------------------------------------------ run

    async def _returned(self) -> None:
        if self.state is _CONNECTED:
            await self._finish(1000)  # the app is done: a normal close
        elif self.state is not _CLOSED:
            await _POLICY["returned early"](self, None)

    async def _fail(self, exc: BaseException | None) -> None:
        """500 before the handshake is answered; Close 1011 after; a reset
        in the middle of a denial's body."""
        path = self.scope.get("path")
        if exc is not None:
            log.error("Exception in ASGI application (WebSocket %s)", path, exc_info=exc)
        else:
            log.error("ASGI application returned without answering the WebSocket (%s)", path)
        state = self.state
        try:
            if state is _HANDSHAKE or (state is _RESPONSE and self._head is not None):
                self._head = None
                await self._respond(
                    500, [(b"content-type", b"text/plain; charset=utf-8")], _ERROR_BODY
                )
                self._closed(_ABNORMAL, "")
            elif state is _CONNECTED:
                await self._finish(_INTERNAL_ERROR)
            elif state is _RESPONSE:
                self._closed(_ABNORMAL, "")
                await self._port.send(ResetStream(self._port.stream_id))
        except ClientDisconnected:
            pass

    async def _finish(self, code: int) -> None:
        try:
            await self._emit(WebSocketClose(self._port.stream_id, code, ""))
        except ClientDisconnected:
            return
        self._closed(code, "")


_TRANSITIONS: Final[dict[State, dict[str, Any]]] = {
    State.HANDSHAKE: {
        "websocket.accept": WebSocketCycle._on_accept,
        "websocket.close": WebSocketCycle._on_close,
        "websocket.http.response.start": WebSocketCycle._on_response_start,
    },
    State.CONNECTED: {
        "websocket.send": WebSocketCycle._on_send,
        "websocket.close": WebSocketCycle._on_close,
    },
    State.RESPONSE: {"websocket.http.response.body": WebSocketCycle._on_response_body},
    State.CLOSED: {},
}

# How an application call can end, and what follows (STYLE.md principle 14):
#   raised            -> traceback logged once; 500 before the handshake is
#                        answered, Close 1011 after, a reset mid-denial
#   returned a value  -> logged as an error, then as "raised"
#   returned early    -> (before answering the handshake) logged; 500
# Returning while connected is a normal end: Close 1000. ClientDisconnected
# escaping the app is the expected end of a closed WebSocket (debug log).
_POLICY: Final[dict[str, Callable[[WebSocketCycle, BaseException | None], Any]]] = {
    "raised": WebSocketCycle._fail,
    "returned a value": WebSocketCycle._fail,
    "returned early": WebSocketCycle._fail,
}
WebSocketCycle.policy = _POLICY
