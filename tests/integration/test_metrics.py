"""The Prometheus endpoint (``metrics_bind``) over real sockets: a known
sequence of HTTP/1.1, HTTP/2, HTTP/3 and WebSocket traffic, then the scrape
parsed by prometheus_client's parser; in one process under every backend,
and from a TOML file with worker processes (a killed worker's counts stay,
the restart is counted)."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tricorn import _backend
from tricorn.asgi.types import ASGIReceive, ASGISend, Scope
from tricorn.server.serve import serve

from ..cli.test_cli_serve import free_port, tricorn, write_app
from ..cli.test_workers import PID_APP, children, wait_for
from ..conftest import TLSFiles, make_config
from .apps import hello
from .test_h2_clients import worker_class, write_toml
from .test_http3 import H3Server
from .wsclient import ws_connect

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Gate:
    """An app path that holds its request until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.open = anyio.Event()


def make_app(gate: Gate) -> Any:
    async def app(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": message.get("text")})
            await receive()
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/missing":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/boom":
            raise RuntimeError("boom")
        elif scope["path"] == "/hold":
            gate.entered.set()
            await gate.open.wait()
            await hello(scope, receive, send)
        else:
            await hello(scope, receive, send)

    return app


@asynccontextmanager
async def running(app: Any, **settings: Any) -> AsyncIterator[list[str]]:
    """Serve with a metrics endpoint; yields every URL (the metrics one last)."""
    settings.setdefault("metrics_bind", "127.0.0.1:0")
    config = make_config(**settings)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        urls = await tg.start(
            lambda task_status: serve(
                app, config, shutdown_trigger=stop.wait, io=_backend, task_status=task_status
            )
        )
        try:
            yield urls
        finally:
            stop.set()


async def scrape(client: httpx.AsyncClient, metrics_url: str) -> Samples:
    response = await client.get(metrics_url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(response.text)


async def test_a_known_sequence_of_requests(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    async with running(make_app(gate)) as urls, httpx.AsyncClient() as client:
        url, metrics_url = urls[0], urls[-1]
        assert metrics_url != url
        for path in ("/", "/", "/", "/missing", "/missing", "/boom"):
            await client.get(url + path)
        async with httpx.AsyncClient(http1=False, http2=True) as h2c:
            for _ in range(2):
                assert (await h2c.get(url + "/")).http_version == "HTTP/2"
        async with ws_connect(url, "/ws") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
            await ws.close(1000)
            await ws.wait_closed()
        # One request held in the app: an open stream on an open connection.
        async with httpx.AsyncClient() as holder, anyio.create_task_group() as tg:
            tg.start_soon(holder.get, url + "/hold")
            await gate.entered.wait()
            during = await scrape(client, metrics_url)
            gate.open.set()
        after = await scrape(client, metrics_url)
        # The metrics server's own requests are not counted.
        assert sample(after, "tricorn_requests_total", protocol="1.1", status="200") == 4
    assert sample(after, "tricorn_requests_total", protocol="1.1", status="404") == 2
    assert sample(after, "tricorn_requests_total", protocol="1.1", status="500") == 1
    assert sample(after, "tricorn_requests_total", protocol="2", status="200") == 2
    assert sample(after, "tricorn_websockets_total", protocol="1.1") == 1
    assert sample(after, "tricorn_request_duration_seconds_count", protocol="1.1") == 7
    assert sample(after, "tricorn_request_duration_seconds_count", protocol="2") == 2
    assert sample(after, "tricorn_workers") == 1
    assert sample(during, "tricorn_open_streams", protocol="1.1") == 1
    assert sample(during, "tricorn_open_connections", transport="tcp") >= 2  # client, holder
    assert sample(after, "tricorn_open_streams", protocol="1.1") == 0
    # The held request took at least as long as the scrape in between.
    assert sample(after, "tricorn_request_duration_seconds_sum", protocol="1.1") > 0


async def test_http3_requests_and_quic_connections(tls_files: TLSFiles) -> None:
    settings: dict[str, Any] = {"quic_bind": ["127.0.0.1:0"]}
    settings.update(certfile=tls_files.certfile, keyfile=tls_files.keyfile)
    async with running(make_app(Gate()), **settings) as urls, httpx.AsyncClient() as client:
        metrics_url = urls[-1]
        async with H3Server(urls).connect() as h3:
            for _ in range(3):
                assert (await h3.request("GET", "/")).status == 200
            assert (await h3.request("GET", "/missing")).status == 404
            during = await scrape(client, metrics_url)
        assert sample(during, "tricorn_requests_total", protocol="3", status="200") == 3
        assert sample(during, "tricorn_requests_total", protocol="3", status="404") == 1
        assert sample(during, "tricorn_open_connections", transport="quic") == 1
        with anyio.fail_after(10):
            while sample(
                await scrape(client, metrics_url), "tricorn_open_connections", transport="quic"
            ):
                await anyio.sleep(0.05)


async def test_only_get_and_head_at_metrics(tls_files: TLSFiles) -> None:
    async with running(hello) as urls, httpx.AsyncClient() as client:
        metrics_url = urls[-1]
        assert (await client.post(metrics_url + "/metrics")).status_code == 405
        assert (await client.get(metrics_url + "/")).status_code == 404
        head = await client.head(metrics_url + "/metrics")
        assert head.status_code == 200
        assert head.content == b""


# ---------------------------------------------------------------- workers


def ok_count(samples: Samples) -> float:
    return sample(samples, "tricorn_requests_total", protocol="1.1", status="200")


def scrape_sync(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


def get(port: int, path: str = "/") -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")
async def test_metrics_from_the_toml_file_with_workers(
    tmp_path: Path, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    """Two workers count into one endpoint; a worker killed with SIGKILL
    keeps its counts and its restart is counted; a SIGHUP reload keeps them too."""
    env = write_app(tmp_path, "pid_app", PID_APP)
    port, metrics_port = free_port(), free_port()
    config = write_toml(
        tmp_path / "metrics.toml",
        app="pid_app:app",
        bind=[f"127.0.0.1:{port}"],
        metrics_bind=f"127.0.0.1:{metrics_port}",
        workers=2,
        worker_class=worker_class(anyio_backend),
    )
    with tricorn(tmp_path, "-c", str(config), env=env) as child:
        child.wait_listening(port)
        child.wait_listening(metrics_port)
        parent = child.proc.pid
        wait_for(lambda: len(children(parent)) == 3)  # two workers, the metrics server
        for _ in range(20):
            assert get(port) == 200
        wait_for(lambda: sample(scrape_sync(metrics_port), "tricorn_workers") == 2)
        wait_for(lambda: ok_count(scrape_sync(metrics_port)) == 20)
        # Kill the worker that answers, so it surely had counted requests.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            victim = int(response.read())
        # (A request is counted just after its response is sent.)
        wait_for(lambda: ok_count(scrape_sync(metrics_port)) == 21)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                sample(scrape_sync(metrics_port), "tricorn_worker_restarts_total", reason="died")
                == 1
            )
        )
        wait_for(lambda: sample(scrape_sync(metrics_port), "tricorn_workers") == 2)
        after_kill = scrape_sync(metrics_port)
        assert ok_count(after_kill) == 21
        os.kill(parent, signal.SIGHUP)
        wait_for(lambda: "reload done" in child.stderr(), timeout=20)
        for _ in range(5):
            assert get(port) == 200
        wait_for(lambda: ok_count(scrape_sync(metrics_port)) == 26)
        reloaded = scrape_sync(metrics_port)
        assert sample(reloaded, "tricorn_request_duration_seconds_count", protocol="1.1") == 26
        assert child.terminate() == 0, child.stderr()
