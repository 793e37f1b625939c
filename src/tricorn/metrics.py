"""Prometheus metrics (``metrics_bind``): counted in shared memory by every
worker, summed and served as text by one small server.

Theory of operation
-------------------
A :class:`MetricsRegistry` is one anonymous shared memory map of float64
cells, made before any worker is forked, so every process of the server
sees the same pages. It holds:

* a header: a sequence number (a seqlock, below), the supervisor's own
  counters (worker restarts) and the number of live workers;
* one *block* per running worker process. A worker owns its block alone:
  it adds to its cells without locks (one writer per cell) through a
  :class:`MetricsRecorder`, a few float additions per request;
* a *retired* block: when a worker process exits, the supervisor adds its
  counters to the retired block and frees its block, so counters never go
  down when workers crash, retire at ``max_requests`` or are replaced on
  SIGHUP (Prometheus would read a decrease as a reset). Gauges (open
  connections and streams) of an exited worker are dropped.

The supervisor (or, with ``workers = 0``, the server itself) serves
:class:`MetricsApp` on ``metrics_bind`` with tricorn's own HTTP/1.1 core:
with workers it runs in a process of its own, so a scrape never competes
with the application and a crashed worker never takes the endpoint down.
:meth:`MetricsRegistry.render` sums the blocks in use. The supervisor
changes the set of blocks only between two increments of the sequence
number (odd while it works); a reader that sees it odd, or changed, reads
again, so no scrape sees a retired worker counted twice or not at all.

A worker's writes to its own cells need no such care: a float64 store on
an aligned address is a single machine store, and each cell only grows.
"""

from __future__ import annotations

import dataclasses
import mmap
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Final

from .asgi.types import ASGIReceive, ASGISend, Scope
from .config import Config

__all__ = ["BUCKETS", "MetricsApp", "MetricsRecorder", "MetricsRegistry", "metrics_config"]

PROTOCOLS: Final = ("1.0", "1.1", "2", "3")
"""The ``protocol`` label: the scope's ``http_version``."""
_PROTOCOL_INDEX: Final = {name: index for index, name in enumerate(PROTOCOLS)}
TRANSPORTS: Final = ("tcp", "quic")

BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request duration histogram: Prometheus'
client defaults; the last bucket, ``+Inf``, is implied."""

# One block's cells, in this order.
_STATUS_SPAN: Final = 501  # cell 0: no response; 1..500: status 100..599
_REQUESTS: Final = 0
_WEBSOCKETS: Final = _REQUESTS + len(PROTOCOLS) * _STATUS_SPAN
_HIST_STRIDE: Final = len(BUCKETS) + 2  # the buckets, +Inf, then the sum
_HISTOGRAM: Final = _WEBSOCKETS + len(PROTOCOLS)
_COUNTERS_END: Final = _HISTOGRAM + len(PROTOCOLS) * _HIST_STRIDE
_STREAMS: Final = _COUNTERS_END  # gauges from here on
_CONNECTIONS: Final = _STREAMS + len(PROTOCOLS)
_BLOCK: Final = _CONNECTIONS + len(TRANSPORTS)

# The header's cells.
_SEQUENCE: Final = 0
_DIED: Final = 1  # workers restarted after an unasked exit
_RETIRED: Final = 2  # workers replaced after max_requests
_WORKERS: Final = 3  # live worker processes
_HEADER: Final = 8  # then one in-use flag per block, the retired block, the blocks

CONTENT_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"


class MetricsRecorder:
    """What one worker process writes: its own block of the registry."""

    __slots__ = ("_cells",)

    def __init__(self, cells: memoryview[float]) -> None:
        self._cells = cells

    def request(self, http_version: str, status: int | None, seconds: float) -> None:
        """One HTTP request finished (``status`` ``None``: no response started)."""
        cells = self._cells
        protocol = _PROTOCOL_INDEX.get(http_version, 1)
        code = status - 99 if status is not None and 100 <= status <= 599 else 0
        cells[_REQUESTS + protocol * _STATUS_SPAN + code] += 1.0
        base = _HISTOGRAM + protocol * _HIST_STRIDE
        cells[base + bisect_left(BUCKETS, seconds)] += 1.0
        cells[base + _HIST_STRIDE - 1] += seconds

    def websocket(self, http_version: str) -> None:
        """One WebSocket session ended."""
        self._cells[_WEBSOCKETS + _PROTOCOL_INDEX.get(http_version, 1)] += 1.0

    def stream(self, http_version: str, delta: float) -> None:
        """A request or WebSocket started (``+1``) or ended (``-1``)."""
        self._cells[_STREAMS + _PROTOCOL_INDEX.get(http_version, 1)] += delta

    def connection(self, quic: bool, delta: float) -> None:
        """A connection opened (``+1``) or closed (``-1``)."""
        self._cells[_CONNECTIONS + quic] += delta


class MetricsRegistry:
    """Shared cells for ``capacity`` worker processes (see the module docstring).

    Make it before forking; :meth:`acquire` and :meth:`release` belong to the
    process that forks (the supervisor), :meth:`render` to the one that serves
    the endpoint.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._retired = _HEADER + capacity
        cells = self._retired + (capacity + 1) * _BLOCK
        # Anonymous and shared: inherited by every child; pages nobody
        # touches (unused blocks, unseen statuses) cost no memory.
        self._map = mmap.mmap(-1, cells * 8)
        self._cells = memoryview(self._map).cast("d")

    def _block(self, index: int) -> int:
        return self._retired + (index + 1) * _BLOCK

    def acquire(self) -> int | None:
        """A free block for a new worker process, or ``None`` if all are used
        (that worker then goes uncounted)."""
        cells = self._cells
        for index in range(self.capacity):
            if not cells[_HEADER + index]:
                cells[_HEADER + index] = 1.0
                return index
        return None

    def recorder(self, index: int) -> MetricsRecorder:
        """The writer of block ``index`` (in the worker that owns it)."""
        start = self._block(index)
        return MetricsRecorder(self._cells[start : start + _BLOCK])

    def release(self, index: int) -> None:
        """Block ``index``'s worker exited: keep its counters, free the block."""
        cells = self._cells
        start, retired = self._block(index), self._retired
        cells[_SEQUENCE] += 1.0  # odd: readers wait
        for offset in range(_COUNTERS_END):
            value = cells[start + offset]
            if value:
                cells[retired + offset] += value
        cells[start : start + _BLOCK] = memoryview(bytes(_BLOCK * 8)).cast("d")
        cells[_HEADER + index] = 0.0
        cells[_SEQUENCE] += 1.0

    def worker_exited(self, *, retired: bool) -> None:
        """The supervisor restarts a worker that died (or retired)."""
        self._cells[_RETIRED if retired else _DIED] += 1.0

    def set_workers(self, count: int) -> None:
        """The number of live worker processes."""
        self._cells[_WORKERS] = float(count)

    def totals(self) -> list[float]:
        """One block: the sum of the retired block and every block in use,
        read consistently."""
        cells = self._cells
        while True:
            sequence = cells[_SEQUENCE]
            if sequence % 2:
                time.sleep(0.0001)
                continue
            rows = [cells[self._retired : self._retired + _BLOCK].tolist()]
            rows += [
                cells[self._block(index) : self._block(index) + _BLOCK].tolist()
                for index in range(self.capacity)
                if cells[_HEADER + index]
            ]
            if cells[_SEQUENCE] == sequence:
                return [sum(column) for column in zip(*rows, strict=True)]

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        return "".join(self._lines()).encode("utf-8")

    def _lines(self) -> Iterator[str]:
        totals = self.totals()
        header = self._cells[:_HEADER].tolist()
        yield from _help(
            "tricorn_requests_total", "counter", "HTTP requests by protocol and status."
        )
        for p, protocol in enumerate(PROTOCOLS):
            base = _REQUESTS + p * _STATUS_SPAN
            for code in range(_STATUS_SPAN):
                value = totals[base + code]
                if value:
                    status = str(code + 99) if code else "none"
                    yield f'tricorn_requests_total{{protocol="{protocol}",status="{status}"}} '
                    yield f"{_number(value)}\n"
        yield from _help(
            "tricorn_request_duration_seconds",
            "histogram",
            "HTTP request durations, from the request head to the end of the response.",
        )
        for p, protocol in enumerate(PROTOCOLS):
            base = _HISTOGRAM + p * _HIST_STRIDE
            counts = totals[base : base + len(BUCKETS) + 1]
            if not any(counts):
                continue
            label = f'protocol="{protocol}"'
            running = 0.0
            for bound, count in zip((*BUCKETS, None), counts, strict=True):
                running += count
                le = "+Inf" if bound is None else repr(bound)
                yield f'tricorn_request_duration_seconds_bucket{{{label},le="{le}"}} '
                yield f"{_number(running)}\n"
            yield f"tricorn_request_duration_seconds_sum{{{label}}} "
            yield f"{totals[base + _HIST_STRIDE - 1]!r}\n"
            yield f"tricorn_request_duration_seconds_count{{{label}}} {_number(running)}\n"
        yield from _help("tricorn_websockets_total", "counter", "WebSocket sessions ended.")
        yield from _labelled("tricorn_websockets_total", "protocol", PROTOCOLS, totals, _WEBSOCKETS)
        yield from _help("tricorn_open_streams", "gauge", "Requests and WebSockets in progress.")
        yield from _labelled("tricorn_open_streams", "protocol", PROTOCOLS, totals, _STREAMS)
        yield from _help("tricorn_open_connections", "gauge", "Open client connections.")
        yield from _labelled(
            "tricorn_open_connections", "transport", TRANSPORTS, totals, _CONNECTIONS
        )
        yield from _help("tricorn_workers", "gauge", "Live worker processes.")
        yield f"tricorn_workers {_number(header[_WORKERS])}\n"
        yield from _help(
            "tricorn_worker_restarts_total",
            "counter",
            "Worker processes started again after one died or retired at max_requests.",
        )
        yield f'tricorn_worker_restarts_total{{reason="died"}} {_number(header[_DIED])}\n'
        yield 'tricorn_worker_restarts_total{reason="max_requests"} '
        yield f"{_number(header[_RETIRED])}\n"


def _help(name: str, kind: str, text: str) -> Iterator[str]:
    yield f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


def _labelled(
    name: str, label: str, values: tuple[str, ...], totals: list[float], base: int
) -> Iterator[str]:
    for index, value in enumerate(values):
        yield f'{name}{{{label}="{value}"}} {_number(totals[base + index])}\n'


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


class MetricsApp:
    """The ASGI app of ``metrics_bind``: ``GET /metrics`` (or ``HEAD``)."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        headers: list[tuple[bytes, bytes]]
        if scope["path"] != "/metrics":
            status, body, headers = 404, b"not found: the metrics are at /metrics\n", []
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, headers = 405, b"", [(b"allow", b"GET, HEAD")]
        else:
            status, body = 200, self.registry.render()
            headers = [(b"content-type", CONTENT_TYPE), (b"cache-control", b"no-store")]
        headers.append((b"content-length", str(len(body)).encode()))
        start: dict[str, Any] = {"type": "http.response.start", "status": status}
        start["headers"] = headers
        await send(start)
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


def metrics_config(config: Config) -> Config:
    """The settings of the ``metrics_bind`` server: cleartext HTTP/1.1 on that
    one address, the timeouts and logging of ``config``, no app of its own."""
    assert config.metrics_bind is not None
    return dataclasses.replace(
        config,
        bind=(config.metrics_bind,),
        insecure_bind=(),
        quic_bind=(),
        certfile=None,
        keyfile=None,
        ca_certs=None,
        alpn_protocols=("http/1.1",),
        proxy_protocol=False,
        forwarded_allow_ips=(),
        server_names=(),
        root_path="",
        statsd_host=None,
        metrics_bind=None,
        max_requests=None,
        workers=0,
        alt_svc_headers=(),
        graceful_timeout=min(config.graceful_timeout, 1.0),
    )
