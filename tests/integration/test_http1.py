"""HTTP/1.1 end to end: a real tricorn server on 127.0.0.1, real clients
(httpx and a raw socket), under asyncio, uvloop and trio."""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any

import anyio
import httpx
import pytest

from tricorn import _backend, _lean
from tricorn.asgi.types import ASGIApp, ASGIReceive, ASGISend, Scope
from tricorn.protocol.http1 import H1Adapter

from ..conftest import TLSFiles, pure_core_only, running_server
from .apps import HELLO, echo, hello, scope_json, sleeps_forever
from .client import RawClient, address, get

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("both_http1_parsers")]


async def test_get_with_httpx() -> None:
    async with running_server(hello) as url, httpx.AsyncClient() as client:
        response = await client.get(url + "/")
    assert response.status_code == 200
    assert response.content == HELLO
    assert response.http_version == "HTTP/1.1"
    assert response.headers["server"] == "tricorn"
    assert response.headers["date"].endswith("GMT")


async def test_server_and_date_headers_can_be_turned_off() -> None:
    async with (
        running_server(hello, include_server_header=False, include_date_header=False) as url,
        httpx.AsyncClient() as client,
    ):
        response = await client.get(url)
    assert "server" not in response.headers
    assert "date" not in response.headers


async def test_scope_is_complete() -> None:
    async with running_server(scope_json, root_path="/api") as url, httpx.AsyncClient() as c:
        response = await c.get(url + "/a%20b/c?x=1&y=%20", headers={"X-Test": "yes"})
    scope = response.json()
    host, port = address(url)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == "/a%20b/c"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == "/api"
    assert ["x-test", "yes"] in scope["headers"]
    assert scope["server"] == [host, port]
    assert scope["client"][0] == "127.0.0.1"
    assert "http.response.trailers" in scope["extensions"]
    assert "tls" not in scope["extensions"]
    assert scope["state"] == {}


async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async with running_server(scope_json) as url, await RawClient.connect(url) as client:
        await client.send(get("/one") + get("/two") + get("/three"))
        paths = [json.loads((await client.response()).body)["path"] for _ in range(3)]
        assert paths == ["/one", "/two", "/three"]
        await client.send(get("/four"))
        assert json.loads((await client.response()).body)["path"] == "/four"


async def test_chunked_request_and_response_bodies() -> None:
    chunks = [b"x" * 1000, b"y" * 70000, b"z"]

    async def body() -> Any:
        for chunk in chunks:
            yield chunk

    async with running_server(echo) as url, httpx.AsyncClient() as client:
        response = await client.post(url, content=body())
    assert response.content == b"".join(chunks)
    assert response.headers["transfer-encoding"] == "chunked"


async def test_large_body_roundtrip() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with running_server(echo) as url, httpx.AsyncClient() as client:
        response = await client.post(url, content=payload)
    assert response.content == payload


async def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    async with running_server(echo) as url, await RawClient.connect(url) as client:
        await client.send(get("/", "Content-Length: 5", "Expect: 100-continue", method="POST"))
        with anyio.fail_after(5):
            data = await client.stream.receive()
        assert data.startswith(b"HTTP/1.1 100 ")
        client.buffer = data.split(b"\r\n\r\n", 1)[1]
        await client.send(b"hello")
        reply = await client.response()
    assert reply.body == b"hello"


async def test_expect_100_continue_not_sent_if_app_answers_first() -> None:
    async with running_server(hello) as url, await RawClient.connect(url) as client:
        await client.send(get("/", "Content-Length: 5", "Expect: 100-continue", method="POST"))
        reply = await client.response()
    assert reply.status == 200
    assert reply.informational == []


async def test_head_has_no_body() -> None:
    async with running_server(hello) as url, await RawClient.connect(url) as client:
        await client.send(get("/", method="HEAD") + get("/"))
        head = await client.response(method=b"HEAD")
        full = await client.response()
    assert head.status == 200
    assert head.body == b""
    assert head.headers[b"content-length"] == b"13"
    assert full.body == HELLO


async def test_http_1_0_client_gets_a_closed_connection() -> None:
    async with running_server(hello) as url, await RawClient.connect(url) as client:
        await client.send(b"GET / HTTP/1.0\r\n\r\n")
        data = await client.read_all()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(HELLO)


_BAD_REQUESTS = pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40) + b"\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ],
    ids=[
        "cl+te",
        "two-cl",
        "bad-cl",
        "no-host",
        "http2.0",
        "long-line",
        "big-head",
        "tls",
        "bad-host",
    ],
)


@_BAD_REQUESTS
async def test_bad_requests_get_an_error_and_a_close(request_bytes: bytes, status: int) -> None:
    # Without h2 the port speaks only HTTP/1.1: even garbage gets its 400.
    async with running_server(hello, alpn_protocols=["http/1.1"]) as url:
        async with await RawClient.connect(url) as client:
            await client.send(request_bytes)
            data = await client.read_all()
        assert data.startswith(b"HTTP/1.1 %d " % status), data[:80]
        assert b"connection: close" in data.lower()
        async with httpx.AsyncClient() as other:  # everyone else is still served
            assert (await other.get(url)).status_code == 200


@_BAD_REQUESTS
async def test_bad_requests_after_a_good_one_get_an_error_and_a_close(
    request_bytes: bytes, status: int
) -> None:
    """Later requests of a connection may be taken in the transport's
    callback (asyncio, see the next test): a bad one is answered there as
    the first request of a connection is."""
    async with running_server(hello, alpn_protocols=["http/1.1"]) as url:
        async with await RawClient.connect(url) as client:
            await client.send(get())
            assert (await client.response()).status == 200
            await client.send(request_bytes)
            data = await client.read_all()
        assert data.startswith(b"HTTP/1.1 %d " % status), data[:80]
        assert b"connection: close" in data.lower()


async def test_an_empty_post_is_answered_first_and_kept_alive() -> None:
    """``Content-Length: 0``: the body is complete with the head (the
    httptools reader once waited for it), on a fresh connection and on a
    kept-alive one."""
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    async with running_server(echo) as url, await RawClient.connect(url) as client:
        for _ in range(3):
            await client.send(post)
            reply = await client.response(b"POST")
            assert (reply.status, reply.body) == (200, b"")


def http1_tls(tls: bool, tls_files: TLSFiles) -> tuple[dict[str, Any], ssl.SSLContext | None]:
    """Server settings and a client context for HTTP/1.1 over TLS (``tls``),
    or for cleartext."""
    if not tls:
        return {}, None
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols(["http/1.1"])
    return {"certfile": tls_files.certfile, "keyfile": tls_files.keyfile}, context


@pure_core_only  # (a spy on the class)
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_the_receiver_is_dropped_when_the_connection_ends(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch, tls: bool, tls_files: TLSFiles
) -> None:
    """On asyncio the transport holds the connection's receiver (a bound
    method: a reference cycle); it is dropped when the connection ends, so
    the connection is freed at once, not at the next full collection."""
    calls: list[object] = []
    set_receiver = _lean.AsyncioStream.set_receiver

    def spy(self: Any, receiver: Any) -> None:
        calls.append(receiver)
        set_receiver(self, receiver)

    monkeypatch.setattr(_lean.AsyncioStream, "set_receiver", spy)
    settings, context = http1_tls(tls, tls_files)
    async with (
        running_server(hello, **settings) as url,
        await RawClient.connect(url, context) as client,
    ):
        await client.send(get())
        assert (await client.response()).status == 200
    # (the server has shut down: every connection's run() has returned)
    if anyio_backend_name == "asyncio":
        assert calls[0] is not None
        assert calls[-1] is None
    else:
        assert calls == []


@pure_core_only  # (a spy on the class, which compiled code calls directly)
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
async def test_kept_alive_requests_take_the_short_route(
    both_http1_parsers: str,
    monkeypatch: pytest.MonkeyPatch,
    tls: bool,
    tls_files: TLSFiles,
) -> None:
    """A request head that arrives whole between requests goes straight
    to the waiting runner: from the transport's callback on asyncio
    (decrypted there, over TLS: one task switch per request, not two), from
    the read loop on trio. Anything else -- a split head, a pipelined
    pair, a body after its head -- takes the read loop's usual route."""
    taken: list[bool] = []
    receive_request = H1Adapter.receive_request

    def spy(self: H1Adapter, data: bytes, now: float) -> Any:
        events = receive_request(self, data, now)
        taken.append(events is not None)
        return events

    monkeypatch.setattr(H1Adapter, "receive_request", spy)
    settings, context = http1_tls(tls, tls_files)
    async with (
        running_server(echo, **settings) as url,
        await RawClient.connect(url, context) as client,
    ):
        for _ in range(3):
            await client.send(get())
            assert (await client.response()).status == 200
        post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
        await client.send(post)
        await client.send(b"hello")
        assert (await client.response()).body == b"hello"
        await client.send(get()[:10])
        await client.send(get()[10:])
        assert (await client.response()).status == 200
        await client.send(get() + post + b"world")
        assert (await client.response()).status == 200
        assert (await client.response()).body == b"world"
        await client.send(get())
        assert (await client.response()).status == 200
    if both_http1_parsers == "httptools":
        assert sum(taken) >= 3  # the second, third and last GET at least
    else:  # h11's reader is not for this route
        assert not any(taken)


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40) + b"\r\n\r\n",
        b"INVALID CONNECTION PREFACE\r\n\r\n",
    ],
    ids=["tls", "invalid-preface"],
)
async def test_garbage_on_an_h2c_port_gets_a_plain_close(first_bytes: bytes) -> None:
    """With h2 on (the default), first bytes that are neither HTTP/1.x nor
    the HTTP/2 preface get no HTTP/1.1 answer; a later bad request does."""
    async with running_server(hello) as url:
        async with await RawClient.connect(url) as client:
            await client.send(first_bytes)
            assert await client.read_all() == b""
        async with await RawClient.connect(url) as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + first_bytes)
            data = await client.read_all()
        assert data.startswith(b"HTTP/1.1 200 ")
        assert b"HTTP/1.1 400 " in data


async def test_app_exception_before_start_is_a_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="tricorn.error"):
        async with running_server(app) as url, httpx.AsyncClient() as client:
            response = await client.get(url)
            again = await client.get(url)
    assert response.status_code == 500
    assert again.status_code == 500  # the connection keeps serving
    tracebacks = [r for r in caplog.records if r.exc_info and "boom" in str(r.exc_info[1])]
    assert len(tracebacks) == 2


@pytest.mark.parametrize(
    "header",
    [(b"x-split", b"a\r\nset-cookie: evil=1"), (b"bad name", b"x"), (b"content-length", b"x")],
    ids=["crlf-in-value", "space-in-name", "bad-content-length"],
)
@pytest.mark.parametrize("more_body", [False, True])
async def test_a_response_head_that_would_split_is_a_500(
    header: tuple[bytes, bytes], more_body: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"never", "more_body": more_body})

    with caplog.at_level(logging.ERROR, logger="tricorn.error"):
        async with running_server(app) as url, await RawClient.connect(url) as client:
            await client.send(get("/"))
            reply = await client.response()
            await client.send(get("/"))  # the connection is still usable
            again = await client.response()
    assert reply.status == again.status == 500
    assert b"evil" not in reply.body
    assert b"set-cookie" not in reply.headers
    assert any("invalid" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_receive_after_the_client_left_is_a_disconnect() -> None:
    messages: list[Any] = []
    done = anyio.Event()

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await anyio.sleep(0.3)  # the client is gone by now
        messages.append(await receive())
        messages.append(await receive())
        done.set()

    async with running_server(app) as url:
        async with await RawClient.connect(url) as client:
            await client.send(get("/"))
            await anyio.sleep(0.05)
        with anyio.fail_after(5):
            await done.wait()
    assert messages[-1] == {"type": "http.disconnect"}


async def test_app_exception_after_start_aborts_the_response() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom")

    async with running_server(app) as url, await RawClient.connect(url) as client:
        await client.send(get("/"))
        data = await client.read_all()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ends: aborted


async def test_app_returning_without_response_is_a_500() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        return None

    async with running_server(app) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 500


async def test_message_out_of_order_is_handled_like_an_exception() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.body", "body": b"no start"})

    async with running_server(app) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 500


async def test_trailers_when_the_client_accepts_them() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    async with running_server(app) as url, await RawClient.connect(url) as client:
        await client.send(get("/", "TE: trailers"))
        reply = await client.response()
        await client.send(get("/"))
        plain = await client.response()
    assert reply.body == b"data"
    assert reply.trailers == [(b"x-checksum", b"abc")]
    assert plain.body == b"data"
    assert plain.trailers == []


async def test_early_hints_are_a_real_103() -> None:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await send(
            {"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]}
        )
        await hello(scope, receive, send)

    async with running_server(app) as url, await RawClient.connect(url) as client:
        await client.send(get("/"))
        reply = await client.response()
    assert [i.status_code for i in reply.informational] == [103]
    assert (b"link", b"</style.css>; rel=preload; as=style") in reply.informational[0].headers
    assert reply.body == HELLO


def _pathsend_app(path: Any, size: int | None) -> ASGIApp:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.pathsend" in scope["extensions"]
        headers = [] if size is None else [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_pathsend_is_zero_copy_on_cleartext(
    tmp_path: Any,
    framing: str,
    monkeypatch: pytest.MonkeyPatch,
    anyio_backend_options: dict[str, Any],
) -> None:
    payload = bytes(range(256)) * 12289  # ~3 MiB, not a multiple of any buffer
    path = tmp_path / "file.bin"
    path.write_bytes(payload)
    calls: list[int | None] = []
    original = _backend.sendfile

    async def spy(*args: Any) -> int | None:
        result = await original(*args)
        calls.append(result)
        return result

    monkeypatch.setattr(_backend, "sendfile", spy)
    app = _pathsend_app(path, len(payload) if framing == "content-length" else None)
    async with running_server(app) as url, httpx.AsyncClient() as client:
        response = await client.get(url)
        again = await client.get(url)  # the connection is still usable
        head = await client.head(url)
    assert response.content == payload
    assert again.content == payload
    assert head.content == b""
    if framing == "chunked":
        assert response.headers["transfer-encoding"] == "chunked"
    # the kernel copied the file (uvloop has no native sendfile: None, then
    # the bounded copy within the same framing)
    expected = None if anyio_backend_options.get("use_uvloop") else len(payload)
    assert calls == [expected, expected]


async def test_pathsend_over_tls_reads_in_chunks(
    tmp_path: Any, tls_files: TLSFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"0123456789" * 50000
    path = tmp_path / "file.bin"
    path.write_bytes(payload)
    calls: list[object] = []
    monkeypatch.setattr(_backend, "sendfile", lambda *args: calls.append(args))
    app = _pathsend_app(path, len(payload))
    async with (
        running_server(app, certfile=tls_files.certfile, keyfile=tls_files.keyfile) as url,
        httpx.AsyncClient(verify=tls_files.client_context) as client,
    ):
        response = await client.get(url)
    assert response.content == payload
    assert calls == []


async def test_disconnect_reaches_the_app() -> None:
    seen = anyio.Event()
    messages: list[str] = []

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(message["type"])
            if message["type"] == "http.disconnect":
                seen.set()
                return

    async with running_server(app) as url:
        async with await RawClient.connect(url) as client:
            await client.send(get("/"))
            await anyio.sleep(0.1)
        with anyio.fail_after(5):
            await seen.wait()
    assert messages == ["http.request", "http.disconnect"]


async def test_an_app_that_ignores_the_disconnect_is_cancelled_after_graceful_timeout() -> None:
    cancelled = anyio.Event()
    app = sleeps_forever(cancelled)

    async with running_server(app, graceful_timeout=0.3) as url:
        async with await RawClient.connect(url) as client:
            await client.send(get("/"))
            await anyio.sleep(0.1)
        with anyio.fail_after(3):  # not at server shutdown: the connection let it go
            await cancelled.wait()


async def test_disconnect_while_the_app_is_sending() -> None:
    done = anyio.Event()
    outcome: list[str] = []

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(10000):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except OSError:
            outcome.append("OSError")
        finally:
            done.set()

    async with running_server(app) as url:
        async with await RawClient.connect(url) as client:
            await client.send(get("/"))
            await client.stream.receive()
        with anyio.fail_after(5):
            await done.wait()
    assert outcome == ["OSError"]


async def test_asgi2_application() -> None:
    class App:
        def __init__(self, scope: Scope) -> None:
            self.scope = scope

        async def __call__(self, receive: ASGIReceive, send: ASGISend) -> None:
            if self.scope["type"] == "http":
                await hello(self.scope, receive, send)

    async with running_server(App) as url, httpx.AsyncClient() as client:
        assert (await client.get(url)).content == HELLO


async def test_curl(anyio_backend: Any) -> None:
    import shutil

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    async with running_server(echo) as url:
        result = await anyio.run_process(
            [curl, "-sS", "--http1.1", "--data-binary", "hello curl", url + "/"]
        )
    assert result.stdout == b"hello curl"


async def test_server_names_refuse_other_hosts_with_404() -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
            await hello(scope, receive, send)

    async with (
        running_server(app, server_names=["good.example", "good.example:8080"]) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(get("/a").replace(b"Host: localhost", b"Host: good.example"))
        assert (await client.response()).status == 200
        await client.send(get("/b").replace(b"Host: localhost", b"Host: evil.example"))
        refused = await client.response()
        await client.send(get("/c").replace(b"Host: localhost", b"Host: good.example:8080"))
        assert (await client.response()).status == 200  # the connection goes on
    assert refused.status == 404
    assert calls == ["/a", "/c"]  # the refused request never reached the app


async def test_backend_clock_is_anyios_clock() -> None:
    """The per-connection clock the backend hands out reads the same clock
    as anyio.current_time() (the core mixes it with anyio deadlines)."""
    clock = _backend.clock()
    before = anyio.current_time()
    now = clock()
    after = anyio.current_time()
    assert before <= now <= after


async def test_an_internal_error_ends_that_connection_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault of the server's own outside the app's call (here the access
    logger raising after a response) closes that connection and is logged
    once with its traceback; the server serves on. (An error that escaped
    a connection used to end the whole worker.)"""
    from tricorn.logging import AccessLogger

    def broken(self: AccessLogger, *args: Any) -> None:
        raise RuntimeError("the access logger broke")

    monkeypatch.setattr(AccessLogger, "log", broken)
    monkeypatch.setattr(AccessLogger, "enabled", True)  # (serve() alone configures no log)
    with anyio.fail_after(10), caplog.at_level(logging.ERROR, logger="tricorn.error"):
        async with running_server(hello) as url:
            async with await RawClient.connect(url) as client:
                await client.send(get())
                assert (await client.response()).body == HELLO
                assert await client.is_closed()
            async with await RawClient.connect(url) as client:  # the server serves on
                await client.send(get())
                assert (await client.response()).body == HELLO
    faults = [r for r in caplog.records if "internal error on the connection" in r.getMessage()]
    assert len(faults) == 2
    assert all(r.exc_info is not None for r in faults)
    assert "the access logger broke" in caplog.text
