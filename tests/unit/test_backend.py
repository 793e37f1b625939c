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
async def pairs(n: int) -> AsyncIterator[list[tuple[ByteStream, SocketStream]]]:
    """``n`` wrapped server-side streams and their plain client sides."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    (listener,) = multi.listeners
    made: list[tuple[ByteStream, SocketStream]] = []
    async with multi:
        port = listener.extra(SocketAttribute.local_port)
        try:
            for _ in range(n):
                client = await anyio.connect_tcp("127.0.0.1", port)
                accepted = await listener.accept()  # type: ignore[attr-defined]
                made.append((_backend.wrap(accepted), client))
            yield made
        finally:
            for server, client in made:
                await server.aclose()
                await client.aclose()


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[ByteStream, SocketStream]]:
    """A wrapped server-side stream and the plain client side."""
    async with pairs(1) as (only,):
        yield only


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


def _poller(stream: ByteStream) -> Any:
    poller = stream._poller  # type: ignore[attr-defined]
    if poller is None:
        pytest.skip("no epoll here: trio's own waits")
    return poller


@pytest.mark.anyio
async def test_many_waiting_receives_each_get_their_own_bytes() -> None:
    """Twenty streams wait at once (one of them polls for all); bytes sent
    to them in shuffled order, three rounds, reach each its own reader."""
    import random

    async with pairs(20) as streams:
        got: dict[int, list[bytes]] = {i: [] for i in range(len(streams))}

        async def read(i: int) -> None:
            for _ in range(3):
                got[i].append(await streams[i][0].receive())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(len(streams)):
                    tg.start_soon(read, i)
                for round_ in range(3):
                    await anyio.wait_all_tasks_blocked()
                    order = list(range(len(streams)))
                    random.shuffle(order)
                    for i in order:
                        await streams[i][1].send(b"%d:%d" % (i, round_))
        assert got == {i: [b"%d:%d" % (i, r) for r in range(3)] for i in got}


@pytest.mark.anyio
async def test_one_trio_wait_per_batch_not_per_stream() -> None:
    """The point of the edge poller: twenty streams waiting and woken
    together make a few waits in trio's poller (the leader's, for the
    shared epoll set), not one each as trio's ``wait_readable`` would."""
    async with pairs(20) as streams:
        poller = _poller(streams[0][0])
        calls = 0
        trio_wait = poller._trio_wait_readable

        async def counting(fd: int) -> None:
            nonlocal calls
            calls += 1
            await trio_wait(fd)

        poller._trio_wait_readable = counting
        with anyio.fail_after(10):
            for _ in range(5):
                async with anyio.create_task_group() as tg:
                    for server, _client in streams:
                        tg.start_soon(server.receive)
                    await anyio.wait_all_tasks_blocked()
                    for _server, client in streams:  # (no yield between)
                        client.extra(SocketAttribute.raw_socket).send(b"x")
        assert 5 <= calls <= 10  # (100 with a wait per stream)


@pytest.mark.anyio
@pytest.mark.parametrize("end", ["cancel", "close", "interrupt"])
async def test_the_lead_passes_on_when_the_leader_stops_waiting(end: str) -> None:
    """Whichever way the polling task's wait ends -- cancelled, its stream
    closed, its receive interrupted -- another waiting task takes over
    the polling, and the others' bytes still reach them."""
    async with pairs(4) as streams:
        poller = _poller(streams[0][0])
        got: list[bytes] = []
        ended: list[str] = []
        scopes: list[anyio.CancelScope] = []

        async def read(i: int) -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                try:
                    got.append(await streams[i][0].receive())
                except (anyio.WouldBlock, anyio.ClosedResourceError) as exc:
                    ended.append(type(exc).__name__)
                    return
            if scope.cancelled_caught:
                ended.append("cancelled")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(read, i)
                    await anyio.wait_all_tasks_blocked()
                first = streams[0][0]
                assert poller._leader is not None
                assert poller._lead_fd == first._fd  # type: ignore[attr-defined]
                if end == "cancel":
                    scopes[0].cancel()
                elif end == "close":
                    await first.aclose()
                else:
                    first.interrupt_receive()  # type: ignore[attr-defined]
                await anyio.wait_all_tasks_blocked()
                assert ended == [
                    {"cancel": "cancelled", "close": "ClosedResourceError"}.get(end, "WouldBlock")
                ]
                assert poller._leader is not None
                assert poller._lead_fd != first._fd  # type: ignore[attr-defined]
                for i in range(1, 4):
                    await streams[i][1].send(b"%d" % i)
        assert sorted(got) == [b"1", b"2", b"3"]
        assert poller._leader is None
        assert not poller._waiters


@pytest.mark.anyio
@pytest.mark.parametrize("end", ["close", "interrupt"])
async def test_a_parked_receive_ends_on_close_and_interrupt(end: str) -> None:
    """A receive parked behind the polling task (not the one polling) ends
    at once on its stream's close or interrupt; the others wait on."""
    async with pairs(3) as streams:
        ended: list[str] = []

        async def read(i: int) -> None:
            try:
                await streams[i][0].receive()
            except (anyio.WouldBlock, anyio.ClosedResourceError) as exc:
                ended.append(f"{i}:{type(exc).__name__}")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(read, i)
                    await anyio.wait_all_tasks_blocked()
                last: Any = streams[2][0]
                if end == "close":
                    await last.aclose()
                else:
                    last.interrupt_receive()
                await anyio.wait_all_tasks_blocked()
                assert ended == ["2:ClosedResourceError" if end == "close" else "2:WouldBlock"]
                await streams[0][1].send(b"a")
                await streams[1][1].send(b"b")
        assert len(ended) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("role", ["leader", "parked"])
async def test_bytes_and_the_end_in_one_edge_are_both_read(role: str) -> None:
    """The peer's last bytes and its close can come in one edge; the read
    of the bytes is short, so the next receive waits first, and must not
    wait for an edge that never comes: it gets the end of the stream."""
    async with pairs(2) as streams:
        (server, client), (other, _other_client) = streams
        _poller(server)
        await client.send(b"x")
        assert await server.receive() == b"x"  # a short read: the next one waits first
        got: list[bytes] = []

        async def read_to_the_end() -> None:
            try:
                while True:
                    got.append(await server.receive())
            except anyio.EndOfStream:
                got.append(b"<end>")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                if role == "parked":
                    tg.start_soon(other.receive)  # (the leader: waits first)
                    await anyio.wait_all_tasks_blocked()
                tg.start_soon(read_to_the_end)
                await anyio.wait_all_tasks_blocked()
                raw = client.extra(SocketAttribute.raw_socket)
                raw.send(b"last")
                raw.shutdown(socket.SHUT_WR)  # (no yield between: one edge)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()  # (the other's receive)
        assert got == [b"last", b"<end>"]


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
