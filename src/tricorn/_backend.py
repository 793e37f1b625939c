"""The one place that names asyncio, uvloop and trio.

Everything else in tricorn is written against anyio; this module picks the
event loop that anyio runs on (``-k asyncio|uvloop|trio``) and provides the
what anyio lacks or makes slow: :func:`sendfile` and :func:`wrap` (a lean
stream on asyncio). The process layer (``workers.py``) hands this module to
the server as its ``io``, so the layers below never name a backend.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketAttribute

from .errors import StartupFailure

__all__ = ["BACKENDS", "clock", "receive_datagrams", "run", "sendfile", "wrap"]

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
    return anyio.run(fn, *args, backend=backend, backend_options=options)


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
    if type(stream).__module__ != "anyio._backends._trio":
        return None
    import trio

    # trio writes straight to the socket: once anyio's send returned, every
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
    import asyncio

    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # not asyncio: trio
        import trio

        return trio.current_time


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
    try:
        import asyncio

        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
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

    done: asyncio.Future[None] = loop.create_future()

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
    buffer is full. Elsewhere ``stream`` is returned unchanged (trio's
    sockets are already thin).
    """
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    if transport is None or protocol is None:
        return stream
    # asyncio's and uvloop's transports (uvloop's do not subclass asyncio's)
    if not hasattr(transport, "set_protocol") or transport.is_closing():
        return stream
    return _AsyncioStream(stream, transport, protocol)


class _AsyncioStream(ByteStream):
    """An anyio byte stream driving an asyncio transport directly."""

    _READ_HIGH_WATER = 256 * 1024
    _WRITE_HIGH_WATER = 64 * 1024
    _MAX_EAGER_READS = 16  # then yield once: a flooding peer cannot starve the loop

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
        transport.set_protocol(_AsyncioProtocol(self))
        transport.set_write_buffer_limits(high=self._WRITE_HIGH_WATER)
        transport.resume_reading()

    @property
    def extra_attributes(self) -> Any:
        return self._extra

    # called by the protocol ------------------------------------------------

    def _data(self, data: bytes) -> None:
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
        if self._closed:
            raise anyio.ClosedResourceError
        if self._error is not None or self._transport.is_closing():
            raise anyio.BrokenResourceError from self._error
        self._transport.write(item)
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

    __slots__ = ("_stream",)

    def __init__(self, stream: _AsyncioStream) -> None:
        self._stream = stream

    def connection_made(self, transport: Any) -> None:  # pragma: no cover - set_protocol
        pass

    def data_received(self, data: bytes) -> None:
        self._stream._data(data)

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
