"""The event core: one task group per connection.

Theory of operation
-------------------
Two tasks per connection, plus one per request:

* the **read loop** (:meth:`Connection._read_loop`) reads bytes, feeds
  them to the protocol adapter (``receive_data``) and routes the events
  that come back by ``stream_id``: a ``Request`` opens a :class:`Stream`
  and starts its ASGI cycle as a child task; body events are queued on
  their stream; ``ConnectionClosed`` ends the connection. A read is a plain
  ``receive()``: no cancel scope per read.
  On trio an HTTP/1.1 WebSocket's read loop lends the socket to the
  app's task once a message went straight to its waiting ``receive()``:
  that ``receive()`` then reads and routes the next message itself (one
  task switch per message, not two) and hands back anything else, until
  the loop takes the socket back (:meth:`Connection._lend`).
* the **control task** (:meth:`Connection._control_loop`) keeps the
  adapter's timers and everything else that must interrupt a pending read:
  graceful shutdown and closes the adapter decides on after a response. It
  sleeps until the earliest deadline it knows (one cancel scope per
  sleep, re-armed only when a deadline moves *earlier*, which the steady
  keep-alive cycle never does) and ends the connection by closing the
  transport, which ends the pending read.

Outbound, a cycle's ``send()`` lands in :meth:`Connection.send_events`: the
events go to the adapter and the resulting bytes to the transport, written
from the app's own task (no hop through a writer task, so a small response
costs one write and no context switch); a flag serializes writers, and
the bytes are taken from the adapter only by the task holding the write
turn, so frames reach the socket in the order they were framed (HPACK
depends on it). On multiplexed connections a sender first yields once, so
the responses of the streams that are ready join one write.

Backpressure: while ``wants_read`` is false the loop does not read at all;
any ``send`` may change that, so every send wakes the loop -- or the
control task, when the adapter now has events for ``next_events`` while
the loop is blocked in a read (a close after the response).

When the connection ends (the peer closed, the adapter asked to close, a
write failed, a timer fired) every open stream is told ``StreamClosed``,
the transport is flushed and closed (bounded), and the task group waits
for the streams' tasks to return -- their sends raise
:class:`~tricorn.errors.ClientDisconnected` from then on -- for at most
``graceful_timeout``; an app still running then is cancelled.

Rule 1: adapter methods are plain synchronous calls made from these tasks
on one thread, never while another call is in progress.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import ByteStream, TaskGroup

from ..asgi.http import HTTPCycle
from ..asgi.scope import ScopeFactory
from ..errors import ClientDisconnected
from ..protocol.base import ProtocolAdapter
from ..protocol.events import (
    BodyConsumed,
    ConnectionClosed,
    ConnectionInfo,
    Data,
    EndBody,
    Event,
    ProtocolSwitch,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    WebSocketMessage,
    Writable,
)
from ..protocol.http1 import H1Adapter
from .lifecycle import serve_connection
from .streams import Stream

if TYPE_CHECKING:
    from ..asgi.websocket import WebSocketCycle
    from .context import BackendIO, ServerContext

__all__ = ["Connection"]

log: Final = logging.getLogger("tricorn.error")

READ_SIZE: Final = 65536
_COALESCE_BELOW: Final = 16384  # body chunks smaller than this wait one turn to share a write
_WRITE_BEHIND: Final = 65536  # bytes senders may queue behind a write in progress (HTTP/2)
_GATHER_FROM: Final = 32768  # output this large goes to the kernel as its buffers (_take)
_CLOSE_TIMEOUT: Final = 2.0  # seconds for the final flush (TLS closes without close_notify)
_LINGER_LIMIT: Final = 1024 * 1024  # input dropped while an HTTP/2 connection closes
# Seconds an app may stay out of receive() before the read loop reads (_lend).
_LENT_AWAY: Final = 1.0
# OSError: asyncio transports surface ECONNRESET and friends unconverted.
_BROKEN: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class Connection:
    """One accepted connection and the streams it carries."""

    # Slots: an instance with more attributes than a dictionary shares its keys
    # for (30) gets a whole dictionary of its own, 1.6 KiB per connection.
    __slots__ = (
        "_app_reader",
        "_app_reads",
        "_baton",
        "_behind",
        "_broken",
        "_clock",
        "_closed",
        "_deadline",
        "_default_headers",
        "_gathering",
        "_gathers",
        "_given",
        "_idle_runners",
        "_inline_stream",
        "_interrupt",
        "_lendable",
        "_lent",
        "_max_streams",
        "_multiplexed",
        "_poke",
        "_queued",
        "_read_returned",
        "_read_size",
        "_reading",
        "_reads_seen",
        "_recheck",
        "_resume",
        "_runners_may_read",
        "_runners_read",
        "_scope_type",
        "_scopes",
        "_set_receiver",
        "_shutdown",
        "_shutdown_done",
        "_streams",
        "_streams_done",
        "_stuck_write",
        "_tg",
        "_timer_at",
        "_transport_closed",
        "_unanswered",
        "_watching",
        "_whole",
        "_write_done",
        "_writes",
        "_writing",
        "_written",
        "adapter",
        "ctx",
        "info",
        "new_event",
        "transport",
    )

    quic = False  # the transport, as metrics count it

    def __init__(
        self,
        ctx: ServerContext,
        transport: ByteStream,
        info: ConnectionInfo,
        adapter: ProtocolAdapter | None = None,
        max_streams: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.info = info
        self._clock = ctx.clock  # anyio.current_time, without its backend lookup
        self.adapter: ProtocolAdapter
        # Streams run concurrently on HTTP/2 and HTTP/3 (an adapter given).
        self._multiplexed = info.alpn == "h2" or adapter is not None
        if adapter is not None:
            self.adapter = adapter
        elif self._multiplexed:
            # HTTP/2 (and h2) is imported by the first connection that speaks it.
            from ..protocol.http2 import H2Adapter

            self.adapter = H2Adapter(ctx.h2_settings, self._clock(), info.scheme)
        elif info.tls is None:
            self.adapter = H1Adapter(ctx.h1c_settings)  # recognises h2c
        else:
            self.adapter = H1Adapter(ctx.h1_settings)
        self._max_streams = max_streams or ctx.config.h2_max_concurrent_streams
        self._default_headers = ctx.default_headers
        self._scopes = ScopeFactory(info, ctx.config.root_path, ctx.state, ctx.proxies)
        self._streams: dict[int, Stream] = {}
        self._idle_runners: list[_RunnerSlot] = []
        self._streams_done: anyio.Event | None = None  # set when the last stream ends
        self._resume: anyio.Event | None = None  # the read loop waits for wants_read
        # The running backend's Event class: anyio.Event() looks the backend
        # up on every call, which costs more than the event on hot paths
        # (on asyncio the backend module has a leaner one).
        event_class = getattr(ctx.io, "event_class", None)
        lean = event_class() if event_class is not None else None
        self.new_event: Callable[[], anyio.Event] = lean or type(anyio.Event())
        self._poke = self.new_event()  # wakes the control task
        self._scope_type: Callable[[], anyio.CancelScope] | None = None  # (see new_scope)
        self._deadline: float | None = None  # the adapter's, as last asked
        self._timer_at = math.inf  # when the control task wakes up on its own
        keep_alive = ctx.config.keep_alive_timeout
        self._recheck = keep_alive if keep_alive else 5.0
        self._writing = False
        self._write_done: anyio.Event | None = None
        self._writes = 0  # writes started; the control task watches for a stuck one
        self._stuck_write: tuple[int, float] | None = None  # (write number, first seen)
        self._shutdown = False
        self._shutdown_done = False
        self._closed = False
        self._transport_closed = False
        self._behind = 0  # bytes queued behind the write in progress (_WRITE_BEHIND)
        self._gathering = False  # a sender yields to gather frames for its write
        self._queued = 0  # multiplexed sends queued in the adapter so far
        self._written = 0  # ... of which a write has completed (a later close
        # must not make a send fail whose frames another stream's write delivered)
        self._broken = False  # a read or write failed: no lingering
        self._reading = False  # the read loop waits in receive()
        self._read_returned: anyio.Event | None = None
        self._inline_stream: Stream | None = None  # an HTTP/1.1 WebSocket (_receive_inline)
        # The transport's hook for bytes in its callback (asyncio's streams,
        # plain or TLS): see _receive_request and _receive_inline.
        self._set_receiver: Callable[[Callable[[bytes], bool] | None], None] | None = getattr(
            transport, "set_receiver", None
        )
        # The socket lent to an HTTP/1.1 WebSocket's receive() (trio; see
        # _lend): the stream it is lent to, the one whose receive() reads it
        # now, the read loop's wait for it back, and bytes handed back.
        self._interrupt: Callable[[], None] | None = getattr(transport, "interrupt_receive", None)
        self._lendable = self._set_receiver is None and self._interrupt is not None
        # The runners may read the next request (_lend_to_runners) wherever
        # the read loop reads: trio's streams, plain or TLS. They need no
        # interrupt: only the close, which ends their read, takes it back.
        self._runners_may_read = self._set_receiver is None
        self._lent: Stream | None = None
        self._runners_read = False  # the socket is lent to the runners (_lend_to_runners)
        self._whole = False  # the request _receive_request routed last came whole
        self._app_reader: Stream | None = None
        self._baton: anyio.Event | None = None
        self._given: bytes | None = None
        self._unanswered = 0  # messages the app sent since it last read
        self._watching = False  # the control task wakes within _LENT_AWAY (_reclaim)
        self._app_reads = 0  # messages the app's receive() read itself
        self._reads_seen = 0  # ... as the control task last saw them
        self._tg: TaskGroup | None = None
        # What the read loop asks the transport for: its own size if it
        # has one (asyncio's: chunks it has read whole, see _backend).
        self._read_size: int = getattr(transport, "read_size", READ_SIZE)
        # The transport sends buffers gathered (writev) and the adapter can
        # give them (HTTP/2 over cleartext TCP): see _take.
        self._gathers = hasattr(transport, "send_parts") and (
            adapter is None or hasattr(adapter, "data_parts")
        )

    # ------------------------------------------------------------ public

    @property
    def idle(self) -> bool:
        """No request in flight: closing now loses nothing."""
        return not self._streams and self.adapter.idle

    def close_idle(self) -> None:
        """Close the connection if it is idle (used at ``max_connections``)."""
        if self.idle:
            self.begin_shutdown()

    def begin_shutdown(self) -> None:
        """Graceful shutdown: finish what is in flight, accept nothing new."""
        if not self._shutdown:
            self._shutdown = True
            self._poke.set()

    async def run(self) -> None:
        """Serve the connection until it closes; always closes the transport."""
        await serve_connection(self)

    async def _serve(self) -> None:
        """The connection's life inside its task group (see lifecycle.py)."""
        await self._read_loop()
        await self._terminate()
        if self._streams:
            # The apps were told (http.disconnect; send() raises).
            # One that ignores it is cancelled after graceful_timeout.
            self._streams_done = anyio.Event()
            with anyio.move_on_after(self.ctx.config.graceful_timeout):
                await self._streams_done.wait()
            assert self._tg is not None
            self._tg.cancel_scope.cancel()

    def new_scope(self) -> anyio.CancelScope:
        """A cancel scope: the running backend's class, called directly
        (``anyio.CancelScope()`` looks the backend up on every call)."""
        if self._scope_type is None:
            scope = anyio.CancelScope()
            self._scope_type = type(scope)
            return scope
        return self._scope_type()

    # ------------------------------------------------------------ outbound

    async def body_consumed(self, stream_id: int, amount: int) -> None:
        """The app took ``amount`` bytes of body: the adapter may read again
        (HTTP/1.1) or credit the peer's window (HTTP/2: a WINDOW_UPDATE,
        written now unless a write is in progress, which then takes it)."""
        adapter = self.adapter
        adapter.send(BodyConsumed(stream_id, amount))
        self._wake()
        if self._multiplexed and not self._writing and not self._closed:
            await self._flush()

    async def send_events(self, events: tuple[Event, ...], stream: Stream) -> None:
        """Send a stream's outbound events; return once they are written
        and the stream may send more (its flow-control window is open).

        :raises ClientDisconnected: the connection is broken or closed.
        """
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        adapter = self.adapter
        try:
            for event in events:
                adapter.send(event)
        finally:
            # Even a refused event may have changed the adapter's state. The
            # write below starts before anyone woken here can run, so a
            # close decided now still comes after these bytes.
            self._wake()
            if stream.websocket and type(events[0]) is not WebSocketMessage:
                # An accept starts the ping timer, a Close the close timer:
                # the read loop, blocked in a read, would not arm them.
                self._set_deadline(adapter.next_deadline(self._clock()))
                if self._lent is not None:  # a Close: the read loop reads the answer
                    self._reclaim()
        if not self._multiplexed:
            if not await self._flush():
                raise ClientDisconnected("the connection is closed")
        else:
            self._queued += 1
            ticket = self._queued  # written once self._written reaches it
            size = _payload(events)
            small = size < _COALESCE_BELOW
            if small and self._gathering and self._behind + size < _WRITE_BEHIND:
                # Another stream yielded to gather the frames of the streams
                # that are ready (below): its write takes these along, and
                # this sender goes on without a scheduler round trip of its
                # own -- nor a wait for the window: its frames are only
                # not framed yet. Bounded as the write-behind below.
                self._behind += size + 256
                return
            elif small and not self._writing:
                # Let the other streams that are ready run first: their
                # frames join these in one write (one syscall, one TLS
                # record) instead of one write per small response. (A large
                # chunk is worth its own write.)
                self._gathering = True
                try:
                    await anyio.lowlevel.checkpoint()
                except BaseException:
                    # Cancelled (a reset of this stream): the frames that
                    # others left to this sender still go out.
                    if not self._closed and self._tg is not None:
                        self._tg.start_soon(self._flush)
                    raise
                finally:
                    self._gathering = False
                # (Always: frames gathered after a write that took these
                # are this sender's to write too.)
                if not await self._flush():
                    raise ClientDisconnected("the connection is closed")
            elif self._written >= ticket:
                pass  # another stream's write took these frames along
            elif self._writing and self._behind + size < _WRITE_BEHIND:
                # The task writing now takes these frames in its drain loop:
                # no need to queue for the write turn (a scheduler round
                # trip each under trio). Bounded: past _WRITE_BEHIND bytes
                # queued this way, senders wait for the writer again.
                self._behind += size + 256  # (+ a head's worth)
            elif not await self._flush():
                raise ClientDisconnected("the connection is closed")
            # (HTTP/1.1 is always writable: the transport pushes back.)
            while not adapter.writable(stream.stream_id):
                await stream.wait_writable()
                if self._closed:
                    raise ClientDisconnected("the connection is closed")

    async def send_message(self, stream: Stream, data: bytes | str) -> None:
        """Send a WebSocket message of ``stream``. Over HTTP/1.1, when the
        write turn is free, the adapter frames it and it is written at once
        (the event path costs as much again as a small echo); else it goes
        as a ``WebSocketMessage`` event.

        :raises ClientDisconnected: the connection is broken or closed.
        """
        if self._lent is stream:
            # A second message without a read in between: the app sends
            # more than it reads, the read loop reads again (see _lend).
            self._unanswered += 1
            if self._unanswered > 1:
                self._reclaim()
        if not self._writing and not self._multiplexed and not self._closed:
            # (not multiplexed: the adapter is an H1Adapter)
            frame = self.adapter.frame_message(data)  # type: ignore[attr-defined]
            if frame is not None:
                self._writing = True
                self._writes += 1
                try:
                    await self.transport.send(frame)
                except _BROKEN:
                    self._mark_broken()
                    raise ClientDisconnected("the connection is closed") from None
                finally:
                    self._release_write()
                return
        await self.send_events((WebSocketMessage(stream.stream_id, data),), stream)

    async def send_file(self, stream: Stream, path: str) -> int:
        """Send a file as body data of ``stream_id``: in the kernel
        (``sendfile``) on cleartext connections whose adapter can frame it,
        else in bounded chunks read in a worker thread."""
        file = await anyio.open_file(path, "rb")
        try:
            io = self.ctx.io
            if io is not None and self.info.tls is None:
                size = os.fstat(file.wrapped.fileno()).st_size
                framing = self.adapter.file_framing(stream.stream_id, size) if size else None
                if framing is not None:
                    return await self._send_file_zero_copy(io, file.wrapped, size, framing)
            sent = 0
            while chunk := await file.read(READ_SIZE):
                await self.send_events((Data(stream.stream_id, chunk),), stream)
                sent += len(chunk)
            return sent
        finally:
            # Closed here, not in a worker thread (``async with``): closing
            # a file opened for reading does not block, and nothing awaits
            # in a ``finally`` of this module (see lifecycle.py).
            file.wrapped.close()

    async def _send_file_zero_copy(
        self, io: BackendIO, file: IO[bytes], size: int, framing: tuple[bytes, bytes]
    ) -> int:
        prefix, suffix = framing
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        await self._acquire_write()
        try:
            if prefix:
                await self.transport.send(prefix)
            sent = await io.sendfile(self.transport, file, 0, size)
            if sent is None:  # this stream cannot: copy, keeping the framing
                sent = 0
                while sent < size and (
                    chunk := await anyio.to_thread.run_sync(file.read, min(READ_SIZE, size - sent))
                ):
                    await self.transport.send(chunk)
                    sent += len(chunk)
            if sent != size:  # the file shrank: the framing is broken
                raise anyio.BrokenResourceError(f"file ended after {sent} of {size} bytes")
            if suffix:
                await self.transport.send(suffix)
        except _BROKEN:
            self._mark_broken()
            raise ClientDisconnected("the connection is closed") from None
        finally:
            self._release_write()
        self._wake()
        return size

    async def _acquire_write(self) -> None:
        while self._writing:
            if self._write_done is None:
                self._write_done = self.new_event()
            await self._write_done.wait()
        self._writing = True
        self._writes += 1

    def _release_write(self) -> None:
        self._writing = False
        if self._write_done is not None:
            self._write_done.set()
            self._write_done = None

    async def _flush(self) -> bool:
        """Write what the adapter has queued, in order: the bytes are taken
        only once this task holds the write turn (HTTP/2 header blocks must
        reach the peer in the order HPACK encoded them), and the writer
        drains until nothing is left. ``False`` (and every stream told) if
        the peer is gone."""
        if self._closed:
            return False
        if self._writing:
            await self._acquire_write()
            out = self._take()
        else:
            # The turn is free and nothing awaits before it is taken: the
            # bytes may be looked at first (most reads have none to write).
            out = self._take()
            if out is None:
                return True
            self._writing = True
            self._writes += 1
        try:
            transport = self.transport
            while out is not None:
                taken = self._queued  # every send queued so far is in ``out``
                self._behind = 0
                if type(out) is tuple:
                    await transport.send_parts(*out)  # type: ignore[attr-defined]
                else:
                    await transport.send(out)  # type: ignore[arg-type]
                self._written = taken
                out = self._take()
            return True
        except _BROKEN:
            self._mark_broken()
            return False
        finally:
            self._release_write()

    def _take(self) -> bytes | tuple[list[bytes | memoryview], int] | None:
        """The adapter's output, or ``None``. Much of it, on a transport
        that gathers buffers (``send_parts``: cleartext sockets), comes as
        the adapter's buffers and their size: a streamed HTTP/2 body is not
        copied into one buffer on its way to the kernel."""
        adapter = self.adapter
        if self._multiplexed and self._gathers:
            parts = adapter.data_parts()  # type: ignore[attr-defined]
            if not parts:
                return None
            size = sum(map(len, parts))
            if size >= _GATHER_FROM:
                return parts, size
            return b"".join(parts)
        return adapter.data_to_send() or None

    def _mark_broken(self) -> None:
        self._broken = True
        if not self._closed:
            self._closed = True
            for stream in self._streams.values():
                stream.feed(StreamClosed(stream.stream_id))
        self._poke.set()  # the control task closes the transport

    def _wake(self) -> None:
        """The adapter's state may have changed: let the loop look again."""
        if self._resume is not None:
            self._resume.set()
        elif not self.adapter.wants_read:
            self._poke.set()  # e.g. close after this response: end the read

    def _stream_ended(self) -> None:
        """A stream ended: the adapter's timers may have started (keep-alive
        idle)."""
        self._wake()
        self._set_deadline(self.adapter.next_deadline(self._clock()))

    def _set_deadline(self, deadline: float | None) -> None:
        self._deadline = deadline
        if deadline is not None and deadline < self._timer_at:
            self._timer_at = deadline
            self._poke.set()

    def _is_closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------ control

    async def _control_loop(self) -> None:
        """Timers, shutdown and closes decided while the loop reads."""
        while not self._closed:
            poke = self._poke
            if not poke.is_set():
                with anyio.move_on_at(self._timer_at):
                    await poke.wait()
            self._poke = self.new_event()
            if self._is_closed():  # (a method: mypy narrows attributes across awaits)
                break
            if self._lent is None:
                self._watching = False
            elif self._app_reads != self._reads_seen:  # messages taken: look again soon
                self._reads_seen = self._app_reads
                self._watching = True
            elif self._app_reader is None:
                # Out of receive() since the last look (_LENT_AWAY ago) with
                # the socket: the read loop reads again (pings get
                # answered, Closes noticed).
                self._reclaim()
                self._watching = False
            else:  # in receive(), reading: the next message taken re-arms
                self._watching = False
            adapter = self.adapter  # (an h2c switch replaces it)
            now = self._clock()
            if self._shutdown and not self._shutdown_done:
                self._shutdown_done = True
                if await self._handle(adapter.begin_shutdown()):
                    break
                self._deadline = adapter.next_deadline(now)  # WebSockets' close timers
            if self._resume is None:  # else the read loop polls itself
                events = adapter.next_events(now)
                if events and await self._handle(events):
                    break
            if self._write_stuck(now):
                log.info("closing a connection whose client stopped reading")
                break
            deadline = self._deadline
            if deadline is not None and now >= deadline:
                if await self._handle(adapter.handle_timeout(now)):
                    break
                self._wake()  # e.g. HTTP/2: its last stream ended after a GOAWAY
                deadline = self._deadline = adapter.next_deadline(now)
            if deadline is None or deadline <= now:
                self._timer_at = now + self._recheck
            else:
                self._timer_at = deadline
            if self._watching and self._timer_at > now + _LENT_AWAY:
                self._timer_at = now + _LENT_AWAY
        await self._terminate()

    def _write_stuck(self, now: float) -> bool:
        """``write_timeout``, checked at the control task's wake-ups (at least
        every ``keep_alive_timeout`` while a response is in flight): the
        same write still pending for that long. No cost per write but a
        counter."""
        timeout = self.ctx.config.write_timeout
        if not self._writing or timeout is None:
            self._stuck_write = None
            return False
        seen = self._stuck_write
        if seen is None or seen[0] != self._writes:
            self._stuck_write = (self._writes, now)
            if self._timer_at > now + timeout:
                self._timer_at = now + timeout  # come back when it would be due
            return False
        return now - seen[1] >= timeout

    async def _terminate(self) -> None:
        """End the connection: streams are told, the transport closed (which
        ends a pending read)."""
        if not self._closed:
            self._closed = True
            for stream in self._streams.values():
                stream.feed(StreamClosed(stream.stream_id))
        self._poke.set()
        if self._resume is not None:
            self._resume.set()
        self._return_socket()
        while self._idle_runners:
            self._idle_runners.pop().assign(None)
        await self._close()

    # ------------------------------------------------------------ inbound

    async def _read_loop(self) -> None:
        """Read and route events until the connection is over."""
        transport = self.transport
        routed = False  # the last bytes took a short route
        given: bytes | None = None  # bytes read by a task the socket was lent to
        while not self._closed:
            adapter = self.adapter  # (an h2c switch replaces it)
            if routed:
                # As in the transport's callback (asyncio): a short route
                # leaves nothing to poll, the adapter reading, and its
                # deadline set (_receive_request) or for the control task
                # to recheck when due (a WebSocket's ping timer).
                routed = False
                if self._whole and self._runners_may_read:
                    # The runner the request went to reads the next one
                    # itself when it is done (trio): see _run_streams.
                    given = await self._lend_to_runners()
                    if self._is_closed():
                        return
                    continue
                borrower = self._borrower()
                if borrower is not None:
                    # The task it woke reads next itself (trio): see _lend.
                    given = await self._lend(borrower)
                    if self._is_closed():
                        return
                    continue  # taken back: poll, then read (or take ``given``)
            else:
                now = self._clock()
                events = adapter.next_events(now)
                if events:
                    if await self._handle(events):
                        return
                    continue
                if not adapter.wants_read:
                    await self._wait_for_resume()
                    continue
                self._set_deadline(adapter.next_deadline(now))
            if given is not None:  # bytes the borrower could not route
                data, given = given, None
            else:
                self._reading = True
                try:
                    data = await transport.receive(self._read_size)
                except _BROKEN:
                    if self._is_closed():
                        return
                    data = b""
                finally:
                    self._reading = False
                    if self._read_returned is not None:
                        self._read_returned.set()
                if data:  # the short routes first (as the callbacks take them on asyncio)
                    inline = self._inline_stream
                    if inline is not None:
                        if self._receive_inline(inline, data):
                            routed = True
                            continue
                    elif not self._multiplexed and self._receive_request(data):
                        routed = True
                        continue
            if await self._handle(adapter.receive_data(data, self._clock())):
                return

    def _receive_request(self, data: bytes) -> bool:
        """Bytes the transport hands over in its callback while the read
        loop waits (asyncio), or that the read loop read (trio): a whole
        HTTP/1.1 request head between requests goes from here to the
        parked runner task, and the read loop sleeps on (it would only
        route the request: a task switch per request). ``False`` for
        anything else, which the loop reads (or handles as usual)."""
        if self._closed or self._shutdown or self._multiplexed or not self._idle_runners:
            return False
        # Not multiplexed: an H1Adapter (typed so, compiled code calls its
        # methods directly instead of looking them up by name).
        adapter: H1Adapter = self.adapter  # type: ignore[assignment]
        now = self._clock()
        events = adapter.receive_request(data, now)
        if events is None:
            return False
        request = events[0]  # a Request, then perhaps its EndBody
        assert type(request) is Request
        self._open_stream(request)
        if len(events) > 1:
            self._streams[request.stream_id].feed(events[1])
        # (Whole, and not a WebSocket's, whose messages the read loop reads:
        # the next request's bytes may be read by the runner.)
        self._whole = type(events[-1]) is EndBody and self._inline_stream is None
        self._set_deadline(adapter.next_deadline(now))
        return True

    def _receive_inline(
        self, stream: Stream, data: bytes, take: Callable[[Event], bool] | None = None
    ) -> bool:
        """Bytes the transport hands over in its callback while the read
        loop waits (asyncio), or that the read loop read (trio): whole
        messages of the WebSocket ``stream`` are routed here (the loop
        stays asleep), straight to the app if it waits for one; ``False``
        for anything else, which the loop reads (or handles as usual)."""
        if self._closed:
            return False
        adapter: H1Adapter = self.adapter  # type: ignore[assignment]  # (only HTTP/1.1 registers this)
        events = adapter.receive_inline(data, self._clock(), take or stream.offer)
        if events is None:
            return False
        for event in events:
            stream.feed(event)
        return True

    def _borrower(self) -> Stream | None:
        """Whom the read loop lends the socket to after a short route, if
        anyone: the HTTP/1.1 WebSocket whose waiting ``receive()`` took a
        message (trio, cleartext)."""
        inline = self._inline_stream
        if self._lendable and inline is not None and inline._handoff is not None:
            return inline
        return None

    async def _lend(self, stream: Stream) -> bytes | None:
        """Lend the socket to ``stream``'s ``receive()`` (HTTP/1.1
        WebSocket, trio) and wait until it comes back: bytes the app's read
        could not route (a ping, a Close, part of a message, the end), or
        ``None`` when taken back (see _reclaim).

        The read loop woken by the socket and then the app's task woken by
        the read loop are two task switches per message; the app's task
        reading for itself is one (in wall time: ws-echo 28,300 -> 31,600
        messages/s; HTTP/1.1's runners read the same way between requests,
        see _lend_to_runners). Where the transport's callback routes
        messages (asyncio) there is nothing to gain.
        """
        self._lent = stream
        self._unanswered = 0
        self._took_message()  # (the one handed over)
        try:
            return await self._socket_back()
        finally:
            self._lent = None

    async def _socket_back(self) -> bytes | None:
        """Wait until the socket lent comes back (_return_socket): the
        bytes handed back with it, or ``None``."""
        self._baton = baton = self.new_event()
        try:
            await baton.wait()
        finally:
            self._baton = None
        given, self._given = self._given, None
        return given

    async def _lend_to_runners(self) -> bytes | None:
        """Lend the socket to the HTTP/1.1 runners (trio) and wait until it
        comes back: after a whole request head (and body) went to a runner,
        that runner, its call done, reads the next request itself instead
        of the read loop reading it and waking the runner: one task step
        per kept-alive request instead of two (11% of the instructions of
        a small request at 64 connections). Bytes it could not route come
        back (``None``: read anew); _terminate takes the socket back."""
        self._runners_read = True
        try:
            return await self._socket_back()
        finally:
            self._runners_read = False

    async def _read_next_request(self, slot: _RunnerSlot) -> bool:
        """A runner with the socket lent (_lend_to_runners) reads: ``True``
        when the next request was handed to its own ``slot`` by
        _receive_request, ``False`` with the socket given back (anything
        else read; a body still to come, which the read loop reads)."""
        try:
            data = await self.transport.receive(self._read_size)
        except _BROKEN:
            data = b""
        if data and self._receive_request(data):
            assert slot.work is not None  # (its connection's only runner)
            slot.event = self.new_event()  # (set by assign: not waited on)
            if not self._whole:
                self._return_socket()
            return True
        self._given = data
        self._return_socket()
        return False

    def _reclaim(self) -> None:
        """The read loop reads again -- unless the app's task reads now:
        it hands back whatever is not a message anyway.

        Taken back: when the app sends a second message without reading
        (it sends more than it reads), sends anything but a message (a
        Close: the answer must be read), its call ends, the connection
        shuts down, or at the control task's first wake-up after the app
        left receive() with a message and did not read again by the next
        (``_LENT_AWAY`` apart, so within twice that; a message taken while
        the control task sleeps longer wakes it once to arm that timer)."""
        if self._app_reader is None:
            self._return_socket()

    def _return_socket(self) -> None:
        """The socket goes back to the read loop (waiting in _lend)."""
        self._lent = None
        if self._baton is not None:
            self._baton.set()

    def _took_message(self) -> None:
        """The app leaves receive() with a message while it holds the
        socket: the control task is to look within ``_LENT_AWAY``."""
        self._app_reads += 1
        if not self._watching:
            self._watching = True
            self._poke.set()

    def interrupt_read(self) -> None:
        """An event was fed to the stream whose ``receive()`` reads the
        socket: end its read (it then takes the event)."""
        if self._interrupt is not None:
            self._interrupt()

    async def read_for(self, stream: Stream) -> Event | None:
        """``receive()`` of the stream the socket is lent to: read, and
        route what was read as the read loop would. The message, or
        ``None``: look at the queue again (bytes the read loop takes back,
        an event fed meanwhile, the end of the connection).

        Cancelling it loses nothing: the socket's wait is cancelled before
        any byte is read, and from the read on nothing awaits."""
        self._app_reader = stream
        self._unanswered = 0
        try:
            data = await self.transport.receive(READ_SIZE)
        except anyio.WouldBlock:  # interrupted (interrupt_read): an event is queued
            return None
        except _BROKEN:
            data = b""
        finally:
            self._app_reader = None
        if data and self._receive_inline(stream, data, stream.keep):
            self._took_message()
            event = stream._handoff
            stream._handoff = None
            return event  # (None: queued behind an earlier event)
        self._given = data  # the read loop takes these bytes, and the socket, back
        self._return_socket()
        return None

    async def _wait_for_resume(self) -> None:
        self._resume = self.new_event()
        if not self.adapter.wants_read and not self._closed:
            await self._resume.wait()
        self._resume = None

    async def _handle(self, events: list[Event]) -> bool:
        """Route inbound events; flush the adapter. ``True``: the connection
        is over."""
        close = False
        for event in events:
            kind = type(event)
            if kind is Request:
                assert isinstance(event, Request)
                self._open_stream(event)
            elif kind is ConnectionClosed:
                assert isinstance(event, ConnectionClosed)
                log.debug("closing the connection from %s: %s", self.info.client, event.reason)
                close = True
            elif kind is ProtocolSwitch:
                assert isinstance(event, ProtocolSwitch)
                return await self._switch(event)
            else:
                stream = self._streams.get(getattr(event, "stream_id", -1))
                if stream is None:
                    continue
                if kind is Writable:
                    stream.writable()
                    continue
                stream.feed(event)
                if kind is StreamClosed and self._multiplexed and not stream.websocket:
                    stream.cancel()  # reset by the peer: the call ends now
        if not await self._flush():
            return True
        return close

    async def _switch(self, switch: ProtocolSwitch) -> bool:
        """HTTP/1.1 becomes HTTP/2 (prior knowledge, or ``Upgrade: h2c``
        after its 101, which goes out first)."""
        if not await self._flush():
            return True
        now = self._clock()
        upgrade = switch if switch.request is not None else None
        from ..protocol.http2 import H2Adapter

        self.adapter = H2Adapter(self.ctx.h2_settings, now, self.info.scheme, upgrade)
        self._multiplexed = True
        events = self.adapter.receive_data(switch.data, now) if switch.data else []
        return await self._handle(events)

    def _open_stream(self, request: Request) -> None:
        if len(self._streams) >= self._max_streams:
            # Calls the peer reset may still be unwinding: never more than
            # the limit at once, whatever the peer does.
            from ..protocol.http2 import REFUSED_STREAM

            self.adapter.send(ResetStream(request.stream_id, REFUSED_STREAM))
            return
        stream = Stream(self, request.stream_id, request.protocol == "websocket")
        self._streams[request.stream_id] = stream
        if stream.websocket and not self._multiplexed:
            # Whole messages go straight to a waiting receive() (no queue,
            # no BodyConsumed back): in the transport's callback on asyncio
            # (the read loop sleeps on), else from the read loop.
            self._inline_stream = stream
            if self._set_receiver is not None:
                self._set_receiver(functools.partial(self._receive_inline, stream))
        if self._idle_runners:  # reuse a task: cheaper than spawning one
            self._idle_runners.pop().assign(stream, request)
            return
        assert self._tg is not None
        slot = _RunnerSlot(self.new_event)
        slot.work = (stream, request)
        self._tg.start_soon(self._runner, slot)

    async def _runner(self, slot: _RunnerSlot) -> None:
        """Run the streams handed to ``slot`` one after another; park
        between them (HTTP/1.1 reuses one runner for every request of the
        connection). The work is taken from the slot, never held in this
        task's frames while it parks: an idle kept-alive connection keeps
        nothing of its last request (its stream, its request and headers)."""
        if not self._multiplexed and not await self._run_streams(slot, None):
            return
        while True:
            # A reset by the peer cancels the call of that stream alone. The
            # scope is the runner's, entered once for all the streams it
            # runs (a scope per stream cost a tenth of a small HTTP/2
            # request, a sixth under trio); a reset spends it, and the
            # runner ends with it (a new one starts for the next stream).
            again = False  # (stays so when the scope catches a reset's cancellation)
            with self.new_scope() as scope:
                again = await self._run_streams(slot, scope)
            if not again:
                return

    async def _run_streams(self, slot: _RunnerSlot, scope: anyio.CancelScope | None) -> bool:
        """Run the work in ``slot`` and the streams handed to it after it.
        ``False`` when the runner is done (the connection is over, or a
        reset cancelled ``scope``); ``True`` when the next work, left in
        the slot, needs a scope this runner does not have (the connection
        switched to HTTP/2)."""
        while True:
            await self._run_stream(slot, scope)
            if self._closed or (scope is not None and scope.cancel_called):
                return False
            self._idle_runners.append(slot)
            if self._runners_read and not self._closed and await self._read_next_request(slot):
                continue
            # (slot.wait() inlined: a coroutine less to create and to pass
            # through on every wake-up, once per request)
            await slot.event.wait()
            slot.event = self.new_event()
            if slot.work is None:
                return False
            if scope is None and self._multiplexed:
                return True

    async def _run_stream(self, slot: _RunnerSlot, cancel_scope: anyio.CancelScope | None) -> None:
        """Run the work in ``slot``, taken from it (see _runner)."""
        work, slot.work = slot.work, None
        assert work is not None
        stream, request = work
        stream.scope = cancel_scope
        ctx = self.ctx
        cycle: HTTPCycle | WebSocketCycle
        if request.protocol == "websocket":
            from ..asgi.websocket import WebSocketCycle  # (imported by the first WebSocket)

            scope = self._scopes.websocket(request)
            cycle = WebSocketCycle(ctx.app, scope, stream, self._default_headers)
        else:
            scope = self._scopes.http(request)
            cycle = HTTPCycle(ctx.app, scope, stream, self._default_headers)
        access_log = ctx.access_log
        statsd, metrics = ctx.statsd, ctx.metrics
        timed = access_log.enabled or statsd is not None or metrics is not None
        started = time.perf_counter() if timed else 0.0
        if metrics is not None:
            metrics.stream(request.http_version, 1.0)
        try:
            if ctx.server_names and _host(request) not in ctx.server_names:
                await cycle.refuse()
            elif not stream.cancelled:  # (reset before its call began)
                await cycle.run()
        finally:
            stream.scope = None  # a late reset must not cancel the next stream's call
            if self._lent is stream:
                self._reclaim()
            del self._streams[stream.stream_id]
            self._stream_ended()
            ctx.request_done()
            if not self._streams and self._streams_done is not None:
                self._streams_done.set()
            if metrics is not None:
                metrics.stream(request.http_version, -1.0)
        if not timed:
            return
        seconds = time.perf_counter() - started
        if metrics is not None:
            if request.protocol == "websocket":
                metrics.websocket(request.http_version)
            else:
                metrics.request(request.http_version, cycle.status, seconds)
        if access_log.enabled:
            access_log.log(scope, cycle.status, cycle.response_headers, cycle.sent_bytes, seconds)
        if statsd is not None:
            statsd.request(cycle.status, seconds)

    async def _close(self) -> None:
        """Flush what the adapter still holds and close the transport
        (bounded: a peer that does not read cannot hold us)."""
        if self._transport_closed:
            return
        self._transport_closed = True
        transport = self.transport
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._acquire_write()
            try:
                data = self.adapter.data_to_send()
                if data:
                    await transport.send(data)
                if self._multiplexed and not self._broken:
                    await self._linger(transport)
                await transport.aclose()
                return
            except _BROKEN:
                pass
            finally:
                self._release_write()
        await anyio.aclose_forcefully(transport)

    async def _linger(self, transport: ByteStream) -> None:
        """Read and drop what the peer still sends until it closes (bounded
        by the caller). Closing a socket with unread input makes the kernel
        send a reset, which can destroy our last frames (the responses of
        a drained connection, the GOAWAY) before the peer reads them. Our
        end of the TCP stream goes first, so a peer that waits for it
        closes at once."""
        # Under TLS the TCP stream carries the FIN (no close_notify, as in
        # every close of ours): the peer has read our last frames by then.
        raw = transport if self.info.tls is None else getattr(transport, "transport_stream", None)
        if not isinstance(raw, ByteStream):
            return
        try:
            await raw.send_eof()
        except (NotImplementedError, *_BROKEN):
            return
        while self._reading:  # the read loop's receive returns first
            self._read_returned = anyio.Event()
            await self._read_returned.wait()
        dropped = 0
        while dropped < _LINGER_LIMIT:
            try:
                dropped += len(await transport.receive(READ_SIZE))
            except (*_BROKEN, anyio.BusyResourceError):
                return


def _payload(events: tuple[Event, ...]) -> int:
    """The body bytes among ``events``."""
    size = 0
    for event in events:  # (no generator: once per send)
        kind = type(event)
        if kind is Data:
            size += len(event.data)  # type: ignore[union-attr]
        elif kind is Response:
            size += len(event.body)  # type: ignore[union-attr]
    return size


def _host(request: Request) -> str:
    """The request's host as the client wrote it (``:authority`` or Host)."""
    if request.authority is not None:
        return request.authority.decode("latin-1")
    for name, value in request.headers:
        if name == b"host":
            return value.decode("latin-1")
    return ""


class _RunnerSlot:
    """Where a parked runner task waits for its next stream: ``work`` is
    set, then ``event`` (see ``Connection._run_streams``)."""

    __slots__ = ("event", "work")

    def __init__(self, new_event: Callable[[], anyio.Event]) -> None:
        self.event = new_event()
        self.work: tuple[Stream, Request] | None = None

    def assign(self, stream: Stream | None, request: Request | None = None) -> None:
        """Hand over a stream (``None``: the connection is over, return)."""
        self.work = None if stream is None or request is None else (stream, request)
        self.event.set()
