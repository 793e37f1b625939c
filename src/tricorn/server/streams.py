"""The per-stream link between the event core and one ASGI cycle.

A :class:`Stream` is the :class:`~tricorn.asgi.http.StreamPort` of one
request. Inbound events are fed by the connection's read loop without
awaiting (``feed``); the cycle takes them with ``receive()``. The queue is
bounded by the protocol adapter, not here: the adapter stops asking for
input (``wants_read``) while too much body is unconsumed, and every body
chunk taken is reported back as ``BodyConsumed`` so that HTTP/2 and HTTP/3
credit flow-control windows as the app consumes, not as bytes arrive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import anyio

from ..errors import ClientDisconnected
from ..protocol.events import (
    Body,
    Event,
    ReadyForBody,
    StreamClosed,
    WebSocketClose,
    WebSocketMessage,
)

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Stream"]


class Stream:
    """One request's inbound queue and outbound path."""

    __slots__ = (
        "_asked",
        "_closed",
        "_connection",
        "_events",
        "_handoff",
        "_uncounted",
        "_waiter",
        "_writable",
        "cancelled",
        "scope",
        "stream_id",
        "websocket",
    )

    def __init__(self, connection: Connection, stream_id: int, websocket: bool = False) -> None:
        self.stream_id = stream_id
        self.websocket = websocket  # a reset is reported, not a cancellation
        self._connection = connection
        self._events: deque[Event] = deque()
        self._waiter: anyio.Event | None = None
        self._handoff: Event | None = None  # see offer()
        self._uncounted = False  # the first queued event is an offered message
        self._writable: anyio.Event | None = None
        # The scope its call runs in while it runs (HTTP/2 and HTTP/3: the
        # runner task's, see Connection._runner), and whether the peer reset
        # the stream (a call not started yet is then never started).
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False
        self._asked = False
        self._closed = False  # StreamClosed fed: sends are refused

    def feed(self, event: Event) -> None:
        """Queue an inbound event (called by the read loop; never blocks)."""
        self._events.append(event)
        if self._waiter is not None:
            self._waiter.set()
        elif self._connection._app_reader is self:  # its receive() reads the socket
            self._connection.interrupt_read()
        if type(event) is StreamClosed:
            self._closed = True
            self.writable()  # a send waiting for the window ends too

    def offer(self, event: Event) -> bool:
        """Hand ``event`` straight to a ``receive()`` that waits with nothing
        queued: it is never queued, so the adapter need not count it (nor
        hear that it was taken). ``False``: nobody waits; ``feed`` it."""
        waiter = self._waiter
        if waiter is None or self._handoff is not None or self._events:
            return False
        self._handoff = event
        waiter.set()
        return True

    def keep(self, event: Event) -> bool:
        """:meth:`offer` for a ``receive()`` that read the socket itself
        (``Connection.read_for``): it returns ``event``, if nothing is
        queued before it."""
        if self._handoff is not None or self._events:
            return False
        self._handoff = event
        return True

    def cancel(self) -> None:
        """The peer reset the stream: end its call now."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    def writable(self) -> None:
        """The adapter sent the stream's queued data: wake a waiting send."""
        if self._writable is not None:
            self._writable.set()

    async def wait_writable(self) -> None:
        """Wait for :meth:`writable` (or the stream's end)."""
        self._writable = self._connection.new_event()
        await self._writable.wait()
        self._writable = None

    async def receive(self) -> Event:
        """The next inbound event; the first call tells the adapter the app
        wants the body (``Expect: 100-continue``)."""
        if not self._asked:
            self._asked = True
            try:
                await self._connection.send_events((ReadyForBody(self.stream_id),), self)
            except ClientDisconnected:
                self.feed(StreamClosed(self.stream_id))
        while not self._events:
            connection = self._connection
            if connection._lent is self and connection._app_reader is None:
                # The read loop lent this task the socket (an HTTP/1.1
                # WebSocket on trio): read the next message here, one task
                # switch instead of two.
                event = await connection.read_for(self)
                if event is not None:
                    return event
                continue
            self._waiter = waiter = connection.new_event()
            try:
                await waiter.wait()
            except BaseException:
                self._waiter = None
                handoff = self._handoff
                if handoff is not None:  # offered, then cancelled: the next receive's
                    self._handoff = None
                    self._events.appendleft(handoff)
                    self._uncounted = True
                raise
            self._waiter = None
            handoff = self._handoff
            if handoff is not None:  # (offer())
                self._handoff = None
                return handoff
        event = self._events[0]
        if type(event) is StreamClosed:
            return event  # sticky: every later receive() sees it too
        self._events.popleft()
        kind = type(event)
        if kind is Body:
            await self._connection.body_consumed(self.stream_id, len(event.data))  # type: ignore[union-attr]
        elif kind is WebSocketMessage:
            if self._uncounted:  # an offer() put back: the adapter never counted it
                self._uncounted = False
            else:
                await self._connection.body_consumed(self.stream_id, 1)  # one fewer queued
        elif kind is WebSocketClose:
            # Sends are refused from now. The adapter hears that the app saw
            # the close (amount 0): a Close held back after a protocol error
            # goes out behind the app's answers to the messages before it.
            self._closed = True
            await self._connection.body_consumed(self.stream_id, 0)
        return event

    def send(self, *events: Event) -> Awaitable[None]:
        """Write outbound events (the awaitable does); raises
        ClientDisconnected once the peer is gone or reset the stream. (A
        reset stream's sends would go nowhere without a checkpoint: an app
        streaming in a loop would never see the cancellation and hold the
        event loop.) Not a coroutine function: the connection's coroutine is
        what the caller awaits, one frame less per send."""
        if self._closed:
            raise ClientDisconnected("the stream is closed")
        return self._connection.send_events(events, self)

    async def send_message(self, data: bytes | str) -> None:
        """Send a WebSocket message (``send(WebSocketMessage(...))``, faster)."""
        if self._closed:
            raise ClientDisconnected("the stream is closed")
        await self._connection.send_message(self, data)

    async def send_file(self, path: str) -> int:
        """Write a file's contents as body data."""
        if self._closed:
            raise ClientDisconnected("the stream is closed")
        return await self._connection.send_file(self, path)

    def finish(self) -> None:
        """The response is complete: later receive() calls report disconnect."""
        self.feed(StreamClosed(self.stream_id))
