"""The asyncio side of ``tricorn._backend`` that the WebSocket path leans on:
the lean events (``event_class``: on asyncio, uvloop and trio) and the
stream's receiver hook (``AsyncioStream.set_receiver``), on asyncio and
uvloop."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream

from tricorn import _backend, _lean

pytestmark = pytest.mark.anyio


ASYNCIO_LOOPS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]
# The lean events exist on every loop; the stream's tests are asyncio's.
on_every_loop = pytest.mark.parametrize(
    "anyio_backend", [*ASYNCIO_LOOPS, pytest.param(("trio", {}), id="trio")]
)


@pytest.fixture(params=ASYNCIO_LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param  # type: ignore[no-any-return]


def new_event() -> anyio.Event:
    make = _backend.event_class()
    assert make is not None
    return make()


# ------------------------------------------------------------------ event


async def test_event_waits_without_asking_asyncio_for_the_loop() -> None:
    """Before Python 3.12 ``asyncio.get_running_loop()`` makes a getpid()
    system call: the event class holds its loop instead (a wait per
    request). Started where no loop runs (a worker thread), a wait that
    looked the loop up would fail."""
    make = _backend.event_class()
    assert make is not None
    assert make is _backend.event_class()  # one class per loop
    event = make()

    def start_waiting() -> tuple[Any, Any]:
        steps = event.wait().__await__()
        return steps, next(steps)  # (to the future it waits on)

    steps, future = await anyio.to_thread.run_sync(start_waiting)
    assert not future.done()
    event.set()
    with pytest.raises(StopIteration):
        next(steps)


@on_every_loop
async def test_event_set_before_and_after_wait() -> None:
    event = new_event()
    assert not event.is_set()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woken.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 1)
        tg.start_soon(waiter, 2)
        await anyio.sleep(0.01)
        assert woken == []
        event.set()
        event.set()  # (twice: no harm)
    assert sorted(woken) == [1, 2]
    assert event.is_set()
    with anyio.fail_after(1):
        await event.wait()  # set: returns at once


@on_every_loop
async def test_event_wait_is_a_checkpoint_when_set() -> None:
    event = new_event()
    event.set()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await event.wait()
        pytest.fail("a cancelled wait on a set event returned")  # pragma: no cover


@on_every_loop
async def test_event_cancelled_waiter_leaves_the_others_waiting() -> None:
    """Cancelling one waiter cancels the future it awaits: the others have
    their own and are still woken by set()."""
    event = new_event()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await event.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a")
        with anyio.move_on_after(0.01) as scope:
            await event.wait()
        assert scope.cancelled_caught
        tg.start_soon(waiter, "b")
        with anyio.move_on_after(0.01):
            await event.wait()
        await anyio.sleep(0.01)
        assert woken == []
        event.set()
    assert sorted(woken) == ["a", "b"]


@on_every_loop
async def test_event_repeated_cancelled_waits_do_not_pile_up() -> None:
    event = new_event()
    for _ in range(50):
        with anyio.move_on_after(0.001):
            await event.wait()
    waiters = event._waiters  # type: ignore[attr-defined]
    assert waiters is None or not isinstance(waiters, list) or len(waiters) <= 2

    async def wait() -> None:  # (wait() returns the future to await, not a coroutine)
        await event.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        tg.start_soon(wait)
        await anyio.sleep(0.01)
        event.set()


@on_every_loop
async def test_trio_event_parks_the_task_itself(anyio_backend_name: str) -> None:
    """On trio the lean event is trio's lowest level (no ``trio.Event`` and
    its ``ParkingLot`` under an anyio wrapper): one class for the process."""
    make = _backend.event_class()
    assert make is not None
    assert make is _backend.event_class()
    assert (type(make()).__name__ == "TrioEvent") == (anyio_backend_name == "trio")


# ------------------------------------------------------------------ receiver


@asynccontextmanager
async def wrapped_pair() -> AsyncIterator[tuple[Any, ByteStream]]:
    """A wrapped server-side stream and the client stream connected to it."""
    accepted: list[ByteStream] = []
    ready = anyio.Event()

    async def serve(stream: ByteStream) -> None:
        accepted.append(stream)
        ready.set()
        await anyio.sleep_forever()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            client = await anyio.connect_tcp("127.0.0.1", port)
            await ready.wait()
            server = _backend.wrap(accepted[0])
            assert type(server).__name__ == "AsyncioStream"
            try:
                yield server, client
            finally:
                await client.aclose()
                await server.aclose()
                tg.cancel_scope.cancel()


async def test_receiver_takes_bytes_while_a_receive_waits() -> None:
    async with wrapped_pair() as (server, client):
        seen: list[bytes] = []

        def receiver(data: bytes) -> bool:
            seen.append(data)
            return data != b"decline"

        server.set_receiver(receiver)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                got: list[bytes] = []

                async def reader() -> None:
                    got.append(await server.receive())

                tg.start_soon(reader)
                await anyio.sleep(0.01)
                await client.send(b"taken")
                while not seen:
                    await anyio.sleep(0.001)
                assert seen == [b"taken"]
                assert got == []  # the receive still waits
                await client.send(b"decline")
            assert got == [b"decline"]
            assert seen == [b"taken", b"decline"]


async def test_receiver_is_not_asked_without_a_waiting_receive() -> None:
    """Bytes that arrive while nobody waits are buffered, in order: the
    receiver never jumps ahead of them."""
    async with wrapped_pair() as (server, client):
        seen: list[bytes] = []

        def receiver(data: bytes) -> bool:
            seen.append(data)
            return True

        server.set_receiver(receiver)
        with anyio.fail_after(5):
            await client.send(b"first")
            await anyio.sleep(0.05)  # arrives with no receive() waiting
            assert seen == []
            assert await server.receive() == b"first"
            server.set_receiver(None)
            async with anyio.create_task_group() as tg:
                got: list[bytes] = []

                async def reader() -> None:
                    got.append(await server.receive())

                tg.start_soon(reader)
                await anyio.sleep(0.01)
                await client.send(b"second")
            assert got == [b"second"]
            assert seen == []


# ------------------------------------------------------------------ reads


async def test_small_reads_allocate_no_read_sized_buffer() -> None:
    """asyncio's transport reads into one buffer shared by every connection
    instead of a fresh 256 KiB bytes object per read (which glibc serves
    with mmap, mremap and munmap: three system calls per read, see
    ``_buffered_protocol``). uvloop reads into its own buffer either way."""
    import asyncio
    import tracemalloc

    async with wrapped_pair() as (server, client):
        protocol = server._transport.get_protocol()
        loop = asyncio.get_running_loop()
        if type(loop).__module__.startswith("uvloop"):
            assert not isinstance(protocol, asyncio.BufferedProtocol)
            return
        assert isinstance(protocol, asyncio.BufferedProtocol)
        with anyio.fail_after(5):
            await client.send(b"warm-up")
            assert await server.receive() == b"warm-up"
            tracemalloc.start()
            try:
                for n in range(20):
                    await client.send(b"message %d" % n)
                    assert await server.receive() == b"message %d" % n
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert peak < 64 * 1024  # a fresh read-sized buffer would be 256 KiB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_the_shared_read_buffer_is_resident_only_where_reads_filled_it() -> None:
    """The shared buffer is an anonymous mapping, not a bytearray (which the
    allocator zeroes: 256 KiB resident in every idle worker). Until a read
    fills its pages they are the kernel's zero page. Measured in a fresh
    interpreter, around the first build of the protocol class."""
    script = textwrap.dedent(
        """
        import asyncio, mmap
        from tricorn import _backend

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * mmap.PAGESIZE

        before = rss()
        cls = _backend._buffered_protocol()
        built = rss() - before
        # The buffer as the transport sees it: a byte into each page, as a
        # large read would fill it (no temporary object of its size).
        buffer = cls.get_buffer(None, -1)
        for offset in range(0, len(buffer), mmap.PAGESIZE):
            buffer[offset] = 1
        print(built, rss() - before, len(buffer))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    built, filled, size = (int(n) for n in out)
    assert size == _backend._READ_SIZE
    assert built < 64 * 1024, built  # a zeroed bytearray: 256 KiB
    assert filled >= size - 64 * 1024, filled  # the measure sees the pages once written


async def test_reads_past_the_shared_buffer_arrive_whole_and_in_order() -> None:
    """More than the buffer holds, from two connections at once: every byte
    once, in order, on the right connection."""
    payload = bytes(range(256)) * 4096 * 3  # 3 MiB: many reads of a full buffer
    async with wrapped_pair() as (server, client), wrapped_pair() as (server2, client2):

        async def drain(stream: Any, into: bytearray) -> None:
            while len(into) < len(payload):
                into.extend(await stream.receive())

        got, got2 = bytearray(), bytearray()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, server, got)
                tg.start_soon(drain, server2, got2)
                tg.start_soon(client.send, payload)
                tg.start_soon(client2.send, payload[::-1])
        assert bytes(got) == payload
        assert bytes(got2) == payload[::-1]


async def test_a_read_size_receive_takes_a_chunk_whole() -> None:
    """The transport reads up to 256 KiB at once; a receive for the
    stream's ``read_size`` (what the connection's read loop asks for) hands
    over a chunk of up to 128 KiB as it was read, not split in two copies."""
    payload = bytes(range(256)) * 400  # 100 KiB: more than one 64 KiB receive
    async with wrapped_pair() as (server, client):
        assert server.read_size == 128 * 1024
        with anyio.fail_after(5):
            await client.send(payload)
            while server._buffered < len(payload):
                await anyio.sleep(0.01)
            chunks = list(server._chunks)
            assert max(map(len, chunks)) > 65536  # (the kernel had it all at once)
            got = [await server.receive(server.read_size) for _ in chunks]
        assert all(mine is theirs for mine, theirs in zip(got, chunks, strict=True))  # no copies
        assert b"".join(got) == payload


# ------------------------------------------------------------------ gathered sends


def _parts(data: bytes, size: int) -> list[bytes | memoryview]:
    """``data`` as frame-sized views with a 9-byte head before each."""
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), size):
        parts += [b"HEAD%05d" % start, view[start : start + size]]
    return parts


async def test_send_parts_in_order_past_the_socket_buffer() -> None:
    """Buffers sent gathered arrive in order, whole, also when the socket
    takes only part (the rest waits in the transport) and between plain
    sends."""
    payload = bytes(range(256)) * 4096  # 1 MiB per send_parts: past the socket buffer
    parts = _parts(payload, 16384)
    expected = b"".join(parts)
    async with wrapped_pair() as (server, client):
        received = bytearray()

        async def read() -> None:
            while len(received) < 2 * len(expected) + 6:
                received.extend(await client.receive())
                await anyio.sleep(0)  # a slow reader

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await server.send(b"start:")
                await server.send_parts(parts, len(expected))
                await server.send_parts(parts, len(expected))
        assert bytes(received) == b"start:" + expected + expected


def test_rest_of_parts() -> None:
    parts: list[bytes | memoryview] = [b"abc", memoryview(b"defg"), b"h"]
    assert [_lean.rest_of(parts, n) for n in range(9)] == [
        b"abcdefgh",
        b"bcdefgh",
        b"cdefgh",
        b"defgh",
        b"efgh",
        b"fgh",
        b"gh",
        b"h",
        b"",
    ]
