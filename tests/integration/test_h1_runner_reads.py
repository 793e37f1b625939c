"""HTTP/1.1 requests read by the runner task itself (trio, cleartext and TLS).

Once a whole request went to the connection's runner, the read loop lends
it the socket: the runner, its call done, reads the next request instead
of the read loop reading it and waking the runner (``Connection.
_lend_to_runners``). These tests check that the path is taken where it
exists and nowhere else, and hold it to what the read loop guarantees: a
body that comes after its head, pipelined requests, a kept-alive
connection closed at shutdown. They run on every backend, over TCP and
over TLS.
"""

from __future__ import annotations

import gc
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.streams.tls import TLSStream

from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.server.connection import Connection
from tricorn.server.streams import Stream

from ..conftest import TLSFiles, pure_core_only, running_server
from .apps import read_body
from .test_websocket_limits import TEXT, frame

pytestmark = pytest.mark.anyio


async def echo(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """The request's body back (its path when it has none); a WebSocket's
    messages back."""
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    if scope["type"] != "http":
        return
    body = await read_body(receive) or scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Transport:
    """How the tests reach the server: plain TCP, or TLS (the trio worker's
    runners read through its TLS stream; asyncio's callback decrypts)."""

    def __init__(self, tls_files: TLSFiles | None) -> None:
        self.tls_files = tls_files

    def settings(self, **settings: Any) -> dict[str, Any]:
        """The server's settings, with its certificate for TLS."""
        if self.tls_files is not None:
            settings |= {"certfile": self.tls_files.certfile, "keyfile": self.tls_files.keyfile}
        return settings

    async def connect(self, url: str) -> anyio.abc.ByteStream:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        stream = await anyio.connect_tcp(parts.hostname, parts.port)
        if self.tls_files is None:
            return stream
        return await TLSStream.wrap(
            stream,
            hostname="localhost",
            ssl_context=self.tls_files.client_context,
            standard_compatible=False,
        )


@pytest.fixture(params=["tcp", "tls"])
def transport(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Transport:
    return Transport(tls_files if request.param == "tls" else None)


async def read_responses(client: anyio.abc.ByteStream, count: int) -> list[bytes]:
    """The bodies of ``count`` responses (Content-Length framed)."""
    buffer = b""
    bodies: list[bytes] = []
    while len(bodies) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].lower()
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            end = head_end + 4 + length
            if len(buffer) >= end:
                bodies.append(buffer[head_end + 4 : end])
                buffer = buffer[end:]
                continue
        buffer += await client.receive()
    return bodies


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def warm_up(client: anyio.abc.ByteStream) -> None:
    """Three requests, one at a time: the runner reads from the second on."""
    for number in range(3):
        await client.send(get(f"/{number}"))
        assert await read_responses(client, 1) == [f"/{number}".encode()]


@pure_core_only  # (a spy on the class)
async def test_the_runner_reads_the_next_request_on_trio_only(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch, transport: Transport
) -> None:
    reads: list[int] = []
    read_next_request = Connection._read_next_request

    async def spy(self: Connection, slot: Any) -> Any:
        reads.append(1)
        return await read_next_request(self, slot)

    monkeypatch.setattr(Connection, "_read_next_request", spy)
    with anyio.fail_after(10):
        async with running_server(echo, **transport.settings()) as url:
            client = await transport.connect(url)
            async with client:
                for number in range(20):
                    await client.send(get(f"/{number}"))
                    assert await read_responses(client, 1) == [f"/{number}".encode()]
    if anyio_backend_name == "trio":
        assert len(reads) >= 18  # every request after the first two
    else:
        assert reads == []


async def test_a_body_that_comes_after_its_head_is_read(transport: Transport) -> None:
    """The runner reads a head whose body is still to come: the socket
    goes back to the read loop, which reads the body."""
    with anyio.fail_after(10):
        async with running_server(echo, **transport.settings()) as url:
            client = await transport.connect(url)
            async with client:
                await warm_up(client)
                await client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
                await anyio.sleep(0.1)
                await client.send(b"hello")
                assert await read_responses(client, 1) == [b"hello"]
                await client.send(get("/after"))  # and the connection goes on
                assert await read_responses(client, 1) == [b"/after"]


async def test_pipelined_requests_are_answered_in_order(transport: Transport) -> None:
    with anyio.fail_after(10):
        async with running_server(echo, **transport.settings()) as url:
            client = await transport.connect(url)
            async with client:
                await warm_up(client)
                await client.send(get("/a") + get("/b") + get("/c"))
                assert await read_responses(client, 3) == [b"/a", b"/b", b"/c"]
                post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
                await client.send(post + get("/d"))
                assert await read_responses(client, 2) == [b"body", b"/d"]


async def test_shutdown_closes_a_connection_whose_runner_reads(transport: Transport) -> None:
    """A graceful shutdown ends the runner's read at once (the control
    task closes the idle connection; nothing waits for the keep-alive
    timeout)."""
    with anyio.fail_after(10):
        async with running_server(echo, **transport.settings(keep_alive_timeout=30.0)) as url:
            client = await transport.connect(url)
            await warm_up(client)
            started = anyio.current_time()
        # (the server has shut down here)
        assert anyio.current_time() - started < 3
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError)):
            await client.receive()
        await client.aclose()


async def test_a_websocket_after_requests_is_read(transport: Transport) -> None:
    """A WebSocket opened on a kept-alive connection by a request the
    runner read: its messages are read (by the read loop, or by the app's
    own receive(), see Connection._lend), not left to the runner."""
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with anyio.fail_after(10):
        async with running_server(echo, **transport.settings()) as url:
            client = await transport.connect(url)
            async with client:
                await warm_up(client)
                await client.send(upgrade)
                buffer = b""
                while b"\r\n\r\n" not in buffer:
                    buffer += await client.receive()
                assert buffer.startswith(b"HTTP/1.1 101 ")
                buffer = buffer.split(b"\r\n\r\n", 1)[1]
                for number in range(3):
                    text = f"message {number}".encode()
                    await client.send(frame(TEXT, text))
                    while len(buffer) < 2 + len(text):
                        buffer += await client.receive()
                    assert buffer[: 2 + len(text)] == bytes((0x81, len(text))) + text
                    buffer = buffer[2 + len(text) :]


async def test_the_keep_alive_timeout_closes_a_connection_whose_runner_reads(
    transport: Transport,
) -> None:
    with anyio.fail_after(10):
        async with running_server(echo, **transport.settings(keep_alive_timeout=0.5)) as url:
            client = await transport.connect(url)
            async with client:
                await warm_up(client)
                started = anyio.current_time()
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()
                assert 0.4 < anyio.current_time() - started < 3


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


async def test_an_idle_kept_alive_connection_keeps_nothing_of_its_requests(
    anyio_backend_name: str, transport: Transport
) -> None:
    """Between requests the runner parks holding no stream (nor, with it,
    the request and its headers), and the asyncio transport's stream keeps
    nothing of the anyio stream and protocol it replaced: per idle
    connection, memory that a server with many of them would pay for
    every one (a kilobyte or two each)."""
    protocols: list[type] = []
    if anyio_backend_name == "asyncio":  # (and uvloop: anyio's asyncio streams)
        from anyio._backends._asyncio import StreamProtocol

        protocols.append(StreamProtocol)
    with anyio.fail_after(10):  # (well within the keep-alive timeout: the connection stays)
        async with running_server(echo, **transport.settings(keep_alive_timeout=60)) as url:
            client = await transport.connect(url)
            async with client:
                await warm_up(client)
                for kind, allowed in ((Stream, 0), *((kind, 1) for kind in protocols)):
                    # (the runner parks once its response is written; the
                    # client's own connection has a StreamProtocol)
                    while _alive(kind) > allowed:
                        await anyio.sleep(0.01)
