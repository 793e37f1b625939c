"""One ASGI ``http`` call per stream: the app-message state machine and the
one app-error policy.

Theory of operation
-------------------
:class:`HTTPCycle` runs ``app(scope, receive, send)`` for one request. It
talks to the connection only through a :class:`StreamPort` (implemented by
``tricorn.server.streams``): inbound events come from ``port.receive()``,
outbound events go to ``port.send()``. It never sees bytes, sockets or
protocol libraries, so the same cycle serves HTTP/1.1, HTTP/2 and HTTP/3.

Rule 1: the only state is ``self.state`` (a :class:`State`); which app
message is legal in which state, and where it leads, is the table
``_TRANSITIONS``. Everything else follows from it.

The response head is held back until the first body message (ASGI allows
this: "Protocol servers need not flush ... until the first Response Body
event"), so a small response goes out in one write.

The app-error policy (STYLE.md principle 14) is the table ``_POLICY`` at the
bottom; each row is one way an application can end.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol

from ..errors import AppProtocolError, ClientDisconnected
from ..protocol.events import (
    Body,
    Data,
    EndBody,
    EndData,
    Event,
    Headers,
    InformationalResponse,
    PushPromise,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
)
from .cycle import Cycle, DefaultFields, add_defaults
from .types import ASGIApp, Message, Scope

__all__ = ["HTTPCycle", "State", "StreamPort", "app_headers"]

log: Final = logging.getLogger("tricorn.error")

_ERROR_BODY: Final = b"Internal Server Error"
_NO_NAMES: Final[frozenset[bytes]] = frozenset()
_NOT_FOUND_BODY: Final = b"Not Found"
_ERROR_HEADERS: Final[Headers] = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_ERROR_BODY)).encode()),
]


class StreamPort(Protocol):
    """What a cycle needs from the connection that carries its stream."""

    @property
    def stream_id(self) -> int: ...

    async def receive(self) -> Event:
        """The next inbound event of the stream (Body, EndBody, Trailers or
        StreamClosed); after StreamClosed, StreamClosed forever."""

    def send(self, *events: Event) -> Awaitable[None]:
        """Write events in order (when awaited); raises ClientDisconnected
        once the peer is gone."""

    async def send_file(self, path: str) -> int:
        """Write the whole file at ``path`` as body data; return its size."""

    def finish(self) -> None:
        """The response is complete: wake any ``receive()`` waiting for disconnect."""


class State(enum.Enum):
    """Where the response is. Values are only for reprs."""

    WAIT_START = "waiting for http.response.start"
    STARTED = "head held, waiting for the first body message"
    BODY = "streaming the body"
    TRAILERS = "waiting for http.response.trailers"
    DONE = "response complete"

    # The members are singletons: identity hashing spares the transition
    # table's lookups Enum's own __hash__, a Python call (twice a request).
    __hash__ = object.__hash__


# The members as module constants: on Python 3.11 every State.X goes
# through EnumType.__getattr__ (about 900 instructions; several a request).
_WAIT_START: Final = State.WAIT_START
_STARTED: Final = State.STARTED
_BODY: Final = State.BODY
_TRAILERS: Final = State.TRAILERS
_DONE: Final = State.DONE


class HTTPCycle(Cycle):
    """Runs one ASGI HTTP call (the parameters: :class:`~tricorn.asgi.cycle.Cycle`)."""

    __slots__ = (
        "_body_done",
        "_held",
        "_trailers",
        "_trailers_expected",
        "disconnected",
        "state",
    )

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        port: StreamPort,
        default_headers: DefaultFields,
    ) -> None:
        super().__init__(app, scope, port, default_headers)
        self.state = _WAIT_START
        self.disconnected = False
        self._body_done = False
        self._held = False  # the response head waits for the first body message
        self._trailers: Headers = []
        self._trailers_expected = False

    # ------------------------------------------------------------ receive

    async def receive(self) -> Message:
        """ASGI ``receive``: body chunks, then ``http.disconnect`` once the
        client is gone or the response is complete."""
        if self.state is _DONE or self.disconnected:
            return {"type": "http.disconnect"}
        if self._body_done:
            await self._wait_disconnect()
            return {"type": "http.disconnect"}
        event = await self._port.receive()
        if isinstance(event, Body):
            return {"type": "http.request", "body": event.data, "more_body": True}
        if isinstance(event, EndBody):
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if isinstance(event, Trailers):  # request trailers: not in the ASGI spec
            return await self.receive()
        self._body_done = True
        self.disconnected = True
        return {"type": "http.disconnect"}

    async def _wait_disconnect(self) -> None:
        while not isinstance(await self._port.receive(), StreamClosed):
            pass
        self.disconnected = True

    # ------------------------------------------------------------ send

    async def send(self, message: Message) -> None:
        """ASGI ``send``: validate ``message`` against the state table and
        turn it into protocol events.

        :raises ClientDisconnected: the client has gone away.
        :raises AppProtocolError: the message is not allowed now, or malformed.
        """
        if self.disconnected:
            raise ClientDisconnected("the client has disconnected")
        try:
            message_type = message["type"]
        except (KeyError, TypeError):
            raise AppProtocolError(f"ASGI message without a type: {message!r}") from None
        handler = _TRANSITIONS[self.state].get(message_type)
        if handler is None:
            raise AppProtocolError(
                f"unexpected ASGI message {message_type!r} while {self.state.value}"
            )
        await handler(self, message)

    async def _on_early_hint(self, message: Message) -> None:
        links = message.get("links", [])
        headers = [(b"link", _bytes(link, "links")) for link in links]
        await self._emit(InformationalResponse(self._port.stream_id, 103, headers))

    async def _on_push(self, message: Message) -> None:
        """``http.response.push``: a PUSH_PROMISE where the protocol and the
        client allow it; quietly nothing elsewhere (as Hypercorn)."""
        if "http.response.push" not in self.scope.get("extensions", ()):
            return
        path = message.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise AppProtocolError(f"http.response.push path must start with '/': {path!r}")
        headers = app_headers(message.get("headers", ()))
        await self._emit(PushPromise(self._port.stream_id, path.encode("utf-8"), headers))

    async def _on_start(self, message: Message) -> None:
        status = message.get("status")
        if type(status) is not int or not 200 <= status <= 599:
            raise AppProtocolError(f"http.response.start status must be an int 200-599: {status!r}")
        self.response_headers = app_headers(message.get("headers", ()), self._default_headers)
        self.status = status
        self._held = True
        self._trailers_expected = bool(message.get("trailers", False))
        self.state = _STARTED

    async def _on_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if type(body) is not bytes:
            if isinstance(body, bytearray | memoryview):
                body = bytes(body)
            elif not isinstance(body, bytes):
                raise AppProtocolError(f"http.response.body body must be bytes: {type(body)!r}")
        if message.get("more_body", False):
            state = _BODY
        elif self._trailers_expected:
            state = _TRAILERS
        else:
            state = _DONE
        port = self._port
        # A head the protocol refuses (a header that would split the
        # response) raises here with nothing on the wire: the held head
        # stays, so the error policy can still answer 500. (_emit, inlined:
        # a coroutine less per response.)
        try:
            if self._held:  # the head, the body and the end in one event
                await port.send(
                    Response(
                        port.stream_id, self.status, self.response_headers, body, state is _DONE
                    )
                )
            elif state is _DONE:
                if body:
                    await port.send(Data(port.stream_id, body), EndData(port.stream_id))
                else:
                    await port.send(EndData(port.stream_id))
            elif body:
                await port.send(Data(port.stream_id, body))
        except ClientDisconnected:
            self.disconnected = True
            raise
        self._held = False
        self.sent_bytes += len(body)
        self.state = state
        if state is _DONE:
            port.finish()

    async def _on_pathsend(self, message: Message) -> None:
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise AppProtocolError(f"http.response.pathsend path must be absolute: {path!r}")
        if self._held:
            await self._emit(Response(self._port.stream_id, self.status, self.response_headers))
            self._held = False
        self.sent_bytes += await self._port.send_file(path)
        await self._on_body({"body": b"", "more_body": False})

    async def _on_trailers(self, message: Message) -> None:
        self._trailers.extend(app_headers(message.get("headers", ())))
        if message.get("more_trailers", False):
            return
        self.state = _DONE
        await self._emit(Trailers(self._port.stream_id, self._trailers))
        self._port.finish()

    async def _emit(self, *events: Event) -> None:
        try:
            await self._port.send(*events)
        except ClientDisconnected:
            self.disconnected = True
            raise

    # ------------------------------------------------------------ run

    async def _returned(self) -> None:
        if self.state is not _DONE and not self.disconnected:
            await _POLICY["returned early"](self, None)

    async def refuse(self) -> None:
        """Answer 404 without calling the app (a Host not in
        ``server_names``, as Hypercorn does)."""
        stream_id = self._port.stream_id
        headers: Headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_NOT_FOUND_BODY)).encode()),
        ]
        self._add_defaults(headers)
        self.status = 404
        self.response_headers = headers
        self.state = _DONE
        try:
            await self._port.send(Response(stream_id, 404, headers, _NOT_FOUND_BODY, True))
        except ClientDisconnected:
            self.disconnected = True
        self._port.finish()

    async def _fail(self, exc: BaseException | None) -> None:
        """500 if nothing was sent yet, else abort the stream."""
        if exc is not None:
            log.error(
                "Exception in ASGI application (%s %s)",
                self.scope.get("method"),
                self.scope.get("path"),
                exc_info=exc,
            )
        else:
            log.error(
                "ASGI application returned without completing the response (%s %s)",
                self.scope.get("method"),
                self.scope.get("path"),
            )
        if self.disconnected or self.state is _DONE:
            return
        stream_id = self._port.stream_id
        try:
            if self.state is _WAIT_START or self._held:
                self._held = False  # a held head never reached the wire
                self.status = 500
                headers = list(_ERROR_HEADERS)
                self._add_defaults(headers)
                self.response_headers = headers
                self.state = _DONE
                await self._port.send(Response(stream_id, 500, headers, _ERROR_BODY, True))
            else:
                self.state = _DONE
                await self._port.send(ResetStream(stream_id))
        except ClientDisconnected:
            self.disconnected = True
        self._port.finish()


_TRANSITIONS: Final[dict[State, dict[str, Any]]] = {
    State.WAIT_START: {
        "http.response.start": HTTPCycle._on_start,
        "http.response.early_hint": HTTPCycle._on_early_hint,
        "http.response.push": HTTPCycle._on_push,
    },
    State.STARTED: {
        "http.response.body": HTTPCycle._on_body,
        "http.response.pathsend": HTTPCycle._on_pathsend,
        "http.response.push": HTTPCycle._on_push,
    },
    State.BODY: {
        "http.response.body": HTTPCycle._on_body,
        "http.response.push": HTTPCycle._on_push,
    },
    State.TRAILERS: {"http.response.trailers": HTTPCycle._on_trailers},
    State.DONE: {},
}

# How an application call can end, and what follows (STYLE.md principle 14):
#   raised            -> traceback logged once; 500 if nothing sent, else abort
#   returned a value  -> logged as an error; then as "returned early" if incomplete
#   returned early    -> logged; 500 if nothing sent, else abort
# ClientDisconnected escaping the app is the expected end of a cancelled
# exchange and only logged at debug level (see HTTPCycle.run).
_POLICY: Final[dict[str, Callable[[HTTPCycle, BaseException | None], Any]]] = {
    "raised": HTTPCycle._fail,
    "returned a value": HTTPCycle._fail,
    "returned early": HTTPCycle._fail,
}
HTTPCycle.policy = _POLICY


def _bytes(value: object, field: str) -> bytes:
    if isinstance(value, bytes):
        return value
    raise AppProtocolError(f"{field} must contain bytes, got {type(value).__name__}")


def app_headers(raw: Iterable[Any], defaults: DefaultFields | None = None) -> Headers:
    """Validate the app's headers: an iterable of two bytes each; names are
    lower-cased (HTTP/2 and HTTP/3 require it). Then the ``defaults`` whose
    names the app did not use (checked as the names go by: most apps set
    none of them)."""
    headers: Headers = []
    names = defaults.names if defaults is not None else _NO_NAMES
    named = False
    try:
        for name, value in raw:
            if type(name) is not bytes or type(value) is not bytes:
                raise AppProtocolError(f"header names and values must be bytes: {(name, value)!r}")
            name = name.lower()
            if name in names:
                named = True
            headers.append((name, value))
    except (TypeError, ValueError):
        raise AppProtocolError(f"headers must be pairs of bytes: {raw!r}") from None
    if defaults is not None:
        if named:
            add_defaults(headers, defaults())
        else:
            headers += defaults()
    return headers
