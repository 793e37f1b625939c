"""A raw HTTP/2 client for tests: hand-built frames (hyperframe) and HPACK
(hpack) over a real socket, so tests can send what no polite client would.

    async with h2_connect(url) as conn:          # preface + SETTINGS exchanged
        await conn.send(headers_frame(1, request_headers(conn, "/"), end_stream=True))
        frame = await conn.expect(HeadersFrame)
        ...
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from anyio.abc import ByteStream
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .client import address

__all__ = [
    "PREFACE",
    "ConnectionEnded",
    "H2Conn",
    "h2_connect",
    "headers_frame",
    "raw_frame",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
F = TypeVar("F", bound=Frame)


class ConnectionEnded(Exception):
    """The server closed the connection."""


class H2Conn:
    """One raw HTTP/2 connection."""

    def __init__(self, stream: ByteStream, authority: str) -> None:
        self.stream = stream
        self.authority = authority
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.buffer = b""
        self.closed = False
        self.server_settings: dict[int, int] = {}
        self.scheme = "http"  # "https" over TLS (set by h2_connect)

    async def send(self, *frames: Frame | bytes) -> None:
        """Send frames (or raw bytes) as one write."""
        await self.stream.send(
            b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        )

    async def receive(self, timeout: float = 5.0) -> Frame:
        """The next frame; :class:`ConnectionEnded` when the server closed."""
        with anyio.fail_after(timeout):
            while True:
                if len(self.buffer) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                    if len(self.buffer) >= 9 + length:
                        frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
                        self.buffer = self.buffer[9 + length :]
                        return frame
                try:
                    data = await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    self.closed = True
                    raise ConnectionEnded from None
                self.buffer += data

    async def expect(self, kind: type[F], timeout: float = 5.0) -> F:
        """Skip frames until one of ``kind`` (SETTINGS, WINDOW_UPDATE and PING
        acks in between are normal)."""
        while True:
            frame = await self.receive(timeout)
            if isinstance(frame, kind):
                return frame

    async def closed_or_goaway(self, timeout: float = 5.0) -> GoAwayFrame | None:
        """Read until GOAWAY (returned) or the connection closes (None)."""
        try:
            return await self.expect(GoAwayFrame, timeout)
        except ConnectionEnded:
            return None

    async def stream_error(self, stream_id: int, timeout: float = 5.0) -> RstStreamFrame:
        """Read until RST_STREAM on ``stream_id``."""
        while True:
            frame = await self.expect(RstStreamFrame, timeout)
            if frame.stream_id == stream_id:
                return frame

    async def wait_closed(self, timeout: float = 2.0) -> bool:
        """Skip frames until the server closes the connection; ``False`` if
        it is still open after ``timeout`` seconds."""
        try:
            with anyio.fail_after(timeout):
                while True:
                    await self.receive(timeout)
        except ConnectionEnded:
            return True
        except TimeoutError:
            return False

    async def error_frame(
        self, stream_id: int | None = None, timeout: float = 2.0
    ) -> RstStreamFrame | GoAwayFrame | None:
        """Read until GOAWAY, RST_STREAM on ``stream_id`` (when given) or the
        end of the connection (``None``); :class:`TimeoutError` after
        ``timeout`` seconds without any of them."""
        try:
            with anyio.fail_after(timeout):
                while True:
                    frame = await self.receive(timeout)
                    if isinstance(frame, GoAwayFrame):
                        return frame
                    if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
                        return frame
        except ConnectionEnded:
            return None

    def decode(self, frame: HeadersFrame | ContinuationFrame) -> list[tuple[bytes, bytes]]:
        return [(bytes(n), bytes(v)) for n, v in self.decoder.decode(frame.data, raw=True)]

    def encode(self, headers: Sequence[tuple[bytes | str, bytes | str]]) -> bytes:
        return self.encoder.encode(list(headers))

    def request_headers(
        self, path: str = "/", method: str = "GET", extra: Sequence[tuple[str, str]] = ()
    ) -> bytes:
        """An encoded, valid request header block."""
        return self.encode(
            [
                (":method", method),
                (":scheme", "http"),
                (":path", path),
                (":authority", self.authority),
                *extra,
            ]
        )

    async def response(self, stream_id: int, timeout: float = 5.0) -> tuple[int, bytes]:
        """Read frames until ``stream_id`` ends; return (status, body)."""
        status = 0
        body = b""
        while True:
            frame = await self.receive(timeout)
            if frame.stream_id != stream_id:
                continue
            if isinstance(frame, HeadersFrame):
                for name, value in self.decode(frame):
                    if name == b":status" and not value.startswith(b"1"):
                        status = int(value)
            elif isinstance(frame, DataFrame):
                body += frame.data
                if frame.flow_controlled_length:
                    await self.send(
                        WindowUpdateFrame(0, window_increment=frame.flow_controlled_length),
                        WindowUpdateFrame(stream_id, window_increment=frame.flow_controlled_length),
                    )
            elif isinstance(frame, RstStreamFrame):
                raise AssertionError(f"stream {stream_id} reset: {frame.error_code}")
            if "END_STREAM" in frame.flags:
                return status, body


def raw_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame as bytes, unchecked (hyperframe refuses to build invalid ones)."""
    header = len(payload).to_bytes(3, "big") + bytes((frame_type, flags))
    return header + stream_id.to_bytes(4, "big") + payload


def headers_frame(stream_id: int, block: bytes, *, end_stream: bool = True) -> HeadersFrame:
    flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
    return HeadersFrame(stream_id, data=block, flags=flags)


@asynccontextmanager
async def h2_connect(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    settings: dict[int, int] | None = None,
    handshake: bool = True,
) -> AsyncIterator[H2Conn]:
    """Connect to ``url`` (h2c prior knowledge, or TLS with ALPN h2 when
    ``ssl_context`` is given) and, by default, exchange prefaces."""
    host, port = address(url)
    if ssl_context is not None:
        ssl_context.set_alpn_protocols(["h2"])
        stream: ByteStream = await anyio.connect_tcp(
            host, port, ssl_context=ssl_context, tls_standard_compatible=False
        )
    else:
        stream = await anyio.connect_tcp(host, port)
    conn = H2Conn(stream, f"{host}:{port}")
    if ssl_context is not None:
        conn.scheme = "https"
    async with stream:
        if handshake:
            await conn.send(PREFACE, SettingsFrame(0, settings=settings or {}))
            frame = await conn.expect(SettingsFrame)
            assert "ACK" not in frame.flags, "the server's preface must be a SETTINGS frame"
            conn.server_settings = dict(frame.settings)
            await conn.send(SettingsFrame(0, flags=["ACK"]))
        yield conn
