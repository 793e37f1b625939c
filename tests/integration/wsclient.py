"""WebSocket test clients over real sockets, on any anyio backend.

wsproto frames (so tests can also send raw, hostile bytes); the transport
is HTTP/1.1 (``Upgrade: websocket``) or HTTP/2 (RFC 8441 extended CONNECT,
driven with the h2 library).

    async with ws_connect(url, "/chat", subprotocols=["chat"]) as ws:
        await ws.send("hello")
        assert await ws.receive() == "hello"
        await ws.close(1000)
        assert ws.close_code == 1000

    async with h2_ws_connect(url, "/chat") as ws:   # h2c, or TLS with ssl_context
        ...
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
from anyio.abc import ByteStream
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate

from .client import address

__all__ = ["Closed", "HandshakeRefused", "WSClient", "h2_ws_connect", "ws_connect"]


@dataclass(frozen=True)
class Closed:
    """The server's Close frame (``code`` 1005 without one), or the
    transport's end without a Close (``code`` 1006)."""

    code: int
    reason: str = ""


class HandshakeRefused(Exception):
    """The server answered the handshake with another status."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"handshake refused with {status}")
        self.status = status
        self.headers = headers
        self.body = body


@dataclass
class WSClient:
    """One open WebSocket. ``send_raw`` writes bytes as they are (HTTP/1.1:
    on the socket; HTTP/2: as the stream's DATA)."""

    stream: ByteStream
    status: int
    headers: list[tuple[bytes, bytes]]
    ws: Connection
    h2: h2.connection.H2Connection | None = None
    stream_id: int = 0
    messages: list[object] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    pings: list[bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    ended: bool = False  # the transport (HTTP/2: the stream) ended
    _parts: list[str | bytes] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def subprotocol(self) -> str | None:
        value = self.header(b"sec-websocket-protocol")
        return None if value is None else value.decode()

    async def send_raw(self, data: bytes, *, end_stream: bool = False) -> None:
        if self.h2 is None:
            await self.stream.send(data)
            return
        self.h2.send_data(self.stream_id, data, end_stream=end_stream)
        await self.stream.send(self.h2.data_to_send())

    async def send(self, message: str | bytes) -> None:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        await self.send_raw(self.ws.send(event))

    async def ping(self, payload: bytes = b"") -> None:
        await self.send_raw(self.ws.send(Ping(payload)))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.send_raw(self.ws.send(CloseConnection(code, reason)))

    async def receive(self, timeout: float = 5.0) -> str | bytes | Closed:
        """The next whole message, or :class:`Closed` (then always that)."""
        with anyio.fail_after(timeout):
            while not self.messages:
                if self.close_code is not None or self.ended:
                    return Closed(self.close_code or 1006, self.close_reason)
                await self._read()
        message = self.messages.pop(0)
        assert isinstance(message, str | bytes)
        return message

    async def wait_closed(self, timeout: float = 5.0) -> Closed:
        """Skip messages until the server's Close (or the end)."""
        while True:
            message = await self.receive(timeout)
            if isinstance(message, Closed):
                return message

    async def transport_closed(self, timeout: float = 5.0) -> bool:
        """``True`` once the server closed the transport (HTTP/2: ended the stream)."""
        with anyio.move_on_after(timeout):
            while not self.ended:
                await self._read()
            return True
        return False

    async def _read(self) -> None:
        try:
            data = await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            data = b""
        if not data:
            self.ended = True
            return
        if self.h2 is None:
            self._feed(data)
            return
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
                self.h2.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
                self._feed(event.data)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                if event.stream_id == self.stream_id:
                    self.ended = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.ended = True
        outgoing = self.h2.data_to_send()
        if outgoing:
            await self.stream.send(outgoing)

    def _feed(self, data: bytes) -> None:
        if self.close_code is not None:
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                payload = event.data
                self._parts.append(payload if isinstance(payload, str) else bytes(payload))
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    if isinstance(event, TextMessage):
                        self.messages.append("".join(p for p in parts if isinstance(p, str)))
                    else:
                        self.messages.append(b"".join(p for p in parts if isinstance(p, bytes)))
            elif isinstance(event, Ping):
                self.pings.append(bytes(event.payload))
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.close_code = int(event.code)
                self.close_reason = event.reason or ""
                return


def _offer(deflate: bool) -> tuple[list[Extension], list[tuple[bytes, bytes]]]:
    if not deflate:
        return [], []
    extension = PerMessageDeflate()
    offer = extension.offer()
    assert isinstance(offer, str)
    return [extension], [(b"sec-websocket-extensions", b"permessage-deflate; " + offer.encode())]


def _finalize(extensions: list[Extension], headers: list[tuple[bytes, bytes]]) -> list[Extension]:
    accepted = next((v for k, v in headers if k == b"sec-websocket-extensions"), None)
    if accepted is None:
        return []
    for extension in extensions:
        extension.finalize(accepted.decode())
    return extensions


async def _connect(url: str, ssl_context: ssl.SSLContext | None) -> ByteStream:
    host, port = address(url)
    stream: ByteStream = await anyio.connect_tcp(host, port)
    if ssl_context is not None:
        stream = await anyio.streams.tls.TLSStream.wrap(
            stream,
            server_side=False,
            hostname="localhost",
            ssl_context=ssl_context,
            standard_compatible=False,  # tricorn closes without close_notify
        )
    return stream


@asynccontextmanager
async def ws_connect(
    url: str,
    path: str = "/",
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[bytes, bytes]] = (),
    deflate: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[WSClient]:
    """An HTTP/1.1 WebSocket; raises :class:`HandshakeRefused` on another status."""
    import anyio.streams.tls

    stream = await _connect(url, ssl_context)
    async with stream:
        key = base64.b64encode(os.urandom(16))
        host, port = address(url)
        extensions, offer = _offer(deflate)
        lines = [
            b"GET " + path.encode() + b" HTTP/1.1",
            b"host: %s:%d" % (host.encode(), port),
            b"upgrade: websocket",
            b"connection: Upgrade",
            b"sec-websocket-key: " + key,
            b"sec-websocket-version: 13",
        ]
        if subprotocols:
            lines.append(b"sec-websocket-protocol: " + ", ".join(subprotocols).encode())
        lines += [name + b": " + value for name, value in [*offer, *headers]]
        await stream.send(b"\r\n".join(lines) + b"\r\n\r\n")
        buffer = b""
        with anyio.fail_after(timeout):
            while b"\r\n\r\n" not in buffer:
                chunk = await stream.receive()
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            status_line, *fields = head.split(b"\r\n")
            status = int(status_line.split()[1])
            response = [
                (name.strip().lower(), value.strip())
                for name, value in (line.split(b":", 1) for line in fields)
            ]
            if status != 101:
                length = int(next((v for k, v in response if k == b"content-length"), b"-1"))
                while length < 0 or len(rest) < length:
                    try:
                        rest += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
                raise HandshakeRefused(status, response, rest)
        ws = Connection(ConnectionType.CLIENT, _finalize(extensions, response))
        client = WSClient(stream, status, response, ws)
        if rest:
            client._feed(rest)
        yield client


@asynccontextmanager
async def h2_ws_connect(
    url: str,
    path: str = "/",
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[bytes, bytes]] = (),
    deflate: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    protocol: str | None = "websocket",
    timeout: float = 5.0,
) -> AsyncIterator[WSClient]:
    """An HTTP/2 WebSocket (RFC 8441) on a fresh connection: h2c prior
    knowledge, or TLS with ``ssl_context`` (ALPN h2). Raises
    :class:`HandshakeRefused` on a status other than 200."""
    import anyio.streams.tls

    if ssl_context is not None:
        ssl_context.set_alpn_protocols(["h2"])
    stream = await _connect(url, ssl_context)
    async with stream:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        await stream.send(conn.data_to_send())
        with anyio.fail_after(timeout):
            enabled = None
            while enabled is None:
                for event in conn.receive_data(await stream.receive()):
                    if isinstance(event, h2.events.RemoteSettingsChanged):
                        setting = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
                        enabled = conn.remote_settings.get(setting, 0)
                await stream.send(conn.data_to_send())
            assert enabled == 1, "the server does not advertise SETTINGS_ENABLE_CONNECT_PROTOCOL"
            host, port = address(url)
            extensions, offer = _offer(deflate)
            request: list[tuple[bytes, bytes]] = [
                (b":method", b"CONNECT"),
                (b":scheme", b"https" if ssl_context is not None else b"http"),
                (b":path", path.encode()),
                (b":authority", b"%s:%d" % (host.encode(), port)),
            ]
            if protocol is not None:
                request.insert(1, (b":protocol", protocol.encode()))
            request.append((b"sec-websocket-version", b"13"))
            if subprotocols:
                request.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
            request += [*offer, *headers]
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, request)
            await stream.send(conn.data_to_send())
            response: list[tuple[bytes, bytes]] | None = None
            body = b""
            early_flow = 0
            ended = False
            while response is None or (int(dict(response)[b":status"]) != 200 and not ended):
                for event in conn.receive_data(await stream.receive()):
                    if isinstance(event, h2.events.ResponseReceived):
                        response = list(event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data  # the denial's body, or frames after the 200
                        early_flow += event.flow_controlled_length
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        ended = True
                await stream.send(conn.data_to_send())
            status = int(dict(response)[b":status"])
            if status != 200:
                raise HandshakeRefused(status, response, body)
        ws = Connection(ConnectionType.CLIENT, _finalize(extensions, response))
        client = WSClient(stream, status, response, ws, conn, stream_id)
        client.ended = ended
        if body:  # frames that came with the 200: credited with the client's next write
            conn.acknowledge_received_data(early_flow, stream_id)
            client._feed(body)
        yield client
