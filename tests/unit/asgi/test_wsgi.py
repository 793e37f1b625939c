"""The WSGI adapter (tricorn.asgi.wsgi) driven directly: a fake client
gives it ASGI receive/send, under asyncio, uvloop and trio. The app runs in
real worker threads; nothing here sleeps to synchronise (``until`` polls a
condition, bounded by a timeout).

Also: detection (is_wsgi / wrap_app), the ``wsgi:``/``asgi:`` prefixes of
load_app, and the error policy when the adapter runs under a real HTTPCycle.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tricorn import Config
from tricorn.asgi.app import as_asgi3, is_asgi2, is_wsgi, wrap_app
from tricorn.asgi.http import HTTPCycle
from tricorn.asgi.types import Message
from tricorn.asgi.wsgi import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_THREADS,
    Environ,
    StartResponse,
    WSGIApp,
    WSGIApplication,
    build_environ,
)
from tricorn.errors import AppProtocolError, ClientDisconnected, ConfigError
from tricorn.protocol.events import (
    Body,
    EndBody,
    Event,
    ResetStream,
    Response,
)
from tricorn.workers import load_app

from .fields import FixedFields
from .test_http_cycle import RecordingPort

pytestmark = pytest.mark.anyio


class FakeClient:
    """ASGI receive/send for one call, behaving as the HTTP cycle does:
    the request body, then ``http.disconnect`` once the client leaves or
    the response is complete; ``send`` raises once the client has left."""

    def __init__(self, body: Iterable[bytes] = (b"",)) -> None:
        chunks = list(body)
        self.inbound: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        self.received = 0
        self.disconnects = 0
        self.sent: list[Message] = []
        self.left = anyio.Event()
        self.on_send: Callable[[Message], Any] | None = None

    async def receive(self) -> Message:
        if self.inbound:
            self.received += 1
            return self.inbound.pop(0)
        await self.left.wait()
        self.disconnects += 1
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.left.is_set():
            raise ClientDisconnected("gone")
        self.sent.append(message)
        if self.on_send is not None:
            await self.on_send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.left.set()  # complete: the cycle reports a disconnect from now on

    def leave(self) -> None:
        self.left.set()

    @property
    def start(self) -> Message:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent
        return starts[0]

    @property
    def bodies(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(m["body"] for m in self.bodies)

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.start["headers"] if n == name), None)


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
    http_version: str = "1.1",
    scheme: str = "http",
    server: tuple[str, int | None] | None = ("127.0.0.1", 8000),
    client: tuple[str, int] | None = ("127.0.0.2", 51000),
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": headers or [],
        "server": server,
        "client": client,
    }


async def call(
    app: Any, client: FakeClient | None = None, scope: dict[str, Any] | None = None, **settings: Any
) -> FakeClient:
    client = client or FakeClient()
    adapter = app if isinstance(app, WSGIApp) else WSGIApp(app, **settings)
    await adapter(scope or http_scope(), client.receive, client.send)
    return client


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (checking often) until ``condition()`` holds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.001)


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!"]


@dataclass
class Closing:
    """An iterable response that records how far it was read and whether
    the server closed it."""

    chunks: Iterable[bytes]
    produced: int = 0
    closed: bool = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.produced += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def answering(
    response: Iterable[bytes], headers: list[tuple[str, str]] | None = None
) -> WSGIApplication:
    """An app that starts a 200 response and returns ``response``."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", headers or [])
        return response

    return app


# ---------------------------------------------------------------- environ


def test_environ_follows_pep_3333() -> None:
    scope = http_scope(
        "/api/caf\ufffd/x y",
        raw_path=b"/api/caf%E9/x%20y",
        query=b"a=1&b=%20\xe9",
        root_path="/api",
        http_version="2",
        scheme="https",
        headers=[
            (b"host", b"example.com"),
            (b"content-type", b"text/plain"),
            (b"content-length", b"5"),
            (b"accept", b"text/html"),
            (b"accept", b"*/*"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"x-custom-header", b"caf\xe9"),
        ],
    )
    environ = build_environ(scope, b"hello", multiprocess=True)
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == "/api"
    assert environ["PATH_INFO"] == "/caf\xe9/x y"  # the raw bytes, latin-1
    assert environ["QUERY_STRING"] == "a=1&b=%20\xe9"
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.2", "51000")
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_HOST"] == "example.com"
    assert environ["HTTP_ACCEPT"] == "text/html, */*"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"  # HTTP/2 cookie crumbs: "; "
    assert environ["HTTP_X_CUSTOM_HEADER"] == "caf\xe9"
    assert environ["wsgi.input"].read() == b"hello"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert callable(environ["wsgi.file_wrapper"])
    assert all(type(k) is str for k in environ)
    assert all(type(v) is str for k, v in environ.items() if not k.startswith("wsgi."))


def test_underscored_header_names_are_dropped() -> None:
    """``X_Forwarded_For`` would share ``HTTP_X_FORWARDED_FOR`` with the
    header a proxy sets; like Gunicorn and nginx, the environ drops it."""
    scope = http_scope(
        "/",
        headers=[
            (b"x_forwarded_for", b"6.6.6.6"),
            (b"x-forwarded-for", b"203.0.113.7"),
            (b"x_token", b"forged"),
        ],
    )
    environ = build_environ(scope, b"")
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"
    assert "HTTP_X_TOKEN" not in environ


@pytest.mark.parametrize(
    ("root_path", "path", "script_name", "path_info"),
    [
        ("", "/a/b", "", "/a/b"),
        ("/api", "/api", "/api", ""),
        ("/api", "/api/", "/api", "/"),
        ("/api", "/api/users", "/api", "/users"),
        ("/api", "/apiary", "/api", "/apiary"),  # not at a segment boundary
        ("/api", "/other", "/api", "/other"),  # a proxy stripped the prefix
    ],
)
def test_script_name_and_path_info(
    root_path: str, path: str, script_name: str, path_info: str
) -> None:
    environ = build_environ(http_scope(path, root_path=root_path), b"")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (script_name, path_info)


def test_environ_without_length_or_server_address() -> None:
    scope = http_scope(server=("/tmp/tricorn.sock", None), client=None, headers=[])
    environ = build_environ(scope, b"")
    assert "CONTENT_LENGTH" not in environ
    assert "CONTENT_TYPE" not in environ
    assert "REMOTE_ADDR" not in environ
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("localhost", "80")
    scope["headers"] = [(b"host", b"example.com:8443")]
    environ = build_environ(scope, b"chunked body")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8443")
    assert environ["CONTENT_LENGTH"] == "12"  # read whole, so the length is known


async def test_app_sees_the_body_and_environ() -> None:
    seen: dict[str, Any] = {}

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read()
        start_response("201 Created", [("X-Thread", threading.current_thread().name)])
        return [b""]

    client = FakeClient([b"ab", b"cd", b""])
    await call(app, client, http_scope(method="POST"))
    assert seen["body"] == b"abcd"
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["CONTENT_LENGTH"] == "4"
    assert client.start["status"] == 201
    assert client.header(b"x-thread") != threading.current_thread().name.encode()


# ---------------------------------------------------------------- responses


async def test_single_chunk_is_one_message_with_a_length() -> None:
    client = await call(hello)
    assert client.start["status"] == 200
    assert client.header(b"content-type") == b"text/plain"
    assert client.header(b"content-length") == b"13"
    assert client.bodies == [
        {"type": "http.response.body", "body": b"Hello, world!", "more_body": False}
    ]


@pytest.mark.parametrize(
    ("method", "status"),
    [("GET", "204 No Content"), ("GET", "304 Not Modified"), ("HEAD", "200 OK")],
)
async def test_no_length_added_to_bodyless_responses(method: str, status: str) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(status, [])
        return [b""]

    client = await call(app, scope=http_scope(method=method))
    assert client.header(b"content-length") is None


async def test_head_with_the_get_body_gets_its_length() -> None:
    client = await call(hello, scope=http_scope(method="HEAD"))
    assert client.header(b"content-length") == b"13"


async def test_streamed_chunks_go_out_one_by_one_with_backpressure() -> None:
    response = Closing([b"one", b"", b"two", b"three"])
    produced_at_send: list[int] = []

    app = answering(response)

    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            produced_at_send.append(response.produced)

    client = FakeClient()
    client.on_send = on_send
    await call(app, client)
    assert [(m["body"], m["more_body"]) for m in client.bodies] == [
        (b"one", True),
        (b"two", True),
        (b"three", True),
        (b"", False),
    ]
    # The app never ran ahead of the client: chunk n was sent while the
    # iterable had produced n chunks (the empty one is skipped, not sent).
    assert produced_at_send == [1, 3, 4, 4]
    assert response.closed


async def test_head_waits_for_the_first_non_empty_chunk() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b""
        assert client.sent == []  # PEP 3333: an empty chunk does not send the head
        yield b"data"

    client = FakeClient()
    await call(app, client)
    assert client.body == b"data"


async def test_start_response_may_be_called_lazily_by_a_generator() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("X-Lazy", "yes")])
        yield b"lazy"

    client = await call(app)
    assert client.header(b"x-lazy") == b"yes"
    assert client.body == b"lazy"


async def test_write_callable() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"written ")
        write(b"")
        write(b"then ")
        return [b"returned"]

    client = await call(app)
    assert client.body == b"written then returned"
    assert client.bodies[-1]["more_body"] is False
    assert client.header(b"content-length") is None  # not a one-chunk response


async def test_content_length_ends_the_body_and_stops_iterating() -> None:
    def forever() -> Iterator[bytes]:
        while True:
            yield b"0123456789"

    response = Closing(forever())

    app = answering(response, [("Content-Length", "25")])

    client = await call(app)
    assert client.body == b"0123456789" * 2 + b"01234"
    assert client.bodies[-1]["more_body"] is False
    assert response.produced == 3
    assert response.closed


async def test_write_past_content_length_is_an_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "2")])
        write(b"ok")
        write(b"more")
        return []

    with pytest.raises(AppProtocolError, match="content-length"):
        await call(app)


async def test_file_wrapper_is_iterated_and_closed() -> None:
    file = io.BytesIO(b"abcdefghij")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](file, 4)
        return wrapper

    client = await call(app)
    assert [m["body"] for m in client.bodies] == [b"abcd", b"efgh", b"ij", b""]
    assert file.closed


async def test_bytearray_and_memoryview_chunks_are_accepted() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[Any]:
        start_response("200 OK", [])
        return [bytearray(b"ab"), memoryview(b"cd")]

    client = await call(app)
    assert client.body == b"abcd"
    assert all(type(m["body"]) is bytes for m in client.bodies)


async def test_wsgi_errors_go_to_the_error_log(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("first line\n")
        errors.writelines(["partial ", "second\nthird"])
        start_response("200 OK", [])
        return [b""]

    with caplog.at_level(logging.ERROR, logger="tricorn.error"):
        await call(app)
    messages = [r.getMessage() for r in caplog.records if r.name == "tricorn.error"]
    assert messages == ["first line", "partial second\nthird"]


# ---------------------------------------------------------------- exc_info


async def test_exc_info_replaces_the_response_before_the_head_is_sent() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")], sys.exc_info())
        return [b"sorry"]

    client = await call(app)
    assert client.start["status"] == 503
    assert client.header(b"x-first") is None
    assert client.header(b"x-second") == b"2"
    assert client.body == b"sorry"


async def test_exc_info_after_the_head_is_sent_reraises() -> None:
    response = Closing([])

    def app(environ: Environ, start_response: StartResponse) -> Closing:
        write = start_response("200 OK", [])
        write(b"started")
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return response

    with pytest.raises(ValueError, match="late"):
        await call(app)


async def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        start_response("200 OK", [])
        return []

    with pytest.raises(AppProtocolError, match="twice"):
        await call(app)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("200", [("a", "b")]),  # (accepted: no reason phrase)
        ("OK", []),
        ("20 OK", []),
        ("2\u00b20 OK", []),  # (a superscript: isdigit, but not to int())
        ("200 OK", [("x-snowman", "\u2603")]),
        ("200 OK", [("only-a-name",)]),
        ("200 OK", [(b"bytes", b"not str")]),
    ],
)
async def test_bad_status_or_headers_raise_in_start_response(
    status: str, headers: list[Any]
) -> None:
    raised: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            start_response(status, headers)
        except AppProtocolError as exc:
            raised.append(exc)
            start_response("500 Internal Server Error", [])
        return [b""]

    client = await call(app)
    if status == "200":
        assert (raised, client.start["status"]) == ([], 200)
    else:
        assert len(raised) == 1
        assert client.start["status"] == 500


async def test_non_bytes_chunk_is_an_error() -> None:
    response = Closing(["text"])  # type: ignore[list-item]

    app = answering(response)

    with pytest.raises(AppProtocolError, match="bytes, got str"):
        await call(app)
    assert response.closed


async def test_no_start_response_is_an_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        return [b"forgot"]

    with pytest.raises(AppProtocolError, match="before calling start_response"):
        await call(app)
    with pytest.raises(AppProtocolError, match="without calling start_response"):
        await call(lambda environ, start_response: [])


# ---------------------------------------------------------------- close() and errors


async def test_close_is_called_when_iteration_raises() -> None:
    def broken() -> Iterator[bytes]:
        yield b"fine"
        raise RuntimeError("mid-stream")

    response = Closing(broken())

    app = answering(response)

    client = FakeClient()
    with pytest.raises(RuntimeError, match="mid-stream"):
        await call(app, client)
    assert response.closed
    assert client.body == b"fine"


async def test_client_leaving_mid_stream_stops_the_app_and_closes() -> None:
    def forever() -> Iterator[bytes]:
        while True:
            yield b"tick"

    response = Closing(forever())

    app = answering(response)

    client = FakeClient()

    async def leave_after_three(message: Message) -> None:
        if len(client.bodies) == 3:
            client.leave()

    client.on_send = leave_after_three
    with pytest.raises(ClientDisconnected):
        await call(app, client)
    assert response.closed
    assert response.produced <= 4


async def test_cancelled_call_waits_for_the_thread_and_closes() -> None:
    release = threading.Event()

    def waits() -> Iterator[bytes]:
        yield b"first"
        release.wait(5)
        yield b"second"

    response = Closing(waits())

    app = answering(response)

    client = FakeClient()
    finished = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def serve() -> None:
            with anyio.CancelScope() as scope:
                cancel_scope.append(scope)
                await call(app, client)
            finished.set()

        cancel_scope: list[anyio.CancelScope] = []
        tg.start_soon(serve)
        await until(lambda: len(client.bodies) == 1)
        cancel_scope[0].cancel()
        for _ in range(10):
            await anyio.sleep(0)
        assert not finished.is_set()  # the call waits for its thread
        release.set()
    assert finished.is_set()
    assert response.closed
    assert [m["body"] for m in client.bodies] == [b"first"]


# ---------------------------------------------------------------- body size limit


async def test_declared_length_over_the_limit_is_413_without_the_app() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        called.append(True)
        return hello(environ, start_response)

    client = FakeClient([b"x" * 11])
    scope = http_scope(method="POST", headers=[(b"content-length", b"11")])
    await call(app, client, scope, max_body_size=10)
    assert client.start["status"] == 413
    assert client.body == b"Payload Too Large"
    assert client.received == 0  # the body was not even read
    assert called == []


async def test_body_growing_over_the_limit_is_413() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        called.append(True)
        return hello(environ, start_response)

    client = FakeClient([b"x" * 6, b"x" * 6, b"x" * 6, b""])  # chunked: no length
    await call(app, client, http_scope(method="POST"), max_body_size=10)
    assert client.start["status"] == 413
    assert client.received == 2  # stopped reading once over
    assert called == []


async def test_body_at_the_limit_is_served() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    scope = http_scope(method="POST", headers=[(b"content-length", b"10")])
    client = await call(app, FakeClient([b"x" * 4, b"x" * 6]), scope, max_body_size=10)
    assert client.start["status"] == 200
    assert client.body == b"x" * 10


async def test_client_leaving_during_the_body_ends_the_call() -> None:
    called: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        called.append(True)
        return hello(environ, start_response)

    client = FakeClient([b"part"])
    client.inbound[0]["more_body"] = True
    client.leave()
    await call(app, client, http_scope(method="POST"))
    assert (called, client.sent) == ([], [])


# ---------------------------------------------------------------- the thread bound


async def test_thread_bound_is_respected() -> None:
    release = threading.Event()
    lock = threading.Lock()
    active = 0
    peak = 0

    def blocking(environ: Environ, start_response: StartResponse) -> list[bytes]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        release.wait(5)
        with lock:
            active -= 1
        start_response("200 OK", [])
        return [b"done"]

    adapter = WSGIApp(blocking, max_threads=2)
    clients = [FakeClient() for _ in range(5)]
    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(call, adapter, client)
        limiter = adapter.limiter
        await until(lambda: active == 2 and limiter.statistics().tasks_waiting == 3)
        assert limiter.borrowed_tokens == 2
        release.set()
    assert peak == 2
    assert all(client.body == b"done" for client in clients)


async def test_app_is_not_called_for_a_client_that_left_while_queued() -> None:
    release = threading.Event()
    calls: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        calls.append(environ["PATH_INFO"])
        release.wait(5)
        return hello(environ, start_response)

    adapter = WSGIApp(app, max_threads=1)
    first, queued = FakeClient(), FakeClient()
    errors: list[BaseException] = []

    async def queued_call() -> None:
        try:
            await call(adapter, queued, http_scope("/queued"))
        except ClientDisconnected as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, adapter, first, http_scope("/first"))
        await until(lambda: calls == ["/first"])
        tg.start_soon(queued_call)
        await until(lambda: adapter.limiter.statistics().tasks_waiting == 1)
        queued.leave()
        await until(lambda: queued.disconnects == 1)
        release.set()
    assert calls == ["/first"]
    assert len(errors) == 1
    assert queued.sent == []


# ---------------------------------------------------------------- other scopes


async def test_websocket_is_refused_and_lifespan_unsupported() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("not read")

    async def send(message: Message) -> None:
        sent.append(message)

    adapter = WSGIApp(hello)
    await adapter({"type": "lifespan"}, receive, send)
    assert sent == []
    await adapter({"type": "websocket"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000}]


# ---------------------------------------------------------------- under the HTTP cycle


class ConnectedPort(RecordingPort):
    """A port whose client stays until the response is complete."""

    def __init__(self, inbound: list[Event] | None = None) -> None:
        super().__init__(inbound)
        self.complete = anyio.Event()

    async def receive(self) -> Event:
        if not self.inbound:
            await self.complete.wait()
        return await super().receive()

    def finish(self) -> None:
        super().finish()
        self.complete.set()


async def run_cycle(app: Any, port: RecordingPort) -> None:
    scope = http_scope()
    await HTTPCycle(wrap_app(app, Config()), scope, port, FixedFields()).run()


async def test_exception_before_start_response_is_a_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("broken app")

    port = ConnectedPort()
    with caplog.at_level(logging.ERROR, logger="tricorn.error"):
        await run_cycle(app, port)
    assert isinstance(port.sent[0], Response)
    assert port.sent[0].status == 500
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "broken app" in str(errors[0].exc_info[1])


async def test_exception_after_the_head_aborts_the_stream() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("late")

    port = ConnectedPort()
    await run_cycle(app, port)
    kinds = [type(event) for event in port.sent]
    assert kinds == [Response, ResetStream]
    assert isinstance(port.sent[0], Response)
    assert (port.sent[0].body, port.sent[0].end) == (b"partial", False)  # the head and a chunk


async def test_response_through_the_cycle() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.input"].read().upper()]

    port = ConnectedPort([Body(1, b"abc"), EndBody(1)])
    await run_cycle(app, port)
    assert port.sent == [
        Response(
            1, 200, [(b"content-type", b"text/plain"), (b"content-length", b"3")], b"ABC", True
        ),
    ]
    assert port.finished


# ---------------------------------------------------------------- detection and loading


class FlaskLike:
    """The shape of Flask's and Django's application objects."""

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        return hello(environ, start_response)


class Asgi2:
    def __init__(self, scope: object) -> None:
        self.scope = scope

    async def __call__(self, receive: object, send: object) -> None:
        pass


async def asgi3(scope: object, receive: object, send: object) -> None:
    pass


def asgi2_function(scope: object) -> object:
    return asgi3


def asgi2_with_default(scope: object, extra: object = None) -> object:
    return asgi3


def untellable(*args: object) -> object:
    return None


def test_wsgi_detection() -> None:
    assert is_wsgi(hello)
    assert is_wsgi(FlaskLike())
    assert is_wsgi(functools.partial(lambda prefix, environ, start_response: [], "x"))
    assert is_wsgi(functools.wraps(hello)(lambda *args, **kwargs: hello(*args, **kwargs)))
    for not_wsgi in (Asgi2, asgi3, asgi2_function, asgi2_with_default, untellable, 42, FlaskLike):
        assert not is_wsgi(not_wsgi), not_wsgi
    # ASGI 2 detection is unchanged for ASGI 2 apps.
    assert is_asgi2(Asgi2)
    assert is_asgi2(asgi2_function)
    assert not is_asgi2(asgi3)


def test_flask_app_is_detected_if_flask_is_installed() -> None:
    flask = pytest.importorskip("flask")
    assert is_wsgi(flask.Flask("demo"))


def test_wrap_app_picks_the_adapter_and_the_settings() -> None:
    config = Config(wsgi_max_body_size=1234, wsgi_max_threads=3, workers=4)
    wrapped = wrap_app(hello, config)
    assert isinstance(wrapped, WSGIApp)
    assert (wrapped.app, wrapped.max_body_size, wrapped.max_threads) == (hello, 1234, 3)
    assert wrapped.multiprocess is True
    assert wrap_app(asgi3, config) is asgi3
    assert not isinstance(wrap_app(asgi2_function, config), WSGIApp)
    # A forced WSGIApp keeps what it sets, takes the rest from the config,
    # and is copied (each serve() has its own thread bound).
    forced = WSGIApp(untellable, max_threads=7)  # type: ignore[arg-type]
    served = wrap_app(forced, Config(workers=1))
    assert isinstance(served, WSGIApp)
    assert served is not forced
    assert (served.max_threads, served.max_body_size, served.multiprocess) == (
        7,
        Config().wsgi_max_body_size,
        False,
    )


def test_defaults_outside_serve_match_the_config() -> None:
    assert Config().wsgi_max_body_size == DEFAULT_MAX_BODY_SIZE
    assert Config().wsgi_max_threads == DEFAULT_MAX_THREADS
    with pytest.raises(ValueError, match="max_threads"):
        WSGIApp(hello, max_threads=0)


def test_load_app_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wsgi_prefix_demo.py").write_text(
        "def app(*args):\n    raise AssertionError\n\n"
        "class Asgi2:\n    def __init__(self, scope): pass\n"
    )
    (tmp_path / "wsgi.py").write_text("def app(environ, start_response):\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    forced = load_app("wsgi:wsgi_prefix_demo:app")
    assert isinstance(forced, WSGIApp)
    assert forced.app.__module__ == "wsgi_prefix_demo"
    asgi = load_app("asgi:wsgi_prefix_demo:Asgi2")
    assert not is_asgi2(asgi)  # made ASGI 3 here, so serve() detects nothing
    # Without a second colon the first part is the module (Django's wsgi.py).
    plain = load_app("wsgi:app")
    assert is_wsgi(plain)
    with pytest.raises(ConfigError, match="wsgi"):
        load_app("rsgi:wsgi_prefix_demo:app")
    monkeypatch.delitem(sys.modules, "wsgi", raising=False)
    monkeypatch.delitem(sys.modules, "wsgi_prefix_demo", raising=False)


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("wsgi:module:app", True),
        ("asgi:package.module:create_app()", True),
        ("wsgi:app", True),  # module wsgi, attribute app
        ("wsgi", True),
        ("rsgi:module:app", False),
        ("wsgi:module", True),  # module wsgi, attribute module
        ("wsgi:wsgi:module:app", False),
    ],
)
def test_config_accepts_the_prefixes(path: str, ok: bool) -> None:
    if ok:
        assert Config(app=path).app == path
    else:
        with pytest.raises(ConfigError):
            Config(app=path)


def test_as_asgi3_keeps_forcing_asgi() -> None:
    def two_params(scope: object, other: object) -> object:
        return asgi3

    assert is_wsgi(two_params)
    forced = as_asgi3(two_params)
    assert not is_wsgi(forced)
    assert not isinstance(wrap_app(forced, Config()), WSGIApp)
