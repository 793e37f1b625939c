"""HTTP/2 under hostile peers, flow control, concurrency and the limits, over
real sockets: each attack is bounded in time and frames, and a legitimate
client on another connection is served throughout.

The attackers are hand-built frames (:mod:`.h2client`); the polite clients
that must see flow control obeyed are the ``h2`` library in client mode,
which raises if the server ever sends past a window.
"""

from __future__ import annotations

import hashlib
import random
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from anyio.abc import ByteStream
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tricorn import serve
from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.errors import ClientDisconnected

from ..conftest import make_config, running_server
from .apps import HELLO, hello
from .client import address
from .h2client import ConnectionEnded, H2Conn, h2_connect, headers_frame

pytestmark = pytest.mark.anyio

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB

CONTROL_LIMIT = 50  # h2_max_control_frames in the flood tests
CHUNK = 65536  # what the download app hands to each send()
MAX_FRAME = 16384
DOWNLOAD = random.Random(2023).randbytes(10 * 1024 * 1024)


# ---------------------------------------------------------------- the app


@dataclass
class Lab:
    """One ASGI app with a route per behaviour; it records what its calls
    did: how many ran at once per connection, which were aborted, how many
    bytes the download calls offered and the upload call consumed."""

    release: anyio.Event = field(default_factory=anyio.Event)
    read_gate: anyio.Event = field(default_factory=anyio.Event)
    started: int = 0
    aborted: int = 0  # calls ended by cancellation or ClientDisconnected
    running: dict[Any, int] = field(default_factory=dict)  # per connection
    max_running: int = 0
    offered: dict[str, int] = field(default_factory=dict)  # download key -> bytes
    consumed: int = 0  # upload bytes the app has taken

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        route = getattr(self, "route_" + scope["path"].strip("/").replace("-", "_"), None)
        if route is None:
            await hello(scope, receive, send)
            return
        peer = tuple(scope["client"])
        self.started += 1
        self.running[peer] = self.running.get(peer, 0) + 1
        self.max_running = max(self.max_running, self.running[peer])
        try:
            await route(scope, receive, send)
        except (anyio.get_cancelled_exc_class(), ClientDisconnected):
            self.aborted += 1
            raise
        finally:
            self.running[peer] -= 1

    @property
    def active(self) -> int:
        return sum(self.running.values())

    async def route_block(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await self.release.wait()
        await hello(scope, receive, send)

    async def route_forever(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await anyio.sleep_forever()

    async def route_sleep(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await anyio.sleep(0.5)
        await hello(scope, receive, send)

    async def route_raise_after(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("after the response started (expected by the test)")

    async def route_raise_before(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        raise RuntimeError("before the response started (expected by the test)")

    async def route_download(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        """``?size:key``: the first ``size`` bytes of DOWNLOAD, CHUNK a send."""
        size_text, key = scope["query_string"].decode().split(":")
        size = int(size_text)
        self.offered[key] = 0
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(size).encode())],
            }
        )
        for start in range(0, size, CHUNK):
            body = DOWNLOAD[start : min(start + CHUNK, size)]
            self.offered[key] += len(body)  # handed to send(), maybe not sent yet
            more = start + CHUNK < size
            await send({"type": "http.response.body", "body": body, "more_body": more})

    async def route_stream(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        """Streams small chunks without a pause (bounded, for safety)."""
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(100_000):
            self.offered["stream"] = self.offered.get("stream", 0) + 1
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})

    async def route_upload(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        """Reads nothing until ``read_gate``, then slowly; answers the hash."""
        await self.read_gate.wait()
        digest = hashlib.sha256()
        pause_at = 1024 * 1024
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            body = message["body"]
            digest.update(body)
            self.consumed += len(body)
            if self.consumed >= pause_at:
                pause_at += 1024 * 1024
                await anyio.sleep(0.03)  # a slow reader
            if not message.get("more_body"):
                break
        answer = digest.hexdigest().encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})


# ---------------------------------------------------------------- helpers


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


@dataclass
class Result:
    status: int = 0
    body: bytes = b""
    reset: int | None = None
    ended_at: float = 0.0


async def collect(conn: H2Conn, stream_ids: set[int], timeout: float = 5.0) -> dict[int, Result]:
    """Read until every stream in ``stream_ids`` ended (END_STREAM or
    RST_STREAM), crediting the windows as DATA arrives."""
    results = {stream_id: Result() for stream_id in stream_ids}
    left = set(stream_ids)
    with anyio.fail_after(timeout):
        while left:
            frame = await conn.receive(timeout)
            result = results.get(frame.stream_id)
            if result is None or frame.stream_id not in left:
                continue
            if isinstance(frame, HeadersFrame):
                for name, value in conn.decode(frame):
                    if name == b":status" and not value.startswith(b"1"):
                        result.status = int(value)
            elif isinstance(frame, DataFrame):
                result.body += frame.data
                size = frame.flow_controlled_length
                if size:
                    credit: list[Frame | bytes] = [WindowUpdateFrame(0, window_increment=size)]
                    if "END_STREAM" not in frame.flags:
                        credit.append(WindowUpdateFrame(frame.stream_id, window_increment=size))
                    try:
                        await conn.send(*credit)
                    except (anyio.BrokenResourceError, OSError):
                        pass  # the server closed after its last stream: fine
            elif isinstance(frame, RstStreamFrame):
                result.reset = frame.error_code
            else:
                continue
            if isinstance(frame, RstStreamFrame) or "END_STREAM" in frame.flags:
                result.ended_at = time.monotonic()
                left.discard(frame.stream_id)
    return results


async def collect_heads(conn: H2Conn, stream_ids: set[int]) -> dict[int, int]:
    """Read until every stream in ``stream_ids`` has its response head; the
    statuses."""
    statuses: dict[int, int] = {}
    with anyio.fail_after(5):
        while len(statuses) < len(stream_ids):
            frame = await conn.expect(HeadersFrame)
            if frame.stream_id in stream_ids:
                for name, value in conn.decode(frame):
                    if name == b":status":
                        statuses[frame.stream_id] = int(value)
    return statuses


async def request(conn: H2Conn, stream_id: int, path: str = "/") -> None:
    await conn.send(headers_frame(stream_id, conn.request_headers(path)))


async def get(conn: H2Conn, stream_id: int, path: str = "/", timeout: float = 5.0) -> Result:
    await request(conn, stream_id, path)
    return (await collect(conn, {stream_id}, timeout))[stream_id]


async def ping(conn: H2Conn, timeout: float = 3.0) -> None:
    """PING and wait for its ACK: the connection is alive and being read."""
    opaque = random.randbytes(8)
    await conn.send(PingFrame(0, opaque_data=opaque))
    with anyio.fail_after(timeout):
        while True:
            frame = await conn.expect(PingFrame, timeout)
            if "ACK" in frame.flags and frame.opaque_data == opaque:
                return


async def served(url: str, requests: int = 3) -> None:
    """A legitimate client on its own connection gets its responses."""
    async with h2_connect(url) as conn:
        for index in range(requests):
            result = await get(conn, 2 * index + 1, "/", timeout=3)
            assert result.status == 200
            assert result.body == HELLO


async def goaway_or_close(conn: H2Conn, timeout: float = 5.0) -> GoAwayFrame:
    """The GOAWAY the server sends before closing (never a bare close)."""
    goaway = await conn.closed_or_goaway(timeout)
    assert goaway is not None, "the server closed the connection without GOAWAY"
    return goaway


# ---------------------------------------------------------------- 1. rapid reset


async def test_rapid_reset() -> None:
    lab = Lab()
    max_streams = 10
    async with running_server(
        lab, h2_max_concurrent_streams=max_streams, h2_max_control_frames=CONTROL_LIMIT
    ) as url:
        async with h2_connect(url) as attacker:
            # One at a time: a reset call is cancelled at once.
            for stream_id in (1, 3, 5):
                await request(attacker, stream_id, "/forever")
                await until(lambda: lab.active == 1)
                reset_at = time.monotonic()
                await attacker.send(RstStreamFrame(stream_id, error_code=CANCEL))
                await until(lambda: lab.active == 0, timeout=1)
                assert time.monotonic() - reset_at < 0.5
            assert lab.aborted == lab.started == 3
            await ping(attacker)  # below the limit: the connection goes on

            # The flood, in bursts of 10 HEADERS + RST_STREAM pairs, each
            # burst one write followed by a PING whose ACK paces the next
            # (so the GOAWAY is not lost to a reset by a server closing a
            # socket with unread input), while a legitimate client is
            # served on the side.
            burst = 10
            stream_id = 7
            goaway: GoAwayFrame | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(served, url, 5)
                with anyio.fail_after(10):
                    for _ in range(100):
                        frames: list[Frame | bytes] = []
                        for _ in range(burst):
                            block = attacker.request_headers("/forever")
                            frames.append(headers_frame(stream_id, block))
                            frames.append(RstStreamFrame(stream_id, error_code=CANCEL))
                            stream_id += 2
                        frames.append(PingFrame(0, opaque_data=b"pace-me!"))
                        await attacker.send(*frames)
                        frame = await attacker.receive()
                        while not isinstance(frame, GoAwayFrame | PingFrame):
                            frame = await attacker.receive()
                        if isinstance(frame, GoAwayFrame):
                            goaway = frame
                            break
            assert goaway is not None, "no GOAWAY after the flood"
            assert goaway.error_code == ENHANCE_YOUR_CALM
            # Streams the server took before it gave up: about the limit
            # (each RST_STREAM and PING counts), not what an attacker sends.
            processed = (goaway.last_stream_id + 1) // 2
            assert processed <= CONTROL_LIMIT + burst, processed
            with pytest.raises(ConnectionEnded):
                await attacker.receive()

        # Unpaced: pairs as fast as the socket takes them. The server reads
        # a bounded amount before it closes (the GOAWAY may be lost to the
        # reset); the calls never exceed the limit.
        async with anyio.create_task_group() as tg, h2_connect(url) as attacker:
            tg.start_soon(served, url, 5)
            sent = 0
            stream_id = 1
            with anyio.fail_after(10):
                while sent < 1_000_000 and not attacker.closed:
                    frames = []
                    for _ in range(100):
                        block = attacker.request_headers("/forever")
                        frames.append(headers_frame(stream_id, block))
                        frames.append(RstStreamFrame(stream_id, error_code=CANCEL))
                        stream_id += 2
                    try:
                        await attacker.send(*frames)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        break
                    sent += 100
                    await anyio.sleep(0)
                goaway = await attacker.closed_or_goaway()
            assert goaway is None or goaway.error_code == ENHANCE_YOUR_CALM
            assert sent < 200_000, sent
        await until(lambda: lab.active == 0, timeout=2)
        assert lab.max_running <= max_streams
        assert lab.aborted == lab.started
        await served(url)


# ---------------------------------------------------------------- 2. CONTINUATION flood


async def test_continuation_flood() -> None:
    async with running_server(Lab(), h2_max_control_frames=CONTROL_LIMIT) as url:
        # 60 CONTINUATION frames carrying a valid header block: served.
        async with h2_connect(url) as conn:
            block = conn.request_headers("/")
            pieces = [block[i : i + 1] for i in range(len(block))]
            assert len(pieces) < 60
            pieces += [b""] * (60 - len(pieces))
            await conn.send(
                HeadersFrame(1, data=b"", flags=["END_STREAM"]),
                *(ContinuationFrame(1, data=piece) for piece in pieces[:-1]),
                ContinuationFrame(1, data=pieces[-1], flags=["END_HEADERS"]),
            )
            result = (await collect(conn, {1}))[1]
            assert result.status == 200

        # Past 64 CONTINUATION frames: GOAWAY, at once. (One write: the server
        # has read all of it when it closes, so the GOAWAY is not lost.)
        filler = ContinuationFrame(3, data=b"\x40\x01x\x01y")  # x: y, literal
        async with anyio.create_task_group() as tg, h2_connect(url) as conn:
            tg.start_soon(served, url)
            await conn.send(HeadersFrame(3, data=conn.request_headers("/")), *[filler] * 70)
            goaway = await goaway_or_close(conn)
            assert goaway.error_code in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM)
            with pytest.raises(ConnectionEnded):
                await conn.receive()

        # Endless CONTINUATION frames: the connection ends within a bounded
        # count (the GOAWAY may be lost to the reset of a closed socket).
        async with anyio.create_task_group() as tg, h2_connect(url) as conn:
            tg.start_soon(served, url)
            await conn.send(HeadersFrame(3, data=conn.request_headers("/")))
            sent = 0
            with anyio.fail_after(10):
                while sent < 10_000_000:
                    try:
                        await conn.send(*[filler] * 256)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        break
                    sent += 256
                    await anyio.sleep(0)
            assert sent < 1_000_000, sent
            last = await conn.closed_or_goaway()
            assert last is None or last.error_code == PROTOCOL_ERROR


# ---------------------------------------------------------------- 3. HPACK bomb


async def test_hpack_bomb() -> None:
    limit = 16384
    async with running_server(Lab(), h2_max_header_list_size=limit) as url:
        async with h2_connect(url) as conn:
            assert conn.server_settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == limit
            # One 4000-byte header into the dynamic table, then 10 000
            # one-byte references to it: 40 MB decoded from ~14 KB.
            block = conn.encode(
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", conn.authority),
                    ("x-bomb", "b" * 4000),
                ]
            )
            index = 62  # the newest dynamic table entry
            bomb = block + bytes([0x80 | index]) * 10_000
            frames: list[Frame | bytes] = []
            for offset in range(0, len(bomb), MAX_FRAME):
                piece = bomb[offset : offset + MAX_FRAME]
                flags = ["END_STREAM"] if offset == 0 else []
                if offset + MAX_FRAME >= len(bomb):
                    flags.append("END_HEADERS")
                kind = HeadersFrame if offset == 0 else ContinuationFrame
                frames.append(kind(1, data=piece, flags=flags))
            tracemalloc.start()
            try:
                await conn.send(*frames)
                goaway = await goaway_or_close(conn)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert goaway.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)
            assert peak < 4 * 1024 * 1024, peak  # the whole test process
        await served(url)


# ---------------------------------------------------------------- 4. floods


def _flood_frames(kind: str, count: int, start: int) -> list[Frame | bytes]:
    """``count`` frames of one flood; stream 1 is open (its request body
    too; the app never answers it) and stream 3 was reset by the client."""
    frames: list[Frame | bytes] = []
    for i in range(start, start + count):
        if kind == "ping":
            frames.append(PingFrame(0, opaque_data=i.to_bytes(8, "big")))
        elif kind == "settings":
            frames.append(SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}))
        elif kind == "empty-data":
            frames.append(DataFrame(1, data=b""))
        elif kind == "rst-closed":
            frames.append(RstStreamFrame(3, error_code=CANCEL))
        elif kind == "window-update-closed":
            frames.append(WindowUpdateFrame(3, window_increment=1))
        elif kind == "priority":
            # idle streams, with dependency loops among them
            stream_id = 101 + 2 * (i % 50)
            depends_on = 101 + 2 * ((i + 1) % 50)
            frames.append(PriorityFrame(stream_id, depends_on=depends_on, stream_weight=i % 256))
        else:
            raise AssertionError(kind)
    return frames


@pytest.mark.parametrize(
    "kind",
    ["ping", "settings", "empty-data", "rst-closed", "window-update-closed", "priority"],
)
async def test_control_frame_flood(kind: str) -> None:
    lab = Lab()
    async with (
        running_server(lab, h2_max_control_frames=CONTROL_LIMIT) as url,
        h2_connect(url) as conn,
    ):
        await conn.send(headers_frame(1, conn.request_headers("/forever"), end_stream=False))
        await request(conn, 3, "/forever")
        await until(lambda: lab.active == 2)
        await conn.send(RstStreamFrame(3, error_code=CANCEL))
        await until(lambda: lab.active == 1)
        assert (await get(conn, 5, "/")).status == 200
        # Below the limit the connection keeps working.
        await conn.send(*_flood_frames(kind, CONTROL_LIMIT // 2, 0))
        await ping(conn)
        assert (await get(conn, 7, "/")).status == 200
        # Past it: GOAWAY(ENHANCE_YOUR_CALM), whatever the frames.
        async with anyio.create_task_group() as tg:
            tg.start_soon(served, url)
            await conn.send(*_flood_frames(kind, 4 * CONTROL_LIMIT, 1000))
            goaway = await goaway_or_close(conn)
        assert goaway.error_code == ENHANCE_YOUR_CALM
        await until(lambda: lab.active == 0)


async def test_control_frames_below_the_rate_never_end_the_connection() -> None:
    """The limit is per second: a client that pings a lot, but below it
    every second, keeps its connection however many it sends in all."""
    async with (
        running_server(Lab(), h2_max_control_frames=CONTROL_LIMIT) as url,
        h2_connect(url) as conn,
    ):
        for turn in range(4):  # ~21 frames every 0.55 s: 84 in all
            if turn:
                await anyio.sleep(0.55)
            await conn.send(*_flood_frames("ping", 20, 100 * turn))
            await ping(conn)
        assert (await get(conn, 1, "/")).status == 200


async def test_priority_self_dependency_and_loops_never_crash_the_connection() -> None:
    async with running_server(Lab()) as url:
        # A dependency loop among streams, then requests that depend on each
        # other and on idle streams: all ignored.
        async with h2_connect(url) as conn:
            await conn.send(
                PriorityFrame(3, depends_on=5, stream_weight=10),
                PriorityFrame(5, depends_on=7, stream_weight=10, exclusive=True),
                PriorityFrame(7, depends_on=3, stream_weight=10),
            )
            block = conn.request_headers("/")
            frame = headers_frame(1, block)
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight, frame.exclusive = 9, 200, True
            await conn.send(frame)
            assert (await collect(conn, {1}))[1].status == 200
            await ping(conn)
        # A stream that depends on itself: a stream or connection error,
        # properly sent, never a crash.
        for use_headers in (False, True):
            async with h2_connect(url) as conn:
                if use_headers:
                    frame = headers_frame(1, conn.request_headers("/"))
                    frame.flags.add("PRIORITY")
                    frame.depends_on, frame.stream_weight = 1, 16
                    await conn.send(frame)
                else:
                    await conn.send(PriorityFrame(1, depends_on=1, stream_weight=16))
                goaway: GoAwayFrame | None = None
                try:
                    with anyio.fail_after(3):
                        while True:
                            reply = await conn.receive()
                            if isinstance(reply, GoAwayFrame):
                                goaway = reply
                                break
                            if isinstance(reply, RstStreamFrame) and reply.stream_id == 1:
                                assert reply.error_code == PROTOCOL_ERROR
                                await ping(conn)
                                break
                except ConnectionEnded:
                    raise AssertionError("closed without GOAWAY") from None
                if goaway is not None:
                    assert goaway.error_code == PROTOCOL_ERROR
        await served(url)


# ---------------------------------------------------------------- 5. stream limit


async def test_streams_past_the_limit_are_refused() -> None:
    lab = Lab()
    limit = 5
    async with (
        running_server(lab, h2_max_concurrent_streams=limit) as url,
        h2_connect(url) as conn,
    ):
        assert conn.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == limit
        ids = [2 * i + 1 for i in range(limit + 5)]
        for stream_id in ids:
            await request(conn, stream_id, "/block")
        refused = await collect(conn, set(ids[limit:]))
        assert {r.reset for r in refused.values()} == {REFUSED_STREAM}
        await until(lambda: lab.started == limit)
        await ping(conn)
        assert lab.active == limit
        lab.release.set()
        done = await collect(conn, set(ids[:limit]))
        assert all(r.status == 200 and r.body == HELLO for r in done.values())
        assert lab.max_running == limit
        # the connection survives, and refused streams may be retried
        assert (await get(conn, ids[-1] + 2, "/block")).status == 200


# ---------------------------------------------------------------- 6. zero window


async def test_zero_window_slow_read() -> None:
    lab = Lab()
    streams = 10
    size = 1024 * 1024
    async with (
        running_server(lab) as url,
        h2_connect(url, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as conn,
    ):
        ids = [2 * i + 1 for i in range(streams)]
        for stream_id in ids:
            await request(conn, stream_id, f"/download?{size}:{stream_id}")
        heads = await collect_heads(conn, set(ids))
        assert set(heads.values()) == {200}
        await until(lambda: len(lab.offered) == streams)
        await anyio.sleep(0.3)
        # Each call's send() blocks on its first chunk: that one chunk per
        # stream is what the server holds for this peer.
        assert all(offered <= CHUNK for offered in lab.offered.values()), lab.offered
        assert lab.active == streams
        await ping(conn)
        await served(url)
        assert sum(lab.offered.values()) <= streams * CHUNK
        # A reset ends a call blocked in send() at once (and drops its chunk):
        # its next send() raises, or it is cancelled at its next checkpoint.
        gone = ids.pop()
        await conn.send(RstStreamFrame(gone, error_code=CANCEL))
        await until(lambda: lab.aborted == 1, timeout=0.5)
        # Open the windows: every response arrives intact.
        await conn.send(
            WindowUpdateFrame(0, window_increment=streams * size),
            *(WindowUpdateFrame(stream_id, window_increment=size) for stream_id in ids),
        )
        results = await collect(conn, set(ids), timeout=10)
        assert lab.aborted == 1
        for result in results.values():
            assert result.body == DOWNLOAD[:size]


async def test_reset_ends_an_app_streaming_to_a_blocked_window_at_once() -> None:
    """Sends to a reset stream go nowhere without a checkpoint: an app that
    streams in a loop must still end at once, not spin holding the loop."""
    lab = Lab()
    async with (
        running_server(lab) as url,
        h2_connect(url, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as conn,
    ):
        await request(conn, 1, "/stream")
        await collect_heads(conn, {1})
        await until(lambda: lab.offered.get("stream") == 1)
        await anyio.sleep(0.1)
        assert lab.offered["stream"] == 1  # blocked on the closed window
        await conn.send(RstStreamFrame(1, error_code=CANCEL))
        await until(lambda: lab.aborted == 1, timeout=0.5)
        assert lab.offered["stream"] <= 3
        await ping(conn)
        await request(conn, 3, "/")
        assert await collect_heads(conn, {3}) == {3: 200}  # (its body waits for a window)


# ---------------------------------------------------------------- 7. flow control


class LibClient:
    """The ``h2`` library as a client; a reader task feeds it and signals
    ``changed`` whenever something arrived. ``credit_step``: return
    received data to the server's windows in WINDOW_UPDATEs of this size
    (slowly), instead of h2's own window management."""

    def __init__(
        self, stream: ByteStream, authority: str, initial_window: int | None = None
    ) -> None:
        self.authority = authority
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        if initial_window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True,
                initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window},
            )
        self.conn.initiate_connection()
        self.stream = stream
        self.lock = anyio.Lock()
        self.changed = anyio.Event()
        self.status: dict[int, int] = {}
        self.bodies: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.credit_step: int | None = None
        self.received = 0
        self.settings_received = False

    async def flush(self) -> None:
        async with self.lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send(data)

    async def read_loop(self) -> None:
        while True:
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            for event in self.conn.receive_data(data):
                await self._on(event)
            await self.flush()
            self.changed.set()
            self.changed = anyio.Event()

    async def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            assert event.stream_id is not None
            assert event.headers is not None
            headers = dict(event.headers)
            self.status[event.stream_id] = int(headers[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            assert event.data is not None
            self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
            flow = event.flow_controlled_length or 0
            before = self.received
            self.received += flow
            if self.credit_step is None:
                self.conn.acknowledge_received_data(flow, event.stream_id)
                return
            for offset in range(0, flow, self.credit_step):
                step = min(self.credit_step, flow - offset)
                self.conn.increment_flow_control_window(step)
                if event.stream_id not in self.ended and not event.stream_ended:
                    self.conn.increment_flow_control_window(step, event.stream_id)
            if self.received // (1024 * 1024) != before // (1024 * 1024):
                await anyio.sleep(0.02)  # a slow reader
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            self.ended.add(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received = True
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            assert event.error_code is not None
            self.resets[event.stream_id] = event.error_code
            self.ended.add(event.stream_id)

    async def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                await self.changed.wait()

    def headers(self, path: str, method: str = "GET") -> list[tuple[bytes, bytes]]:
        return [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", self.authority.encode()),
        ]


@asynccontextmanager
async def lib_client(url: str, initial_window: int | None = None) -> AsyncIterator[LibClient]:
    host, port = address(url)
    async with await anyio.connect_tcp(host, port) as stream, anyio.create_task_group() as tg:
        client = LibClient(stream, f"{host}:{port}", initial_window)
        await client.flush()
        tg.start_soon(client.read_loop)
        await client.wait(lambda: client.settings_received)
        yield client
        tg.cancel_scope.cancel()


async def test_upload_is_held_back_by_the_windows_until_the_app_reads() -> None:
    lab = Lab()
    initial, connection = 256 * 1024, 512 * 1024
    body = random.Random(9517).randbytes(10 * 1024 * 1024)
    async with (
        running_server(
            lab, h2_initial_window_size=initial, h2_connection_window_size=connection
        ) as url,
        lib_client(url) as client,
    ):
        conn = client.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, client.headers("/upload", "POST"))
        sent = 0
        ahead = 0  # most bytes ever sent and not yet consumed by the app

        async def send_some() -> None:
            nonlocal sent, ahead
            window = conn.local_flow_control_window(stream_id)
            while window > 0 and sent < len(body):
                size = min(window, conn.max_outbound_frame_size, len(body) - sent)
                conn.send_data(stream_id, body[sent : sent + size])
                sent += size
                window -= size
                ahead = max(ahead, sent - lab.consumed)
            if sent == len(body):
                conn.end_stream(stream_id)
            await client.flush()

        # Before the app reads: exactly one stream window gets through.
        with anyio.fail_after(5):
            while sent < initial:
                await send_some()
                if sent < initial:
                    await client.changed.wait()
        await anyio.sleep(0.3)
        await send_some()
        assert sent == initial
        assert conn.local_flow_control_window(stream_id) == 0
        assert lab.consumed == 0

        lab.read_gate.set()
        with anyio.fail_after(20):
            while sent < len(body):
                changed = client.changed
                await send_some()
                if sent < len(body):
                    await changed.wait()
        await client.wait(lambda: stream_id in client.ended, timeout=20)
        assert client.status[stream_id] == 200
        assert bytes(client.bodies[stream_id]) == hashlib.sha256(body).hexdigest().encode()
        # The server never held more than the stream's window (plus the
        # frame the app was taking when the client looked).
        assert ahead <= initial + MAX_FRAME, ahead


async def test_download_to_a_client_that_opens_its_window_slowly() -> None:
    lab = Lab()
    size = len(DOWNLOAD)
    async with running_server(lab) as url, lib_client(url, initial_window=16384) as client:
        client.credit_step = 4096  # WINDOW_UPDATEs of 4 KiB
        conn = client.conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, client.headers(f"/download?{size}:big"), end_stream=True)
        await client.flush()
        await client.wait(lambda: stream_id in client.ended, timeout=30)
        assert stream_id not in client.resets
        assert client.status[stream_id] == 200
        assert hashlib.sha256(client.bodies[stream_id]).digest() == (
            hashlib.sha256(DOWNLOAD).digest()
        )


# ---------------------------------------------------------------- 8. concurrency


async def test_streams_run_concurrently_and_fail_alone() -> None:
    lab = Lab()
    async with running_server(lab) as url, h2_connect(url) as conn:
        sleepers = [2 * i + 1 for i in range(20)]
        started = time.monotonic()
        for stream_id in sleepers:
            await request(conn, stream_id, "/sleep")
        await request(conn, 41, "/raise-after")
        await request(conn, 43, "/raise-before")
        results = await collect(conn, {*sleepers, 41, 43})
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, elapsed
        assert all(results[i].status == 200 and results[i].body == HELLO for i in sleepers)
        assert results[41].reset == INTERNAL_ERROR
        # at once, not when the call's connection or the sleepers end
        assert results[41].ended_at < min(results[i].ended_at for i in sleepers)
        assert results[41].ended_at - started < 0.4
        assert results[43].status == 500
        assert results[43].reset is None
        await ping(conn)


# ---------------------------------------------------------------- 9. keep-alive limits


async def test_keep_alive_max_requests_counts_streams() -> None:
    lab = Lab()
    async with (
        running_server(lab, keep_alive_max_requests=3) as url,
        h2_connect(url) as conn,
    ):
        for stream_id in (1, 3, 5):
            await request(conn, stream_id, "/block")
        goaway = await conn.expect(GoAwayFrame)
        assert goaway.error_code == NO_ERROR
        assert goaway.last_stream_id == 5
        await request(conn, 7, "/")  # past GOAWAY: refused
        refused = await collect(conn, {7})
        assert refused[7].reset == REFUSED_STREAM
        lab.release.set()
        done = await collect(conn, {1, 3, 5})
        assert all(r.status == 200 and r.body == HELLO for r in done.values())
        with pytest.raises(ConnectionEnded):
            await conn.receive(timeout=3)


async def test_keep_alive_timeout_closes_an_idle_connection() -> None:
    async with running_server(Lab(), keep_alive_timeout=0.3) as url, h2_connect(url) as conn:
        assert (await get(conn, 1, "/")).status == 200
        started = time.monotonic()
        goaway = await goaway_or_close(conn, timeout=3)
        assert goaway.error_code == NO_ERROR
        assert goaway.last_stream_id == 1
        assert 0.2 < time.monotonic() - started < 2.0
        with pytest.raises(ConnectionEnded):
            await conn.receive(timeout=3)


async def test_ping_interval() -> None:
    async with running_server(Lab(), h2_ping_interval=0.3, keep_alive_timeout=10) as url:
        # A client that answers stays connected.
        async with h2_connect(url) as conn:
            pings = 0
            with anyio.move_on_after(1.2):
                while True:
                    frame = await conn.receive()
                    if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                        pings += 1
                        await conn.send(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]))
                    assert not isinstance(frame, GoAwayFrame)
            assert pings >= 2
            assert (await get(conn, 1, "/")).status == 200
        # One that never answers is closed.
        async with h2_connect(url) as conn:
            started = time.monotonic()
            await conn.expect(PingFrame)
            assert 0.2 < time.monotonic() - started < 1.0
            goaway = await goaway_or_close(conn, timeout=3)
            assert goaway.error_code == NO_ERROR
            assert time.monotonic() - started < 1.5
            with pytest.raises(ConnectionEnded):
                await conn.receive(timeout=3)


# ---------------------------------------------------------------- 10. shutdown


@asynccontextmanager
async def stoppable_server(app: Any) -> AsyncIterator[tuple[str, anyio.Event]]:
    """A server and the event whose setting starts its graceful shutdown."""
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        urls = await tg.start(
            lambda task_status: serve(
                app, make_config(), shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        yield urls[0], stop
        stop.set()


async def test_graceful_shutdown_finishes_streams_in_flight() -> None:
    lab = Lab()
    with anyio.fail_after(10):
        async with stoppable_server(lab) as (url, stop), h2_connect(url) as conn:
            await request(conn, 1, "/block")
            await request(conn, 3, "/block")
            await until(lambda: lab.active == 2)
            stop.set()
            goaway = await conn.expect(GoAwayFrame)
            assert goaway.error_code == NO_ERROR
            assert goaway.last_stream_id == 3
            await request(conn, 5, "/")  # after GOAWAY: refused
            assert (await collect(conn, {5}))[5].reset == REFUSED_STREAM
            lab.release.set()
            done = await collect(conn, {1, 3})
            assert all(r.status == 200 and r.body == HELLO for r in done.values())
            with pytest.raises(ConnectionEnded):
                await conn.receive(timeout=3)


async def test_closing_drains_input_so_the_last_frames_arrive() -> None:
    """A client still sending (PINGs here) while the server closes after a
    graceful GOAWAY must still read the last response and the GOAWAY: the
    server half-closes and drains its input before closing, so no TCP reset
    destroys what it wrote."""
    lab = Lab()
    with anyio.fail_after(10):
        async with stoppable_server(lab) as (url, stop), h2_connect(url) as conn:
            await request(conn, 1, "/block")
            await until(lambda: lab.active == 1)
            stop.set()
            lab.release.set()
            with anyio.move_on_after(0.5):  # keep talking, never read
                while True:
                    try:
                        await conn.send(PingFrame(0, opaque_data=b"12345678"))
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        break
                    await anyio.sleep(0.002)
            frames = await read_until_closed(conn)
            goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
            assert [g.error_code for g in goaways] == [NO_ERROR]
            body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == 1)
            assert body == HELLO
            assert any("END_STREAM" in f.flags for f in frames if f.stream_id == 1)


async def read_until_closed(conn: H2Conn) -> list[Frame]:
    """Every frame the server sends until it closes the connection."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(await conn.receive(timeout=3))
    except ConnectionEnded:
        return frames
