"""The one place that names asyncio, uvloop and trio.

Everything else in tricorn is written against anyio; this module picks the
event loop that anyio runs on (``-k asyncio|uvloop|trio``) and provides the
what anyio lacks or makes slow: :func:`sendfile` and :func:`wrap` (a lean
stream on asyncio). The process layer (``workers.py``) hands this module to
the server as its ``io``, so the layers below never name a backend.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketAttribute

from .errors import StartupFailure

if TYPE_CHECKING:
    from asyncio import Future

__all__ = ["BACKENDS", "clock", "event_class", "receive_datagrams", "run", "sendfile", "wrap"]

T = TypeVar("T")

BACKENDS = ("asyncio", "uvloop", "trio")


def _options(worker_class: str) -> tuple[str, dict[str, Any]]:
    if worker_class == "asyncio":
        return "asyncio", {}
    if worker_class == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            raise StartupFailure(
                "worker_class 'uvloop' needs uvloop: pip install 'tricorn[uvloop]'"
            )
        return "asyncio", {"use_uvloop": True}
    if worker_class == "trio":
        if importlib.util.find_spec("trio") is None:
            raise StartupFailure("worker_class 'trio' needs trio: pip install 'tricorn[trio]'")
        return "trio", {}
    raise StartupFailure(f"unknown worker_class {worker_class!r}; use one of {BACKENDS}")


def run(fn: Callable[..., Awaitable[T]], *args: Any, worker_class: str) -> T:
    """Run ``fn(*args)`` on the event loop named by ``worker_class``.

    :raises StartupFailure: the backend's library is not installed.
    """
    backend, options = _options(worker_class)
    _tune_gc()
    return anyio.run(fn, *args, backend=backend, backend_options=options)


_GC_YOUNG = 10_000  # container objects allocated between young collections (CPython: 700)


def _tune_gc() -> None:
    """Make the cyclic garbage collector cheaper for a long-running server.

    Requests in flight hold a few thousand young objects (coroutines,
    events, headers) that live a little longer than CPython's 700
    allocations between young collections, so every collection traversed
    them again: about a seventh of the CPU time of a small HTTP/2 request.
    Collecting every 10,000 allocations lets most die by reference count
    first; the garbage cycles a server makes (exceptions) wait a little
    longer. ``gc.freeze()`` moves what startup created (modules, the app)
    out of the full collections, and keeps it shared after a fork. A
    process that turned the collector off, or raised the threshold
    itself, is left alone.

    The older generations are examined whenever they may be (thresholds
    0, CPython's rule of a quarter of the long-lived objects still bounds
    the full collections): a connection lives through many young
    collections, and the cycles it leaves (asyncio's transports, h2's and
    aioquic's connection state) wait for a full collection. With 10 and 10
    that came every million allocations, and the RSS of a server grew by
    6 MiB over 90,000 h2c requests and 7 MiB over 20,000 HTTP/3 ones
    (benchmarks/memory.py); now by about 1 MiB, at no measurable CPU cost
    (the frozen startup objects are not traversed).
    """
    if not gc.isenabled():
        return
    gc.collect()  # startup's garbage cycles (the CLI parser's): not to be frozen with the rest
    gc.freeze()
    young, *_ = gc.get_threshold()
    if young < _GC_YOUNG:
        gc.set_threshold(_GC_YOUNG, 0, 0)


async def sendfile(stream: ByteStream, file: IO[bytes], offset: int, count: int) -> int | None:
    """Copy ``count`` bytes of ``file`` from ``offset`` to the socket under
    ``stream`` in the kernel (``os.sendfile``), without passing them through
    Python. Returns the bytes sent (fewer if the file is shorter), or
    ``None`` when ``stream`` is not a plain socket stream this loop can do
    it on (TLS, uvloop): the caller then copies.

    The caller holds the stream's write lock: nothing else writes meanwhile.
    """
    transport = getattr(stream, "_transport", None)  # anyio's asyncio SocketStream
    if transport is not None:
        import asyncio

        if not isinstance(transport, asyncio.Transport):
            return None
        loop = asyncio.get_running_loop()
        try:
            # Waits for the transport's buffer to drain first, so the bytes
            # stay in order behind what anyio already wrote.
            return await loop.sendfile(transport, file, offset, count, fallback=False)
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            return None
    if type(stream) is not _TrioStream and type(stream).__module__ != "anyio._backends._trio":
        return None
    import trio

    # trio writes straight to the socket: once a send returned, every
    # earlier byte is in the kernel and the raw descriptor is ours to use.
    sock = stream.extra(SocketAttribute.raw_socket)
    fd, in_fd = sock.fileno(), file.fileno()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(fd, in_fd, offset + sent, count - sent)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        if n == 0:
            break  # the file is shorter than it was
        sent += n
        await anyio.lowlevel.checkpoint()
    return sent


def clock() -> Callable[[], float]:
    """The running loop's clock, the one ``anyio.current_time()`` reads,
    as a plain callable: anyio looks the backend up on every call, which
    the per-read hot path can do without."""
    loop = _asyncio_loop()
    if loop is not None:
        time: Callable[[], float] = loop.time
        return time
    import trio

    # The run's clock object itself: trio.current_time() reaches it through
    # two wrappers on every call.
    current: Callable[[], float] = trio.lowlevel.current_clock().current_time
    return current


def _asyncio_loop() -> Any:
    """The running asyncio (or uvloop) loop, or ``None`` on trio.

    asyncio is not imported to find out: a trio worker that never
    imported it is spared its 1.5 MiB. An asyncio loop imported it.
    """
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # imported (by a library), but not running: trio
        return None


def event_class() -> Callable[[], anyio.Event] | None:
    """A leaner event than ``anyio.Event`` for the running loop. On asyncio
    anyio's event wraps an ``asyncio.Event``, which wraps a future per
    wait; on trio it wraps a ``trio.Event``, which parks its waiters in a
    ``ParkingLot``. The core makes one per request and per message it
    hands an application, so these wait on a bare future (asyncio) or
    park the task itself (trio)."""
    global _bound_event
    loop = _asyncio_loop()
    if loop is None:  # trio
        return _trio_event_class()
    if _bound_event is None or _bound_event._loop is not loop:
        # A subclass holding the loop: asyncio.get_running_loop() makes a
        # getpid() system call each time before Python 3.12 (a fork check),
        # and waits are made per request.
        _bound_event = type("_AsyncioEvent", (_AsyncioEvent,), {"__slots__": (), "_loop": loop})
    return _bound_event  # type: ignore[return-value]


_bound_event: type[_AsyncioEvent] | None = None  # for the loop event_class() last saw


class _LeanEvent:
    """What the lean events share: ``_waiters`` is ``None``, the one waiter
    (the usual case), or a list of them; ``set`` releases each."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: Any = None

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiters, self._waiters = self._waiters, None
            if waiters is None:
                return
            for waiter in waiters if type(waiters) is list else (waiters,):
                self._release(waiter)

    def is_set(self) -> bool:
        return self._set

    @staticmethod
    def _release(waiter: Any) -> None:
        raise NotImplementedError


class _AsyncioEvent(_LeanEvent):
    """``anyio.Event``'s interface (``set``, ``is_set``, ``await wait()``;
    ``wait`` returns what to await, it is not a coroutine function) over bare
    asyncio futures, one per waiter (cancelling a task cancels the future it
    awaits, which must not end the others' waits)."""

    __slots__ = ()
    _loop: Any  # the running loop (see event_class)

    @staticmethod
    def _release(waiter: Any) -> None:
        if not waiter.done():  # (not cancelled)
            waiter.set_result(None)

    def wait(self) -> Awaitable[None]:
        """What to await for the event: its future itself (no coroutine
        between the waiting task and the future: one frame less to make
        and to resume through), or a checkpoint if it is set already."""
        if self._set:
            return anyio.lowlevel.checkpoint()  # as anyio's: a wait is a checkpoint
        future = self._loop.create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = future
        elif type(waiters) is list:
            waiters[:] = [*(waiter for waiter in waiters if not waiter.done()), future]
        elif waiters.done():  # (a wait cancelled before)
            self._waiters = future
        else:
            self._waiters = [waiters, future]
        return future  # type: ignore[no-any-return]


_trio_event: type | None = None


def _trio_event_class() -> Callable[[], anyio.Event]:
    """:class:`_TrioEvent`, built on first use (trio is imported only by
    a trio worker)."""
    global _trio_event
    if _trio_event is None:
        import trio

        lowlevel = trio.lowlevel
        current_task = lowlevel.current_task
        reschedule = lowlevel.reschedule
        wait_rescheduled = lowlevel.wait_task_rescheduled
        checkpoint = lowlevel.checkpoint
        succeeded = lowlevel.Abort.SUCCEEDED

        class _TrioEvent(_LeanEvent):
            """``anyio.Event``'s interface at trio's lowest level: a waiter
            parks itself (``wait_task_rescheduled``) and ``set`` reschedules
            it (a cancelled waiter takes itself off the list)."""

            __slots__ = ()
            _release = staticmethod(reschedule)  # type: ignore[assignment]

            async def wait(self) -> None:
                if self._set:
                    await checkpoint()  # as anyio's: a wait is a checkpoint
                    return
                task = current_task()
                waiters = self._waiters
                if waiters is None:
                    self._waiters = task
                elif type(waiters) is list:
                    waiters.append(task)
                else:
                    self._waiters = [waiters, task]

                def abort(raise_cancel: Any) -> Any:  # cancelled: no longer waiting
                    waiters = self._waiters
                    if waiters is task:
                        self._waiters = None
                    elif type(waiters) is list:
                        waiters.remove(task)
                    return succeeded

                await wait_rescheduled(abort)

        _trio_event = _TrioEvent
    return _trio_event


_DATAGRAM_BATCH = 64  # datagrams read in a row before other work gets a turn


async def receive_datagrams(
    sock: socket.socket, on_datagram: Callable[[bytes, Any], None], max_size: int
) -> None:
    """Call ``on_datagram(data, address)`` for each datagram ``sock``
    receives (up to ``max_size`` bytes; errors per datagram, such as ICMP
    ones, are skipped) until cancelled. The socket is closed only after
    this returned.

    On asyncio and uvloop the loop calls a reader registered once, which
    reads what the socket holds: no task wake-up and no change to the
    poller per batch, as ``anyio.wait_readable`` makes. On trio a task
    waits for readability (trio's own wait, without anyio's wrapping).
    """
    sock.setblocking(False)
    receive = sock.recvfrom
    loop = _asyncio_loop()
    if loop is None:  # trio
        import trio

        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        while True:
            for _ in range(_DATAGRAM_BATCH):
                try:
                    data, address = receive(max_size)
                except BlockingIOError:
                    await wait_readable(sock)
                    break
                except OSError:
                    if sock.fileno() < 0:
                        return  # closed under us
                    continue
                on_datagram(data, address)
            else:
                await checkpoint()

    done: Future[None] = loop.create_future()

    def ready() -> None:
        for _ in range(_DATAGRAM_BATCH):  # (more next round: the poll is level-triggered)
            try:
                data, address = receive(max_size)
            except BlockingIOError:
                return
            except OSError:
                if sock.fileno() < 0 and not done.done():  # closed under us
                    done.set_result(None)
                    return
                continue
            on_datagram(data, address)

    fd = sock.fileno()
    loop.add_reader(fd, ready)
    try:
        await done
    finally:
        loop.remove_reader(fd)


_IOV_MAX = 1024  # buffers one writev takes (Linux's UIO_MAXIOV)


def _rest(parts: list[bytes | memoryview], sent: int) -> bytes:
    """The bytes of ``parts`` after the first ``sent``, in one buffer."""
    if not sent:
        return b"".join(parts)
    for index, part in enumerate(parts):
        if sent < len(part):
            return b"".join([part[sent:], *parts[index + 1 :]])
        sent -= len(part)
    return b""


def wrap(stream: ByteStream) -> ByteStream:
    """A faster stream over the same connection where the loop allows.

    On asyncio (and uvloop) anyio's socket stream yields to the loop on
    every send and pauses and resumes the transport on every receive; the
    replacement keeps the transport reading (bounded by a high-water mark),
    returns buffered bytes at once and awaits only when the transport's
    buffer is full. On trio each send and receive of anyio's stream is a
    round trip through the scheduler, even when the socket is ready; the
    replacement calls the socket directly and waits only when it would
    block (see :class:`_TrioStream`). Elsewhere ``stream`` is returned
    unchanged.
    """
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    if transport is None or protocol is None:
        if type(stream).__module__ == "anyio._backends._trio":
            sock = getattr(stream, "_raw_socket", None)
            if sock is not None and sock.fileno() >= 0:
                return _TrioStream(stream, sock)
        return stream
    # asyncio's and uvloop's transports (uvloop's do not subclass asyncio's)
    if not hasattr(transport, "set_protocol") or transport.is_closing():
        return stream
    return _AsyncioStream(stream, transport, protocol)


_READ_SIZE = 256 * 1024  # what asyncio's transports ask recv() for (their max_size)


class _AsyncioStream(ByteStream):
    """An anyio byte stream driving an asyncio transport directly."""

    _READ_HIGH_WATER = 256 * 1024
    _WRITE_HIGH_WATER = 64 * 1024
    _MAX_EAGER_READS = 16  # then yield once: a flooding peer cannot starve the loop
    # What a reader should ask ``receive`` for: the transport has read each
    # chunk whole already (up to 256 KiB), and asking for less splits it,
    # copying both parts: a 64 KiB POST, whose head and body came in one
    # read, cost a 64 KiB copy (about 15% of the request's instructions).
    # The connection's read loop asks for this much; not for all 256 KiB, so
    # an HTTP/1.1 body chunk queued for an app stays at most 128 KiB
    # (max_app_queue_size counts chunks).
    read_size = 128 * 1024

    def __init__(self, stream: ByteStream, transport: Any, old_protocol: Any) -> None:
        import asyncio

        self._asyncio = asyncio
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        self._extra = stream.extra_attributes
        self._chunks: deque[bytes] = deque(old_protocol.read_queue)
        self._buffered = sum(len(chunk) for chunk in self._chunks)
        self._eof = bool(old_protocol.is_at_eof)
        self._error: BaseException | None = old_protocol.exception
        self._closed = False
        self._lost_connection = False
        self._reader: Any = None  # future a receive() waits on
        self._drainer: Any = None  # future a send() waits on
        self._write_paused = False
        self._reading_paused = False
        self._eager = 0
        self._receiver: Callable[[bytes], bool] | None = None
        sock = transport.get_extra_info("socket")
        self._fd: int = sock.fileno() if sock is not None else -1  # for send_parts
        if type(transport).__module__.startswith("asyncio."):
            # asyncio's own transports: reads into one shared buffer (see
            # _buffered_protocol); uvloop's read into its own already.
            transport.set_protocol(_buffered_protocol()(self))
        else:
            transport.set_protocol(_AsyncioProtocol(self))
        transport.set_write_buffer_limits(high=self._WRITE_HIGH_WATER)
        transport.resume_reading()

    @property
    def extra_attributes(self) -> Any:
        return self._extra

    def set_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        """While a :meth:`receive` waits (nothing is buffered), bytes that
        arrive go to ``receiver`` first, in the transport's callback; if it
        takes them (``True``) the waiting receive goes on waiting. This
        spares a reader that would only route the bytes a task switch."""
        self._receiver = receiver

    # called by the protocol ------------------------------------------------

    def _data(self, data: bytes) -> None:
        receiver = self._receiver
        if receiver is not None:
            reader = self._reader
            if reader is not None and not reader.done() and receiver(data):
                return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake_reader()

    def _lost(self, exc: BaseException | None) -> None:
        self._eof = True
        self._lost_connection = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake_reader()
        drainer, self._drainer = self._drainer, None
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def _wake_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _set_write_paused(self, paused: bool) -> None:
        self._write_paused = paused
        if not paused:
            drainer, self._drainer = self._drainer, None
            if drainer is not None and not drainer.done():
                drainer.set_result(None)

    # the ByteStream interface ---------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._chunks or self._eager >= self._MAX_EAGER_READS:
            self._eager = 0
            if not self._chunks and not self._eof and not self._closed:
                self._reader = self._loop.create_future()
                try:
                    await self._reader
                finally:
                    self._reader = None
            else:
                await self._asyncio.sleep(0)
        if self._closed:
            raise anyio.ClosedResourceError
        if not self._chunks:
            if self._error is not None:
                raise anyio.BrokenResourceError from self._error
            raise anyio.EndOfStream
        self._eager += 1
        chunk = self._chunks.popleft()
        if len(chunk) > max_bytes:
            self._chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._buffered -= len(chunk)
        if self._reading_paused and self._buffered <= self._READ_HIGH_WATER // 2:
            self._reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        transport = self._transport
        if self._error is not None or transport.is_closing():
            if self._closed:
                raise anyio.ClosedResourceError
            raise anyio.BrokenResourceError from self._error
        transport.write(item)
        if self._write_paused or self._error is not None:
            await self._drain()

    async def send_parts(self, parts: list[bytes | memoryview], size: int) -> None:
        """Send the ``size`` bytes of ``parts`` in order, gathered by the
        kernel (``writev``) when the transport has nothing queued (so the
        order holds): no copy into one buffer first. The rest, if the
        socket took only part, is queued in the transport as usual."""
        transport = self._transport
        if self._error is not None or transport.is_closing():
            if self._closed:
                raise anyio.ClosedResourceError
            raise anyio.BrokenResourceError from self._error
        sent = 0
        if self._fd >= 0 and len(parts) <= _IOV_MAX and not transport.get_write_buffer_size():
            try:
                sent = os.writev(self._fd, parts)
            except OSError:  # (BlockingIOError; else the transport finds the error itself)
                sent = 0
        if sent < size:
            transport.write(_rest(parts, sent))
        if self._write_paused or self._error is not None:
            await self._drain()

    async def _drain(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        while self._write_paused and not self._lost_connection:
            self._drainer = self._loop.create_future()
            try:
                await self._drainer
            finally:
                self._drainer = None
            if self._closed:
                raise anyio.ClosedResourceError
        if self._error is not None:
            raise anyio.BrokenResourceError from self._error

    async def send_eof(self) -> None:
        if self._transport.is_closing():
            raise anyio.ClosedResourceError
        try:
            self._transport.write_eof()
        except (OSError, RuntimeError):  # uvloop: RuntimeError on a closed handle
            raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.close()  # unsent bytes are still flushed
            self._lost(None)
        await anyio.lowlevel.checkpoint()


class _AsyncioProtocol:
    """The asyncio protocol behind :class:`_AsyncioStream` (duck-typed: the
    transport only calls these methods)."""

    __slots__ = ("_stream", "data_received")

    def __init__(self, stream: _AsyncioStream) -> None:
        self._stream = stream
        self.data_received = stream._data  # (no call in between: it runs per read)

    def connection_made(self, transport: Any) -> None:  # pragma: no cover - set_protocol
        pass

    def eof_received(self) -> bool:
        self._stream._eof = True
        self._stream._wake_reader()
        return True  # keep the transport open: we may still be writing

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stream._lost(exc)

    def pause_writing(self) -> None:
        self._stream._set_write_paused(True)

    def resume_writing(self) -> None:
        self._stream._set_write_paused(False)


_buffered_class: type[_AsyncioProtocol] | None = None


def _buffered_protocol() -> type[_AsyncioProtocol]:
    """:class:`_AsyncioProtocol` as an ``asyncio.BufferedProtocol``: the
    transport reads into one buffer that every connection shares (each
    read is copied out before the next can start), instead of into a
    fresh bytes object of its ``max_size`` (256 KiB) per read.

    Allocations that large come from ``mmap`` in glibc, and the transport
    shrinks each to the size read (``mremap``) before it is freed
    (``munmap``), so glibc's adaptive threshold, which moves large blocks
    to the heap once one is freed, never learns: three system calls and
    fresh zeroed pages per read. Whether a process was caught depended on
    what it had freed before (a connection closed before any data arrived
    freed a whole 256 KiB block and cured it): WebSocket echo served
    22,000 messages/s or 45,000 by that accident. Built on first use: the
    class must subclass asyncio's, and asyncio is imported lazily here.
    """
    global _buffered_class
    if _buffered_class is None:
        import asyncio

        shared = memoryview(bytearray(_READ_SIZE))  # the one read buffer

        class _BufferedAsyncioProtocol(_AsyncioProtocol, asyncio.BufferedProtocol):
            __slots__ = ()

            def get_buffer(self, sizehint: int) -> memoryview:
                return shared

            def buffer_updated(self, nbytes: int) -> None:
                self._stream._data(shared[:nbytes].tobytes())

        _buffered_class = _BufferedAsyncioProtocol
    return _buffered_class


class _TrioStream(ByteStream):
    """anyio's trio socket stream without a scheduler round trip per call.

    trio's socket methods checkpoint on every call: a send that the kernel
    takes at once still parks the task and runs a whole scheduler batch
    (and an ``epoll_wait``) before it returns, which is most of the cost
    of streaming a body in 64 KiB chunks. Here ``send`` and ``receive``
    call the non-blocking socket directly and wait (``wait_writable``,
    ``wait_readable``) only when it would block. So that a busy connection
    cannot starve the others, every ``_MAX_EAGER`` calls that did not wait
    yield once (a receive that waits counts as that yield for both).
    Errors are anyio's: ``BrokenResourceError`` for the socket's,
    ``ClosedResourceError`` once it was closed.
    """

    _MAX_EAGER = 16  # calls in a row without a checkpoint

    def __init__(self, stream: ByteStream, sock: Any) -> None:
        import trio

        self._stream = stream  # anyio's: its attributes, its close
        self._sock = sock  # the non-blocking socket.socket under it
        self._trio = trio
        self._wait_readable = trio.lowlevel.wait_readable
        self._wait_writable = trio.lowlevel.wait_writable
        self._checkpoint = trio.lowlevel.checkpoint
        self._closed = False
        self._eager_reads = 0
        self._eager_sends = 0
        self._drained = False
        self._interrupted = False  # see interrupt_receive
        self._interrupts = 0  # ... so far: a send's wait that one ended waits again

    @property
    def extra_attributes(self) -> Any:
        return self._stream.extra_attributes

    def _error(self, exc: BaseException) -> BaseException:
        """anyio's exception for a failed socket call."""
        if self._closed or self._sock.fileno() < 0:
            return anyio.ClosedResourceError()
        if isinstance(exc, self._trio.ClosedResourceError):  # closed while waiting
            return anyio.ClosedResourceError()
        return anyio.BrokenResourceError(str(exc))

    def interrupt_receive(self) -> None:
        """End a :meth:`receive` that waits in another task: it raises
        ``anyio.WouldBlock``, having read nothing (the connection lends
        its socket to an application's task and must be able to wake it:
        see ``Connection.read_for``). A send waiting meanwhile waits on.

        trio's ``notify_closing`` wakes the socket's waiters without
        closing it; the flag tells the reader it was not a close."""
        if self._closed or self._sock.fileno() < 0:
            return  # (the close itself ends the receive)
        self._interrupted = True
        self._interrupts += 1
        self._trio.lowlevel.notify_closing(self._sock)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self._interrupted = False  # (set by interrupt_receive while this one waits)
        if self._eager_reads >= self._MAX_EAGER:
            self._eager_reads = 0
            await self._checkpoint()
            if self._interrupted:
                raise anyio.WouldBlock
        sock = self._sock
        wait = self._drained  # the last read emptied the socket's buffer
        while True:
            if wait:
                # A wait yields to the scheduler: the eager calls start
                # over (a connection that alternates reads and sends, as
                # an echo does, then never needs a checkpoint of its own).
                self._eager_reads = self._eager_sends = 0
                try:
                    await self._wait_readable(sock)
                except (OSError, self._trio.ClosedResourceError) as exc:
                    if self._interrupted and not self._closed:
                        raise anyio.WouldBlock from None
                    raise self._error(exc) from exc
                if self._interrupted:  # (readable before the interrupt: read later)
                    raise anyio.WouldBlock
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data: bytes = sock.recv(max_bytes)
            except BlockingIOError:
                wait = True
                continue
            except OSError as exc:
                raise self._error(exc) from exc
            self._eager_reads += 1
            if not data:
                raise anyio.EndOfStream
            # A short read took all there was: the next one waits first
            # rather than trying a read that fails (a syscall and an
            # exception per request or message, on a connection that
            # alternates).
            self._drained = len(data) < max_bytes
            return data

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        sock = self._sock
        try:
            sent = sock.send(item)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._error(exc) from exc
        if sent == len(item):
            self._eager_sends += 1
            if self._eager_sends >= self._MAX_EAGER:
                self._eager_sends = 0
                await self._checkpoint()
            return
        self._eager_sends = 0
        view = memoryview(item)[sent:]
        # A write once begun is finished, cancelled or not: a cancelled
        # send that left part of ``item`` unsent would break the byte
        # stream for every other user of the connection (an HTTP/2 frame
        # cut short by the reset of another stream's call; a TLS record).
        # A peer that stops reading is write_timeout's, and a close ends
        # the wait (ClosedResourceError).
        with self._trio.CancelScope(shield=True):
            while view:
                interrupts = self._interrupts
                try:
                    await self._wait_writable(sock)
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    continue
                except (OSError, self._trio.ClosedResourceError) as exc:
                    if self._interrupts != interrupts and not self._closed:
                        continue  # woken by interrupt_receive: not closed
                    raise self._error(exc) from exc
                if self._closed:
                    raise anyio.ClosedResourceError

    async def send_parts(self, parts: list[bytes | memoryview], size: int) -> None:
        """Send the ``size`` bytes of ``parts`` in order, gathered by the
        kernel (``sendmsg``): no copy into one buffer first; what the
        socket does not take at once goes as :meth:`send` sends."""
        if self._closed:
            raise anyio.ClosedResourceError
        sent = 0
        if len(parts) <= _IOV_MAX:
            try:
                sent = self._sock.sendmsg(parts)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._error(exc) from exc
        if sent < size:
            await self.send(_rest(parts, sent))
            return
        self._eager_sends += 1
        if self._eager_sends >= self._MAX_EAGER:
            self._eager_sends = 0
            await self._checkpoint()

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._error(exc) from exc

    async def aclose(self) -> None:
        self._closed = True
        await self._stream.aclose()  # wakes a task waiting on the socket
