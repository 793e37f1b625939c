"""A small HTTP/3 client for the tests: aioquic's client side (QuicConnection
+ H3Connection, ``is_client=True``) over an anyio UDP socket, so it runs
under asyncio and trio alike.

One task drives the connection: it waits for a datagram or aioquic's timer,
feeds aioquic, and sends what aioquic has. Requests are streams whose
events collect in :class:`H3Response`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived, PushPromiseReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamReset

Headers = list[tuple[bytes, bytes]]


@dataclass
class H3Response:
    """What arrived on one request stream."""

    stream_id: int
    status: int | None = None
    headers: Headers = field(default_factory=list)
    informational: list[tuple[int, Headers]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers | None = None
    ended: bool = False
    reset: int | None = None  # the server's RESET_STREAM error code
    pushes: list[int] = field(default_factory=list)  # push ids promised on it
    frames: list[str] = field(default_factory=list)  # "headers", "data", "trailers"
    done: anyio.Event = field(default_factory=anyio.Event)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _NoPushH3(H3Connection):
    """A client that sends no MAX_PUSH_ID: the server may not push."""

    def _init_connection(self) -> None:
        self._max_push_id = None
        super()._init_connection()


class H3Client:
    """One QUIC connection with HTTP/3 on top (use :func:`h3_connect`)."""

    def __init__(
        self, sock: Any, quic: QuicConnection, addr: tuple[str, int], allow_push: bool
    ) -> None:
        self.sock = sock
        self.quic = quic
        self.h3 = _NoPushH3(quic) if not allow_push else H3Connection(quic)
        self.addr = addr
        self.responses: dict[int, H3Response] = {}
        self.pushed: dict[int, H3Response] = {}  # by push id
        self.push_promises: dict[int, Headers] = {}  # push id -> request headers
        self.terminated: ConnectionTerminated | None = None
        self.closed = anyio.Event()
        self.goaway = False
        self._send_lock = anyio.Lock()

    # ------------------------------------------------------------ driving

    async def rebind(self) -> None:
        """Move to a new UDP socket (a new source port), as after a NAT
        rebinding: the server sees the connection come from a new address."""
        old = self.sock
        self.sock = await anyio.create_connected_udp_socket(*self.addr)
        await old.aclose()

    async def run(self) -> None:
        while self.terminated is None:
            await self.flush()
            timer = self.quic.get_timer()
            with anyio.move_on_at(timer if timer is not None else anyio.current_time() + 3600):
                sock = self.sock
                try:
                    data = await sock.receive()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    if sock is not self.sock:
                        continue  # rebound: read the new socket
                    break
                self.quic.receive_datagram(data, self.addr, anyio.current_time())
                self._process()
                continue
            now = anyio.current_time()
            timer = self.quic.get_timer()
            if timer is not None and now >= timer:
                self.quic.handle_timer(now)
                self._process()
        self.closed.set()
        for response in self.responses.values():
            response.done.set()

    async def flush(self) -> None:
        async with self._send_lock:
            for data, _ in self.quic.datagrams_to_send(anyio.current_time()):
                try:
                    await self.sock.send(data)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    return

    def _process(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, ConnectionTerminated):
                self.terminated = event
            elif isinstance(event, StreamReset):
                response = self.responses.get(event.stream_id)
                if response is not None:
                    response.reset = event.error_code
                    response.done.set()
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

    def _h3_event(self, event: Any) -> None:
        if isinstance(event, PushPromiseReceived):
            self.push_promises[event.push_id] = event.headers
            self.responses[event.stream_id].pushes.append(event.push_id)
            return
        if event.push_id is not None:
            response = self.pushed.setdefault(event.push_id, H3Response(event.stream_id))
        else:
            response = self.responses.setdefault(event.stream_id, H3Response(event.stream_id))
        if isinstance(event, HeadersReceived):
            status = dict(event.headers).get(b":status")
            if response.status is None and status is not None and status.startswith(b"1"):
                response.informational.append((int(status), event.headers))
                response.frames.append("informational")
            elif response.status is None:
                response.status = int(status) if status else None
                response.headers = [(k, v) for k, v in event.headers if k[:1] != b":"]
                response.frames.append("headers")
            else:
                response.trailers = event.headers
                response.frames.append("trailers")
        elif isinstance(event, DataReceived) and event.data:
            response.body += event.data
            response.frames.append("data")
        if event.stream_ended:
            response.ended = True
            response.done.set()

    # ------------------------------------------------------------ requests

    async def send_request(
        self,
        method: str,
        path: str,
        headers: Headers | None = None,
        body: bytes | None = None,
        *,
        end: bool = True,
        authority: str = "localhost",
        protocol: str | None = None,
    ) -> H3Response:
        """Send a request head (and body); the response collects as it comes."""
        stream_id = self.quic.get_next_available_stream_id()
        head: Headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        if method == "CONNECT" and protocol is None:  # a tunnel: :authority only
            head = [(b":method", b"CONNECT"), (b":authority", authority.encode())]
        if protocol is not None:
            head.insert(1, (b":protocol", protocol.encode()))
        head += headers or []
        response = H3Response(stream_id)
        self.responses[stream_id] = response
        self.h3.send_headers(stream_id, head, end_stream=end and not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=end)
        await self.flush()
        return response

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.h3.send_data(stream_id, data, end_stream=end)
        await self.flush()

    async def request(
        self,
        method: str,
        path: str,
        headers: Headers | None = None,
        body: bytes | None = None,
        *,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> H3Response:
        """Send a request and wait for the whole response."""
        response = await self.send_request(method, path, headers, body, **kwargs)
        with anyio.fail_after(timeout):
            await response.done.wait()
        return response

    async def close(self, code: int = 0x100) -> None:
        self.quic.close(error_code=code)
        await self.flush()


def client_configuration(
    *, max_push_id: bool = False, max_datagram_size: int = 1200, **kwargs: Any
) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
        max_datagram_size=max_datagram_size,
        **kwargs,
    )
    return configuration


@asynccontextmanager
async def h3_connect(
    host: str,
    port: int,
    *,
    configuration: QuicConfiguration | None = None,
    allow_push: bool = False,
    handshake_timeout: float = 10.0,
) -> AsyncIterator[H3Client]:
    """Connect, complete the handshake, yield the client; close at the end."""
    configuration = configuration or client_configuration()
    quic = QuicConnection(configuration=configuration)
    async with await anyio.create_connected_udp_socket(host, port) as sock:
        client = H3Client(sock, quic, (host, port), allow_push)
        quic.connect((host, port), anyio.current_time())
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run)
            with anyio.fail_after(handshake_timeout):
                while not quic._handshake_complete and client.terminated is None:
                    await anyio.sleep(0.005)
            try:
                yield client
            finally:
                if client.terminated is None:
                    await client.close()
                    with anyio.move_on_after(1):
                        await client.closed.wait()
                tg.cancel_scope.cancel()
                if client.sock is not sock:  # rebound: the new socket is ours too
                    await client.sock.aclose()
