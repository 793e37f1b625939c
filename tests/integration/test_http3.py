"""HTTP/3 end to end: the server on a real UDP socket, aioquic's client side
(``tests/integration/h3client.py``) as the peer, under every backend."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tricorn import _backend
from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.protocol.http3 import H3Adapter
from tricorn.server.serve import serve

from ..cli.test_cli_serve import free_port, tricorn
from ..conftest import TLSFiles, make_config
from .apps import HELLO, echo, hello, read_body, scope_json
from .h3client import H3Client, client_configuration, h3_connect
from .test_h2_clients import worker_class, write_toml

pytestmark = pytest.mark.anyio

H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_MESSAGE_ERROR = 0x10E


class H3Server:
    """A running server's addresses."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        quic = next((url for url in urls if url.endswith("(QUIC)")), "https://-:0 (QUIC)")
        host_port = quic.removeprefix("https://").removesuffix(" (QUIC)")
        host, _, port = host_port.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.tcp_url = urls[0]

    def connect(self, **kwargs: Any) -> Any:
        return h3_connect(self.host, self.port, **kwargs)


@asynccontextmanager
async def running_h3(app: Any, tls: TLSFiles, **settings: Any) -> AsyncIterator[H3Server]:
    settings.setdefault("quic_bind", ["127.0.0.1:0"])
    config = make_config(certfile=tls.certfile, keyfile=tls.keyfile, **settings)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        urls = await tg.start(
            lambda task_status: serve(
                app, config, shutdown_trigger=stop.wait, io=_backend, task_status=task_status
            )
        )
        try:
            yield H3Server(urls)
        finally:
            stop.set()


# ---------------------------------------------------------------- apps


async def trailers_app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"part", "more_body": False})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})


async def hints_app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
    await hello(scope, receive, send)


async def push_app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    if scope["path"] == "/":
        if "http.response.push" in scope["extensions"]:
            await send({"type": "http.response.push", "path": "/pushed", "headers": []})
        await hello(scope, receive, send)
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"pushed body"})


async def fails_after_start(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    if scope["path"] == "/ok":
        await hello(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom after start")


async def fails_before_start(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    raise RuntimeError("boom before start")


async def no_read(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
    """Answers at once without reading the request body."""
    await hello(scope, receive, send)


def big(size: int) -> Any:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = bytes(range(256)) * 256  # 64 KiB
        sent = 0
        while sent < size:
            piece = chunk[: size - sent]
            sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": sent < size})

    return app


# ---------------------------------------------------------------- tests


async def test_get(tls_files: TLSFiles) -> None:
    async with running_h3(hello, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/")
    assert response.status == 200
    assert bytes(response.body) == HELLO
    assert response.header(b"server") == b"tricorn"
    names = {name for name, _ in response.headers}
    assert "connection" not in {n.decode() for n in names}
    assert b"alt-svc" not in names  # on TCP only


async def test_scope(tls_files: TLSFiles) -> None:
    async with running_h3(scope_json, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/a%20b?x=1", [(b"x-test", b"1")])
    scope = json.loads(bytes(response.body))
    assert scope["http_version"] == "3"
    assert scope["scheme"] == "https"
    assert scope["method"] == "GET"
    assert scope["path"] == "/a b"
    assert scope["query_string"] == "x=1"
    assert ["x-test", "1"] in scope["headers"]
    assert ["host", "localhost"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["extensions"]["tls"]["tls_version"] == 0x0304
    assert scope["extensions"]["tls"]["server_cert"].startswith("-----BEGIN CERTIFICATE")
    assert "http.response.push" in scope["extensions"]


async def test_alt_svc_on_tcp_responses(tls_files: TLSFiles) -> None:
    async with (
        running_h3(hello, tls_files) as server,
        httpx.AsyncClient(verify=tls_files.client_context) as http,
    ):
        response = await http.get(server.tcp_url.replace("127.0.0.1", "localhost"))
    assert response.headers["alt-svc"] == f'h3=":{server.port}"; ma=86400'


async def test_alt_svc_headers_setting_overrides(tls_files: TLSFiles) -> None:
    async with (
        running_h3(hello, tls_files, alt_svc_headers=['h3=":443"; ma=3600']) as server,
        httpx.AsyncClient(verify=tls_files.client_context) as http,
    ):
        response = await http.get(server.tcp_url.replace("127.0.0.1", "localhost"))
    assert response.headers["alt-svc"] == 'h3=":443"; ma=3600'


async def test_no_alt_svc_without_quic(tls_files: TLSFiles) -> None:
    async with (
        running_h3(hello, tls_files, quic_bind=[], bind=["127.0.0.1:0"]) as server,
        httpx.AsyncClient(verify=tls_files.client_context) as http,
    ):
        response = await http.get(server.tcp_url.replace("127.0.0.1", "localhost"))
    assert "alt-svc" not in response.headers


@pytest.mark.parametrize("size", [0, 1, 100_000, 4 * 1024 * 1024])
async def test_echo_upload(tls_files: TLSFiles, size: int) -> None:
    body = os.urandom(size)
    async with running_h3(echo, tls_files) as server, server.connect() as client:
        response = await client.request("POST", "/", body=body, timeout=30)
    assert response.status == 200
    assert bytes(response.body) == body


async def test_20_mib_download_and_upload(tls_files: TLSFiles) -> None:
    size = 20 * 1024 * 1024
    async with running_h3(big(size), tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/", timeout=60)
        assert response.status == 200
        assert len(response.body) == size
        assert bytes(response.body[:256]) == bytes(range(256))
        assert bytes(response.body[-256:]) == bytes(range(256))
    upload = os.urandom(size)
    async with running_h3(echo, tls_files) as server, server.connect() as client:
        response = await client.request("POST", "/", body=upload, timeout=60)
    assert bytes(response.body) == upload


async def test_trailers_without_empty_data_frame(tls_files: TLSFiles) -> None:
    async with running_h3(trailers_app, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/", [(b"te", b"trailers")])
    assert bytes(response.body) == b"part"
    assert response.trailers == [(b"x-checksum", b"abc")]
    assert response.frames == ["headers", "data", "trailers"]


async def test_early_hints(tls_files: TLSFiles) -> None:
    async with running_h3(hints_app, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/")
    assert [status for status, _ in response.informational] == [103]
    assert (b"link", b"</style.css>; rel=preload") in response.informational[0][1]
    assert response.status == 200
    assert bytes(response.body) == HELLO


async def test_server_push(tls_files: TLSFiles) -> None:
    async with (
        running_h3(push_app, tls_files) as server,
        server.connect(allow_push=True) as client,
    ):
        response = await client.request("GET", "/")
        assert response.pushes == [0]
        promise = dict(client.push_promises[0])
        assert promise[b":path"] == b"/pushed"
        with anyio.fail_after(5):
            while 0 not in client.pushed or not client.pushed[0].ended:
                await anyio.sleep(0.01)
    assert bytes(response.body) == HELLO
    assert client.pushed[0].status == 200
    assert bytes(client.pushed[0].body) == b"pushed body"


async def test_no_push_when_the_client_allows_none(tls_files: TLSFiles) -> None:
    async with running_h3(push_app, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/")
    assert response.pushes == []
    assert bytes(response.body) == HELLO


async def test_app_error_after_start_resets_the_stream(tls_files: TLSFiles) -> None:
    async with running_h3(fails_after_start, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/")
        assert response.reset == H3_INTERNAL_ERROR
        again = await client.request("GET", "/ok")
    assert bytes(again.body) == HELLO


async def test_app_error_before_start_is_a_500(tls_files: TLSFiles) -> None:
    async with running_h3(fails_before_start, tls_files) as server, server.connect() as client:
        response = await client.request("GET", "/")
    assert response.status == 500
    assert all(name != b"connection" for name, _ in response.headers)


async def test_late_data_on_a_closed_stream_is_ignored(tls_files: TLSFiles) -> None:
    async with running_h3(no_read, tls_files) as server:
        async with server.connect() as client:
            # A burst of body the app never reads: most of it is still in
            # flight when the server has answered and closed the stream.
            response = await client.send_request("POST", "/", body=b"x" * 1000, end=False)
            for _ in range(20):
                client.h3.send_data(response.stream_id, b"y" * 30_000, end_stream=False)
            client.h3.send_data(response.stream_id, b"", end_stream=True)
            await client.flush()
            with anyio.fail_after(5):
                await response.done.wait()
            assert bytes(response.body) == HELLO
            await anyio.sleep(0.2)
            again = await client.request("GET", "/")
            assert bytes(again.body) == HELLO
            assert client.terminated is None
        async with server.connect() as fresh:
            assert bytes((await fresh.request("GET", "/")).body) == HELLO


async def test_malformed_request_is_a_stream_error(tls_files: TLSFiles) -> None:
    async with running_h3(hello, tls_files) as server, server.connect() as client:
        bad = await client.request("GET", "/", [(b"te", b"gzip")])
        assert bad.reset == H3_MESSAGE_ERROR
        good = await client.request("GET", "/")
        assert bytes(good.body) == HELLO
        assert client.terminated is None


async def test_100_concurrent_streams(tls_files: TLSFiles) -> None:
    async with running_h3(echo, tls_files) as server, server.connect() as client:
        responses = [
            await client.send_request("POST", f"/{i}", body=str(i).encode() * 100)
            for i in range(100)
        ]
        with anyio.fail_after(20):
            for response in responses:
                await response.done.wait()
    for i, response in enumerate(responses):
        assert response.status == 200
        assert bytes(response.body) == str(i).encode() * 100


async def test_a_small_response_is_queued_for_the_read_loop_to_send(
    tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole small response (head, body and end: one event) is queued in
    the adapter and the app's send returns at once; the connection's read
    loop builds the datagrams once for every response of the round. (The
    app's task building them itself cost a ``datagrams_to_send`` per
    response, which walks every stream and mostly found the datagrams
    gone already: 16% of an HTTP/3 request's instructions.)"""
    calls = 0
    original = H3Adapter.datagrams_to_send

    def counting(self: H3Adapter, now: float) -> Any:
        nonlocal calls
        calls += 1
        return original(self, now)

    monkeypatch.setattr(H3Adapter, "datagrams_to_send", counting)
    during_send: list[int] = []

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        before = calls
        await send({"type": "http.response.body", "body": HELLO})
        during_send.append(calls - before)

    async with running_h3(app, tls_files) as server, server.connect() as client:
        responses = [await client.send_request("GET", f"/{i}") for i in range(8)]
        with anyio.fail_after(10):
            for response in responses:
                await response.done.wait()
    assert [(r.status, bytes(r.body)) for r in responses] == [(200, HELLO)] * 8
    assert len(during_send) >= 8  # (and the connect's own request)
    assert during_send == [0] * len(during_send)


async def test_garbage_datagrams_do_not_hurt(tls_files: TLSFiles) -> None:
    async with running_h3(hello, tls_files) as server:
        async with await anyio.create_connected_udp_socket(server.host, server.port) as udp:
            for payload in (
                b"",
                b"\x00",
                os.urandom(1300),
                b"\xc0\x00\x00\x00\x01" + os.urandom(20),  # a truncated long header
                b"\xc0\xff\xff\xff\xff" + os.urandom(1300),  # unknown version
                b"\x40" + os.urandom(40),  # a short header for no connection
            ):
                await udp.send(payload)
        async with server.connect() as client:
            response = await client.request("GET", "/")
    assert bytes(response.body) == HELLO


async def test_version_negotiation(tls_files: TLSFiles) -> None:
    async with (
        running_h3(hello, tls_files) as server,
        await anyio.create_connected_udp_socket(server.host, server.port) as udp,
    ):
        packet = b"\xc0" + b"\x1a\x2a\x3a\x4a" + b"\x08" + b"D" * 8 + b"\x08" + b"S" * 8
        await udp.send(packet + b"\x00" * (1200 - len(packet)))
        with anyio.fail_after(5):
            reply = await udp.receive()
    assert reply[1:5] == b"\x00\x00\x00\x00"  # a Version Negotiation packet
    assert reply[6:14] == b"S" * 8  # to the client's source CID
    assert b"\x00\x00\x00\x01" in reply[15:]  # QUIC v1 offered


async def test_retry(tls_files: TLSFiles) -> None:
    async with (
        running_h3(hello, tls_files, quic_retry=True) as server,
        server.connect() as client,
    ):
        response = await client.request("GET", "/")
        assert client.quic._retry_count == 1
    assert bytes(response.body) == HELLO


async def test_client_that_vanishes_is_freed_after_the_idle_timeout(tls_files: TLSFiles) -> None:
    disconnected = anyio.Event()

    async def stream_forever(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
                await anyio.sleep(0.01)
        finally:  # cancelled, or send() raised: either way the call ended
            disconnected.set()

    async with running_h3(stream_forever, tls_files, quic_idle_timeout=1.0) as server:
        sock = await anyio.create_connected_udp_socket(server.host, server.port)
        quic_client = None
        async with anyio.create_task_group() as tg:
            from aioquic.quic.connection import QuicConnection

            quic_client = QuicConnection(configuration=client_configuration())
            client = H3Client(sock, quic_client, (server.host, server.port), False)
            quic_client.connect((server.host, server.port), anyio.current_time())
            tg.start_soon(client.run)
            with anyio.fail_after(5):
                while not quic_client._handshake_complete:
                    await anyio.sleep(0.01)
            response = await client.send_request("GET", "/")
            with anyio.fail_after(5):
                while len(response.body) < 10_000:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()  # the client vanishes without a word
        await sock.aclose()
        with anyio.fail_after(5):
            await disconnected.wait()


async def test_graceful_shutdown_finishes_in_flight_requests(tls_files: TLSFiles) -> None:
    started = anyio.Event()

    async def slow(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        started.set()
        await anyio.sleep(0.5)
        await hello(scope, receive, send)

    config_stop = anyio.Event()
    config = make_config(
        certfile=tls_files.certfile, keyfile=tls_files.keyfile, quic_bind=["127.0.0.1:0"]
    )
    async with anyio.create_task_group() as tg:
        urls = await tg.start(
            lambda task_status: serve(
                slow,
                config,
                shutdown_trigger=config_stop.wait,
                io=_backend,
                task_status=task_status,
            )
        )
        server = H3Server(urls)
        async with server.connect() as client:
            response = await client.send_request("GET", "/")
            await started.wait()
            config_stop.set()
            with anyio.fail_after(5):
                await response.done.wait()
            assert response.status == 200
            assert bytes(response.body) == HELLO
            with anyio.fail_after(5):
                await client.closed.wait()
            assert client.terminated is not None
            assert client.terminated.error_code == H3_NO_ERROR


async def test_websocket_over_http3(tls_files: TLSFiles) -> None:
    from examples.websocket import echo as ws_echo
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage, TextMessage

    async with running_h3(ws_echo, tls_files) as server, server.connect() as client:
        response = await client.send_request(
            "CONNECT",
            "/chat",
            [(b"sec-websocket-version", b"13")],
            end=False,
            protocol="websocket",
        )
        with anyio.fail_after(5):
            while response.status is None:
                await anyio.sleep(0.01)
        assert response.status == 200
        ws = Connection(ConnectionType.CLIENT)
        await client.send_data(response.stream_id, ws.send(TextMessage(data="hello h3")))
        await client.send_data(response.stream_id, ws.send(BytesMessage(data=b"\x00\x01")))
        received: list[Any] = []
        with anyio.fail_after(5):
            while len(received) < 2:
                ws.receive_data(bytes(response.body))
                response.body.clear()
                received += [e for e in ws.events() if isinstance(e, (TextMessage, BytesMessage))]
                await anyio.sleep(0.01)
        assert received[0].data == "hello h3"
        assert received[1].data == b"\x00\x01"


async def test_connect_without_protocol_is_501(tls_files: TLSFiles) -> None:
    async with running_h3(hello, tls_files) as server, server.connect() as client:
        head = await client.send_request("CONNECT", "/", end=False)
        with anyio.fail_after(5):
            while head.status is None and head.reset is None:
                await anyio.sleep(0.01)
        other = await client.send_request("CONNECT", "/", end=False, protocol="webtransport")
        with anyio.fail_after(5):
            while other.status is None and other.reset is None:
                await anyio.sleep(0.01)
    assert head.status == 501  # a tunnel: not served, and not a WebSocket
    assert other.status == 501


async def test_ipv6_quic_bind(tls_files: TLSFiles) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with (
        running_h3(hello, tls_files, quic_bind=["[::1]:0", "127.0.0.1:0"]) as server,
        h3_connect("::1", server.port) as client,
    ):
        response = await client.request("GET", "/")
    assert bytes(response.body) == HELLO


# ---------------------------------------------------------------- CLI and TOML


async def test_cli_toml_serves_http3(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port = free_port()
    config = write_toml(
        tmp_path / "h3.toml",
        app="examples.hello:app",
        bind=[f"127.0.0.1:{port}"],
        quic_bind=[f"127.0.0.1:{port}"],
        certfile=tls_files.certfile,
        keyfile=tls_files.keyfile,
        quic_max_concurrent_streams=5,
        quic_idle_timeout=10,
        quic_congestion_control="cubic",
        worker_class=worker_class(anyio_backend),
    )
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(port)
        async with h3_connect("127.0.0.1", port) as client:
            response = await client.request("GET", "/")
            assert response.status == 200
            # quic_max_concurrent_streams reached the client as MAX_STREAMS.
            assert client.quic._remote_max_streams_bidi == 5
        assert "(QUIC)" in child.stderr()
        assert child.terminate() == 0, child.stderr()


async def test_cli_flags_serve_http3(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port = free_port()
    argv = (
        "examples.hello:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--quic-bind",
        f"127.0.0.1:{port}",
        "--certfile",
        tls_files.certfile,
        "--keyfile",
        tls_files.keyfile,
        "--quic-retry",
        "--quic-stream-window",
        "65536",
        "-k",
        worker_class(anyio_backend),
    )
    with tricorn(tmp_path, *argv) as child:
        child.wait_listening(port)
        async with h3_connect("127.0.0.1", port) as client:
            response = await client.request("GET", "/")
            assert response.status == 200
            assert client.quic._retry_count == 1  # quic_retry
            # quic_stream_window is the request streams' MAX_STREAM_DATA.
            assert client.quic._remote_max_stream_data_bidi_remote == 65536
        assert child.terminate() == 0, child.stderr()


# ---------------------------------------------------------------- an independent stack


@pytest.mark.skipif(shutil.which("gtlsclient") is None, reason="needs ngtcp2-client")
async def test_gtlsclient_downloads(tmp_path: Path, tls_files: TLSFiles) -> None:
    """ngtcp2 + nghttp3 + GnuTLS: a client that shares no code with aioquic."""
    size = 3 * 1024 * 1024

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["path"] == "/big":
            await big(size)(scope, receive, send)
        else:
            await hello(scope, receive, send)

    async with running_h3(app, tls_files) as server:
        base = f"https://127.0.0.1:{server.port}"
        argv = [
            "gtlsclient",
            "--exit-on-all-streams-close",
            "--no-quic-dump",
            "--no-http-dump",
            "-q",
            f"--download={tmp_path}",
            "127.0.0.1",
            str(server.port),
            f"{base}/",
            f"{base}/big",
            f"{base}/other",
        ]
        with anyio.fail_after(30):
            result = await anyio.run_process(argv, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert (tmp_path / "index.html").read_bytes() == HELLO
    assert (tmp_path / "other").read_bytes() == HELLO
    data = (tmp_path / "big").read_bytes()
    assert len(data) == size
    assert data[:256] == bytes(range(256))


async def test_niquests_over_http3(tls_files: TLSFiles) -> None:
    """niquests (urllib3-future over qh3): an HTTP client API with its own
    QUIC stack, told the server speaks HTTP/3 (as Alt-Svc would)."""
    niquests = pytest.importorskip("niquests")
    size = 3 * 1024 * 1024

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["path"] == "/big":
            await big(size)(scope, receive, send)
        elif scope["path"] == "/upload":  # the body read whole, then one answer
            body = await read_body(receive)
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        else:
            await hello(scope, receive, send)

    def client(port: int) -> list[tuple[int, int, bytes]]:
        with niquests.Session() as session:
            session.quic_cache_layer.add_domain("localhost", port)
            got = []
            for method, path, body in (("GET", "/", None), ("GET", "/big", None)):
                response = session.request(
                    method, f"https://localhost:{port}{path}", data=body, verify=tls_files.ca_file
                )
                got.append((response.status_code, response.http_version, response.content))
            response = session.post(
                f"https://localhost:{port}/upload", data=b"u" * 100_000, verify=tls_files.ca_file
            )
            got.append((response.status_code, response.http_version, response.content))
            return got

    async with running_h3(app, tls_files) as server:
        with anyio.fail_after(30):
            got = await anyio.to_thread.run_sync(client, server.port)
    assert [(status, version) for status, version, _ in got] == [(200, 30)] * 3  # 30: HTTP/3
    assert got[0][2] == HELLO
    assert len(got[1][2]) == size
    assert got[1][2][:256] == bytes(range(256))
    assert got[2][2] == b"u" * 100_000


async def test_anti_amplification_before_the_address_is_validated(tls_files: TLSFiles) -> None:
    """A client Initial from a spoofed address (nobody answers the server):
    what the server sends there stays within 3x what it received (RFC 9000
    §8.1), retransmissions included."""
    from aioquic.quic.connection import QuicConnection

    async with (
        running_h3(hello, tls_files) as server,
        await anyio.create_connected_udp_socket(server.host, server.port) as udp,
    ):
        quic = QuicConnection(configuration=client_configuration())
        quic.connect((server.host, server.port), anyio.current_time())
        sent = 0
        for data, _ in quic.datagrams_to_send(anyio.current_time()):
            await udp.send(data)
            sent += len(data)
        received = 0
        with anyio.move_on_after(2.5):  # several PTOs: retransmissions come too
            while True:
                received += len(await udp.receive())
    assert sent >= 1200
    assert 0 < received <= 3 * sent
