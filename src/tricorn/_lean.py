"""The lean events and byte streams :mod:`tricorn._backend` hands the core.

They run on every request (a stream's send and receive, an event per
request and per message handed to an application), so they live apart
from the rest of ``_backend``, where the compiled build (setup.py) can
compile them: nothing here builds a class at run time or subclasses one
of asyncio's, and nothing imports asyncio or trio (``_backend``, the one
module that names them, does those things, chooses among these and hands
them the modules they drive).
"""

from __future__ import annotations

import os
import select
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream

__all__ = [
    "AsyncioEvent",
    "AsyncioStream",
    "EdgePoller",
    "TrioEvent",
    "TrioStream",
    "bind_trio",
    "rest_of",
]

# asyncio: bytes read ahead before the transport pauses reading, and the
# transport's write buffer before a send waits for it to drain.
READ_HIGH_WATER: Final = 256 * 1024
WRITE_HIGH_WATER: Final = 64 * 1024
_MAX_EAGER_READS: Final = 16  # then yield once: a flooding peer cannot starve the loop
MAX_EAGER: Final = 16  # trio: calls in a row without a checkpoint


_IOV_MAX: Final = 1024  # buffers one writev takes (Linux's UIO_MAXIOV)


def rest_of(parts: list[bytes | memoryview], sent: int) -> bytes:
    """The bytes of ``parts`` after the first ``sent``, in one buffer."""
    if not sent:
        return b"".join(parts)
    for index, part in enumerate(parts):
        if sent < len(part):
            return b"".join([part[sent:], *parts[index + 1 :]])
        sent -= len(part)
    return b""


class LeanEvent:
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

    def _release(self, waiter: Any) -> None:
        raise NotImplementedError


class AsyncioEvent(LeanEvent):
    """``anyio.Event``'s interface (``set``, ``is_set``, ``await wait()``;
    ``wait`` returns what to await, it is not a coroutine function) over bare
    asyncio futures, one per waiter (cancelling a task cancels the future it
    awaits, which must not end the others' waits)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: Any) -> None:
        self._set = False
        self._waiters = None
        # The running loop, given (see _backend.event_class):
        # asyncio.get_running_loop() makes a getpid() system call each time
        # before Python 3.12 (a fork check), and waits are made per request.
        self._loop = loop

    def _release(self, waiter: Any) -> None:
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


# trio's low-level functions, bound by bind_trio() (trio is imported only by
# a trio worker).
_current_task: Any = None
_reschedule: Any = None
_wait_task_rescheduled: Any = None
_checkpoint: Any = None
_succeeded: Any = None
_closed_resource_error: Any = None


def bind_trio(trio: Any) -> None:
    """Look ``trio``'s low-level functions up for :class:`TrioEvent` and
    :class:`EdgePoller`."""
    global _current_task, _reschedule, _wait_task_rescheduled, _checkpoint, _succeeded
    global _closed_resource_error
    lowlevel = trio.lowlevel
    _current_task = lowlevel.current_task
    _reschedule = lowlevel.reschedule
    _wait_task_rescheduled = lowlevel.wait_task_rescheduled
    _checkpoint = lowlevel.checkpoint
    _succeeded = lowlevel.Abort.SUCCEEDED
    _closed_resource_error = trio.ClosedResourceError


# (getattr: the names exist only where epoll does, and only there are they used)
_HANG_UP: Final[int] = (
    getattr(select, "EPOLLHUP", 0)
    | getattr(select, "EPOLLRDHUP", 0)
    | getattr(select, "EPOLLERR", 0)
)


class EdgePoller:
    """Readiness of a trio run's connection sockets, from one epoll set
    they join once (edge-triggered), not from trio's own poller.

    ``trio.lowlevel.wait_readable`` arms a one-shot registration on every
    wait: an ``epoll_ctl`` system call and a dozen Python calls per request
    (per WebSocket message), where asyncio's selector registers a socket
    once. Here each socket is added to a private epoll set when its stream
    is made, edge-triggered, and a task that must wait for its socket parks
    itself. One of the waiting tasks at a time, the leader, waits (through
    trio) for the set itself, polls it when it becomes readable, and wakes
    the tasks whose sockets became readable; an edge nobody waits for is
    kept (``_ready``), so the next wait on that socket returns at once.
    When the leader's own socket is ready it hands the lead to another
    waiting task and returns. So a busy worker makes one ``epoll_ctl`` per
    batch of ready sockets rather than one per read.

    Edge-triggered means a reader that stops before the socket is empty
    hears nothing more until new bytes come. The stream's readers stop
    early only after a short read, which took what there was: bytes that
    come later make a new edge. Not so the peer's close (or an error),
    which can come in the same edge as its last bytes: a socket that hung
    up stays ready for good.

    ``wait_readable`` returns when the socket may be readable, or when
    :meth:`wake` ended the wait (a close or an interrupt: the stream keeps
    its own flags for those). Call :func:`bind_trio` first.
    """

    __slots__ = (
        "_epoll",
        "_fd",
        "_hung_up",
        "_lead_fd",
        "_lead_woken",
        "_leader",
        "_notify_closing",
        "_polling",
        "_ready",
        "_trio_wait_readable",
        "_waiters",
    )

    def __init__(self, trio: Any) -> None:
        self._epoll = select.epoll()
        self._fd = self._epoll.fileno()
        self._waiters: dict[int, Any] = {}  # fd -> the task parked on it
        self._ready: set[int] = set()  # fds with an edge nobody waited for
        # ... and those whose peer hung up (or that failed), which stay in
        # _ready: no edge follows that one, and the reader may not have
        # read up to the end yet (bytes, then the end, came in one edge).
        self._hung_up: set[int] = set()
        self._leader: Any = None  # the task that polls (or is about to)
        self._lead_fd = -1  # ... and its own socket's fd
        self._lead_woken = False  # wake() ended the leader's own wait
        self._polling = False  # the leader waits in trio for the epoll set
        self._trio_wait_readable = trio.lowlevel.wait_readable
        self._notify_closing = trio.lowlevel.notify_closing

    def register(self, fd: int) -> None:
        """Watch ``fd``, a new connection's socket (bytes it holds already
        count: epoll reports a socket readable when it joins)."""
        self._ready.discard(fd)  # (a closed socket's, under the same number)
        self._hung_up.discard(fd)
        try:
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)
        except FileExistsError:  # (... never forgotten)
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd``, before its socket is closed; a wait on it ends."""
        self.wake(fd)
        self._ready.discard(fd)
        self._hung_up.discard(fd)
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def wake(self, fd: int) -> None:
        """End a wait on ``fd`` now (it returns as if readable), if one waits."""
        task = self._waiters.pop(fd, None)
        if task is not None:
            _reschedule(task)
        elif fd == self._lead_fd:
            self._lead_woken = True
            if self._polling:
                self._notify_closing(self._fd)  # ends the leader's wait in trio

    async def wait_readable(self, fd: int) -> None:
        """Wait until ``fd`` may be readable, or :meth:`wake` is called."""
        ready = self._ready
        while True:
            if fd in ready:
                if fd not in self._hung_up:
                    ready.discard(fd)
                return
            task = _current_task()
            if self._leader is None:
                self._leader = task
                self._lead_fd = fd
            else:
                await self._park(fd, task)
                if self._leader is not task:
                    return  # woken: ready, closed or interrupted
                # (else handed the lead: made the leader before it was woken)
            if await self._lead(fd):
                return

    def _park(self, fd: int, task: Any) -> Awaitable[Any]:
        """Park ``task``, the running one, until the leader (or :meth:`wake`)
        wakes it (what to await: trio's wait itself, no coroutine around it)."""
        waiters = self._waiters
        waiters[fd] = task

        def abort(raise_cancel: Any) -> Any:  # cancelled while parked
            if waiters.get(fd) is task:
                del waiters[fd]
            return _succeeded

        return _wait_task_rescheduled(abort)  # type: ignore[no-any-return]

    async def _wait_for_the_set(self) -> bool:
        """Wait in trio until the epoll set is readable (``True``) or
        :meth:`wake` ended the wait (``False``)."""
        self._polling = True
        try:
            await self._trio_wait_readable(self._fd)
        except _closed_resource_error:  # (notify_closing)
            return False
        finally:
            self._polling = False
        return True

    async def _lead(self, fd: int) -> bool:
        """Poll for the waiting tasks until ``fd`` is ready (``True``) or
        woken; then hand the lead on. ``False``: ``fd`` was marked ready
        meanwhile (the caller's loop takes it)."""
        waiters = self._waiters
        ready = self._ready
        poll = self._epoll.poll
        try:
            while not self._lead_woken:
                if fd in ready:
                    return False
                if not await self._wait_for_the_set():
                    continue  # woken (the loop's test ends it)
                mine = False
                for ready_fd, flags in poll(0):
                    if flags & _HANG_UP:
                        self._hung_up.add(ready_fd)
                        ready.add(ready_fd)
                    if ready_fd == fd:
                        mine = True
                        continue
                    task = waiters.pop(ready_fd, None)
                    if task is None:
                        ready.add(ready_fd)
                    else:
                        _reschedule(task)
                if mine:
                    return True
            return True  # woken
        finally:
            self._lead_woken = False
            self._leader = None
            self._lead_fd = -1
            if waiters:  # the next leader: any waiting task
                self._lead_fd, self._leader = waiters.popitem()
                _reschedule(self._leader)


_poller_var: Any = None  # trio.lowlevel.RunVar: each trio run's EdgePoller


def _run_poller(trio: Any) -> EdgePoller | None:
    """The running trio run's :class:`EdgePoller` (made on first use), or
    ``None`` where there is no epoll (trio's own waits serve there)."""
    global _poller_var
    if not hasattr(select, "epoll"):
        return None
    if _poller_var is None:
        _poller_var = trio.lowlevel.RunVar("tricorn_edge_poller")
    poller: EdgePoller | None = _poller_var.get(None)
    if poller is None:
        bind_trio(trio)
        poller = EdgePoller(trio)
        _poller_var.set(poller)
    return poller


class TrioEvent(LeanEvent):
    """``anyio.Event``'s interface at trio's lowest level: a waiter parks
    itself (``wait_task_rescheduled``) and ``set`` reschedules it (a
    cancelled waiter takes itself off the list). Call :func:`bind_trio`
    before the first."""

    __slots__ = ()

    def _release(self, waiter: Any) -> None:
        _reschedule(waiter)

    async def wait(self) -> None:
        if self._set:
            await _checkpoint()  # as anyio's: a wait is a checkpoint
            return
        task = _current_task()
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
            return _succeeded

        await _wait_task_rescheduled(abort)


def _attribute_values(attributes: Mapping[Any, Callable[[], Any]]) -> dict[Any, Any]:
    """The values of typed attributes (those that raise are left out)."""
    values: dict[Any, Any] = {}
    for key, get in attributes.items():
        try:
            values[key] = get()
        except OSError:  # (e.g. the peer's address once it has reset)
            pass
    return values


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


class AsyncioStream(ByteStream):
    """An anyio byte stream driving an asyncio transport directly."""

    # What a reader should ask ``receive`` for: the transport has read each
    # chunk whole already (up to 256 KiB), and asking for less splits it,
    # copying both parts: a 64 KiB POST, whose head and body came in one
    # read, cost a 64 KiB copy (about 15% of the request's instructions).
    # The connection's read loop asks for this much; not for all 256 KiB, so
    # an HTTP/1.1 body chunk queued for an app stays at most 128 KiB
    # (max_app_queue_size counts chunks).
    read_size = 128 * 1024

    def __init__(self, stream: ByteStream, transport: Any, old_protocol: Any, asyncio: Any) -> None:
        self._asyncio = asyncio
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        # The typed attributes' values, read once (they do not change on a
        # connected socket): anyio's getters would keep its stream alive, and
        # with it the protocol this one replaces and that protocol's buffers.
        self._extra = _attribute_values(stream.extra_attributes)
        # (A deque, though an empty one takes a block of 64 slots: a client
        # that trickles single bytes while the app holds off reading can
        # queue tens of thousands of chunks here, which a list would shift
        # one by one as they are taken.)
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
        # (_backend.wrap then gives the transport its protocol, which calls
        # the methods below, and starts it reading)

    @property
    def extra_attributes(self) -> Any:
        return {key: _constant(value) for key, value in self._extra.items()}

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
        if self._buffered > READ_HIGH_WATER and not self._reading_paused:
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
        if not self._chunks or self._eager >= _MAX_EAGER_READS:
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
        if self._reading_paused and self._buffered <= READ_HIGH_WATER // 2:
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
            transport.write(rest_of(parts, sent))
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


class TrioStream(ByteStream):
    """anyio's trio socket stream without a scheduler round trip per call.

    trio's socket methods checkpoint on every call: a send that the kernel
    takes at once still parks the task and runs a whole scheduler batch
    (and an ``epoll_wait``) before it returns, which is most of the cost
    of streaming a body in 64 KiB chunks. Here ``send`` and ``receive``
    call the non-blocking socket directly and wait (``wait_writable``; for
    reads the run's :class:`EdgePoller` where there is epoll, else
    ``wait_readable``) only when it would block. So that a busy connection
    cannot starve the others, every ``_MAX_EAGER`` calls that did not wait
    yield once (a receive that waits counts as that yield for both).
    Errors are anyio's: ``BrokenResourceError`` for the socket's,
    ``ClosedResourceError`` once it was closed.
    """

    def __init__(self, stream: ByteStream, sock: Any, trio: Any) -> None:
        self._stream = stream  # anyio's: its attributes, its close
        self._sock = sock  # the non-blocking socket.socket under it
        self._trio = trio
        self._fd: int = sock.fileno()
        self._poller = _run_poller(trio)  # None: trio's own waits (no epoll here)
        if self._poller is not None:
            self._poller.register(self._fd)
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
        if self._poller is not None:
            self._poller.wake(self._fd)  # (trio's poller does not wait on it)
            return
        self._interrupts += 1
        self._trio.lowlevel.notify_closing(self._sock)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self._interrupted = False  # (set by interrupt_receive while this one waits)
        if self._eager_reads >= MAX_EAGER:
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
                if self._poller is not None:
                    await self._poller.wait_readable(self._fd)  # (a close ends it too)
                else:
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
            if self._eager_sends >= MAX_EAGER:
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
            await self.send(rest_of(parts, sent))
            return
        self._eager_sends += 1
        if self._eager_sends >= MAX_EAGER:
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
        if not self._closed:
            self._closed = True
            if self._poller is not None:
                self._poller.forget(self._fd)  # wakes a task waiting to read
        await self._stream.aclose()  # wakes a task waiting on the socket in trio
