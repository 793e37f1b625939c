"""HTTP/2 conformance: our own re-creation of the h2spec server suite
(RFC 7540/9113 sections 3.5-8.2, the "generic" section and RFC 7541 HPACK).

Each test sends what the h2spec case sends -- hand-built frames and HPACK
blocks over a raw socket (:mod:`.h2client`) -- and asserts what the case
asserts, over h2c (prior knowledge) and over TLS (ALPN h2):

* a *connection error* is GOAWAY with the expected code, or the connection
  closed (as h2spec); after a GOAWAY the server must also close (RFC 9113
  §5.4.1);
* a *stream error* h2spec accepts as RST_STREAM, GOAWAY or a close with the
  expected code. :func:`stream_error` asserts the stricter RST_STREAM on the
  stream unless a case passes ``connection_error_ok=True``. We pass with
  RST_STREAM: 5.1 (DATA and HEADERS on half-closed or reset streams, DATA
  on a closed one), 5.1.2, 6.1 (DATA on a closed stream), 6.9.1 (stream
  window overflow), 8.1.2 to 8.1.2.3 (malformed header blocks) and 8.1.2.6
  (content-length). We answer GOAWAY where h2 finds the error in the frame
  itself, before any stream is involved: 4.2 (DATA too large), 5.3.1 (a
  stream depending on itself), 6.2 (bad padding), 6.3/6.4/6.5 (bad frame
  lengths), 6.9 (a zero increment), 8.1 and 8.1.2.1 (trailers without
  END_STREAM), and for the 5.1 CONTINUATION cases (RFC 9113 §6.10 makes a
  CONTINUATION that continues nothing a connection error).

Every connection error currently gets GOAWAY (none a bare close). The server
answers each request after reading its whole body (so a stream stays open
as long as the client keeps it open) with a 13-byte body.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tricorn.asgi.types import ASGIApp, ASGIReceive, ASGISend, Scope

from ..conftest import TLSFiles, running_server
from .apps import HELLO
from .h2client import PREFACE, ConnectionEnded, H2Conn, h2_connect, raw_frame

pytestmark = pytest.mark.anyio

# Error codes (RFC 9113 §7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

# Frame types (RFC 9113 §6) and flags, for raw frames.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 0x8, 0x9
UNKNOWN_TYPE = 0x16
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8

# SETTINGS identifiers.
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

MAX_WINDOW = 2**31 - 1
DUMMY_LENGTH = 4000  # h2spec's default --max-header-length
CLOSE_TIMEOUT = 2.0


def drain_then_hello(unanswered: list[str], started: list[str]) -> ASGIApp:
    """Reads the whole request body, then answers ``Hello, world!``. The
    paths of the calls go to ``started``; those that end before answering
    (``http.disconnect``, or cancelled: a reset) to ``unanswered`` too."""

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        started.append(scope["path"])
        complete = False
        try:
            while not complete:
                message = await receive()
                if message["type"] != "http.request":
                    return
                complete = not message.get("more_body")
        finally:
            if not complete:
                unanswered.append(scope["path"])
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": HELLO})

    return app


# ---------------------------------------------------------------- fixtures


@dataclass
class Target:
    """A running server and how to reach it (h2c or TLS)."""

    url: str
    ssl_context: ssl.SSLContext | None
    unanswered: list[str]  # paths of the calls that ended without a response
    started: list[str]  # paths of the calls made

    @asynccontextmanager
    async def connect(
        self, settings: dict[int, int] | None = None, handshake: bool = True
    ) -> AsyncIterator[H2Conn]:
        """h2spec's handshake: preface, SETTINGS(INITIAL_WINDOW_SIZE=65535),
        the server's SETTINGS acknowledged and ours acknowledged by it."""
        async with h2_connect(
            self.url,
            ssl_context=self.ssl_context,
            settings=settings or {INITIAL_WINDOW_SIZE: 65535},
            handshake=handshake,
        ) as conn:
            if handshake:
                await settings_ack(conn)
            yield conn


@pytest.fixture(scope="session")
def h2_ssl_context(tls_files: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols(["h2"])
    return context


@pytest.fixture(params=["h2c", "tls"])
async def target(
    request: pytest.FixtureRequest, tls_files: TLSFiles, h2_ssl_context: ssl.SSLContext
) -> AsyncIterator[Target]:
    if request.param == "tls":
        settings = {"certfile": tls_files.certfile, "keyfile": tls_files.keyfile}
        context: ssl.SSLContext | None = h2_ssl_context
    else:
        settings = {}
        context = None
    unanswered: list[str] = []
    started: list[str] = []
    app = drain_then_hello(unanswered, started)
    async with running_server(app, graceful_timeout=1.0, **settings) as url:
        yield Target(url, context, unanswered, started)


@pytest.fixture
async def conn(target: Target) -> AsyncIterator[H2Conn]:
    """A connection after h2spec's handshake."""
    async with target.connect() as connection:
        yield connection


# ---------------------------------------------------------------- helpers


async def settings_ack(conn: H2Conn, timeout: float = 5.0) -> None:
    """h2spec's VerifySettingsFrameWithAck."""
    while True:
        frame = await conn.expect(SettingsFrame, timeout)
        if "ACK" in frame.flags:
            return


async def connection_error(conn: H2Conn, *codes: int) -> None:
    """h2spec's VerifyConnectionError: GOAWAY with one of ``codes`` or the
    connection closed; after GOAWAY the server must close (RFC 9113 §5.4.1)."""
    frame = await conn.error_frame(None, CLOSE_TIMEOUT)
    if frame is not None:
        assert isinstance(frame, GoAwayFrame)
        assert frame.error_code in codes, f"GOAWAY({frame.error_code}), expected {codes}"
        assert await conn.wait_closed(CLOSE_TIMEOUT), "the connection stays open after GOAWAY"


async def stream_error(
    conn: H2Conn, stream_id: int, *codes: int, connection_error_ok: bool = False
) -> None:
    """h2spec's VerifyStreamError. Strict by default: RST_STREAM on
    ``stream_id`` with one of ``codes``. With ``connection_error_ok`` the
    GOAWAY (same codes) or close that h2spec also accepts will do."""
    frame = await conn.error_frame(stream_id, CLOSE_TIMEOUT)
    if isinstance(frame, RstStreamFrame):
        assert frame.error_code in codes, f"RST_STREAM({frame.error_code}), expected {codes}"
        return
    assert connection_error_ok, f"expected RST_STREAM on stream {stream_id}, got {frame}"
    if frame is not None:
        assert frame.error_code in codes, f"GOAWAY({frame.error_code}), expected {codes}"


async def response_headers(conn: H2Conn, stream_id: int, timeout: float = 5.0) -> HeadersFrame:
    """h2spec's VerifyHeadersFrame: a HEADERS frame on ``stream_id``."""
    while True:
        frame = await conn.receive(timeout)
        if isinstance(frame, GoAwayFrame):
            raise AssertionError(f"GOAWAY({frame.error_code}) instead of a response")
        if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
            raise AssertionError(f"RST_STREAM({frame.error_code}) instead of a response")
        if isinstance(frame, HeadersFrame) and frame.stream_id == stream_id:
            return frame


async def stream_end(conn: H2Conn, stream_id: int, timeout: float = 5.0) -> None:
    """h2spec's VerifyStreamClose: HEADERS or DATA with END_STREAM."""
    while True:
        frame = await conn.receive(timeout)
        if isinstance(frame, GoAwayFrame):
            raise AssertionError(f"GOAWAY({frame.error_code}) instead of a response")
        if (
            isinstance(frame, HeadersFrame | DataFrame)
            and frame.stream_id == stream_id
            and "END_STREAM" in frame.flags
        ):
            return


async def first_data(conn: H2Conn, stream_id: int = 1, timeout: float = 5.0) -> DataFrame:
    """The first DATA frame on ``stream_id`` (h2spec: WaitEventByType(DATA))."""
    while True:
        frame = await conn.expect(DataFrame, timeout)
        if frame.stream_id == stream_id:
            return frame


async def ping_ack(conn: H2Conn, data: bytes, timeout: float = 5.0) -> None:
    """h2spec's VerifyPingFrameWithAck."""
    while True:
        frame = await conn.receive(timeout)
        if isinstance(frame, GoAwayFrame):
            raise AssertionError(f"GOAWAY({frame.error_code}) instead of a PING ack")
        if isinstance(frame, PingFrame) and "ACK" in frame.flags:
            assert frame.opaque_data == data
            return


async def ping_ack_or_close(conn: H2Conn, data: bytes) -> None:
    """h2spec's VerifyPingFrameOrConnectionClose."""
    while True:
        try:
            frame = await conn.receive(CLOSE_TIMEOUT)
        except ConnectionEnded:
            return
        if isinstance(frame, PingFrame) and "ACK" in frame.flags:
            assert frame.opaque_data == data
            return


def common_headers(conn: H2Conn, method: str = "GET") -> list[tuple[str, str]]:
    """h2spec's CommonHeaders."""
    return [
        (":method", method),
        (":scheme", conn.scheme),
        (":path", "/"),
        (":authority", conn.authority),
    ]


def dummy_headers(count: int) -> list[tuple[str, str]]:
    """h2spec's DummyHeaders: ``x-dummyN`` with 4000-byte values."""
    return [(f"x-dummy{i}", "x" * DUMMY_LENGTH) for i in range(count)]


def block(conn: H2Conn, method: str = "GET", extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """An encoded request header block (the connection's HPACK context)."""
    return conn.encode([*common_headers(conn, method), *extra])


def headers(
    stream_id: int,
    data: bytes,
    *,
    end_stream: bool = True,
    end_headers: bool = True,
    pad_length: int | None = None,
    depends_on: int | None = None,
    weight: int = 255,
) -> HeadersFrame:
    """HEADERS, padded when ``pad_length`` is given, with priority fields
    when ``depends_on`` is."""
    flags = (["END_STREAM"] if end_stream else []) + (["END_HEADERS"] if end_headers else [])
    frame = HeadersFrame(stream_id, data=data, flags=flags)
    if pad_length is not None:
        frame.flags.add("PADDED")
        frame.pad_length = pad_length
    if depends_on is not None:
        frame.flags.add("PRIORITY")
        frame.depends_on = depends_on
        frame.stream_weight = weight
    return frame


def continuation(stream_id: int, data: bytes, *, end_headers: bool = True) -> ContinuationFrame:
    return ContinuationFrame(stream_id, data=data, flags=["END_HEADERS"] if end_headers else [])


def data(stream_id: int, payload: bytes = b"test", *, end_stream: bool = True) -> DataFrame:
    return DataFrame(stream_id, data=payload, flags=["END_STREAM"] if end_stream else [])


def priority(
    stream_id: int, depends_on: int = 0, weight: int = 255, exclusive: bool = False
) -> PriorityFrame:
    return PriorityFrame(
        stream_id, depends_on=depends_on, stream_weight=weight, exclusive=exclusive
    )


def settings(*pairs: tuple[int, int]) -> bytes:
    """A SETTINGS frame, raw: values are not checked and may repeat."""
    payload = b"".join(
        ident.to_bytes(2, "big") + value.to_bytes(4, "big") for ident, value in pairs
    )
    return raw_frame(SETTINGS, 0, 0, payload)


def ping(payload: bytes = bytes(8), *, ack: bool = False) -> PingFrame:
    return PingFrame(0, opaque_data=payload, flags=["ACK"] if ack else [])


def window_update(stream_id: int, increment: int) -> bytes:
    return raw_frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return raw_frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    payload = last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big") + debug
    return raw_frame(GOAWAY, 0, 0, payload)


def unknown_frame() -> bytes:
    """h2spec's unknown extension frame: type 0x16, 8 zero bytes, stream 0."""
    return raw_frame(UNKNOWN_TYPE, 0, 0, bytes(8))


# HPACK primitives (RFC 7541 §5, §6), for blocks the encoder will not produce.


def hpack_int(value: int, prefix_bits: int, pattern: int = 0) -> bytes:
    """An HPACK integer with ``pattern`` in the first octet's high bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((pattern | value,))
    out = bytearray((pattern | limit,))
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def huffman_bits(text: bytes, *, eos_at: int | None = None) -> tuple[int, int]:
    """``text`` Huffman-coded as (bits, bit count); the EOS symbol is
    inserted before ``text[eos_at]`` if given."""
    symbols = list(text)
    if eos_at is not None:
        symbols.insert(eos_at, 256)
    bits = count = 0
    for symbol in symbols:
        bits = (bits << REQUEST_CODES_LENGTH[symbol]) | REQUEST_CODES[symbol]
        count += REQUEST_CODES_LENGTH[symbol]
    return bits, count


def huffman(text: bytes, *, padding: str = "eos", eos_at: int | None = None) -> bytes:
    """A Huffman-coded string literal (length prefix included). ``padding``:
    ``"eos"`` (valid: the EOS code's high bits), ``"zero"`` (invalid) or
    ``"long"`` (an extra octet of ones: more than 7 bits, invalid)."""
    bits, count = huffman_bits(text, eos_at=eos_at)
    pad = -count % 8
    bits = (bits << pad) | ((1 << pad) - 1 if padding != "zero" else 0)
    octets = bits.to_bytes((count + pad) // 8, "big")
    if padding == "long":
        octets += b"\xff"
    return hpack_int(len(octets), 7, 0x80) + octets


def string(text: bytes) -> bytes:
    return hpack_int(len(text), 7) + text


# Literal representations: (pattern, prefix bits) of RFC 7541 §6.2.1-6.2.3.
LITERALS = {
    "incremental indexing": (0x40, 6),
    "without indexing": (0x00, 4),
    "never indexed": (0x10, 4),
}
USER_AGENT = 58  # static table index (RFC 7541 Appendix A)


def literal(kind: str, name: str | int, value: bytes, *, huffman_coded: bool) -> bytes:
    pattern, prefix = LITERALS[kind]
    encode = huffman if huffman_coded else string
    if isinstance(name, int):
        return hpack_int(name, prefix, pattern) + encode(value)
    return hpack_int(0, prefix, pattern) + encode(name.encode()) + encode(value)


def table_size_update(size: int) -> bytes:
    return hpack_int(size, 5, 0x20)


# ================================================================ HTTP/2

# ---------------------------------------------------------------- 3.5 preface


async def test_3_5_sends_client_connection_preface(target: Target) -> None:
    async with target.connect(handshake=False) as conn:
        await conn.send(PREFACE, SettingsFrame(0, settings={INITIAL_WINDOW_SIZE: 65535}))
        frame = await conn.receive()
        assert isinstance(frame, SettingsFrame)
        assert "ACK" not in frame.flags


async def read_all(conn: H2Conn, timeout: float = CLOSE_TIMEOUT) -> bytes:
    """Every byte until the server closes (raw: no frame parsing)."""
    received = b""
    with anyio.fail_after(timeout):
        while True:
            try:
                received += await conn.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return received


# h2c: a cleartext port speaks HTTP/1.1 too, and the HTTP/1.1 adapter decides
# what these bytes are; over TLS the HTTP/2 adapter (h2) sees them.
BROKEN_PREFACES = [
    pytest.param(b"INVALID CONNECTION PREFACE\r\n\r\n", id="invalid"),
    pytest.param(PREFACE[:-2] + b"\r\r", id="broken-last-bytes"),
]


def parse_frames(received: bytes) -> list[Frame]:
    frames = []
    while received:
        frame, length = Frame.parse_frame_header(memoryview(received[:9]))
        frame.parse_body(memoryview(received[9 : 9 + length]))
        frames.append(frame)
        received = received[9 + length :]
    return frames


@pytest.mark.parametrize("preface", BROKEN_PREFACES)
async def test_3_5_sends_invalid_connection_preface(
    target: Target, preface: bytes, request: pytest.FixtureRequest
) -> None:
    """The server closes the connection, after GOAWAY(PROTOCOL_ERROR) or not
    (RFC 9113 §3.4: GOAWAY MAY be omitted); never an HTTP/1.1 response.

    What we do: over TLS the server preface (SETTINGS, WINDOW_UPDATE) is out
    before the client's bytes arrive, then h2 refuses the preamble and the
    connection closes without GOAWAY. On h2c a broken preface (``PRI`` but
    not the rest) gets GOAWAY(PROTOCOL_ERROR) and a close, while bytes that
    do not start with ``PRI`` and are no HTTP/1.x request line get a plain
    close (an HTTP/1.1 400 only on ports without h2)."""
    async with target.connect(handshake=False) as conn:
        await conn.send(preface)
        received = await read_all(conn)
    assert not received.startswith(b"HTTP/"), received
    frames = parse_frames(received)
    if frames and isinstance(frames[-1], GoAwayFrame):
        assert frames[-1].error_code == PROTOCOL_ERROR
        frames.pop()
    # Nothing else but the server preface.
    assert all(isinstance(frame, SettingsFrame | WindowUpdateFrame) for frame in frames)


# ---------------------------------------------------------------- 4.1 frame format


async def test_4_1_sends_frame_with_unknown_type(conn: H2Conn) -> None:
    await conn.send(unknown_frame(), ping(b"h2spec\0\0"))
    await ping_ack(conn, b"h2spec\0\0")


async def test_4_1_sends_frame_with_undefined_flag(conn: H2Conn) -> None:
    await conn.send(raw_frame(PING, 0x16, 0, bytes(8)))
    await ping_ack(conn, bytes(8))


async def test_4_1_sends_frame_with_reserved_field_bit(conn: H2Conn) -> None:
    await conn.send(raw_frame(PING, 0x16, 0x8000_0000, bytes(8)))
    await ping_ack(conn, bytes(8))


# ---------------------------------------------------------------- 4.2 frame size


def max_frame_size(conn: H2Conn) -> int:
    return conn.server_settings.get(MAX_FRAME_SIZE, 16384)


async def test_4_2_sends_data_frame_with_2_14_octets(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False),
        data(1, b"x" * max_frame_size(conn)),
    )
    await response_headers(conn, 1)


async def test_4_2_sends_data_frame_exceeding_max_frame_size(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False),
        data(1, b"x" * (max_frame_size(conn) + 1)),
    )
    # h2 refuses the oversized frame before looking at its stream: GOAWAY.
    await stream_error(conn, 1, FRAME_SIZE_ERROR, connection_error_ok=True)


async def test_4_2_sends_headers_frame_exceeding_max_frame_size(conn: H2Conn) -> None:
    fragment = block(conn, extra=dummy_headers(5))
    assert len(fragment) > max_frame_size(conn)
    await conn.send(headers(1, fragment))
    await connection_error(conn, FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 4.3 header compression


async def test_4_3_sends_invalid_header_block_fragment(conn: H2Conn) -> None:
    # A literal with incremental indexing and no name or value.
    await conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x40"))
    await connection_error(conn, COMPRESSION_ERROR)


async def test_4_3_sends_priority_frame_while_sending_header_block(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False, end_headers=False),
        priority(1),
        continuation(1, conn.encode(dummy_headers(1))),
    )
    await connection_error(conn, PROTOCOL_ERROR)


async def test_4_3_sends_headers_frame_to_another_stream_while_sending_header_block(
    conn: H2Conn,
) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False, end_headers=False),
        headers(3, block(conn)),
        continuation(1, conn.encode(dummy_headers(1))),
    )
    await connection_error(conn, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.1 stream states


async def test_5_1_idle_sends_data_frame(conn: H2Conn) -> None:
    await conn.send(data(1))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_5_1_idle_sends_rst_stream_frame(conn: H2Conn) -> None:
    await conn.send(rst_stream(1))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_5_1_idle_sends_window_update_frame(conn: H2Conn) -> None:
    await conn.send(window_update(1, 100))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_5_1_idle_sends_continuation_frame(conn: H2Conn) -> None:
    await conn.send(continuation(1, block(conn)))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_5_1_half_closed_remote_sends_data_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), data(1))
    await stream_error(conn, 1, STREAM_CLOSED)


async def test_5_1_half_closed_remote_sends_headers_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), headers(1, block(conn)))
    await stream_error(conn, 1, STREAM_CLOSED)


async def test_5_1_half_closed_remote_sends_continuation_frame(conn: H2Conn) -> None:
    fragment = block(conn)
    await conn.send(headers(1, fragment), continuation(1, fragment))
    # A CONTINUATION after a complete header block is a connection error
    # (RFC 9113 §6.10): GOAWAY(PROTOCOL_ERROR).
    await stream_error(conn, 1, STREAM_CLOSED, PROTOCOL_ERROR, connection_error_ok=True)


async def test_5_1_closed_sends_data_frame_after_rst_stream(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), end_stream=False), rst_stream(1), data(1))
    await stream_error(conn, 1, STREAM_CLOSED)


async def test_5_1_closed_sends_headers_frame_after_rst_stream(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False), rst_stream(1), headers(1, block(conn))
    )
    await stream_error(conn, 1, STREAM_CLOSED)


async def test_5_1_closed_sends_continuation_frame_after_rst_stream(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False),
        rst_stream(1),
        continuation(1, conn.encode(dummy_headers(1))),
    )
    # A CONTINUATION that continues no header block is a connection error
    # (RFC 9113 §6.10) whatever the stream's state: GOAWAY(PROTOCOL_ERROR).
    await stream_error(conn, 1, STREAM_CLOSED, PROTOCOL_ERROR, connection_error_ok=True)


async def test_5_1_closed_sends_data_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)))
    await stream_end(conn, 1)
    await conn.send(data(1))
    await stream_error(conn, 1, STREAM_CLOSED)


async def test_5_1_closed_sends_headers_frame(conn: H2Conn) -> None:
    frame = headers(1, block(conn))
    await conn.send(frame)
    await stream_end(conn, 1)
    await conn.send(frame)
    await connection_error(conn, STREAM_CLOSED)


async def test_5_1_closed_sends_continuation_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)))
    await stream_end(conn, 1)
    await conn.send(continuation(1, conn.encode(dummy_headers(1))))
    await connection_error(conn, STREAM_CLOSED, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.1.1 stream identifiers


async def test_5_1_1_sends_even_numbered_stream_identifier(conn: H2Conn) -> None:
    await conn.send(headers(2, block(conn)))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_5_1_1_sends_stream_identifier_smaller_than_previous(conn: H2Conn) -> None:
    await conn.send(headers(5, block(conn)), headers(3, block(conn)))
    await connection_error(conn, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.1.2 stream concurrency


async def test_5_1_2_exceeds_concurrent_stream_limit(conn: H2Conn) -> None:
    limit = conn.server_settings.get(MAX_CONCURRENT_STREAMS)
    assert limit is not None, "h2spec skips this case without a limit; we advertise one"
    # A zero window keeps every response (and so every stream) open.
    fragment = block(conn)
    frames = [settings((INITIAL_WINDOW_SIZE, 0))]
    frames += [headers(1 + 2 * i, fragment).serialize() for i in range(limit + 1)]
    await conn.send(*frames)
    await stream_error(conn, 1 + 2 * limit, REFUSED_STREAM, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 5.3.1 stream dependencies


async def test_5_3_1_sends_headers_frame_depending_on_itself(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), depends_on=1))
    # h2 rejects the self-dependency while parsing the frame: GOAWAY.
    await stream_error(conn, 1, PROTOCOL_ERROR, connection_error_ok=True)


async def test_5_3_1_sends_priority_frame_depending_on_itself(conn: H2Conn) -> None:
    await conn.send(priority(1, depends_on=1))
    # As above: GOAWAY.
    await stream_error(conn, 1, PROTOCOL_ERROR, connection_error_ok=True)


# ---------------------------------------------------------------- 5.4.1 connection errors


async def test_5_4_1_invalid_ping_closes_connection(conn: H2Conn) -> None:
    await conn.send(raw_frame(PING, 0, 3, bytes(8)))
    assert await conn.wait_closed(CLOSE_TIMEOUT)


async def test_5_4_1_invalid_ping_sends_goaway(conn: H2Conn) -> None:
    await conn.send(raw_frame(PING, 0, 3, bytes(8)))
    frame = await conn.closed_or_goaway(CLOSE_TIMEOUT)
    assert frame is not None, "closed without GOAWAY"
    assert frame.error_code == PROTOCOL_ERROR


# ---------------------------------------------------------------- 5.5 extending HTTP/2


async def test_5_5_sends_unknown_extension_frame(conn: H2Conn) -> None:
    await conn.send(unknown_frame(), ping())
    await ping_ack(conn, bytes(8))


async def test_5_5_sends_unknown_extension_frame_in_header_block(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), end_headers=False), unknown_frame())
    await connection_error(conn, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.1 DATA


async def test_6_1_sends_data_frame_with_stream_0(conn: H2Conn) -> None:
    await conn.send(raw_frame(DATA, END_STREAM, 0, b"test"))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_1_sends_data_frame_on_stream_not_open(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn, "POST")), data(1))
    await stream_error(conn, 1, STREAM_CLOSED)


async def test_6_1_sends_data_frame_with_invalid_pad_length(conn: H2Conn) -> None:
    fragment = block(conn, "POST", [("content-length", "4")])
    await conn.send(
        headers(1, fragment, end_stream=False),
        # Length 5, pad length 6.
        raw_frame(DATA, PADDED | END_STREAM, 1, b"\x06Test"),
    )
    await connection_error(conn, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.2 HEADERS


async def test_6_2_sends_headers_without_end_headers_then_priority(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False, end_headers=False),
        priority(1),
        continuation(1, conn.encode(dummy_headers(1))),
    )
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_2_sends_headers_to_another_stream_while_sending_headers(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False, end_headers=False),
        headers(3, block(conn)),
        continuation(1, conn.encode(dummy_headers(1))),
    )
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_2_sends_headers_frame_with_stream_0(conn: H2Conn) -> None:
    await conn.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, 0, block(conn)))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_2_sends_headers_frame_with_invalid_pad_length(conn: H2Conn) -> None:
    fragment = block(conn)
    # Frame length len(fragment) + 1, pad length len(fragment) + 2.
    payload = bytes((len(fragment) + 2,)) + fragment
    await conn.send(raw_frame(HEADERS, PADDED | END_HEADERS | END_STREAM, 1, payload))
    # h2 rejects the padding while parsing the frame: GOAWAY.
    await stream_error(conn, 1, PROTOCOL_ERROR, connection_error_ok=True)


# ---------------------------------------------------------------- 6.3 PRIORITY


async def test_6_3_sends_priority_frame_with_stream_0(conn: H2Conn) -> None:
    await conn.send(raw_frame(PRIORITY, 0, 0, b"\x00\x00\x00\x00\xff"))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_3_sends_priority_frame_with_length_other_than_5(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), raw_frame(PRIORITY, 0, 1, b"\x80\x00\x00\x01"))
    # h2 rejects the frame size while parsing the frame: GOAWAY.
    await stream_error(conn, 1, FRAME_SIZE_ERROR, connection_error_ok=True)


async def test_6_3_sends_priority_for_idle_stream_then_headers_for_lower_stream(
    conn: H2Conn,
) -> None:
    await conn.send(priority(3), headers(1, block(conn)))
    await response_headers(conn, 1)


# ---------------------------------------------------------------- 6.4 RST_STREAM


async def test_6_4_sends_rst_stream_frame_with_stream_0(conn: H2Conn) -> None:
    await conn.send(rst_stream(0))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_4_sends_rst_stream_frame_on_idle_stream(conn: H2Conn) -> None:
    await conn.send(rst_stream(1))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_4_sends_rst_stream_frame_with_length_other_than_4(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), raw_frame(RST_STREAM, 0, 1, b"\x00\x00\x00"))
    # h2 rejects the frame size while parsing the frame: GOAWAY.
    await stream_error(conn, 1, FRAME_SIZE_ERROR, connection_error_ok=True)


# ---------------------------------------------------------------- 6.5 SETTINGS


async def test_6_5_sends_settings_frame_with_ack_and_payload(conn: H2Conn) -> None:
    await conn.send(raw_frame(SETTINGS, ACK, 0, b"\x00"))
    await connection_error(conn, FRAME_SIZE_ERROR)


async def test_6_5_sends_settings_frame_with_stream_other_than_0(conn: H2Conn) -> None:
    await conn.send(raw_frame(SETTINGS, 0, 1, b"\x00\x03\x00\x00\x00\x64"))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_5_sends_settings_frame_with_length_not_multiple_of_6(conn: H2Conn) -> None:
    await conn.send(raw_frame(SETTINGS, 0, 0, b"\x00\x03\x00"))
    # A connection-level frame: GOAWAY (h2spec verifies it as a stream error).
    await stream_error(conn, 0, PROTOCOL_ERROR, FRAME_SIZE_ERROR, connection_error_ok=True)


# ---------------------------------------------------------------- 6.5.2 defined parameters


@pytest.mark.parametrize(
    ("setting", "code"),
    [
        pytest.param((ENABLE_PUSH, 2), PROTOCOL_ERROR, id="enable-push-2"),
        pytest.param((INITIAL_WINDOW_SIZE, 2**31), FLOW_CONTROL_ERROR, id="initial-window-2^31"),
        pytest.param((MAX_FRAME_SIZE, 16383), PROTOCOL_ERROR, id="max-frame-size-below-initial"),
        pytest.param((MAX_FRAME_SIZE, 2**24), PROTOCOL_ERROR, id="max-frame-size-above-maximum"),
    ],
)
async def test_6_5_2_sends_invalid_setting_value(
    conn: H2Conn, setting: tuple[int, int], code: int
) -> None:
    await conn.send(settings(setting))
    await connection_error(conn, code)


async def test_6_5_2_sends_settings_frame_with_unknown_identifier(conn: H2Conn) -> None:
    await conn.send(settings((0xFF, 1)), ping())
    await ping_ack(conn, bytes(8))


# ---------------------------------------------------------------- 6.5.3 synchronization


async def test_6_5_3_sends_multiple_values_of_initial_window_size(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)))
    await settings_ack(conn)
    await conn.send(headers(1, block(conn)))
    frame = await first_data(conn)
    assert len(frame.data) == 1


async def test_6_5_3_sends_settings_frame_without_ack(conn: H2Conn) -> None:
    await conn.send(settings((ENABLE_PUSH, 0)))
    await settings_ack(conn)


# ---------------------------------------------------------------- 6.7 PING


async def test_6_7_sends_ping_frame(conn: H2Conn) -> None:
    await conn.send(ping(b"h2spec\0\0"))
    await ping_ack(conn, b"h2spec\0\0")


async def test_6_7_sends_ping_frame_with_ack(conn: H2Conn) -> None:
    await conn.send(ping(b"invalid\0", ack=True), ping(b"h2spec\0\0"))
    while True:
        frame = await conn.expect(PingFrame)
        assert frame.opaque_data != b"invalid\0", "the server answered a PING ack"
        if "ACK" in frame.flags:
            assert frame.opaque_data == b"h2spec\0\0"
            return


async def test_6_7_sends_ping_frame_with_stream_other_than_0(conn: H2Conn) -> None:
    await conn.send(raw_frame(PING, 0, 1, bytes(8)))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_7_sends_ping_frame_with_length_other_than_8(conn: H2Conn) -> None:
    await conn.send(raw_frame(PING, 0, 0, bytes(6)))
    await connection_error(conn, FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.8 GOAWAY


async def test_6_8_sends_goaway_frame_with_stream_other_than_0(conn: H2Conn) -> None:
    await conn.send(raw_frame(GOAWAY, 0, 1, bytes(8)))
    await connection_error(conn, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 6.9 WINDOW_UPDATE


async def test_6_9_sends_window_update_with_increment_0(conn: H2Conn) -> None:
    await conn.send(window_update(0, 0))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_9_sends_window_update_with_increment_0_on_stream(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), end_stream=False), window_update(1, 0))
    # h2 rejects the increment while parsing the frame: GOAWAY.
    await stream_error(conn, 1, PROTOCOL_ERROR, connection_error_ok=True)


async def test_6_9_sends_window_update_with_length_other_than_4(conn: H2Conn) -> None:
    await conn.send(raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x01"))
    await connection_error(conn, FRAME_SIZE_ERROR)


# ---------------------------------------------------------------- 6.9.1 flow-control window


async def test_6_9_1_initial_window_size_1(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 1)))
    await settings_ack(conn)
    await conn.send(headers(1, block(conn)))
    frame = await first_data(conn)
    assert len(frame.data) == 1


async def test_6_9_1_window_update_overflows_connection_window(conn: H2Conn) -> None:
    await conn.send(window_update(0, MAX_WINDOW), window_update(0, MAX_WINDOW))
    frame = await conn.expect(GoAwayFrame)  # h2spec: GOAWAY, not just a close
    assert frame.error_code == FLOW_CONTROL_ERROR


async def test_6_9_1_window_update_overflows_stream_window(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_stream=False),
        window_update(1, MAX_WINDOW),
        window_update(1, MAX_WINDOW),
    )
    frame = await conn.expect(RstStreamFrame)  # h2spec: RST_STREAM only
    assert frame.stream_id == 1
    assert frame.error_code == FLOW_CONTROL_ERROR


async def test_6_9_1_stream_reset_for_window_overflow_ends_the_request(
    target: Target, conn: H2Conn
) -> None:
    """Ours, beyond h2spec: the call waiting for the body of a stream the
    server reset (h2 does it for a window overflow) ends at once (cancelled,
    as for a reset by the peer), and the connection goes on. (A stream reset
    in the read that opened it is never called: see
    test_a_stream_reset_before_its_call_is_never_called.)"""
    fields = [(":method", "POST"), (":scheme", conn.scheme), (":path", "/overflow")]
    await conn.send(
        headers(1, conn.encode([*fields, (":authority", conn.authority)]), end_stream=False)
    )
    with anyio.fail_after(CLOSE_TIMEOUT):
        while "/overflow" not in target.started:  # the call waits for the body now
            await anyio.sleep(0.01)
    await conn.send(window_update(1, MAX_WINDOW), window_update(1, MAX_WINDOW))
    await stream_error(conn, 1, FLOW_CONTROL_ERROR)
    with anyio.fail_after(CLOSE_TIMEOUT):
        while "/overflow" not in target.unanswered:
            await anyio.sleep(0.01)
    await conn.send(headers(3, block(conn)))
    await stream_end(conn, 3)


async def test_a_stream_reset_before_its_call_is_never_called(target: Target, conn: H2Conn) -> None:
    """Ours: HEADERS and RST_STREAM in one read (a "rapid reset") cost no
    application call; the next request is answered."""
    fields = [(":method", "POST"), (":scheme", conn.scheme), (":path", "/reset-early")]
    await conn.send(
        headers(1, conn.encode([*fields, (":authority", conn.authority)]), end_stream=False),
        rst_stream(1),
    )
    await conn.send(headers(3, block(conn)))
    await stream_end(conn, 3)
    assert "/reset-early" not in target.started


async def test_resets_cancel_running_calls_one_by_one(target: Target, conn: H2Conn) -> None:
    """Ours: a reset cancels the running call of its stream alone, again and
    again on one connection (each reset spends the scope of the task that
    ran the call); the calls beside it go on and are answered."""
    fields = [(":method", "POST"), (":scheme", conn.scheme)]
    for round_ in range(3):
        first, second = 4 * round_ + 1, 4 * round_ + 3
        for stream_id in (first, second):
            path = f"/wait-{stream_id}"
            block_ = conn.encode([*fields, (":path", path), (":authority", conn.authority)])
            await conn.send(headers(stream_id, block_, end_stream=False))
        with anyio.fail_after(CLOSE_TIMEOUT):
            while f"/wait-{second}" not in target.started:
                await anyio.sleep(0.01)
        await conn.send(rst_stream(first))
        with anyio.fail_after(CLOSE_TIMEOUT):
            while f"/wait-{first}" not in target.unanswered:  # cancelled
                await anyio.sleep(0.01)
        assert f"/wait-{second}" not in target.unanswered
        await conn.send(data(second, b"", end_stream=True))
        await stream_end(conn, second)


# ---------------------------------------------------------------- 6.9.2 initial window size


async def test_6_9_2_changes_initial_window_size_after_headers(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 0)))
    await settings_ack(conn)
    await conn.send(headers(1, block(conn)), settings((INITIAL_WINDOW_SIZE, 1)))
    frame = await first_data(conn)
    assert len(frame.data) == 1


async def test_6_9_2_settings_make_window_negative(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 3)))
    await settings_ack(conn)
    await conn.send(headers(1, block(conn)))
    frame = await first_data(conn)
    assert len(frame.data) == 3
    await conn.send(settings((INITIAL_WINDOW_SIZE, 2)))  # the window: -1
    await settings_ack(conn)
    await conn.send(window_update(1, 2))
    frame = await first_data(conn)
    assert len(frame.data) == 1


async def test_6_9_2_initial_window_size_exceeds_maximum(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 2**31)))
    await connection_error(conn, FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------- 6.10 CONTINUATION


async def test_6_10_sends_multiple_continuation_frames(conn: H2Conn) -> None:
    dummy = conn.encode(dummy_headers(1))
    await conn.send(
        headers(1, block(conn), end_headers=False),
        continuation(1, dummy, end_headers=False),
        continuation(1, dummy),
    )
    await response_headers(conn, 1)


async def test_6_10_sends_continuation_followed_by_other_frame(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False, end_headers=False),
        continuation(1, conn.encode(dummy_headers(1)), end_headers=False),
        data(1),
    )
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_10_sends_continuation_frame_with_stream_0(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn), end_headers=False),
        raw_frame(CONTINUATION, END_HEADERS, 0, conn.encode(dummy_headers(1))),
    )
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_10_sends_continuation_after_headers_with_end_headers(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), continuation(1, conn.encode(dummy_headers(1))))
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_10_sends_continuation_after_continuation_with_end_headers(
    conn: H2Conn,
) -> None:
    dummy = conn.encode(dummy_headers(1))
    await conn.send(
        headers(1, block(conn), end_headers=False),
        continuation(1, dummy),
        continuation(1, dummy),
    )
    await connection_error(conn, PROTOCOL_ERROR)


async def test_6_10_sends_continuation_after_data(conn: H2Conn) -> None:
    dummy = conn.encode(dummy_headers(1))
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False, end_headers=False),
        data(1),
        continuation(1, dummy, end_headers=False),
        raw_frame(CONTINUATION, END_HEADERS, 0, dummy),
    )
    await connection_error(conn, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 7 error codes


async def test_7_sends_goaway_frame_with_unknown_error_code(conn: H2Conn) -> None:
    await conn.send(goaway(0, 0xFF), ping(b"h2spec\0\0"))
    await ping_ack_or_close(conn, b"h2spec\0\0")


async def test_7_sends_rst_stream_frame_with_unknown_error_code(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn, "POST"), end_stream=False), rst_stream(1, 0xFF), ping())
    await ping_ack(conn, bytes(8))


# ---------------------------------------------------------------- 8.1 request/response


async def test_8_1_sends_second_headers_frame_without_end_stream(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False),
        data(1, end_stream=False),
        headers(1, conn.encode([("x-test", "ok")]), end_stream=False),
    )
    # h2 refuses trailers without END_STREAM as a connection error: GOAWAY.
    await stream_error(conn, 1, PROTOCOL_ERROR, connection_error_ok=True)


# ---------------------------------------------------------------- 8.1.2 header fields

# (id, header list) for the malformed requests of 8.1.2, 8.1.2.1, 8.1.2.2 and
# 8.1.2.3; the common headers are :method, :scheme, :path, :authority.
COMMON = "common"
MALFORMED: list[tuple[str, list[tuple[str, str] | str]]] = [
    ("8.1.2 uppercase field name", [COMMON, ("X-TEST", "ok")]),
    ("8.1.2.1 unknown pseudo-header", [COMMON, (":test", "ok")]),
    ("8.1.2.1 response pseudo-header", [COMMON, (":status", "200")]),
    ("8.1.2.1 pseudo-header after regular field", [("x-test", "ok"), COMMON]),
    ("8.1.2.2 connection-specific field", [COMMON, ("connection", "keep-alive")]),
    ("8.1.2.2 te other than trailers", [COMMON, ("trailers", "test"), ("te", "trailers, deflate")]),
    ("8.1.2.3 empty :path", [":method", ":scheme", (":path", ""), ":authority"]),
    ("8.1.2.3 omits :method", [":scheme", ":path", ":authority"]),
    ("8.1.2.3 omits :scheme", [":method", ":path", ":authority"]),
    ("8.1.2.3 omits :path", [":method", ":scheme", ":authority"]),
    ("8.1.2.3 duplicated :method", [COMMON, ":method"]),
    ("8.1.2.3 duplicated :scheme", [COMMON, ":scheme"]),
    ("8.1.2.3 duplicated :path", [COMMON, ":path"]),
]


def expand(conn: H2Conn, fields: list[tuple[str, str] | str]) -> list[tuple[str, str]]:
    common = dict(common_headers(conn))
    out: list[tuple[str, str]] = []
    for field in fields:
        if field == COMMON:
            out += common.items()
        elif isinstance(field, str):
            out.append((field, common[field]))
        else:
            out.append(field)
    return out


@pytest.mark.parametrize("fields", [pytest.param(fields, id=name) for name, fields in MALFORMED])
async def test_8_1_2_sends_malformed_request(
    conn: H2Conn, fields: list[tuple[str, str] | str]
) -> None:
    await conn.send(headers(1, conn.encode(expand(conn, fields))))
    await stream_error(conn, 1, PROTOCOL_ERROR)


async def test_8_1_2_1_sends_pseudo_header_in_trailers(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False),
        data(1, end_stream=False),
        headers(1, conn.encode([(":method", "POST")]), end_stream=False),
    )
    # Trailers without END_STREAM: h2 answers GOAWAY (as 8.1 above).
    await stream_error(conn, 1, PROTOCOL_ERROR, connection_error_ok=True)


# ---------------------------------------------------------------- 8.1.2.6 malformed


async def test_8_1_2_6_content_length_differs_from_data_length(conn: H2Conn) -> None:
    fragment = block(conn, "POST", [("content-length", "1")])
    await conn.send(headers(1, fragment, end_stream=False), data(1))
    await stream_error(conn, 1, PROTOCOL_ERROR)


async def test_8_1_2_6_content_length_differs_from_sum_of_data_lengths(conn: H2Conn) -> None:
    fragment = block(conn, "POST", [("content-length", "1")])
    await conn.send(headers(1, fragment, end_stream=False), data(1, end_stream=False), data(1))
    await stream_error(conn, 1, PROTOCOL_ERROR)


# ---------------------------------------------------------------- 8.2 server push


async def test_8_2_sends_push_promise_frame(conn: H2Conn) -> None:
    frame = PushPromiseFrame(1, promised_stream_id=3, data=block(conn), flags=["END_HEADERS"])
    await conn.send(frame)
    await connection_error(conn, PROTOCOL_ERROR)


# ================================================================ generic

# ---------------------------------------------------------------- 1 starting HTTP/2


async def test_generic_1_sends_client_connection_preface(target: Target) -> None:
    async with target.connect(handshake=False) as conn:
        await conn.send(PREFACE, SettingsFrame(0, settings={INITIAL_WINDOW_SIZE: 65535}))
        frame = await conn.receive()  # the very first frame
        assert isinstance(frame, SettingsFrame)
        assert "ACK" not in frame.flags


# ---------------------------------------------------------------- 2 streams and multiplexing


async def test_generic_2_sends_priority_frame_on_idle_stream(conn: H2Conn) -> None:
    await conn.send(priority(1), ping())
    await ping_ack(conn, bytes(8))


async def test_generic_2_sends_window_update_on_half_closed_remote_stream(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 0)), headers(1, block(conn)))
    await conn.send(window_update(1, 1))
    await first_data(conn)


async def test_generic_2_sends_priority_on_half_closed_remote_stream(conn: H2Conn) -> None:
    await conn.send(settings((INITIAL_WINDOW_SIZE, 0)), headers(1, block(conn)))
    await conn.send(priority(1), window_update(1, 1))
    await first_data(conn)


async def test_generic_2_sends_rst_stream_on_half_closed_remote_stream(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), rst_stream(1), ping())
    await ping_ack(conn, bytes(8))


async def test_generic_2_sends_priority_frame_on_closed_stream(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)))
    await stream_end(conn, 1)
    await conn.send(priority(1), ping())
    await ping_ack(conn, bytes(8))


# ---------------------------------------------------------------- 3.1 DATA


async def test_generic_3_1_sends_data_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn, "POST"), end_stream=False), data(1))
    await response_headers(conn, 1)


async def test_generic_3_1_sends_multiple_data_frames(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST"), end_stream=False), data(1, end_stream=False), data(1)
    )
    await response_headers(conn, 1)


async def test_generic_3_1_sends_data_frame_with_padding(conn: H2Conn) -> None:
    padded = DataFrame(1, data=b"test", flags=["END_STREAM", "PADDED"], pad_length=5)
    await conn.send(headers(1, block(conn, "POST"), end_stream=False), padded)
    await response_headers(conn, 1)


# ---------------------------------------------------------------- 3.2 HEADERS


async def test_generic_3_2_sends_headers_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)))
    await response_headers(conn, 1)


async def test_generic_3_2_sends_headers_frame_with_padding(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), pad_length=8))
    await response_headers(conn, 1)


async def test_generic_3_2_sends_headers_frame_with_priority(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), depends_on=0, weight=255))
    await response_headers(conn, 1)


# ---------------------------------------------------------------- 3.3 PRIORITY


@pytest.mark.parametrize(
    ("frame_stream", "depends_on", "weight", "exclusive"),
    [
        pytest.param(1, 0, 0, False, id="weight-1"),
        pytest.param(1, 0, 255, False, id="weight-256"),
        pytest.param(3, 1, 0, False, id="stream-dependency"),
        pytest.param(1, 0, 0, True, id="exclusive"),
        pytest.param(3, 0, 255, False, id="idle-stream-then-lower-headers"),
    ],
)
async def test_generic_3_3_sends_priority_frame(
    conn: H2Conn, frame_stream: int, depends_on: int, weight: int, exclusive: bool
) -> None:
    await conn.send(priority(frame_stream, depends_on, weight, exclusive), headers(1, block(conn)))
    await response_headers(conn, 1)


# ---------------------------------------------------------------- 3.4-3.10


async def test_generic_3_4_sends_rst_stream_frame(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn), end_stream=False), rst_stream(1), ping())
    await ping_ack(conn, bytes(8))


async def test_generic_3_5_sends_settings_frame(conn: H2Conn) -> None:
    await conn.send(
        settings(
            (HEADER_TABLE_SIZE, 4096),
            (ENABLE_PUSH, 1),
            (MAX_CONCURRENT_STREAMS, 100),
            (INITIAL_WINDOW_SIZE, 65535),
            (MAX_FRAME_SIZE, 16384),
            (MAX_HEADER_LIST_SIZE, 100),
        )
    )
    await settings_ack(conn)


async def test_generic_3_7_sends_ping_frame(conn: H2Conn) -> None:
    await conn.send(ping(b"h2spec\0\0"))
    await ping_ack(conn, b"h2spec\0\0")


async def test_generic_3_8_sends_goaway_frame(conn: H2Conn) -> None:
    await conn.send(goaway(0, NO_ERROR, b"h2spec"), ping(b"h2spec\0\0"))
    await ping_ack_or_close(conn, b"h2spec\0\0")


async def test_generic_3_9_sends_window_update_frame_with_stream_0(conn: H2Conn) -> None:
    await conn.send(window_update(0, 1), ping())
    await ping_ack(conn, bytes(8))


async def test_generic_3_9_sends_window_update_frame_with_stream_1(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)), window_update(1, 1))
    await response_headers(conn, 1)


async def test_generic_3_10_sends_continuation_frame(conn: H2Conn) -> None:
    fragment = block(conn)
    await conn.send(headers(1, fragment[:5], end_headers=False), continuation(1, fragment[5:]))
    await response_headers(conn, 1)


async def test_generic_3_10_sends_multiple_continuation_frames(conn: H2Conn) -> None:
    fragment = block(conn)
    await conn.send(
        headers(1, fragment[:5], end_headers=False),
        continuation(1, fragment[5:10], end_headers=False),
        continuation(1, fragment[10:]),
    )
    await response_headers(conn, 1)


# ---------------------------------------------------------------- 4 HTTP message exchanges


async def test_generic_4_sends_get_request(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn)))
    await response_headers(conn, 1)


async def test_generic_4_sends_head_request(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn, "HEAD")))
    frame = await response_headers(conn, 1)
    assert "END_STREAM" in frame.flags


async def test_generic_4_sends_post_request(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn, "POST"), end_stream=False), data(1))
    await response_headers(conn, 1)


async def test_generic_4_sends_post_request_with_trailers(conn: H2Conn) -> None:
    await conn.send(
        headers(1, block(conn, "POST", [("trailer", "x-test")]), end_stream=False),
        data(1, end_stream=False),
        headers(1, conn.encode([("x-test", "ok")])),
    )
    await response_headers(conn, 1)


# ---------------------------------------------------------------- 5 HPACK


def hpack_case(kind: str, name: str | int, huffman_coded: bool):  # -> a pytest.param
    named = "indexed name" if isinstance(name, int) else "new name"
    coding = " (Huffman)" if huffman_coded else ""
    return pytest.param(kind, name, huffman_coded, id=f"{kind} - {named}{coding}")


@pytest.mark.parametrize(
    ("kind", "name", "huffman_coded"),
    [
        hpack_case(kind, name, huffman_coded)
        for kind in LITERALS
        for name in (USER_AGENT, "x-test")
        for huffman_coded in (False, True)
    ],
)
async def test_generic_5_sends_literal_header_field(
    conn: H2Conn, kind: str, name: str | int, huffman_coded: bool
) -> None:
    representation = literal(kind, name, b"h2spec", huffman_coded=huffman_coded)
    await conn.send(headers(1, block(conn) + representation))
    await response_headers(conn, 1)


async def test_generic_5_sends_indexed_header_field(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn) + hpack_int(USER_AGENT, 7, 0x80)))
    await response_headers(conn, 1)


async def test_generic_5_sends_dynamic_table_size_update(conn: H2Conn) -> None:
    await conn.send(headers(1, table_size_update(128) + block(conn)))
    await response_headers(conn, 1)


async def test_generic_5_sends_multiple_dynamic_table_size_updates(conn: H2Conn) -> None:
    await conn.send(headers(1, table_size_update(128) + table_size_update(4096) + block(conn)))
    await response_headers(conn, 1)


# ================================================================ HPACK


async def test_hpack_2_3_3_indexed_field_with_invalid_index(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn) + hpack_int(70, 7, 0x80)))
    await connection_error(conn, COMPRESSION_ERROR)


async def test_hpack_2_3_3_literal_field_with_invalid_index(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn) + hpack_int(70, 6, 0x40) + string(b"")))
    await connection_error(conn, COMPRESSION_ERROR)


async def test_hpack_4_2_table_size_update_at_end_of_block(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn) + table_size_update(1)))
    await connection_error(conn, COMPRESSION_ERROR)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(huffman(b"test", padding="long"), id="padding-longer-than-7-bits"),
        pytest.param(huffman(b"test", padding="zero"), id="padded-by-zero"),
        pytest.param(huffman(b"test", eos_at=2), id="containing-eos"),
    ],
)
async def test_hpack_5_2_invalid_huffman_string(conn: H2Conn, value: bytes) -> None:
    representation = hpack_int(0, 4) + huffman(b"x-test") + value
    await conn.send(headers(1, block(conn) + representation))
    await connection_error(conn, COMPRESSION_ERROR)


async def test_hpack_6_1_indexed_field_with_index_0(conn: H2Conn) -> None:
    await conn.send(headers(1, block(conn) + b"\x80"))
    await connection_error(conn, COMPRESSION_ERROR)


async def test_hpack_6_3_table_size_update_above_settings(conn: H2Conn) -> None:
    limit = conn.server_settings.get(HEADER_TABLE_SIZE, 4096)
    await conn.send(headers(1, table_size_update(limit + 1) + block(conn)))
    await connection_error(conn, COMPRESSION_ERROR)


def test_hpack_primitives() -> None:
    """The helpers above produce what RFC 7541 (Appendix C) says."""
    assert hpack_int(10, 5) == b"\x0a"
    assert hpack_int(1337, 5) == b"\x1f\x9a\x0a"
    assert huffman(b"www.example.com") == b"\x8c" + bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff")
    assert huffman(b"test", padding="zero")[-1] == 0x90
    assert huffman(b"test", padding="long")[-2:] == b"\x9f\xff"
    assert literal("without indexing", 4, b"/sample/path", huffman_coded=False) == (
        b"\x04\x0c/sample/path"
    )
