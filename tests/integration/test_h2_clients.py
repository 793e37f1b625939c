"""HTTP/2 end to end with real clients on real sockets, under asyncio, uvloop
and trio: httpx, curl, nghttp and h2load against a tricorn server on
127.0.0.1, the h2 library as a client for what the tools do not show (ASGI
scopes, SETTINGS_ENABLE_PUSH=0, RST_STREAM codes), and ``python -m tricorn``
started from TOML files (config/push.toml among them).

curl, nghttp and h2load are external programs (apt: curl, nghttp2-client);
a test that needs one that is missing is skipped and says which. Every
subprocess runs under its own timeout and ``anyio.fail_after``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import httpx
import pytest
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.config import load_config

from ..cli.test_cli_serve import REPO, free_port, tricorn
from ..conftest import TLSFiles, running_server
from .apps import echo, hello, scope_json
from .client import address

pytestmark = pytest.mark.anyio

TOOL_TIMEOUT = 20.0  # seconds, for any one external program
APT = {"curl": "curl", "nghttp": "nghttp2-client", "h2load": "nghttp2-client"}
H2 = ["h2", "http/1.1"]


# --- external programs -----------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of program ``name``; skip the test (saying why) if it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {APT[name]})")
    return path


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Ran:
    """Run a program to completion within TOOL_TIMEOUT (killed past it)."""
    child_env = {**os.environ, **(env or {})}
    with anyio.fail_after(TOOL_TIMEOUT):
        result = await anyio.run_process(list(argv), check=False, env=child_env)
    return Ran(
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


async def curl(*args: str) -> tuple[str, bytes, str]:
    """curl ``args``; (HTTP version curl used, body, stderr). Fails on a curl error."""
    argv = [tool("curl"), "-sS", "--max-time", "10", "-w", "\n%{http_version}", *args]
    with anyio.fail_after(TOOL_TIMEOUT):
        result = await anyio.run_process(argv, check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, stderr
    body, _, version = result.stdout.rpartition(b"\n")
    return version.decode(), body, stderr


async def nghttp(url: str, *args: str, ca_file: str | None = None) -> str:
    """``nghttp -v`` output (bodies follow the frame log on stdout unless -n)."""
    env = {"SSL_CERT_FILE": ca_file} if ca_file else None
    result = await run([tool("nghttp"), "-v", "-t", "10", *args, url], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- the h2 library as a client ------------------------------------------------------------


@dataclass
class Exchange:
    """What arrived on one stream."""

    events: list[h2.events.Event] = field(default_factory=list)
    promise: list[tuple[bytes, bytes]] = field(default_factory=list)  # pushed streams
    pushes: list[int] = field(default_factory=list)  # streams pushed on behalf of this one

    def _of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    @property
    def informational(self) -> list[list[tuple[bytes, bytes]]]:
        return [list(e.headers) for e in self._of(h2.events.InformationalResponseReceived)]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        (response,) = self._of(h2.events.ResponseReceived)
        return list(response.headers)

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])

    @property
    def body(self) -> bytes:
        return b"".join(event.data for event in self._of(h2.events.DataReceived))

    @property
    def trailers(self) -> list[tuple[bytes, bytes]] | None:
        found = self._of(h2.events.TrailersReceived)
        return list(found[0].headers) if found else None

    @property
    def reset(self) -> int | None:
        found = self._of(h2.events.StreamReset)
        return int(found[0].error_code) if found else None


class H2Client:
    """One HTTP/2 connection driven by h2 (inbound headers not validated, so
    tests see exactly what the server sent)."""

    def __init__(self, stream: ByteStream, url: str, scheme: str, enable_push: bool) -> None:
        self.stream = stream
        host, port = address(url)
        self.authority = f"{host}:{port}".encode()
        self.scheme = scheme.encode()
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.ENABLE_PUSH: int(enable_push)},
        )
        self.server_settings: dict[int, int] = {}
        self.cancel_pushes = False  # answer each PUSH_PROMISE with RST_STREAM(CANCEL)

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def request(
        self,
        path: bytes,
        method: bytes = b"GET",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
    ) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        head = [
            (b":method", method),
            (b":scheme", self.scheme),
            (b":path", path),
            (b":authority", self.authority),
            *headers,
        ]
        self.conn.send_headers(stream_id, head, end_stream=body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        await self.flush()
        return stream_id

    async def events(self) -> list[h2.events.Event]:
        data = await self.stream.receive()
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for code, change in event.changed_settings.items():
                    self.server_settings[int(code)] = change.new_value
        await self.flush()
        return events

    async def exchange(self, *stream_ids: int, timeout: float = 5.0) -> dict[int, Exchange]:
        """Read until ``stream_ids`` and every stream pushed on their behalf
        have ended (END_STREAM or RST_STREAM)."""
        logs = {stream_id: Exchange() for stream_id in stream_ids}
        waiting = set(stream_ids)
        with anyio.fail_after(timeout):
            while waiting:
                for event in await self.events():
                    if isinstance(event, h2.events.PushedStreamReceived):
                        pushed, parent = event.pushed_stream_id, event.parent_stream_id
                        assert pushed is not None
                        assert parent is not None
                        logs[pushed] = Exchange(promise=list(event.headers or []))
                        logs[parent].pushes.append(pushed)
                        if self.cancel_pushes:
                            with contextlib.suppress(h2.exceptions.StreamClosedError):
                                self.conn.reset_stream(pushed, h2.errors.ErrorCodes.CANCEL)
                            await self.flush()
                        else:
                            waiting.add(pushed)
                        continue
                    stream_id = getattr(event, "stream_id", None)
                    if stream_id in logs:
                        logs[stream_id].events.append(event)
                        if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                            waiting.discard(stream_id)
        return logs

    async def get(self, path: bytes, **kwargs: Any) -> Exchange:
        stream_id = await self.request(path, **kwargs)
        return (await self.exchange(stream_id))[stream_id]


@asynccontextmanager
async def h2_client(
    url: str, *, ca_file: str | None = None, enable_push: bool = True
) -> AsyncIterator[H2Client]:
    """An h2 client connected to ``url``: h2c prior knowledge, or TLS with
    ALPN h2 when ``ca_file`` is given."""
    host, port = address(url)
    if ca_file is not None:
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        stream: ByteStream = await anyio.connect_tcp(
            host, port, ssl_context=context, tls_standard_compatible=False
        )
        assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
    else:
        stream = await anyio.connect_tcp(host, port)
    async with stream:
        client = H2Client(stream, url, "https" if ca_file else "http", enable_push)
        client.conn.initiate_connection()
        await client.flush()
        yield client


# --- applications ----------------------------------------------------------------------------

LINKS = [b"</a.css>; rel=preload; as=style", b"</b.js>; rel=preload; as=script", b"</c.png>"]
CONNECTION_SPECIFIC = [
    (b"connection", b"close"),
    (b"transfer-encoding", b"chunked"),
    (b"keep-alive", b"timeout=5"),
    (b"upgrade", b"h2c"),
]


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


async def respond(send: ASGISend, body: bytes, status: int = 200, headers: Any = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def features(pathsend_file: Path | None = None) -> Any:
    """One app for the HTTP/2 features, by path:

    - ``/push``: pushes ``/pushed?n=1`` (with a request header) and ``/pushed?n=2``, then
      answers ``parent``. ``/pushed``: its scope as JSON (pushes from there are dropped).
      ``/push-slow``: pushes ``/pushed?slow`` twice, which answer after 0.5 s.
    - ``/hints``: three early hints, then 200, then the body ``done``.
    - ``/trailers``: a body, then trailers.
    - ``/pathsend``: ``pathsend_file``.
    - ``/connection-headers``: a response carrying connection-specific headers.
    - ``/raise-before``, ``/raise-after``: an exception before / after http.response.start.
    - anything else: the scope as JSON.

    ``calls`` records ``(path, outcome)``; pushes report whether send() returned.
    """
    calls: list[tuple[str, str]] = []

    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/push":
            await send(
                {"type": "http.response.push", "path": "/pushed?n=1", "headers": [(b"x-n", b"1")]}
            )
            await send({"type": "http.response.push", "path": "/pushed?n=2", "headers": []})
            calls.append((path, "pushed"))
            await respond(send, b"parent", headers=[(b"content-type", b"text/plain")])
        elif path == "/push-slow":
            for _ in range(2):
                await send({"type": "http.response.push", "path": "/pushed?slow", "headers": []})
            calls.append((path, "pushed"))
            await respond(send, b"parent")
        elif path == "/pushed":
            # Not offered here; were it sent anyway, it is dropped quietly.
            await send({"type": "http.response.push", "path": "/never", "headers": []})
            if scope["query_string"] == b"slow":
                await anyio.sleep(0.5)
            # Recorded first: the client may leave as soon as it has the
            # body, and then this task's send() may report the disconnect.
            calls.append((path, scope["query_string"].decode()))
            await respond(send, json.dumps(jsonable(scope)).encode())
        elif path == "/hints":
            for link in LINKS:
                await send({"type": "http.response.early_hint", "links": [link]})
            await respond(send, b"done")
        elif path == "/trailers":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
            )
            await send({"type": "http.response.body", "body": b"body", "more_body": True})
            await send({"type": "http.response.body", "body": b" and more"})
            await send(
                {
                    "type": "http.response.trailers",
                    "headers": [(b"x-checksum", b"abc123"), (b"x-count", b"2")],
                }
            )
        elif path == "/pathsend":
            assert pathsend_file is not None
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.pathsend", "path": str(pathsend_file)})
        elif path == "/connection-headers":
            await respond(send, b"ok", headers=[*CONNECTION_SPECIFIC, (b"x-kept", b"yes")])
        elif path == "/raise-before":
            raise RuntimeError("boom before start")
        elif path == "/raise-after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("boom after start")
        else:
            await respond(send, json.dumps(jsonable(scope)).encode())

    app.calls = calls  # type: ignore[attr-defined]
    return app


def tls(tls_files: TLSFiles, **settings: Any) -> dict[str, Any]:
    return {"certfile": tls_files.certfile, "keyfile": tls_files.keyfile, **settings}


def https_client(tls_files: TLSFiles, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(http2=True, verify=ssl_context(tls_files.ca_file), **kwargs)


def ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


# --- httpx ---------------------------------------------------------------------------------


async def test_httpx_get_and_post_over_tls(tls_files: TLSFiles) -> None:
    async with (
        running_server(echo, **tls(tls_files)) as url,
        https_client(tls_files, timeout=5) as client,
    ):
        got = await client.get(url + "/")
        posted = await client.post(url + "/", content=b"x" * 100_000 + b"end")
    assert (got.http_version, got.status_code, got.content) == ("HTTP/2", 200, b"")
    assert (posted.http_version, posted.status_code) == ("HTTP/2", 200)
    assert posted.content == b"x" * 100_000 + b"end"
    assert posted.headers["server"] == "tricorn"


async def test_httpx_many_concurrent_requests_share_one_connection(tls_files: TLSFiles) -> None:
    results: list[httpx.Response] = []

    async def one(client: httpx.AsyncClient, url: str, n: int) -> None:
        results.append(await client.post(f"{url}/n/{n}", content=str(n).encode()))

    async with (
        running_server(scope_json, **tls(tls_files)) as url,
        https_client(tls_files, timeout=10) as client,
    ):
        await client.get(url)  # open the connection first: one connection for all
        async with anyio.create_task_group() as tg:
            for n in range(60):
                tg.start_soon(one, client, url, n)
    assert len(results) == 60
    scopes = [response.json() for response in results]
    assert {response.http_version for response in results} == {"HTTP/2"}
    assert sorted(scope["path"] for scope in scopes) == sorted(f"/n/{n}" for n in range(60))
    assert len({tuple(scope["client"]) for scope in scopes}) == 1


async def test_httpx_prior_knowledge_on_cleartext_and_pathsend(tmp_path: Path) -> None:
    data = os.urandom(300_000)  # several windows' worth: flow control on the way
    file = tmp_path / "blob.bin"
    file.write_bytes(data)
    async with (
        running_server(features(file)) as url,
        httpx.AsyncClient(http1=False, http2=True, timeout=5) as client,
    ):
        response = await client.get(url + "/pathsend")
    assert response.http_version == "HTTP/2"
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(data).digest()


# --- curl ----------------------------------------------------------------------------------


async def test_curl_http2_over_tls(tls_files: TLSFiles) -> None:
    async with running_server(hello, **tls(tls_files)) as url:
        version, body, _ = await curl("--http2", "--cacert", tls_files.ca_file, url + "/")
    assert (version, body) == ("2", b"Hello, world!")


async def test_curl_prior_knowledge_on_cleartext() -> None:
    async with running_server(echo) as url:
        version, body, _ = await curl("--http2-prior-knowledge", "-d", "a=1&b=2", url + "/")
    assert (version, body) == ("2", b"a=1&b=2")


async def test_curl_h2c_upgrade_with_a_post_body() -> None:
    async with running_server(echo) as url:
        version, body, stderr = await curl("-v", "--http2", "-d", "hello=upgrade", url + "/")
    assert "Upgrade: h2c" in stderr
    assert "101 Switching Protocols" in stderr
    assert (version, body) == ("2", b"hello=upgrade")


async def test_curl_h2c_upgrade_body_past_the_window_stays_http11(tmp_path: Path) -> None:
    # The body of an Upgrade request is held until the switch; one larger than the
    # stream window is served over HTTP/1.1 instead (the designed fallback).
    data = b"0123456789abcdef" * 5000  # 80 000 bytes
    (tmp_path / "body").write_bytes(data)
    async with running_server(echo, h2_initial_window_size=65535) as url:
        version, body, stderr = await curl(
            "-v", "--http2", "--data-binary", f"@{tmp_path / 'body'}", url + "/"
        )
    assert "Upgrade: h2c" in stderr
    assert "101 Switching Protocols" not in stderr
    assert version == "1.1"
    assert body == data


# --- nghttp --------------------------------------------------------------------------------


def lines_with(output: str, pattern: str) -> list[int]:
    """The numbers of the lines of ``output`` that match ``pattern``."""
    return [n for n, line in enumerate(output.splitlines()) if re.search(pattern, line)]


def printed_body(output: str) -> str:
    """The (one-line) bodies ``nghttp -v`` printed, in order: each is written
    just before the log line of the DATA frame that carried it."""
    return "".join(re.findall(r"^(.*?)\[ *\d+\.\d+\] ", output, re.MULTILINE))


def request_stream(output: str) -> int:
    """The stream nghttp sent its request on (after its PRIORITY-only streams)."""
    match = re.search(r"send HEADERS frame <[^>]*stream_id=(\d+)>", output)
    assert match is not None, output
    return int(match.group(1))


async def test_nghttp_sees_pushes(tls_files: TLSFiles) -> None:
    app = features()
    async with running_server(app, **tls(tls_files)) as url:
        out = await nghttp(url + "/push", ca_file=tls_files.ca_file)
    sid = request_stream(out)
    assert len(lines_with(out, rf"recv PUSH_PROMISE frame .*stream_id={sid}>")) == 2
    assert lines_with(out, r"promised_stream_id=2\)")
    assert lines_with(out, r"promised_stream_id=4\)")
    # The promised request's header lines are logged under the parent stream.
    assert lines_with(out, rf"recv \(stream_id={sid}\) :path: /pushed\?n=1")
    assert lines_with(out, rf"recv \(stream_id={sid}\) x-n: 1")
    assert lines_with(out, r"recv DATA frame .*stream_id=2\b")
    assert lines_with(out, r"recv DATA frame .*stream_id=4\b")
    # The pushed bodies (each a scope as JSON) are printed in among the log lines.
    decoder = json.JSONDecoder()
    pushed = [decoder.raw_decode(out, m.start())[0] for m in re.finditer(r'\{"asgi"', out)]
    assert sorted(scope["query_string"] for scope in pushed) == ["n=1", "n=2"]
    assert "parent" in printed_body(out)
    assert sorted(app.calls) == [("/push", "pushed"), ("/pushed", "n=1"), ("/pushed", "n=2")]


async def test_nghttp_sees_early_hints_before_the_response() -> None:
    async with running_server(features()) as url:
        out = await nghttp(url + "/hints")
    sid = request_stream(out)
    hints = lines_with(out, rf"recv \(stream_id={sid}\) :status: 103")
    final = lines_with(out, rf"recv \(stream_id={sid}\) :status: 200")
    assert len(hints) == 3
    assert len(final) == 1
    assert max(hints) < final[0]
    assert lines_with(out, rf"recv \(stream_id={sid}\) link: </b.js>; rel=preload; as=script")
    assert printed_body(out) == "done"


async def test_nghttp_receives_trailers() -> None:
    async with running_server(features()) as url:
        out = await nghttp(url + "/trailers")
    sid = request_stream(out)
    data = lines_with(out, rf"recv DATA frame .*stream_id={sid}>")
    trailer = lines_with(out, rf"recv \(stream_id={sid}\) x-checksum: abc123")
    end = lines_with(out, rf"recv HEADERS frame <length=\d+, flags=0x05, stream_id={sid}>")
    assert data
    assert trailer
    assert end
    assert max(data) < trailer[0] < end[-1]
    assert lines_with(out, rf"recv \(stream_id={sid}\) x-count: 2")
    assert printed_body(out) == "body and more"


# --- h2load --------------------------------------------------------------------------------


async def h2load(url: str) -> str:
    result = await run([tool("h2load"), "-n", "2000", "-c", "4", "-m", "10", "-T", "10", url])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_h2load_h2c_all_succeed() -> None:
    async with running_server(hello) as url:
        out = await h2load(url + "/")
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in out, out
    assert "status codes: 2000 2xx" in out, out


async def test_h2load_tls_all_succeed(tls_files: TLSFiles) -> None:
    async with running_server(hello, **tls(tls_files)) as url:
        out = await h2load(url + "/")
    assert "Application protocol: h2" in out, out
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in out, out


# --- the ASGI side of HTTP/2 -----------------------------------------------------------------


async def test_scope_over_h2c() -> None:
    async with running_server(scope_json) as url, h2_client(url) as client:
        reply = await client.get(b"/a%20b/c?x=1&y=%20", headers=[(b"x-test", b"yes")])
    host, port = address(url)
    scope = json.loads(reply.body)
    assert reply.status == 200
    assert scope["type"] == "http"
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == "/a%20b/c"
    assert scope["query_string"] == "x=1&y=%20"
    assert ["host", f"{host}:{port}"] in scope["headers"]  # from :authority
    assert ["x-test", "yes"] in scope["headers"]
    assert not any(name.startswith(":") for name, _ in scope["headers"])
    assert "http.response.push" in scope["extensions"]
    assert "tls" not in scope["extensions"]


async def test_scope_over_tls(tls_files: TLSFiles) -> None:
    async with (
        running_server(scope_json, **tls(tls_files)) as url,
        https_client(tls_files, timeout=5) as client,
    ):
        response = await client.request("PATCH", url + "/p", content=b"z")
    scope = response.json()
    assert response.http_version == "HTTP/2"
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("2", "PATCH", "https")
    assert scope["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)
    assert "http.response.push" in scope["extensions"]
    assert "http.response.early_hint" in scope["extensions"]
    assert "http.response.trailers" in scope["extensions"]


async def test_pushed_request_scope(tls_files: TLSFiles) -> None:
    app = features()
    async with (
        running_server(app, **tls(tls_files)) as url,
        h2_client(url, ca_file=tls_files.ca_file) as client,
    ):
        stream_id = await client.request(b"/push")
        logs = await client.exchange(stream_id)
    parent = logs[stream_id]
    assert (parent.status, parent.body) == (200, b"parent")
    assert len(parent.pushes) == 2
    first, second = (logs[pushed] for pushed in parent.pushes)
    assert dict(first.promise)[b":path"] == b"/pushed?n=1"
    assert dict(first.promise)[b":method"] == b"GET"
    assert dict(first.promise)[b":scheme"] == b"https"
    assert (b"x-n", b"1") in first.promise
    scope = json.loads(first.body)
    host, port = address(url)
    assert (scope["method"], scope["path"], scope["query_string"]) == ("GET", "/pushed", "n=1")
    assert (scope["http_version"], scope["scheme"]) == ("2", "https")
    assert ["x-n", "1"] in scope["headers"]
    assert ["host", f"{host}:{port}"] in scope["headers"]
    assert "http.response.push" not in scope["extensions"]  # no push from a pushed stream
    assert "tls" in scope["extensions"]
    assert json.loads(second.body)["query_string"] == "n=2"
    assert first.pushes == second.pushes == []  # the push from /pushed was dropped
    assert sorted(app.calls) == [("/push", "pushed"), ("/pushed", "n=1"), ("/pushed", "n=2")]


async def test_push_ignored_when_the_client_disables_it() -> None:
    app = features()
    async with running_server(app) as url, h2_client(url, enable_push=False) as client:
        reply = await client.get(b"/push")
        again = await client.get(b"/other")  # the connection is fine
    assert (reply.status, reply.body, reply.pushes) == (200, b"parent", [])
    assert again.status == 200
    assert app.calls == [("/push", "pushed")]  # send() returned; nothing was pushed


async def test_client_cancels_pushes() -> None:
    # A client that has the resources cached resets the pushes (RFC 9113 §8.4.2).
    app = features()
    async with running_server(app) as url, h2_client(url) as client:
        client.cancel_pushes = True
        reply = await client.get(b"/push-slow")
        await anyio.sleep(0.7)  # the pushed calls would have answered by now
        assert app.calls == [("/push-slow", "pushed")]  # they were cancelled
        client.cancel_pushes = False
        stream_id = await client.request(b"/push")  # the connection goes on, pushes too
        logs = await client.exchange(stream_id)
    assert (reply.status, reply.body, len(reply.pushes)) == (200, b"parent", 2)
    again = logs[stream_id]
    assert (again.status, again.body, len(again.pushes)) == (200, b"parent", 2)
    assert all(json.loads(logs[pushed].body)["path"] == "/pushed" for pushed in again.pushes)


async def test_pushes_respect_the_client_stream_limit() -> None:
    # RFC 9113 §8.4: SETTINGS_MAX_CONCURRENT_STREAMS = 0 from the client leaves the
    # server no stream to push a response on; push is then dropped quietly.
    app = features()
    async with running_server(app) as url, h2_client(url) as client:
        client.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0})
        await client.flush()
        reply = await client.get(b"/push")
    assert (reply.status, reply.body, reply.pushes) == (200, b"parent", [])
    assert app.calls == [("/push", "pushed")]


async def test_several_early_hints_then_the_response() -> None:
    async with running_server(features()) as url, h2_client(url) as client:
        reply = await client.get(b"/hints")
    assert [dict(block)[b":status"] for block in reply.informational] == [b"103"] * 3
    assert [dict(block)[b"link"] for block in reply.informational] == LINKS
    kinds = [type(event) for event in reply.events]
    assert kinds.index(h2.events.ResponseReceived) > max(
        n for n, kind in enumerate(kinds) if kind is h2.events.InformationalResponseReceived
    )
    assert (reply.status, reply.body) == (200, b"done")


async def test_trailers_are_a_final_headers_frame_with_end_stream() -> None:
    async with running_server(features()) as url, h2_client(url) as client:
        reply = await client.get(b"/trailers", headers=[(b"te", b"trailers")])
    assert (reply.status, reply.body) == (200, b"body and more")
    assert reply.trailers == [(b"x-checksum", b"abc123"), (b"x-count", b"2")]
    (trailers,) = [e for e in reply.events if isinstance(e, h2.events.TrailersReceived)]
    assert trailers.stream_ended is not None  # END_STREAM on the trailers' HEADERS
    assert [type(event) for event in reply.events[-2:]] == [
        h2.events.TrailersReceived,
        h2.events.StreamEnded,
    ]
    data = [e for e in reply.events if isinstance(e, h2.events.DataReceived)]
    assert data
    assert all(event.stream_ended is None for event in data)  # no END_STREAM on DATA


async def test_pathsend_over_tls_arrives_intact(tmp_path: Path, tls_files: TLSFiles) -> None:
    data = os.urandom(200_000)
    file = tmp_path / "blob.bin"
    file.write_bytes(data)
    async with (
        running_server(features(file), **tls(tls_files)) as url,
        h2_client(url, ca_file=tls_files.ca_file) as client,
    ):
        reply = await client.get(b"/pathsend")
    assert reply.status == 200
    assert reply.body == data


async def test_connection_specific_response_headers_are_dropped() -> None:
    async with running_server(features()) as url, h2_client(url) as client:
        reply = await client.get(b"/connection-headers")
    names = [name for name, _ in reply.headers]
    assert (reply.status, reply.body) == (200, b"ok")
    assert (b"x-kept", b"yes") in reply.headers
    assert not {name for name, _ in CONNECTION_SPECIFIC} & set(names)


async def test_app_exception_before_start_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "tricorn.error")
    async with running_server(features()) as url, h2_client(url) as client:
        reply = await client.get(b"/raise-before")
    assert (reply.status, reply.body) == (500, b"Internal Server Error")
    assert reply.reset is None
    assert "boom before start" in caplog.text


async def test_app_exception_after_start_resets_the_stream_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "tricorn.error")
    async with running_server(features()) as url, h2_client(url) as client:
        started = anyio.current_time()
        stream_id = await client.request(b"/raise-after")
        reply = (await client.exchange(stream_id, timeout=2.0))[stream_id]
        elapsed = anyio.current_time() - started
        again = await client.get(b"/fine")  # only the stream is reset
    assert reply.status == 200
    assert reply.body == b"partial"
    assert reply.reset == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert elapsed < 1.0  # not after a timeout
    assert again.status == 200
    assert "boom after start" in caplog.text


# --- python -m tricorn with a TOML file ----------------------------------------------------


def worker_class(anyio_backend: tuple[str, dict[str, Any]]) -> str:
    name, options = anyio_backend
    return "uvloop" if options.get("use_uvloop") else name


def write_toml(path: Path, **values: Any) -> Path:
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def hello_config(
    tmp_path: Path,
    tls_files: TLSFiles,
    anyio_backend: tuple[str, dict[str, Any]],
    alpn: list[str],
) -> tuple[int, int, Path]:
    """A TOML file serving examples.hello on a TLS and a cleartext port."""
    tls_port, plain_port = free_port(), free_port()
    config = write_toml(
        tmp_path / "hello.toml",
        app="examples.hello:app",
        bind=[f"127.0.0.1:{tls_port}"],
        insecure_bind=[f"127.0.0.1:{plain_port}"],
        certfile=tls_files.certfile,
        keyfile=tls_files.keyfile,
        alpn_protocols=alpn,
        worker_class=worker_class(anyio_backend),
    )
    return tls_port, plain_port, config


async def test_cli_toml_serves_h2_over_tls_and_h2c(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    tls_port, plain_port, config = hello_config(tmp_path, tls_files, anyio_backend, H2)
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(tls_port)
        child.wait_listening(plain_port)
        async with https_client(tls_files, timeout=5) as client:
            response = await client.get(f"https://localhost:{tls_port}/")
        assert (response.http_version, response.content) == ("HTTP/2", b"Hello, world!")
        version, body, _ = await curl("--http2-prior-knowledge", f"http://127.0.0.1:{plain_port}/")
        assert (version, body) == ("2", b"Hello, world!")
        assert child.terminate() == 0, child.stderr()


async def test_cli_toml_alpn_http11_only_offers_no_h2(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    tls_port, plain_port, config = hello_config(tmp_path, tls_files, anyio_backend, ["http/1.1"])
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(tls_port)
        child.wait_listening(plain_port)
        context = ssl_context(tls_files.ca_file)
        context.set_alpn_protocols(H2)
        async with await anyio.connect_tcp(
            "localhost", tls_port, ssl_context=context, tls_standard_compatible=False
        ) as stream:
            assert stream.extra(TLSAttribute.alpn_protocol) == "http/1.1"
        async with https_client(tls_files, timeout=5) as client:
            response = await client.get(f"https://localhost:{tls_port}/")
        assert (response.http_version, response.content) == ("HTTP/1.1", b"Hello, world!")
        # Cleartext speaks HTTP/1.1 only: the h2c preface is refused...
        async with await anyio.connect_tcp("127.0.0.1", plain_port) as stream:
            await stream.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            reply = b""
            with anyio.fail_after(5):
                try:
                    while True:
                        reply += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
        assert re.match(rb"HTTP/1\.1 [45]\d\d ", reply), reply  # (505), not SETTINGS
        # ...an Upgrade: h2c is answered over HTTP/1.1...
        version, body, _ = await curl("--http2", f"http://127.0.0.1:{plain_port}/")
        assert (version, body) == ("1.1", b"Hello, world!")
        # ...and HTTP/1.1 is served.
        version, body, _ = await curl("--http1.1", f"http://127.0.0.1:{plain_port}/")
        assert (version, body) == ("1.1", b"Hello, world!")
        assert child.terminate() == 0, child.stderr()


async def test_push_toml_example_pushes(
    tmp_path: Path, tls_files: TLSFiles, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    """config/push.toml serving examples/push.py, with free ports and the test
    certificate substituted: nghttp sees the 103, both pushes and the page."""
    nghttp_path = tool("nghttp")
    shipped = load_config(config_path=str(REPO / "config" / "push.toml"))
    assert shipped.app == "examples.push:app"
    assert "h2" in shipped.alpn_protocols
    text = (REPO / "config" / "push.toml").read_text()
    tls_port, plain_port = free_port(), free_port()
    replacements = {
        '"127.0.0.1:8443"': f'"127.0.0.1:{tls_port}"',
        '"127.0.0.1:8080"': f'"127.0.0.1:{plain_port}"',
        f'"{shipped.certfile}"': json.dumps(tls_files.certfile),
        f'"{shipped.keyfile}"': json.dumps(tls_files.keyfile),
    }
    for old, new in replacements.items():
        assert old in text, f"config/push.toml no longer contains {old}"
        text = text.replace(old, new)
    text += f'\nworker_class = "{worker_class(anyio_backend)}"\n'
    config = tmp_path / "push.toml"
    config.write_text(text)
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(tls_port)
        child.wait_listening(plain_port)
        env = {"SSL_CERT_FILE": tls_files.ca_file}
        result = await run([nghttp_path, "-nv", "-t", "10", f"https://localhost:{tls_port}/"], env)
        plain = await nghttp(f"http://127.0.0.1:{plain_port}/", "-n")  # h2c prior knowledge
        upgraded = await nghttp(f"http://127.0.0.1:{plain_port}/", "-nu")  # Upgrade: h2c
        assert child.terminate() == 0, child.stderr()
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    sid = request_stream(out)
    assert "The negotiated protocol: h2" in out
    assert "WARNING" not in out + result.stderr  # the certificate checked out
    assert len(lines_with(out, r"recv PUSH_PROMISE frame")) == 2
    for path in ("/style.css", "/app.js"):
        assert lines_with(out, rf"recv \(stream_id={sid}\) :path: {re.escape(path)}$"), out
    hints = lines_with(out, rf"recv \(stream_id={sid}\) :status: 103")
    page = lines_with(out, rf"recv \(stream_id={sid}\) :status: 200")
    assert hints
    assert page
    assert hints[0] < page[0]
    for pushed in (2, 4):
        assert lines_with(out, rf"recv \(stream_id={pushed}\) :status: 200")
        assert lines_with(out, rf"recv \(stream_id={pushed}\) cache-control: public")
        assert lines_with(out, rf"recv DATA frame <length=\d+, flags=0x01, stream_id={pushed}>")
    assert len(lines_with(plain, r"recv PUSH_PROMISE frame")) == 2  # h2c pushes too
    assert "HTTP Upgrade success" in upgraded
    assert len(lines_with(upgraded, r"recv PUSH_PROMISE frame .*stream_id=1>")) == 2
