"""WebSockets under limits, hostile peers, timers and shutdown, over real
sockets on 127.0.0.1 (HTTP/1.1, and HTTP/2 per RFC 8441 where it is cheap).

The hostile frames are built by hand (:func:`frame`: masked, any opcode,
FIN and RSV1 as given) and written with ``send_raw``; the polite side is
wsproto through :mod:`.wsclient`. Each attack is bounded in time, and a
second client is served while it goes on or right after it.
"""

from __future__ import annotations

import functools
import os
import struct
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest
from hyperframe.frame import Frame, GoAwayFrame
from wsproto.events import BytesMessage, CloseConnection, Pong

from tricorn import _backend
from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.server.serve import serve

from ..conftest import make_config, running_server
from .wsclient import Closed, WSClient, h2_ws_connect, ws_connect

pytestmark = pytest.mark.anyio

Connect = Callable[..., AbstractAsyncContextManager[WSClient]]
TRANSPORTS = [pytest.param(ws_connect, id="h1"), pytest.param(h2_ws_connect, id="h2")]

TEXT, BINARY, CONTINUATION, PING = 0x1, 0x2, 0x0, 0x9
MESSAGE_TOO_BIG, INTERNAL_ERROR, GOING_AWAY, ABNORMAL = 1009, 1011, 1001, 1006
KIB, MIB = 1024, 1024 * 1024


# ---------------------------------------------------------------- frames


def mask(payload: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 masking (an XOR, as one big integer: fast)."""
    size = len(payload)
    if not size:
        return b""
    keys = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(size, "big")


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False, key: bytes = b""
) -> bytes:
    """One masked client frame, as is (no extension touches it)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    key = key or os.urandom(4)
    return head + key + mask(payload, key)


@functools.cache
def deflate_bomb() -> bytes:
    """200 MiB of zeros as one permessage-deflate payload (~200 KB): raw
    deflate, sync-flushed, its 00 00 ff ff tail stripped (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MIB)
    parts = [compressor.compress(zeros) for _ in range(200)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


async def send_bytes(ws: WSClient, data: bytes, on_block: Callable[[], None] | None = None) -> None:
    """Write ``data`` as is; over HTTP/2 in DATA frames as the peer's frame
    size and the stream's window allow (waiting for WINDOW_UPDATE; then
    ``on_block`` is called first)."""
    conn = ws.h2
    if conn is None:
        await ws.send_raw(data)
        return
    view = memoryview(data)
    while view:
        size = min(conn.local_flow_control_window(ws.stream_id), conn.max_outbound_frame_size)
        if size <= 0:
            if on_block is not None:
                on_block()
            await ws._read()  # the server's frames: a WINDOW_UPDATE, we hope
            assert not ws.ended, "the stream ended while we were sending"
            continue
        await ws.send_raw(bytes(view[:size]))
        view = view[size:]


async def answer_pings(ws: WSClient, seconds: float) -> None:
    """Read for ``seconds`` (or until the end), answering every ping (the
    wsproto client only records them)."""
    answered = 0
    with anyio.move_on_after(seconds):
        while not ws.ended:
            await ws._read()
            while answered < len(ws.pings):
                with anyio.CancelScope(shield=True):  # never half a frame
                    await ws.send_raw(ws.ws.send(Pong(ws.pings[answered])))
                answered += 1


def keep_streams_after_goaway(ws: WSClient) -> list[GoAwayFrame]:
    """python-h2 takes a GOAWAY for the connection's end and refuses the
    frames that follow, even on the streams the GOAWAY lets finish (RFC 9113
    §6.8: here the WebSocket's Close 1001). Record GOAWAYs instead."""
    goaways: list[GoAwayFrame] = []
    if ws.h2 is not None:

        def receive(frame: Frame) -> tuple[list[Frame], list[Any]]:
            assert isinstance(frame, GoAwayFrame)
            goaways.append(frame)
            return [], []

        ws.h2._frame_dispatch_table[GoAwayFrame] = receive
    return goaways


async def hang_up(ws: WSClient, timeout: float = 3.0) -> None:
    """Read the connection until the server closes it, then close ours, as
    a polite HTTP/2 client does once its streams are done after a GOAWAY
    (the server waits for that, a bounded while, before closing)."""
    with anyio.fail_after(timeout):
        try:
            while await ws.stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
    await ws.stream.aclose()


async def served(url: str, timeout: float = 2.0) -> float:
    """Another client's WebSocket round trip works; how long it took."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        async with ws_connect(url, "/other") as ws:
            await ws.send("still there?")
            assert await ws.receive() == "still there?"
            await ws.close()
            assert await ws.wait_closed() == Closed(1000)
    return time.monotonic() - start


async def stalled(counter: Callable[[], int], quiet: float = 0.5) -> int:
    """Wait until ``counter()`` stops moving for ``quiet`` seconds (a
    blocked writer has no event to await: only its silence shows)."""
    value = counter()
    while True:
        await anyio.sleep(quiet)
        if counter() == value:
            return value
        value = counter()


# ---------------------------------------------------------------- the app


@dataclass
class Lab:
    """One ASGI app, a route per behaviour; it records what its calls saw.
    ``until`` waits for a condition on that record (woken by each change)."""

    codes: list[int] = field(default_factory=list)  # websocket.disconnect codes
    gate: anyio.Event = field(default_factory=anyio.Event)  # /slow reads once set
    received: list[str | bytes] = field(default_factory=list)  # by /slow
    sending: int = 0  # messages /firehose handed to send()
    sent: int = 0  # ... and send() returned
    send_error: BaseException | None = None  # what /firehose's send() raised
    ended: int = 0  # /firehose calls over
    members: set[ASGISend] = field(default_factory=set)  # /chat
    joins: int = 0  # /chat calls so far
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            while True:
                changed = self._changed
                if predicate():
                    return
                await changed.wait()

    def closed(self, code: int) -> None:
        self.codes.append(code)
        self.notify()

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "websocket":
            return  # (lifespan: unsupported)
        route = getattr(self, "route_" + scope["path"].strip("/"))
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await route(receive, send)

    async def route_echo(self, receive: ASGIReceive, send: ASGISend, record: bool = True) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                if record:
                    self.closed(message["code"])
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    async def route_other(self, receive: ASGIReceive, send: ASGISend) -> None:
        """The echo for :func:`served` (not recorded)."""
        await self.route_echo(receive, send, record=False)

    async def route_hold(self, receive: ASGIReceive, send: ASGISend) -> None:
        """Reads until the end; says nothing."""
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        self.closed(message["code"])

    async def route_linger(self, receive: ASGIReceive, send: ASGISend) -> None:
        """As /hold, then runs on until ``gate``."""
        await self.route_hold(receive, send)
        await self.gate.wait()

    async def route_close(self, receive: ASGIReceive, send: ASGISend) -> None:
        """Closes on the first message (not at once: h2_ws_connect drops
        what comes in the same read as the 200), then runs on until
        ``gate``: the server's close timer, not the call's end, ends the
        transport."""
        await receive()
        await send({"type": "websocket.close", "code": 1000})
        await self.gate.wait()

    async def route_firehose(self, receive: ASGIReceive, send: ASGISend) -> None:
        """64 KiB messages for ever, never reading."""
        chunk = bytes(64 * KIB)
        try:
            while True:
                self.sending += 1
                self.notify()
                await send({"type": "websocket.send", "bytes": chunk})
                self.sent += 1
        except OSError as exc:  # ClientDisconnected
            self.send_error = exc
        finally:
            self.ended += 1
            self.notify()

    async def route_slow(self, receive: ASGIReceive, send: ASGISend) -> None:
        """Reads nothing until ``gate``; then everything, and answers the
        text ``end`` with how many messages came."""
        await self.gate.wait()
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.closed(message["code"])
                return
            data = message["text"] if message.get("text") is not None else message["bytes"]
            self.received.append(data)
            self.notify()
            if data == "end":
                await send({"type": "websocket.send", "text": f"got {len(self.received)}"})

    async def route_chat(self, receive: ASGIReceive, send: ASGISend) -> None:
        """Every text message to every member (as examples/websocket.py)."""
        self.members.add(send)
        self.joins += 1
        self.notify()
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.closed(message["code"])
                    return
                for member in list(self.members):
                    try:
                        await member({"type": "websocket.send", "text": message["text"]})
                    except OSError:  # that member has gone
                        self.members.discard(member)
        finally:
            self.members.discard(send)
            self.notify()


@asynccontextmanager
async def stoppable_server(
    app: Any, **settings: Any
) -> AsyncIterator[tuple[str, anyio.Event, anyio.Event]]:
    """A server, the event that starts its graceful shutdown, and the
    event set once ``serve()`` has returned."""
    config = make_config(**settings)
    stop = anyio.Event()
    finished = anyio.Event()

    async def run(
        *, task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await serve(app, config, shutdown_trigger=stop.wait, io=_backend, task_status=task_status)
        finished.set()

    async with anyio.create_task_group() as tg:
        urls: list[str] = await tg.start(run)
        try:
            yield urls[0], stop, finished
        finally:
            stop.set()


# ---------------------------------------------------------------- 1. message size


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_max_message_size(connect: Connect) -> None:
    lab = Lab()
    with anyio.fail_after(10):
        async with running_server(lab, websocket_max_message_size=1000) as url:
            async with connect(url, "/echo") as ws:
                await ws.send(b"x" * 1000)
                assert await ws.receive() == b"x" * 1000
                await ws.send("é" * 500)  # 1000 bytes of UTF-8: the limit is in bytes
                assert await ws.receive() == "é" * 500
                await ws.send(b"y" * 1001)
                assert await ws.wait_closed() == Closed(MESSAGE_TOO_BIG, "message too big")
                assert await ws.transport_closed()
            await lab.until(lambda: lab.codes == [MESSAGE_TOO_BIG])

            async with connect(url, "/echo") as ws:
                await ws.send("é" * 501)  # 501 characters, 1002 bytes
                assert (await ws.wait_closed()).code == MESSAGE_TOO_BIG
            await lab.until(lambda: lab.codes == [MESSAGE_TOO_BIG] * 2)
            await served(url)


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_max_message_size_counts_fragments(connect: Connect) -> None:
    lab = Lab()
    with anyio.fail_after(10):
        async with running_server(lab, websocket_max_message_size=1000) as url:
            async with connect(url, "/echo") as ws:
                parts = [bytes([65 + i]) * 200 for i in range(5)]
                for i, part in enumerate(parts):  # 5 x 200: exactly the limit
                    last = i == len(parts) - 1
                    await ws.send_raw(ws.ws.send(BytesMessage(part, message_finished=last)))
                assert await ws.receive() == b"".join(parts)
                # 10 x 200 (in one write): too big once the 6th arrives
                fragments = [
                    ws.ws.send(BytesMessage(b"z" * 200, message_finished=i == 9)) for i in range(10)
                ]
                await ws.send_raw(b"".join(fragments))
                assert (await ws.wait_closed()).code == MESSAGE_TOO_BIG
            await lab.until(lambda: lab.codes == [MESSAGE_TOO_BIG])
            await served(url)


# ---------------------------------------------------------------- 2. compression bomb


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_compression_bomb(connect: Connect) -> None:
    """One compressed message of ~200 KB that inflates to 200 MiB: inflation
    stops at the 1 MiB limit (Close 1009), and memory stays small."""
    lab = Lab()
    bomb = frame(BINARY, deflate_bomb(), rsv1=True)
    with anyio.fail_after(15):
        async with running_server(lab, websocket_max_message_size=MIB) as url:
            async with connect(url, "/echo", deflate=True) as ws:
                assert ws.header(b"sec-websocket-extensions") is not None
                await ws.send("small")  # compression works for a polite message
                assert await ws.receive() == "small"
                tracemalloc.start()
                try:
                    start = time.monotonic()
                    await send_bytes(ws, bomb)
                    closed = await ws.wait_closed()
                    elapsed = time.monotonic() - start
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                assert closed.code == MESSAGE_TOO_BIG
                assert elapsed < 3.0, elapsed
                # the whole process: the client's bomb (~0.4 MB, twice) and
                # the server's inflation, bounded by the limit (1 MiB)
                assert peak < 12 * MIB, peak
                print(f"bomb: closed after {elapsed:.3f}s, peak {peak / MIB:.2f} MiB")
            await lab.until(lambda: lab.codes == [MESSAGE_TOO_BIG])
            assert await served(url) < 1.0


# ---------------------------------------------------------------- 3. fragment flood


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_fragment_flood(connect: Connect) -> None:
    """Thousands of 1- and 0-byte continuation frames: the message they make
    is bounded by the limit, and another client is served meanwhile."""
    lab = Lab()
    key = b"\x01\x02\x03\x04"
    one = frame(CONTINUATION, b"x", fin=False, key=key)
    empty = frame(CONTINUATION, fin=False, key=key)
    with anyio.fail_after(20):
        async with running_server(lab, websocket_max_message_size=1000) as url:
            async with connect(url, "/echo") as ws:
                # 1000 bytes in 1000 one-byte fragments with 2000 empty ones
                # between: one message, exactly the limit
                flood = frame(BINARY, b"x", fin=False, key=key) + (one + empty * 2) * 999
                await send_bytes(ws, flood + frame(CONTINUATION, key=key))
                assert await ws.receive() == b"x" * 1000

                # 10,000 empty fragments in batches, while another client is served
                latencies: list[float] = []
                async with anyio.create_task_group() as tg:

                    async def other() -> None:
                        for _ in range(3):
                            latencies.append(await served(url))

                    tg.start_soon(other)
                    await send_bytes(ws, frame(BINARY, b"x", fin=False, key=key))
                    for _ in range(20):
                        await send_bytes(ws, empty * 500)
                        await anyio.lowlevel.checkpoint()
                assert max(latencies) < 1.0, latencies
                # ... then one-byte fragments past the limit
                await send_bytes(ws, one * 1000)
                assert (await ws.wait_closed()).code == MESSAGE_TOO_BIG
            await lab.until(lambda: lab.codes == [MESSAGE_TOO_BIG])
            await served(url)


# ---------------------------------------------------------------- 4. ping flood


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_ping_flood(connect: Connect) -> None:
    lab = Lab()
    count = 10_000
    key = b"\x0a\x0b\x0c\x0d"
    burst = b"".join(frame(PING, i.to_bytes(2, "big"), key=key) for i in range(count))
    with anyio.fail_after(20):
        async with running_server(lab) as url:
            async with connect(url, "/echo") as ws:
                await send_bytes(ws, burst)  # (80 KB: one write over HTTP/1.1)
                assert await served(url) < 1.0  # served while the pongs go out
                await ws.send("after the flood")
                reply = await ws.receive(timeout=10)
                if isinstance(reply, Closed):  # a server may close on a flood, cleanly
                    assert reply.code in (1008, 1011), reply
                else:
                    assert reply == "after the flood"
                    assert ws.pongs == [i.to_bytes(2, "big") for i in range(count)]
                    assert ws.close_code is None
                    await ws.close()
                    assert await ws.wait_closed() == Closed(1000)
            await served(url)


# ---------------------------------------------------------------- 5. a client that never reads


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_client_that_never_reads(connect: Connect) -> None:
    """The app sends 64 KiB messages for ever; the client reads nothing:
    send() blocks (socket buffers over HTTP/1.1; the stream window over
    HTTP/2) and raises once the client has gone."""
    lab = Lab()
    with anyio.fail_after(20):
        async with running_server(lab) as url:
            async with connect(url, "/firehose") as ws:
                await lab.until(lambda: lab.sending > 0)
                sending = await stalled(lambda: lab.sending)
                print(f"never-reading client: send() blocks on message {sending} of 64 KiB")
                assert lab.sent == sending - 1  # one send() is blocked
                if ws.h2 is None:  # socket buffers: a few MiB
                    assert sending * 64 * KIB < 64 * MIB, sending
                else:  # the stream window (64 KiB - 1): not even one message
                    assert sending == 1
                assert lab.ended == 0
                assert await served(url) < 1.0
            # the client has gone (its socket closed): send() raises, the app ends
            await lab.until(lambda: lab.ended == 1)
            assert isinstance(lab.send_error, OSError), lab.send_error
            await served(url)


# ---------------------------------------------------------------- 6. a client faster than the app


async def test_slow_app_h1_stops_reading() -> None:
    """max_app_queue_size=4: the server stops reading a WebSocket whose app
    does not read, so a client's 100 MiB never get through; once the app
    reads, every message arrives, in order."""
    lab = Lab()
    count = 1600  # x 64 KiB = 100 MiB
    sent = 0
    stop = anyio.Event()
    done = False
    with anyio.fail_after(20):
        async with running_server(lab, max_app_queue_size=4) as url:
            async with ws_connect(url, "/slow") as ws:

                async def sender() -> None:
                    nonlocal sent, done
                    for i in range(count):
                        if stop.is_set():
                            break
                        await ws.send_raw(frame(BINARY, i.to_bytes(4, "big") * (16 * KIB)))
                        sent += 1
                    done = True
                    await ws.send("end")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    blocked = await stalled(lambda: sent)
                    assert not done
                    assert blocked < count
                    print(f"slow app (HTTP/1.1): the client got {blocked} x 64 KiB out")
                    assert lab.received == []
                    assert await served(url) < 1.0
                    stop.set()
                    lab.gate.set()
                reply = await ws.receive(timeout=10)
                assert reply == f"got {sent + 1}"
                assert sent in (blocked, blocked + 1)
                expected = [i.to_bytes(4, "big") * (16 * KIB) for i in range(sent)]
                assert lab.received == [*expected, "end"]
                await ws.close()
                assert await ws.wait_closed() == Closed(1000)
            await lab.until(lambda: lab.codes == [1000])


async def test_slow_app_h1_stops_reading_small_messages() -> None:
    """The same with small messages, which asyncio's stream hands over as
    they arrive (no read loop): one per write while the app's queue has
    room, then a flood of them per write; the server stops reading all
    the same, and every message arrives, in order."""
    lab = Lab()
    batch, batches = 1000, 400  # x 64 bytes: ~26 MiB
    sent = 0
    stop = anyio.Event()
    done = False
    with anyio.fail_after(30):
        async with running_server(lab, max_app_queue_size=4) as url:
            async with ws_connect(url, "/slow") as ws:

                async def sender() -> None:
                    nonlocal sent, done
                    for i in range(8):  # one message per write
                        await ws.send_raw(frame(BINARY, i.to_bytes(4, "big") * 16))
                        sent += 1
                        await anyio.sleep(0.01)
                    for _ in range(batches):
                        if stop.is_set():
                            break
                        payloads = [(sent + i).to_bytes(4, "big") * 16 for i in range(batch)]
                        await ws.send_raw(b"".join(frame(BINARY, p) for p in payloads))
                        sent += batch
                    done = True
                    await ws.send("end")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    blocked = await stalled(lambda: sent)
                    assert not done
                    assert lab.received == []
                    assert await served(url) < 1.0
                    stop.set()
                    lab.gate.set()
                reply = await ws.receive(timeout=20)
                assert reply == f"got {sent + 1}"
                assert sent in (blocked, blocked + batch)
                expected = [i.to_bytes(4, "big") * 16 for i in range(sent)]
                assert lab.received == [*expected, "end"]
                await ws.close()
                assert await ws.wait_closed() == Closed(1000)
            await lab.until(lambda: lab.codes == [1000])


async def test_slow_app_h2_stops_crediting() -> None:
    """max_app_queue_size=4 over HTTP/2: the stream's window is no longer
    credited while the app does not read (the client cannot send), and is
    again once it reads; nothing is lost."""
    lab = Lab()
    sent = 0
    blocked = anyio.Event()
    stop = anyio.Event()
    with anyio.fail_after(20):
        async with running_server(lab, max_app_queue_size=4) as url:
            async with h2_ws_connect(url, "/slow") as ws:
                assert ws.h2 is not None
                conn = ws.h2

                async def sender() -> None:
                    nonlocal sent
                    while not stop.is_set():
                        assert sent < 1000, "the window is credited without the app reading"
                        data = frame(BINARY, sent.to_bytes(4, "big") * (4 * KIB))
                        await send_bytes(ws, data, blocked.set)  # waits for the window
                        sent += 1
                    await send_bytes(ws, frame(TEXT, b"end"))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender)
                    await blocked.wait()
                    assert conn.local_flow_control_window(ws.stream_id) == 0
                    before = sent
                    await anyio.sleep(0.5)  # the app still blocks: no credit comes
                    assert conn.local_flow_control_window(ws.stream_id) == 0
                    assert sent == before
                    assert lab.received == []
                    print(f"slow app (HTTP/2): {sent} x 16 KiB before the window closed")
                    # the window (1 MiB), not the app's queue, bounds what is buffered
                    assert 4 <= sent <= (MIB + 8 * 16 * KIB) // (16 * KIB)
                    assert await served(url) < 1.0
                    stop.set()
                    lab.gate.set()
                reply = await ws.receive(timeout=10)
                assert reply == f"got {sent + 1}"
                expected = [i.to_bytes(4, "big") * (4 * KIB) for i in range(sent)]
                assert lab.received == [*expected, "end"]
                await ws.close()
                assert await ws.wait_closed() == Closed(1000)
            await lab.until(lambda: lab.codes == [1000])


# ---------------------------------------------------------------- 7. pings


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_ping_interval_and_timeout(connect: Connect) -> None:
    """Pings every 0.2 s of silence: a client that answers stays; one that
    does not is closed with 1011 after the 0.3 s timeout (the app: 1006)."""
    lab = Lab()
    settings = {"websocket_ping_interval": 0.2, "websocket_ping_timeout": 0.3}
    with anyio.fail_after(10):
        async with running_server(lab, **settings) as url:
            async with connect(url, "/echo") as ws:
                await answer_pings(ws, 1.0)
                assert ws.close_code is None
                assert not ws.ended
                assert len(ws.pings) >= 3, ws.pings  # one per 0.2 s of silence
                assert set(ws.pings) == {b"tricorn"}
                await ws.send("still here")
                assert await ws.receive() == "still here"
                await ws.close()
                assert await ws.wait_closed() == Closed(1000)
            await lab.until(lambda: lab.codes == [1000])

            async with connect(url, "/echo") as ws:
                start = time.monotonic()
                closed = await ws.wait_closed(timeout=3)
                elapsed = time.monotonic() - start
                assert closed == Closed(INTERNAL_ERROR, "ping timeout")
                assert ws.pings == [b"tricorn"]
                assert 0.3 <= elapsed < 1.5, elapsed  # ~0.2 + 0.3
                assert await ws.transport_closed()
            await lab.until(lambda: lab.codes == [1000, ABNORMAL])
            await served(url)


# ---------------------------------------------------------------- 8. close timeout


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_close_timeout(connect: Connect) -> None:
    """The app closes; a client that never answers the Close has its
    transport (HTTP/2: its stream) ended after websocket_close_timeout,
    one that answers at once."""
    lab = Lab()
    with anyio.fail_after(10):
        async with running_server(lab, websocket_close_timeout=0.3) as url:
            async with connect(url, "/close") as ws:
                await ws.send("close, please")
                assert await ws.wait_closed() == Closed(1000)
                start = time.monotonic()
                assert await ws.transport_closed(timeout=3)
                elapsed = time.monotonic() - start
                assert 0.2 <= elapsed < 1.2, elapsed
            await served(url)
            lab.gate.set()
        async with (
            running_server(lab, websocket_close_timeout=30) as url,
            connect(url, "/close") as ws,
        ):
            await ws.send("close, please")
            assert await ws.wait_closed() == Closed(1000)
            await ws.send_raw(ws.ws.send(CloseConnection(1000)))  # the answer
            start = time.monotonic()
            assert await ws.transport_closed(timeout=3)
            assert time.monotonic() - start < 1.0


# ---------------------------------------------------------------- 9. graceful shutdown


async def test_graceful_shutdown_sends_1001() -> None:
    """Shutdown: Close 1001 on every WebSocket (HTTP/1.1 and HTTP/2) at once,
    websocket.disconnect 1001 for the apps, and the server is gone as soon
    as the clients have answered."""
    lab = Lab()
    settings = {"graceful_timeout": 5.0, "websocket_close_timeout": 5.0}
    with anyio.fail_after(10):
        async with (
            stoppable_server(lab, **settings) as (url, stop, finished),
            ws_connect(url, "/hold") as one,
            h2_ws_connect(url, "/hold") as two,
        ):
            goaways = keep_streams_after_goaway(two)
            start = time.monotonic()
            stop.set()
            assert await one.wait_closed() == Closed(GOING_AWAY, "server shutting down")
            assert await two.wait_closed() == Closed(GOING_AWAY, "server shutting down")
            assert time.monotonic() - start < 1.0
            assert [g.error_code for g in goaways] == [0]  # NO_ERROR
            await lab.until(lambda: lab.codes == [GOING_AWAY] * 2)
            assert not finished.is_set()  # it waits for the closing handshakes
            await one.close(GOING_AWAY)
            await two.close(GOING_AWAY)
            answered = time.monotonic()
            assert await one.transport_closed()
            assert await two.transport_closed()  # the stream
            await hang_up(two)  # the connection (after the GOAWAY)
            with anyio.fail_after(2):
                await finished.wait()
            assert time.monotonic() - answered < 1.0


@pytest.mark.parametrize("connect", TRANSPORTS)
async def test_graceful_shutdown_cuts_silent_client(connect: Connect) -> None:
    """A client that never answers the 1001 is cut after the close timeout,
    and the server exits then, long before graceful_timeout."""
    lab = Lab()
    settings = {"graceful_timeout": 5.0, "websocket_close_timeout": 0.3}
    with anyio.fail_after(10):
        async with (
            stoppable_server(lab, **settings) as (url, stop, finished),
            connect(url, "/linger") as ws,
        ):
            keep_streams_after_goaway(ws)
            start = time.monotonic()
            stop.set()
            assert (await ws.wait_closed()).code == GOING_AWAY
            await lab.until(lambda: lab.codes == [GOING_AWAY])
            assert await ws.transport_closed(timeout=3)  # HTTP/2: the stream
            assert 0.2 <= time.monotonic() - start < 1.5
            if ws.h2 is not None:
                await hang_up(ws)
            lab.gate.set()  # the app's call ends
            with anyio.fail_after(2):
                await finished.wait()
            assert time.monotonic() - start < 2.0


# ---------------------------------------------------------------- 10. broadcast


async def test_broadcast() -> None:
    """32 members of a chat room send 20 messages each: every member gets
    all 640, each sender's in order; the server then serves a newcomer."""
    lab = Lab()
    members, each = 32, 20
    everything = sorted(f"{i}:{j}" for i in range(members) for j in range(each))
    got: dict[int, list[str]] = {}
    with anyio.fail_after(30):
        async with running_server(lab) as url:

            async def member(i: int) -> None:
                async with ws_connect(url, "/chat") as ws:
                    await lab.until(lambda: lab.joins == members)
                    got[i] = await chat(ws, i, each, members * each)
                    await ws.close()
                    assert await ws.wait_closed() == Closed(1000)

            async with anyio.create_task_group() as tg:
                for i in range(members):
                    tg.start_soon(member, i)
            assert sorted(got) == list(range(members))
            for messages in got.values():
                assert sorted(messages) == everything
                assert_in_order(messages, members, each)
            await lab.until(lambda: lab.codes == [1000] * members)
            await served(url)


async def test_broadcast_with_members_leaving_abruptly() -> None:
    """Four members drop their connection (no Close) mid-broadcast: the
    others still get every message."""
    lab = Lab()
    stayers, quitters, each = 12, 4, 20
    got: dict[int, list[str]] = {}
    with anyio.fail_after(30):
        async with running_server(lab) as url:

            async def stayer(i: int) -> None:
                async with ws_connect(url, "/chat") as ws:
                    await lab.until(lambda: lab.joins == stayers + quitters)
                    got[i] = await chat(ws, i, each, stayers * each)
                    await ws.close()
                    assert await ws.wait_closed() == Closed(1000)

            async def quitter() -> None:
                async with ws_connect(url, "/chat") as ws:
                    for _ in range(10):
                        assert isinstance(await ws.receive(), str)
                    await anyio.aclose_forcefully(ws.stream)

            async with anyio.create_task_group() as tg:
                for i in range(stayers):
                    tg.start_soon(stayer, i)
                for _ in range(quitters):
                    tg.start_soon(quitter)
            for messages in got.values():
                assert len(messages) == stayers * each
                assert_in_order(messages, stayers, each)
            await lab.until(lambda: len(lab.codes) == stayers + quitters)
            assert sorted(lab.codes) == [1000] * stayers + [ABNORMAL] * quitters
            await served(url)


async def chat(ws: WSClient, i: int, each: int, expected: int) -> list[str]:
    """Send ``each`` messages while reading; the ``expected`` messages read."""
    messages: list[str] = []
    async with anyio.create_task_group() as tg:

        async def sender() -> None:
            for j in range(each):
                await ws.send(f"{i}:{j}")

        tg.start_soon(sender)
        while len(messages) < expected:
            message = await ws.receive(timeout=10)
            assert isinstance(message, str), message
            messages.append(message)
    return messages


def assert_in_order(messages: list[str], senders: int, each: int) -> None:
    for i in range(senders):
        assert [m for m in messages if m.startswith(f"{i}:")] == [f"{i}:{j}" for j in range(each)]
