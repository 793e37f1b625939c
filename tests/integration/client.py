"""A raw HTTP/1.1 client for the cases httpx will not produce: pipelining,
malformed requests, half-sent heads, 100-continue, trailers. Requests go out
as the exact bytes given; responses are parsed by a fresh h11 client per
response (so they can follow any bytes we sent)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

import anyio
import h11
from anyio.abc import ByteStream


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    informational: list[h11.InformationalResponse] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class RawClient:
    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.eof = False

    @classmethod
    async def connect(cls, url: str, ssl_context: ssl.SSLContext | None = None) -> RawClient:
        host, port = address(url)
        if ssl_context is None:
            return cls(await anyio.connect_tcp(host, port))
        return cls(
            await anyio.connect_tcp(
                host, port, ssl_context=ssl_context, tls_standard_compatible=False
            )
        )

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await anyio.aclose_forcefully(self.stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _fill(self) -> bytes:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
            self.eof = True
        return data

    async def read_all(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection."""
        with anyio.fail_after(timeout):
            while not self.eof:
                self.buffer += await self._fill()
        data, self.buffer = self.buffer, b""
        return data

    async def response(self, method: bytes = b"GET", timeout: float = 5.0) -> Reply:
        """Parse the next whole response from the connection."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        if self.buffer:
            conn.receive_data(self.buffer)  # (b"" would mean EOF to h11)
        self.buffer = b""
        reply = Reply(0, {}, b"")
        with anyio.fail_after(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await self._fill())
                elif isinstance(event, h11.InformationalResponse):
                    reply.informational.append(event)
                elif isinstance(event, h11.Response):
                    reply.status = event.status_code
                    reply.raw_headers = list(event.headers)
                    reply.headers = dict(event.headers)
                elif isinstance(event, h11.Data):
                    reply.body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    reply.trailers = list(event.headers)
                    self.buffer = conn.trailing_data[0]
                    return reply
                else:
                    raise AssertionError(event)

    async def is_closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (EOF or reset),
        False if it sends more bytes."""
        if self.buffer:
            return False
        with anyio.fail_after(timeout):
            return await self._fill() == b""


def get(target: str = "/", *headers: str, method: str = "GET") -> bytes:
    """A request head with Host, as bytes."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", *headers, "", ""]
    return "\r\n".join(lines).encode()
