"""The metrics registry: recording, folding exited workers in, the text
exposition (parsed by prometheus_client's own parser), and the ASGI app."""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tricorn.metrics import BUCKETS, PROTOCOLS, MetricsApp, MetricsRegistry


def samples(registry: MetricsRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by an independent parser."""
    found = {}
    for family in text_string_to_metric_families(registry.render().decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(registry: MetricsRegistry, name: str, **labels: str) -> float:
    return samples(registry).get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_by_protocol_and_status() -> None:
    registry = MetricsRegistry(2)
    recorder = registry.recorder(registry.acquire() or 0)
    for _ in range(3):
        recorder.request("1.1", 200, 0.001)
    recorder.request("2", 404, 0.02)
    recorder.request("3", 200, 0.3)
    recorder.request("1.1", None, 0.0)  # no response started
    assert value(registry, "tricorn_requests_total", protocol="1.1", status="200") == 3
    assert value(registry, "tricorn_requests_total", protocol="2", status="404") == 1
    assert value(registry, "tricorn_requests_total", protocol="3", status="200") == 1
    assert value(registry, "tricorn_requests_total", protocol="1.1", status="none") == 1


def test_the_duration_histogram_is_cumulative() -> None:
    registry = MetricsRegistry(1)
    recorder = registry.recorder(registry.acquire() or 0)
    for seconds in (0.001, 0.005, 0.007, 0.2, 30.0):
        recorder.request("2", 200, seconds)
    name = "tricorn_request_duration_seconds"
    assert value(registry, name + "_bucket", protocol="2", le="0.005") == 2  # le is inclusive
    assert value(registry, name + "_bucket", protocol="2", le="0.01") == 3
    assert value(registry, name + "_bucket", protocol="2", le="0.25") == 4
    assert value(registry, name + "_bucket", protocol="2", le="10.0") == 4
    assert value(registry, name + "_bucket", protocol="2", le="+Inf") == 5
    assert value(registry, name + "_count", protocol="2") == 5
    assert value(registry, name + "_sum", protocol="2") == pytest.approx(30.213)
    # Protocols without a request have no histogram lines.
    assert not any(
        key[0].startswith(name) and ("protocol", "1.1") in key[1] for key in samples(registry)
    )


def test_gauges_go_up_and_down() -> None:
    registry = MetricsRegistry(1)
    recorder = registry.recorder(registry.acquire() or 0)
    recorder.connection(False, 1.0)
    recorder.connection(False, 1.0)
    recorder.connection(True, 1.0)
    recorder.connection(False, -1.0)
    recorder.stream("2", 1.0)
    recorder.stream("2", 1.0)
    recorder.stream("2", -1.0)
    recorder.websocket("1.1")
    assert value(registry, "tricorn_open_connections", transport="tcp") == 1
    assert value(registry, "tricorn_open_connections", transport="quic") == 1
    assert value(registry, "tricorn_open_streams", protocol="2") == 1
    assert value(registry, "tricorn_websockets_total", protocol="1.1") == 1


def test_an_exited_workers_counters_stay_and_its_gauges_go() -> None:
    registry = MetricsRegistry(4)
    first, second = registry.acquire(), registry.acquire()
    assert first is not None
    assert second is not None
    old, other = registry.recorder(first), registry.recorder(second)
    old.request("1.1", 200, 0.01)
    old.connection(False, 1.0)
    old.stream("1.1", 1.0)
    other.request("1.1", 200, 0.01)
    registry.release(first)  # the worker was killed with a connection open
    assert value(registry, "tricorn_requests_total", protocol="1.1", status="200") == 2
    assert value(registry, "tricorn_open_connections", transport="tcp") == 0
    assert value(registry, "tricorn_open_streams", protocol="1.1") == 0
    # Its block is free again, and clean, for the next worker.
    again = registry.acquire()
    assert again == first
    new = registry.recorder(again)
    new.request("1.1", 200, 0.01)
    assert value(registry, "tricorn_requests_total", protocol="1.1", status="200") == 3
    assert value(registry, "tricorn_request_duration_seconds_count", protocol="1.1") == 3


def test_acquire_stops_at_capacity() -> None:
    registry = MetricsRegistry(2)
    assert [registry.acquire(), registry.acquire(), registry.acquire()] == [0, 1, None]
    registry.release(0)
    assert registry.acquire() == 0


def test_worker_counts_from_the_supervisor() -> None:
    registry = MetricsRegistry(1)
    registry.set_workers(3)
    registry.worker_exited(retired=False)
    registry.worker_exited(retired=True)
    registry.worker_exited(retired=True)
    assert value(registry, "tricorn_workers") == 3
    assert value(registry, "tricorn_worker_restarts_total", reason="died") == 1
    assert value(registry, "tricorn_worker_restarts_total", reason="max_requests") == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="shared memory between processes needs fork")
def test_the_cells_are_shared_with_forked_processes() -> None:
    registry = MetricsRegistry(2)
    index = registry.acquire()
    assert index is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        recorder = registry.recorder(index)
        for _ in range(1000):
            recorder.request("1.1", 200, 0.001)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert value(registry, "tricorn_requests_total", protocol="1.1", status="200") == 1000
    registry.release(index)
    assert value(registry, "tricorn_requests_total", protocol="1.1", status="200") == 1000


def test_a_scrape_waits_while_the_supervisor_folds_a_block() -> None:
    """The supervisor moves an exited worker's counts in two steps; a scrape
    between them would count them twice (or not at all), and a counter
    that then drops is read by Prometheus as a reset. While the sequence
    number is odd, a scrape waits; it never returns the half-moved state."""
    registry = MetricsRegistry(2)
    index = registry.acquire()
    assert index is not None
    registry.recorder(index).request("1.1", 200, 0.001)
    cells = registry._cells
    status_200 = PROTOCOLS.index("1.1") * 501 + 101
    cells[0] += 1.0  # what release() does first: odd, a fold is under way
    cells[registry._retired + status_200] += 1.0  # half done: counted twice now
    result: list[float] = []
    scrape = threading.Thread(target=lambda: result.append(registry.totals()[status_200]))
    scrape.start()
    scrape.join(timeout=0.2)
    assert scrape.is_alive()  # it waits for the fold to end
    start = registry._block(index)
    cells[start + status_200] = 0.0
    cells[0] += 1.0  # even again: done
    scrape.join(timeout=5)
    assert result == [1.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PROTOCOLS),
            st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
            st.floats(min_value=0, max_value=100, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_any_requests_render_a_valid_exposition(
    requests: list[tuple[str, int | None, float]],
) -> None:
    registry = MetricsRegistry(1)
    recorder = registry.recorder(registry.acquire() or 0)
    for protocol, status, seconds in requests:
        recorder.request(protocol, status, seconds)
    found = samples(registry)
    total = sum(v for (name, _), v in found.items() if name == "tricorn_requests_total")
    assert total == len(requests)
    for protocol in PROTOCOLS:
        count = sum(1 for p, _, _ in requests if p == protocol)
        key = ("tricorn_request_duration_seconds_count", (("protocol", protocol),))
        assert found.get(key, 0) == count
        buckets = [
            found.get(
                ("tricorn_request_duration_seconds_bucket", (("le", le), ("protocol", protocol))),
                0,
            )
            for le in [repr(b) for b in BUCKETS] + ["+Inf"]
        ]
        assert buckets == sorted(buckets)


# ---------------------------------------------------------------- the app


async def call(app: MetricsApp, method: str, path: str) -> list[MutableMapping[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path}, receive, send)
    return sent


@pytest.mark.anyio
async def test_the_app_serves_get_and_head_at_metrics_only() -> None:
    registry = MetricsRegistry(1)
    registry.recorder(registry.acquire() or 0).request("1.1", 200, 0.001)
    app = MetricsApp(registry)
    start, body = await call(app, "GET", "/metrics")
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/plain; version=0.0.4; charset=utf-8"
    assert b'tricorn_requests_total{protocol="1.1",status="200"} 1\n' in body["body"]
    assert int(headers[b"content-length"]) == len(body["body"])
    start, body = await call(app, "HEAD", "/metrics")
    assert start["status"] == 200
    assert body["body"] == b""
    assert int(dict(start["headers"])[b"content-length"]) > 0
    start, _ = await call(app, "POST", "/metrics")
    assert start["status"] == 405
    assert dict(start["headers"])[b"allow"] == b"GET, HEAD"
    start, _ = await call(app, "GET", "/")
    assert start["status"] == 404


@pytest.mark.anyio
async def test_the_app_completes_the_lifespan() -> None:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])

    await MetricsApp(MetricsRegistry(1))({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
