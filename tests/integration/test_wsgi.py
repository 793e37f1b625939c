"""WSGI applications end to end: a real tricorn server on 127.0.0.1 serving
hand-written PEP 3333 apps (auto-detected, no wrapper), httpx as the client,
under asyncio, uvloop and trio."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from tricorn.asgi.wsgi import Environ, StartResponse

from ..conftest import running_server
from .client import RawClient, address

pytestmark = pytest.mark.anyio

CHUNK = bytes(range(256)) * 256  # 64 KiB
CHUNKS = 160  # 10 MiB in all


def echo(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """The request body back, with a few environ facts in headers."""
    body = environ["wsgi.input"].read()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("X-Method", environ["REQUEST_METHOD"]),
            ("X-Script-Name", environ["SCRIPT_NAME"]),
            ("X-Path-Info", environ["PATH_INFO"]),
            ("X-Query", environ["QUERY_STRING"]),
            ("X-Protocol", environ["SERVER_PROTOCOL"]),
            ("X-Remote", environ["REMOTE_ADDR"]),
            ("X-Server-Port", environ["SERVER_PORT"]),
            ("X-Content-Length", environ.get("CONTENT_LENGTH", "")),
            ("X-Multithread", str(environ["wsgi.multithread"])),
        ],
    )
    return [body]


def stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(CHUNKS):
        yield CHUNK


async def test_get_and_environ() -> None:
    async with running_server(echo, root_path="/app") as url, httpx.AsyncClient() as client:
        response = await client.get(url + "/app/caf%C3%A9?x=1")
    _, port = address(url)
    assert response.status_code == 200
    assert response.headers["x-method"] == "GET"
    assert response.headers["x-script-name"] == "/app"
    # PATH_INFO is the UTF-8 bytes as latin-1 (PEP 3333): as a latin-1
    # header value they go back on the wire as those bytes.
    assert dict(response.headers.raw)[b"x-path-info"] == "/café".encode()
    assert response.headers["x-query"] == "x=1"
    assert response.headers["x-protocol"] == "HTTP/1.1"
    assert response.headers["x-remote"] == "127.0.0.1"
    assert response.headers["x-server-port"] == str(port)
    assert response.headers["x-multithread"] == "True"
    assert response.headers["content-length"] == "0"
    assert response.headers["server"] == "tricorn"


async def test_request_and_response_bodies_both_ways() -> None:
    payload = CHUNK * 16  # 1 MiB

    async def chunked() -> Any:
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    async with running_server(echo) as url, httpx.AsyncClient() as client:
        sized = await client.post(url, content=payload)
        streamed = await client.post(url, content=chunked())
    for response in (sized, streamed):
        assert response.status_code == 200
        assert response.content == payload
        assert response.headers["content-length"] == str(len(payload))
        assert response.headers["x-content-length"] == str(len(payload))


async def test_body_over_wsgi_max_body_size_is_413() -> None:
    called = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        called.set()
        return echo(environ, start_response)

    chunk = b"64\r\n" + b"x" * 100 + b"\r\n"
    async with (
        running_server(app, wsgi_max_body_size=1000) as url,
        httpx.AsyncClient() as client,
    ):
        declared = await client.post(url, content=b"x" * 1001)
        async with await RawClient.connect(url) as raw:  # chunked, growing past the limit
            await raw.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            await raw.send(chunk * 11 + b"0\r\n\r\n")
            grown = await raw.response(b"POST")
        assert not called.is_set()
        fits = await client.post(url, content=b"x" * 1000)
    assert (declared.status_code, declared.content) == (413, b"Payload Too Large")
    assert grown.status == 413
    assert fits.status_code == 200
    assert fits.content == b"x" * 1000


async def test_413_comes_before_the_body_is_sent() -> None:
    async with (
        running_server(echo, wsgi_max_body_size=1000) as url,
        await RawClient.connect(url) as raw,
    ):
        await raw.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        reply = await raw.response(b"POST")
        assert reply.status == 413
        assert reply.headers[b"connection"] == b"close"
        await raw.read_all()  # the server closes: the body is never read


async def test_big_streamed_response() -> None:
    expected = hashlib.sha256(CHUNK * CHUNKS).hexdigest()
    async with running_server(stream) as url, httpx.AsyncClient() as client:
        digest = hashlib.sha256()
        async with client.stream("GET", url) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            async for data in response.aiter_bytes():
                digest.update(data)
    assert digest.hexdigest() == expected


async def test_head_has_the_get_headers_and_no_body() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"twelve bytes"]

    async with running_server(app) as url, httpx.AsyncClient() as client:
        response = await client.head(url)
    assert response.status_code == 200
    assert response.headers["content-length"] == "12"
    assert response.content == b""


async def test_concurrent_requests_share_the_thread_bound() -> None:
    lock = threading.Lock()
    active = 0
    peak = 0
    enough = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == 3:
                enough.set()
        enough.wait(5)  # the first three wait for each other: they overlap
        with lock:
            active -= 1
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    results: dict[int, bytes] = {}
    async with (
        running_server(app, wsgi_max_threads=3) as url,
        httpx.AsyncClient(limits=httpx.Limits(max_connections=20)) as client,
    ):

        async def one(i: int) -> None:
            response = await client.get(f"{url}/{i}")
            results[i] = response.content

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(one, i)
    assert results == {i: f"/{i}".encode() for i in range(12)}
    assert peak == 3


async def test_app_exception_is_a_500() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("boom")

    async with running_server(app) as url, httpx.AsyncClient() as client:
        response = await client.get(url)
        again = await client.get(url)
    assert (response.status_code, response.content) == (500, b"Internal Server Error")
    assert again.status_code == 500


async def test_client_leaving_mid_stream_closes_the_iterable() -> None:
    closed = threading.Event()
    produced = 0

    class Endless:
        def __iter__(self) -> Iterator[bytes]:
            nonlocal produced
            while True:
                produced += 1
                yield CHUNK

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Any:
        if environ["PATH_INFO"] == "/ok":
            return echo(environ, start_response)
        start_response("200 OK", [])
        return Endless()

    async with running_server(app) as url:
        async with await RawClient.connect(url) as raw:
            await raw.send(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            received = 0
            with anyio.fail_after(5):
                while received < 4 * len(CHUNK):
                    received += len(await raw.stream.receive())
        # (the client closed the connection: the app stops and is closed)
        with anyio.fail_after(5):
            while not closed.is_set():
                await anyio.sleep(0.01)
        stopped_at = produced
        async with httpx.AsyncClient() as client:
            response = await client.post(url + "/ok", content=b"still serving")
        assert response.content == b"still serving"
        assert produced == stopped_at  # the endless iterable is not read any more


async def test_http2_to_a_wsgi_app() -> None:
    async with (
        running_server(echo) as url,
        httpx.AsyncClient(http1=False, http2=True) as client,
    ):
        responses = [await client.post(url + f"/{i}", content=b"h2 body") for i in range(3)]
    for i, response in enumerate(responses):
        assert response.http_version == "HTTP/2"
        assert response.content == b"h2 body"
        assert response.headers["x-protocol"] == "HTTP/2"
        assert response.headers["x-path-info"] == f"/{i}"


async def test_websocket_to_a_wsgi_app_is_refused() -> None:
    async with running_server(echo) as url, await RawClient.connect(url) as raw:
        await raw.send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = await raw.response()
    assert reply.status == 403


async def test_a_flask_app_if_flask_is_installed() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("tricorn_wsgi_test")

    def greet(name: str) -> Any:
        return {"hello": name, "body": flask.request.get_data(as_text=True)}

    app.add_url_rule("/greet/<name>", view_func=greet, methods=["POST"])

    async with running_server(app) as url, httpx.AsyncClient() as client:
        response = await client.post(url + "/greet/trio", content=b"payload")
    assert response.status_code == 200
    assert response.json() == {"hello": "trio", "body": "payload"}
