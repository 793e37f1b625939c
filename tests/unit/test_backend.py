"""``tricorn._backend``: the lean trio socket stream and the GC tuning."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from tricorn import _backend, _lean


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[ByteStream, SocketStream]]:
    """A wrapped server-side stream and the plain client side."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    (listener,) = multi.listeners
    async with multi:
        port = listener.extra(SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        accepted = await listener.accept()  # type: ignore[attr-defined]
        server = _backend.wrap(accepted)
        try:
            yield server, client
        finally:
            await server.aclose()
            await client.aclose()


@pytest.mark.anyio
async def test_trio_streams_are_wrapped() -> None:
    async with pair() as (server, _client):
        assert type(server) is _lean.TrioStream
        assert server.extra(SocketAttribute.family) == socket.AF_INET


@pytest.mark.anyio
async def test_bulk_send_past_the_socket_buffer() -> None:
    """Sends that block (the peer reads slowly) deliver every byte in order."""
    data = bytes(range(256)) * 40000  # 10 MB: far past the kernel's buffers
    async with pair() as (server, client):
        received = bytearray()

        async def read() -> None:
            while len(received) < len(data):
                received.extend(await client.receive())
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            for start in range(0, len(data), 65536):
                await server.send(data[start : start + 65536])
        assert bytes(received) == data


@pytest.mark.anyio
async def test_a_cancelled_send_still_delivers_all_of_its_bytes() -> None:
    """The caller's cancellation while the socket is full does not cut the
    write short: the bytes after it stay in order (other streams' frames
    share the connection)."""
    data = bytes(range(256)) * 40000  # 10 MB: blocks until the peer reads
    async with pair() as (server, client):
        received = bytearray()

        async def read_later() -> None:
            await anyio.sleep(0.2)  # after the cancellation
            while len(received) < len(data) + 5:
                received.extend(await client.receive())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_later)
                with anyio.move_on_after(0.05) as scope:
                    await server.send(data)  # finishes once the reader reads
                    await anyio.sleep(1)  # (the cancellation lands here)
                assert scope.cancelled_caught
                await server.send(b"after")
        assert bytes(received) == data + b"after"


@pytest.mark.anyio
async def test_send_parts_in_order_past_the_socket_buffer() -> None:
    """Buffers sent gathered (``sendmsg``) arrive in order and whole, also
    when the socket takes only part of them."""
    payload = bytes(range(256)) * 16384  # 4 MiB: past the socket buffer
    view = memoryview(payload)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(payload), 16384):
        parts += [b"HEAD%05d" % start, view[start : start + 16384]]
    expected = b"".join(parts)
    async with pair() as (server, client):
        received = bytearray()

        async def read() -> None:
            while len(received) < len(expected) + 3:
                received.extend(await client.receive())
                await anyio.sleep(0)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await server.send_parts(parts, len(expected))  # type: ignore[attr-defined]
                await server.send(b"end")
        assert bytes(received) == expected + b"end"


@pytest.mark.anyio
async def test_receive_and_end_of_stream() -> None:
    async with pair() as (server, client):
        await client.send(b"hello")
        assert await server.receive() == b"hello"
        await client.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await server.receive()


class _CountingSocket:
    """A socket whose reads that would block are counted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.would_block = 0

    def recv(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except BlockingIOError:
            self.would_block += 1
            raise

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.mark.anyio
async def test_after_a_short_read_the_next_waits_first() -> None:
    """Request, answer, request: once a read took less than it asked for,
    the next waits for the socket before reading (no read that fails
    first); a read that filled its size reads again at once."""
    async with pair() as (server, client):
        counting = _CountingSocket(server._sock)  # type: ignore[attr-defined]
        server._sock = counting  # type: ignore[attr-defined]

        async def send_soon(data: bytes) -> None:
            await anyio.sleep(0.01)
            await client.send(data)

        for _ in range(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_soon, b"ping")
                assert await server.receive() == b"ping"
        assert counting.would_block <= 1  # (the first read knew nothing yet)
        await client.send(b"x" * 10)
        await anyio.sleep(0.01)
        assert await server.receive(4) == b"xxxx"
        assert await server.receive(100) == b"x" * 6  # read at once: no wait


@pytest.mark.anyio
async def test_eager_sends_let_other_tasks_run() -> None:
    """Sends the socket takes at once still yield now and then."""
    ran = 0

    async def other() -> None:
        nonlocal ran
        while True:
            ran += 1
            await anyio.sleep(0)

    async with pair() as (server, client), anyio.create_task_group() as tg:
        tg.start_soon(other)
        await anyio.sleep(0)
        before = ran
        for _ in range(4 * _lean.MAX_EAGER):
            await server.send(b"x")
        assert ran > before
        tg.cancel_scope.cancel()
    del client


@pytest.mark.anyio
async def test_close_wakes_a_waiting_receive() -> None:
    async with pair() as (server, _client):

        async def close_soon() -> None:
            await anyio.sleep(0.05)
            await server.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(close_soon)
            with pytest.raises(anyio.ClosedResourceError):
                await server.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await server.send(b"x")


@pytest.mark.anyio
async def test_an_interrupted_receive_reads_nothing_and_a_waiting_send_goes_on() -> None:
    """``interrupt_receive`` ends a receive that waits in another task with
    ``anyio.WouldBlock`` (nothing read: the next receive gets every byte),
    while a send blocked on the full socket at the same time -- trio wakes
    both -- waits on and delivers all of its bytes."""
    data = bytes(range(256)) * 40000  # 10 MB: blocks until the peer reads
    async with pair() as (server, client):
        trio_stream: Any = server
        received = bytearray()
        outcome: list[BaseException] = []

        async def receive() -> None:
            try:
                await server.receive()
            except anyio.WouldBlock as exc:
                outcome.append(exc)

        async def read_later() -> None:
            await anyio.sleep(0.2)  # after the interrupt
            while len(received) < len(data):
                received.extend(await client.receive())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                tg.start_soon(server.send, data)
                await anyio.wait_all_tasks_blocked()
                trio_stream.interrupt_receive()
                await anyio.wait_all_tasks_blocked()
                assert len(outcome) == 1  # the receive ended; the send waits on
                tg.start_soon(read_later)
            assert bytes(received) == data
            await client.send(b"after")
            assert await server.receive() == b"after"
            trio_stream.interrupt_receive()  # none waits: the next read is not hit
            await client.send(b"more")
            assert await server.receive() == b"more"


@pytest.mark.anyio
async def test_send_to_a_reset_peer_is_broken() -> None:
    async with pair() as (server, client):
        raw: Any = client.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await client.aclose()  # RST

        async def send_until_it_fails() -> None:
            for _ in range(100):
                await server.send(b"x" * 65536)
                await anyio.sleep(0.01)

        with pytest.raises(anyio.BrokenResourceError):
            await send_until_it_fails()


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("gc_state")
def test_gc_tuned_for_serving() -> None:
    gc.set_threshold(700, 10, 10)
    gc.enable()
    _backend._tune_gc()
    assert gc.get_threshold() == (_backend._GC_YOUNG, 0, 0)
    assert gc.get_freeze_count() > 0


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("gc_state")
def test_startup_garbage_is_collected_not_frozen() -> None:
    gc.set_threshold(700, 10, 10)
    gc.enable()
    garbage = _Cycle()
    gone = weakref.ref(garbage)
    del garbage
    _backend._tune_gc()
    assert gone() is None


@pytest.mark.usefixtures("gc_state")
def test_gc_left_alone_when_the_process_chose() -> None:
    gc.set_threshold(50_000, 5, 5)
    _backend._tune_gc()
    assert gc.get_threshold() == (50_000, 5, 5)
    gc.disable()
    gc.set_threshold(700, 10, 10)
    _backend._tune_gc()
    assert gc.get_threshold() == (700, 10, 10)
