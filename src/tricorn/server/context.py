"""What every connection of one server shares, built once by ``serve()``.

:class:`ServerContext` is the narrow constructor argument of
:class:`~tricorn.server.connection.Connection`: the app, the config, the
lifespan state, the access logger, the precomputed default headers and the
set of live connections (for graceful shutdown and ``max_connections``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import ByteStream

from ..asgi.types import ASGIApp
from ..config import Config
from ..logging import AccessLogger, StatsdClient
from ..middleware.proxy_headers import TrustedProxies
from ..protocol.events import Headers
from ..protocol.http1 import H1Settings

if TYPE_CHECKING:
    from ..metrics import MetricsRecorder
    from ..protocol.http2 import H2Settings
    from .connection import Connection

__all__ = ["DefaultHeaders", "ServerContext", "http_date"]

SERVER_HEADER = b"tricorn"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> bytes:
    """An HTTP date (RFC 9110 §5.6.7 IMF-fixdate), ``Sun, 06 Nov 1994 08:49:37 GMT``.

    What ``email.utils.formatdate(seconds, usegmt=True)`` gives, without the
    ``email`` package, which would cost every worker over a MiB of memory.
    """
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    ).encode("ascii")


class BackendIO(Protocol):
    """What the process layer may hand the server (``tricorn._backend``)."""

    def wrap(self, stream: ByteStream) -> ByteStream:
        """A faster stream over the same accepted connection, or ``stream``."""
        ...

    async def sendfile(
        self, stream: ByteStream, file: IO[bytes], offset: int, count: int
    ) -> int | None:
        """Bytes of ``file`` sent in the kernel, or ``None`` if ``stream``
        cannot."""
        ...

    def clock(self) -> Callable[[], float]:
        """The running loop's clock (what ``anyio.current_time`` reads)."""
        ...


class DefaultHeaders:
    """``server`` and ``date`` response headers (and ``extra`` ones, e.g.
    ``alt-svc``), the date recomputed at most once a second (not formatted
    per request)."""

    __slots__ = ("_date", "_headers", "_second", "_server", "names")

    def __init__(self, *, server: bool, date: bool, extra: Headers | None = None) -> None:
        self._server: Headers = [(b"server", SERVER_HEADER)] if server else []
        self._server += extra or []
        self._date = date
        self.names = frozenset([name for name, _ in self._server] + ([b"date"] if date else []))
        self._second = -1
        self._headers: Headers = list(self._server)

    def __call__(self) -> Headers:
        if self._date:
            now = int(time.time())
            if now != self._second:
                self._second = now
                self._headers = [*self._server, (b"date", http_date(now))]
        return self._headers


@dataclass(eq=False)
class ServerContext:
    """Shared by every connection of a server (one per worker process)."""

    app: ASGIApp
    config: Config
    state: dict[str, Any]
    access_log: AccessLogger
    default_headers: DefaultHeaders
    h1_settings: H1Settings  # TLS connections that chose http/1.1
    h1c_settings: H1Settings  # cleartext: also recognises h2c
    # Called on the first HTTP/2 connection: h2 is not imported before (a MiB saved).
    make_h2_settings: Callable[[], H2Settings]
    connections: set[Connection] = field(default_factory=set)
    shutting_down: bool = False
    starting: int = 0  # accepted, not serving yet (TLS handshake): they count too
    io: BackendIO | None = None  # backend fast paths, from the process layer
    server_names: frozenset[str] = frozenset()  # Host allow-list; empty: any
    clock: Callable[[], float] = anyio.current_time  # the backend's, when io gives it
    proxies: TrustedProxies | None = None  # forwarded_allow_ips
    statsd: StatsdClient | None = None  # statsd_host
    metrics: MetricsRecorder | None = None  # metrics_bind: this process's cells
    max_requests: int | None = None  # then this worker retires (max_requests + jitter)
    requests: int = 0  # requests (and WebSockets) answered so far
    retire: anyio.Event = field(default_factory=anyio.Event)  # max_requests reached
    _slot_freed: anyio.Event = field(default_factory=anyio.Event)

    @functools.cached_property
    def h2_settings(self) -> H2Settings:
        """The HTTP/2 adapter's settings (made on first use)."""
        return self.make_h2_settings()

    def request_done(self) -> None:
        """Count one answered request; at ``max_requests`` the server retires."""
        self.requests += 1
        if self.max_requests is not None and self.requests >= self.max_requests:
            self.retire.set()

    def add(self, connection: Connection) -> None:
        """Register a live connection."""
        self.connections.add(connection)
        if self.metrics is not None:
            self.metrics.connection(connection.quic, 1.0)

    def discard(self, connection: Connection) -> None:
        """Forget a finished connection and wake an accept loop waiting for a slot."""
        if self.metrics is not None and connection in self.connections:
            self.metrics.connection(connection.quic, -1.0)
        self.connections.discard(connection)
        self._slot_freed.set()

    async def wait_all_closed(self) -> None:
        """Return once no connection is open."""
        while self.connections or self.starting:
            if self._slot_freed.is_set():
                self._slot_freed = anyio.Event()
            await self._slot_freed.wait()

    def started(self) -> None:
        """An accepted connection finished its TLS handshake (or failed it) and
        registered itself, or went away."""
        self.starting -= 1
        self._slot_freed.set()

    async def wait_for_slot(self, pending: Callable[[], Awaitable[None]]) -> None:
        """Return once fewer than ``max_connections`` connections are open.

        At the limit, when ``pending()`` reports a client waiting to be
        accepted, an idle connection (keep-alive, or one that has not sent a
        request yet) is closed to make room: it loses nothing. If none is
        idle, wait until some connection ends.
        """
        limit = self.config.max_connections
        while len(self.connections) + self.starting >= limit:
            if self._slot_freed.is_set():
                self._slot_freed = anyio.Event()
            if not any(connection.idle for connection in self.connections):
                await self._slot_freed.wait()
                continue
            client_waiting = False
            async with anyio.create_task_group() as tg:

                async def watch_pending() -> None:
                    nonlocal client_waiting
                    await pending()
                    client_waiting = True
                    tg.cancel_scope.cancel()

                async def watch_freed() -> None:
                    await self._slot_freed.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_pending)
                tg.start_soon(watch_freed)
            if client_waiting and len(self.connections) + self.starting >= limit:
                for connection in list(self.connections):
                    if connection.idle:
                        connection.close_idle()
                        break
                await self._slot_freed.wait()
