"""The one place that names asyncio, uvloop and trio.

Everything else in tricorn is written against anyio; this module picks the
event loop that anyio runs on (``-k asyncio|uvloop|trio``) and provides the
what anyio lacks or makes slow: :func:`sendfile` and :func:`wrap` (a lean
stream on asyncio). The process layer (``workers.py``) hands this module to
the server as its ``io``, so the layers below never name a backend.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketAttribute

from ._lean import WRITE_HIGH_WATER, AsyncioEvent, AsyncioStream, TrioEvent, TrioStream, bind_trio
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
    if type(stream) is not TrioStream and type(stream).__module__ != "anyio._backends._trio":
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
    park the task itself (trio): see :mod:`tricorn._lean`."""
    global _bound_event
    loop = _asyncio_loop()
    if loop is None:  # trio
        import trio

        bind_trio(trio)  # (again per connection: five assignments)
        return TrioEvent  # type: ignore[return-value]
    if _bound_event is None or _bound_event.args[0] is not loop:
        _bound_event = functools.partial(AsyncioEvent, loop)
    return _bound_event  # type: ignore[return-value]


_bound_event: functools.partial[AsyncioEvent] | None = None  # for the loop event_class() last saw


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


def wrap(stream: ByteStream) -> ByteStream:
    """A faster stream over the same connection where the loop allows.

    On asyncio (and uvloop) anyio's socket stream yields to the loop on
    every send and pauses and resumes the transport on every receive; the
    replacement keeps the transport reading (bounded by a high-water mark),
    returns buffered bytes at once and awaits only when the transport's
    buffer is full. On trio each send and receive of anyio's stream is a
    round trip through the scheduler, even when the socket is ready; the
    replacement calls the socket directly and waits only when it would
    block (see :class:`tricorn._lean.TrioStream`). Elsewhere ``stream`` is returned
    unchanged.
    """
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    if transport is None or protocol is None:
        if type(stream).__module__ == "anyio._backends._trio":
            sock = getattr(stream, "_raw_socket", None)
            if sock is not None and sock.fileno() >= 0:
                import trio

                return TrioStream(stream, sock, trio)
        return stream
    # asyncio's and uvloop's transports (uvloop's do not subclass asyncio's)
    if not hasattr(transport, "set_protocol") or transport.is_closing():
        return stream
    import asyncio

    wrapped = AsyncioStream(stream, transport, protocol, asyncio)
    if type(transport).__module__.startswith("asyncio."):
        # asyncio's own transports: reads into one shared buffer (see
        # _buffered_protocol); uvloop's read into its own already.
        transport.set_protocol(_buffered_protocol()(wrapped))
    else:
        transport.set_protocol(_AsyncioProtocol(wrapped))
    transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
    transport.resume_reading()
    return wrapped


_READ_SIZE = 256 * 1024  # what asyncio's transports ask recv() for (their max_size)


class _AsyncioProtocol:
    """The asyncio protocol behind :class:`tricorn._lean.AsyncioStream` (duck-typed: the
    transport only calls these methods)."""

    __slots__ = ("_stream", "data_received")

    def __init__(self, stream: AsyncioStream) -> None:
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
        import mmap

        # The one read buffer, an anonymous mapping: its pages are the
        # kernel's zero page until a read fills them, so a server that only
        # ever reads small requests keeps one or two of its 64 resident
        # (a bytearray is zeroed by the allocator: 256 KiB of idle RSS).
        shared = memoryview(mmap.mmap(-1, _READ_SIZE))

        class _BufferedAsyncioProtocol(_AsyncioProtocol, asyncio.BufferedProtocol):
            __slots__ = ()

            def get_buffer(self, sizehint: int) -> memoryview:
                return shared

            def buffer_updated(self, nbytes: int) -> None:
                self._stream._data(shared[:nbytes].tobytes())

        _buffered_class = _BufferedAsyncioProtocol
    return _buffered_class
