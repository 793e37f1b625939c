"""WebSockets end to end with real clients on real sockets, under asyncio,
uvloop and trio: the wsproto-based clients of wsclient.py over HTTP/1.1
(``Upgrade: websocket``) and HTTP/2 (RFC 8441 extended CONNECT), each in
cleartext and over TLS (ALPN http/1.1 and h2); the ``websockets`` library
as an independent client; ``python -m tricorn`` configured by TOML and by
flags.

Most tests take the ``transport`` fixture, so they run four times per
backend: ``h1`` (ws://), ``h2c`` (HTTP/2 prior knowledge), ``h1-tls`` and
``h2-tls`` (wss://).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
import pytest
import websockets.exceptions
import websockets.sync.client
from anyio.streams.tls import TLSStream
from websockets.typing import Subprotocol
from wsproto.events import BytesMessage, TextMessage

from tricorn.asgi.types import ASGIReceive, ASGISend, Message, Scope
from tricorn.server.connection import Connection

from ..cli.test_cli_serve import free_port, tricorn
from ..conftest import TLSFiles, pure_core_only, running_server
from .client import address
from .test_h2_clients import h2_client, worker_class, write_toml
from .wsclient import Closed, HandshakeRefused, WSClient, h2_ws_connect, ws_connect

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0  # seconds, for any one test's client side
MIB = 1024 * 1024
T = TypeVar("T")


# --- the application ---------------------------------------------------------------------


class App:
    """One ASGI app whose behaviour depends on the path; it records every
    scope and every ``websocket.disconnect`` it receives."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.disconnects: list[Message] = []
        self.disconnected = anyio.Event()

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            body = b"plain " + scope["path"].encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "websocket":
            return
        self.scopes.append(scope)
        assert await receive() == {"type": "websocket.connect"}
        path = scope["path"]
        if path == "/refuse":
            await send({"type": "websocket.close", "code": 1000})
            return
        if path in ("/deny", "/deny-streamed"):
            await self._deny(send, length=path == "/deny")
            return
        if path == "/raise-before":
            raise RuntimeError("boom before accept")
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if path == "/subprotocol" and len(scope["subprotocols"]) >= 2:
            accept["subprotocol"] = scope["subprotocols"][1]
        if path == "/headers":
            accept["headers"] = [(b"x-extra", b"yes"), (b"set-cookie", b"a=b")]
        await send(accept)
        if path in ("/raise-after", "/return", "/close"):
            # One message first: h2_ws_connect drops DATA that arrives in the
            # same read as the 200, so nothing may follow the accept at once.
            assert (await receive())["type"] == "websocket.receive"
        if path == "/raise-after":
            raise RuntimeError("boom after accept")
        if path == "/return":
            return
        if path == "/close":
            await send({"type": "websocket.close", "code": 4002, "reason": "done"})
            return
        await self._echo(receive, send)

    async def _deny(self, send: ASGISend, *, length: bool) -> None:
        headers = [(b"www-authenticate", b"Bearer realm=test")]
        if length:
            headers.append((b"content-length", b"13"))
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"denied", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b", sorry"})

    async def _echo(self, receive: ASGIReceive, send: ASGISend) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.append(message)
                self.disconnected.set()
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})


# --- the transports ----------------------------------------------------------------------


@dataclass(frozen=True)
class Transport:
    """How the wsproto client reaches the server."""

    h2: bool
    tls: bool
    tls_files: TLSFiles

    @property
    def http_version(self) -> str:
        return "2" if self.h2 else "1.1"

    def settings(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {"certfile": self.tls_files.certfile, "keyfile": self.tls_files.keyfile}

    def server(self, app: Any, **settings: Any) -> AbstractAsyncContextManager[str]:
        return running_server(app, **self.settings(), **settings)

    @asynccontextmanager
    async def connect(
        self,
        url: str,
        path: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        headers: Sequence[tuple[bytes, bytes]] = (),
        deflate: bool = False,
    ) -> AsyncIterator[WSClient]:
        context = client_context(self.tls_files, "h2" if self.h2 else "http/1.1")
        connect = h2_ws_connect if self.h2 else ws_connect
        try:
            async with connect(
                url,
                path,
                subprotocols=subprotocols,
                headers=headers,
                deflate=deflate,
                ssl_context=context if self.tls else None,
            ) as ws:
                if isinstance(ws.stream, TLSStream):
                    # tricorn ends a TLS connection with the TCP FIN, without
                    # close_notify: do not send or wait for one when closing.
                    ws.stream.standard_compatible = False
                yield ws
        except anyio.BrokenResourceError as exc:
            # A refused handshake over TLS: the helper's stream was still
            # standard-compatible when it closed (on a connection tricorn
            # may have closed already).
            refused = refusal(exc)
            if refused is None:
                raise
            raise refused from None


def refusal(exc: BaseException) -> HandshakeRefused | None:
    """The :class:`HandshakeRefused` that ``exc`` happened while handling."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HandshakeRefused):
            return seen
        seen = seen.__context__
    return None


def client_context(tls_files: TLSFiles, alpn: str) -> ssl.SSLContext:
    """A fresh client context (the h2 helper sets ALPN on the one it gets)."""
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols([alpn])
    return context


TRANSPORTS = {  # id: (HTTP/2, TLS)
    "h1": (False, False),
    "h2c": (True, False),
    "h1-tls": (False, True),
    "h2-tls": (True, True),
}


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Transport:
    h2, tls = TRANSPORTS[request.param]
    return Transport(h2, tls, tls_files)


@pytest.fixture(params=["h1", "h2c"])
def cleartext(request: pytest.FixtureRequest, tls_files: TLSFiles) -> Transport:
    h2, tls = TRANSPORTS[request.param]
    return Transport(h2, tls, tls_files)


@asynccontextmanager
async def serving(transport: Transport, **settings: Any) -> AsyncIterator[tuple[App, str]]:
    app = App()
    async with transport.server(app, **settings) as url:
        yield app, url


async def send_message(ws: WSClient, message: str | bytes) -> None:
    """``ws.send``, honouring HTTP/2 flow control and frame size (the
    helper's send writes one DATA frame, fine for small messages only)."""
    conn = ws.h2
    if conn is None:
        await ws.send(message)
        return
    event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
    data = memoryview(ws.ws.send(event))
    while data:
        window = conn.local_flow_control_window(ws.stream_id)
        size = min(window, conn.max_outbound_frame_size, len(data))
        if size <= 0:
            assert not ws.ended, "the stream ended while we were sending"
            await ws._read()  # wait for a WINDOW_UPDATE
            continue
        conn.send_data(ws.stream_id, bytes(data[:size]))
        await ws.stream.send(conn.data_to_send())
        data = data[size:]


# --- echo --------------------------------------------------------------------------------


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
async def test_echo_text_and_binary(transport: Transport, deflate: bool) -> None:
    big_bytes = bytes(range(256)) * (MIB // 256)
    unit = "héllo wörld ☃ "
    size = len(unit.encode())
    big_text = unit * (MIB // size) + "!" * (MIB % size)  # 1 MiB of UTF-8
    assert len(big_text.encode()) == MIB
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (app, url), transport.connect(url, deflate=deflate) as ws:
            negotiated = ws.header(b"sec-websocket-extensions")
            if deflate:
                assert negotiated is not None
                assert negotiated.startswith(b"permessage-deflate")
            else:
                assert negotiated is None
            for message in ("hello", b"\x00\x01\xff", "", b"", big_bytes, big_text):
                await send_message(ws, message)
                assert await ws.receive() == message
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)
            await app.disconnected.wait()
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


@pure_core_only  # (a spy on the class)
@pytest.mark.parametrize("tls", [False, True], ids=["h1", "h1-tls"])
async def test_messages_reach_a_waiting_app_without_a_round_trip(
    tls: bool, tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP/1.1 a whole message that arrives while the application
    waits in receive() is handed to it directly (in the transport's
    callback on asyncio, by the read loop on trio): never queued, so no
    ``BodyConsumed`` comes back for it."""
    consumed: list[int] = []
    body_consumed = Connection.body_consumed

    async def spy(self: Connection, stream_id: int, amount: int) -> None:
        consumed.append(amount)
        await body_consumed(self, stream_id, amount)

    monkeypatch.setattr(Connection, "body_consumed", spy)
    transport = Transport(False, tls, tls_files)
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url), transport.connect(url) as ws:
            for number in range(20):
                await ws.send(f"message {number}")
                assert await ws.receive() == f"message {number}"
            await ws.close(1000)
            assert await ws.wait_closed() == Closed(1000)
    assert len([amount for amount in consumed if amount]) <= 5  # (of 20: a few may queue)


# --- the websockets library as a client ----------------------------------------------------


async def in_thread(function: Callable[[], T]) -> T:
    """Run a blocking client (the websockets sync client works under any
    backend that way); its own timeouts bound it."""
    with anyio.fail_after(TIMEOUT):
        return await anyio.to_thread.run_sync(function, abandon_on_cancel=True)


def websockets_connect(
    url: str, path: str, tls_files: TLSFiles, **options: Any
) -> websockets.sync.client.ClientConnection:
    host, port = address(url)
    if url.startswith("https://"):
        uri, context = f"wss://{host}:{port}{path}", client_context(tls_files, "http/1.1")
        # The sync client reads the SSL socket in a thread while it writes in
        # another; OpenSSL objects are not thread-safe, and with TLS 1.3 the
        # server's session tickets arrive just as the handshake request goes
        # out: about 1 in 300 requests never reached the server (seen against
        # the trio server). TLS 1.2 has no post-handshake messages.
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        uri, context = f"ws://{host}:{port}{path}", None
    connection: websockets.sync.client.ClientConnection = websockets.sync.client.connect(
        uri, ssl=context, proxy=None, open_timeout=5, close_timeout=5, max_size=2 * MIB, **options
    )
    return connection


@pytest.fixture(params=[False, True], ids=["ws", "wss"])
def secure(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def tls_settings(secure: bool, tls_files: TLSFiles) -> dict[str, Any]:
    return {"certfile": tls_files.certfile, "keyfile": tls_files.keyfile} if secure else {}


async def test_websockets_library_echo_and_compression(secure: bool, tls_files: TLSFiles) -> None:
    big = "compressible " * 50_000

    def client(url: str) -> tuple[str | None, list[str | bytes]]:
        with websockets_connect(url, "/", tls_files) as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            received = []
            for message in ("text ☃", b"\x00binary\xff", big):
                ws.send(message)
                received.append(ws.recv(timeout=5))
            ws.close(4001, "bye")
        return extensions, received

    app = App()
    async with running_server(app, **tls_settings(secure, tls_files)) as url:
        assert url.startswith("https://" if secure else "http://")
        extensions, received = await in_thread(lambda: client(url))
        with anyio.fail_after(TIMEOUT):
            await app.disconnected.wait()
    assert extensions is not None
    assert "permessage-deflate" in extensions
    assert received == ["text ☃", b"\x00binary\xff", big]
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye"}]
    assert app.scopes[0]["scheme"] == ("wss" if secure else "ws")


async def test_websockets_library_subprotocol(secure: bool, tls_files: TLSFiles) -> None:
    def client(url: str, path: str) -> str | None:
        offered = [Subprotocol("one"), Subprotocol("two")]
        with websockets_connect(url, path, tls_files, subprotocols=offered) as ws:
            return ws.subprotocol

    async with running_server(App(), **tls_settings(secure, tls_files)) as url:
        assert await in_thread(lambda: client(url, "/subprotocol")) == "two"


async def test_websockets_library_sees_the_apps_close(secure: bool, tls_files: TLSFiles) -> None:
    def client(url: str, path: str) -> websockets.exceptions.ConnectionClosed:
        with websockets_connect(url, path, tls_files) as ws:
            ws.send("go")
            try:
                ws.recv(timeout=5)
            except websockets.exceptions.ConnectionClosed as exc:
                return exc
        raise AssertionError("the connection did not close")

    async with running_server(App(), **tls_settings(secure, tls_files)) as url:
        closed = await in_thread(lambda: client(url, "/close"))
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4002, "done")
        crashed = await in_thread(lambda: client(url, "/raise-after"))
        assert crashed.rcvd is not None
        assert crashed.rcvd.code == 1011


# --- the scope ---------------------------------------------------------------------------


async def test_scope(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (app, url):
            path = "/a%20b/c?x=1&y=%20"
            headers = [(b"x-test", b"yes")]
            async with transport.connect(url, path, subprotocols=["p1", "p2"], headers=headers):
                pass
    host, port = address(url)
    [scope] = app.scopes
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["scheme"] == ("wss" if transport.tls else "ws")
    assert scope["http_version"] == transport.http_version
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1&y=%20"
    assert (b"x-test", b"yes") in scope["headers"]
    assert (b"sec-websocket-version", b"13") in scope["headers"]
    assert not any(name.startswith(b":") for name, _ in scope["headers"])
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert (b"host", f"{host}:{port}".encode()) in scope["headers"]  # (HTTP/2: :authority)
    assert scope["subprotocols"] == ["p1", "p2"]
    client_host, client_port = scope["client"]
    assert client_host == "127.0.0.1"
    assert isinstance(client_port, int)
    assert client_port != port
    assert tuple(scope["server"]) == ("127.0.0.1", port)
    assert scope["root_path"] == ""
    assert "websocket.http.response" in scope["extensions"]
    if transport.tls:
        tls = scope["extensions"]["tls"]
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    else:
        assert "tls" not in scope["extensions"]
    assert "method" not in scope


# --- the handshake -----------------------------------------------------------------------


async def test_subprotocol_negotiation(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (app, url):
            async with transport.connect(url, "/subprotocol", subprotocols=["a", "b", "c"]) as ws:
                assert ws.subprotocol == "b"
                await ws.send("x")
                assert await ws.receive() == "x"
            async with transport.connect(url, "/subprotocol") as ws:
                assert ws.header(b"sec-websocket-protocol") is None
            async with transport.connect(url, "/", subprotocols=["a", "b"]) as ws:
                assert ws.header(b"sec-websocket-protocol") is None  # the app chose none
    assert [scope["subprotocols"] for scope in app.scopes] == [["a", "b", "c"], [], ["a", "b"]]


async def test_accept_headers_arrive_in_the_handshake_response(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url), transport.connect(url, "/headers") as ws:
            assert ws.status == (200 if transport.h2 else 101)
            assert ws.header(b"x-extra") == b"yes"
            assert ws.header(b"set-cookie") == b"a=b"
            if not transport.h2:
                assert ws.header(b"upgrade") == b"websocket"
            await ws.send("still open")
            assert await ws.receive() == "still open"


async def test_close_before_accept_is_403(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url):
            with pytest.raises(HandshakeRefused) as refused:
                async with transport.connect(url, "/refuse"):
                    pass
            assert refused.value.status == 403
            async with transport.connect(url, "/") as ws:  # the server goes on
                await ws.send("next")
                assert await ws.receive() == "next"


async def test_denial_response(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url):
            with pytest.raises(HandshakeRefused) as refused:
                async with transport.connect(url, "/deny"):
                    pass
    denial = refused.value
    assert denial.status == 401
    assert (b"www-authenticate", b"Bearer realm=test") in denial.headers
    assert denial.body == b"denied, sorry"
    names = [name for name, _ in denial.headers]
    assert b"sec-websocket-accept" not in names
    assert b"upgrade" not in names


async def test_denial_streamed_without_a_length(cleartext: Transport) -> None:
    """HTTP/1.1 frames it chunked (httpx reads it: our client cannot), and
    the connection goes on; HTTP/2 ends the stream."""
    upgrade = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    with anyio.fail_after(TIMEOUT):
        async with serving(cleartext) as (_, url):
            if cleartext.h2:
                with pytest.raises(HandshakeRefused) as refused:
                    async with cleartext.connect(url, "/deny-streamed"):
                        pass
                status, body = refused.value.status, refused.value.body
                assert (b"www-authenticate", b"Bearer realm=test") in refused.value.headers
            else:
                async with httpx.AsyncClient() as client:
                    response = await client.get(url + "/deny-streamed", headers=upgrade)
                    status, body = response.status_code, response.content
                    assert response.headers["www-authenticate"] == "Bearer realm=test"
                    assert response.headers["transfer-encoding"] == "chunked"
                    assert "upgrade" not in response.headers
                    again = await client.get(url + "/page")  # the same connection
                    assert again.content == b"plain /page"
    assert (status, body) == (401, b"denied, sorry")


# --- closing -----------------------------------------------------------------------------


async def test_client_close_code_reaches_the_app(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (app, url), transport.connect(url) as ws:
            await ws.close(4001, "bye")
            assert await ws.wait_closed() == Closed(4001, "bye")  # the server's answer
            await app.disconnected.wait()
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye"}]


async def test_app_close_code_reaches_the_client(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url), transport.connect(url, "/close") as ws:
            await ws.send("go")
            assert await ws.receive() == Closed(4002, "done")
            await ws.close(4002)  # the client's answer
            assert await ws.transport_closed()


async def test_dropped_connection_is_1006(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (app, url):
            async with transport.connect(url) as ws:
                await ws.send("hi")
                assert await ws.receive() == "hi"
                await anyio.aclose_forcefully(ws.stream)  # no Close frame
            await app.disconnected.wait()
    assert app.disconnects == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


# --- application errors ------------------------------------------------------------------


async def test_exception_before_accept_is_500(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url):
            with pytest.raises(HandshakeRefused) as refused:
                async with transport.connect(url, "/raise-before"):
                    pass
    assert refused.value.status == 500


async def test_exception_after_accept_is_1011_and_serving_goes_on(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url):
            async with transport.connect(url, "/raise-after") as ws:
                await ws.send("go")
                assert await ws.receive() == Closed(1011)
            async with transport.connect(url, "/") as ws:
                await ws.send("alive")
                assert await ws.receive() == "alive"


async def test_returning_after_accept_is_close_1000(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport) as (_, url), transport.connect(url, "/return") as ws:
            await ws.send("go")
            assert await ws.receive() == Closed(1000)


# --- refusals of the server's own --------------------------------------------------------


async def test_h2_plain_connect_is_501() -> None:
    with anyio.fail_after(TIMEOUT):
        async with running_server(App()) as url, h2_client(url) as client:
            stream_id = client.conn.get_next_available_stream_id()
            connect = [(b":method", b"CONNECT"), (b":authority", client.authority)]
            client.conn.send_headers(stream_id, connect)
            await client.flush()
            exchange = (await client.exchange(stream_id))[stream_id]
            assert exchange.status == 501
            assert (await client.get(b"/page")).body == b"plain /page"  # the connection goes on


async def test_h2_connect_with_another_protocol_is_501() -> None:
    with anyio.fail_after(TIMEOUT):
        async with running_server(App()) as url:
            with pytest.raises(HandshakeRefused) as refused:
                async with h2_ws_connect(url, "/", protocol="not-websocket"):
                    pass
            assert refused.value.status == 501
            async with h2_ws_connect(url, "/") as ws:
                await ws.send("fine")
                assert await ws.receive() == "fine"


async def test_host_not_in_server_names_is_404(transport: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(transport, server_names=["example.com"]) as (app, url):
            with pytest.raises(HandshakeRefused) as refused:
                async with transport.connect(url, "/"):
                    pass
    assert refused.value.status == 404
    assert app.scopes == []  # the app was not called


async def test_host_in_server_names_is_served(cleartext: Transport) -> None:
    port = free_port()
    settings = {"bind": [f"127.0.0.1:{port}"], "server_names": [f"127.0.0.1:{port}"]}
    with anyio.fail_after(TIMEOUT):
        async with serving(cleartext, **settings) as (_, url), cleartext.connect(url) as ws:
            await ws.send("allowed")
            assert await ws.receive() == "allowed"


async def test_plain_http_beside_websockets(cleartext: Transport) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            serving(cleartext) as (_, url),
            cleartext.connect(url, "/ws") as ws,
            httpx.AsyncClient() as client,
        ):
            await ws.send("before")
            assert await ws.receive() == "before"
            response = await client.get(url + "/page")
            assert (response.status_code, response.content) == (200, b"plain /page")
            await ws.send("after")
            assert await ws.receive() == "after"


# --- the real command --------------------------------------------------------------------


async def check_limited_echo_server(port: int) -> None:
    """examples.websocket:echo with a 1000-byte limit and no compression."""
    url = f"http://127.0.0.1:{port}"
    with anyio.fail_after(TIMEOUT):
        async with ws_connect(url, "/", deflate=True) as ws:
            assert ws.header(b"sec-websocket-extensions") is None
            await ws.send("hello")
            assert await ws.receive() == "hello"
            await ws.send(b"x" * 1000)
            assert await ws.receive() == b"x" * 1000
            await ws.send(b"x" * 1001)
            closed = await ws.wait_closed()
            assert closed.code == 1009


async def test_cli_toml_websocket_settings(
    tmp_path: Path, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port = free_port()
    config = write_toml(
        tmp_path / "ws.toml",
        app="examples.websocket:echo",
        bind=[f"127.0.0.1:{port}"],
        websocket_max_message_size=1000,
        websocket_permessage_deflate=False,
        worker_class=worker_class(anyio_backend),
    )
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(port)
        await check_limited_echo_server(port)
        assert child.terminate() == 0, child.stderr()


async def test_cli_flags_websocket_settings(
    tmp_path: Path, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port = free_port()
    argv = (
        "examples.websocket:echo",
        "-b",
        f"127.0.0.1:{port}",
        "-k",
        worker_class(anyio_backend),
        "--websocket-max-message-size",
        "1000",
        "--no-websocket-permessage-deflate",
    )
    with tricorn(tmp_path, *argv) as child:
        child.wait_listening(port)
        await check_limited_echo_server(port)
        assert child.terminate() == 0, child.stderr()
