"""``serve()``: run one ASGI application on bound sockets until shutdown.

Order of events:

1. lifespan startup (a failure raises :class:`~tricorn.errors.StartupFailure`);
2. one accept loop per socket; ``task_status.started(urls)``;
3. wait for ``shutdown_trigger`` to return;
4. close every listening socket at once (new connections are refused),
   tell every connection to finish (idle ones close now), wait up to
   ``graceful_timeout`` for them, then cancel what is left;
5. lifespan shutdown.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from ..asgi.app import wrap_app
from ..asgi.lifespan import Lifespan
from ..config import Config
from ..errors import ConfigError, StartupFailure
from ..logging import AccessLogger, StatsdClient, StatsdLogHandler
from ..middleware.proxy_headers import TrustedProxies
from ..protocol._h1_fast import AVAILABLE as FAST_H1_AVAILABLE
from ..protocol._ws_settings import WSSettings
from ..protocol.events import Headers
from ..protocol.http1 import H1Settings
from ..sockets import BoundSockets, bind_sockets, describe
from .context import BackendIO, DefaultHeaders, ServerContext
from .listeners import Listener
from .transport import TLSInfo

if TYPE_CHECKING:  # aioquic is optional (the h3 extra): imported when QUIC is bound
    from ..metrics import MetricsRecorder, MetricsRegistry  # (with metrics_bind only)
    from ..protocol.http2 import H2Settings  # (imported by the first HTTP/2 connection)
    from ..protocol.http3 import H3Settings
    from ..protocol.quic import QuicSettings
    from .quic import QuicEndpoint

__all__ = ["alt_svc", "h1_settings", "h2_settings", "h3_settings", "serve", "ws_settings"]

log = logging.getLogger("tricorn.error")

ShutdownTrigger = Callable[[], Awaitable[Any]]


def h1_settings(config: Config) -> H1Settings:
    """The HTTP/1.1 adapter's settings, from the config."""
    return H1Settings(
        max_incomplete_size=config.h11_max_incomplete_size,
        keep_alive_timeout=config.keep_alive_timeout,
        header_read_timeout=config.header_read_timeout,
        body_read_timeout=config.body_read_timeout,
        read_timeout=config.read_timeout,
        keep_alive_max_requests=config.keep_alive_max_requests,
        max_queued_body=config.max_app_queue_size,
        pass_raw_headers=config.h11_pass_raw_headers,
        parser=http1_parser(config.http1_parser),
        h2c_max_upgrade_body=config.h2_initial_window_size,
        websocket=ws_settings(config),
    )


def http1_parser(choice: str) -> str:
    """The HTTP/1.1 request reader for ``http1_parser``: ``auto`` takes
    httptools when it is installed.

    :raises ConfigError: ``httptools`` asked for and not installed.
    """
    if choice == "auto":
        return "httptools" if FAST_H1_AVAILABLE else "h11"
    if choice == "httptools" and not FAST_H1_AVAILABLE:
        raise ConfigError(
            "http1_parser",
            choice,
            "'auto' or 'h11' (httptools is not installed: pip install 'tricorn[httptools]')",
        )
    return choice


def ws_settings(config: Config) -> WSSettings:
    """The WebSocket framing's settings, from the config."""
    return WSSettings(
        max_message_size=config.websocket_max_message_size,
        ping_interval=config.websocket_ping_interval,
        ping_timeout=config.websocket_ping_timeout,
        close_timeout=config.websocket_close_timeout,
        permessage_deflate=config.websocket_permessage_deflate,
    )


def h2_settings(config: Config) -> H2Settings:
    """The HTTP/2 adapter's settings, from the config."""
    from ..protocol.http2 import H2Settings

    return H2Settings(
        max_concurrent_streams=config.h2_max_concurrent_streams,
        max_header_list_size=config.h2_max_header_list_size,
        max_inbound_frame_size=config.h2_max_inbound_frame_size,
        initial_window_size=config.h2_initial_window_size,
        connection_window_size=config.h2_connection_window_size,
        keep_alive_timeout=config.keep_alive_timeout,
        keep_alive_max_requests=config.keep_alive_max_requests,
        ping_interval=config.h2_ping_interval,
        max_control_frames=config.h2_max_control_frames,
        max_queued_messages=config.max_app_queue_size,
        websocket=ws_settings(config),
    )


def h3_settings(config: Config) -> H3Settings:
    """The HTTP/3 adapter's settings, from the config."""
    from ..protocol.http3 import H3Settings

    return H3Settings(
        max_concurrent_streams=config.quic_max_concurrent_streams,
        stream_window=config.quic_stream_window,
        connection_window=config.quic_connection_window,
        send_buffer=config.quic_stream_window,
        max_header_list_size=config.h2_max_header_list_size,
        keep_alive_max_requests=config.keep_alive_max_requests,
        max_queued_messages=config.max_app_queue_size,
        max_aborted_streams=config.h2_max_control_frames,
        websocket=ws_settings(config),
    )


def quic_settings(config: Config, worker: tuple[int, int] = (0, 1)) -> QuicSettings:
    """The QUIC transport's settings, from the config; ``worker`` is this
    process's ``(index, count)`` among those sharing the UDP ports."""
    from ..protocol.quic import QuicSettings

    return QuicSettings(
        idle_timeout=config.quic_idle_timeout,
        max_datagram_size=config.quic_max_datagram_size,
        congestion_control=config.quic_congestion_control,
        retry=config.quic_retry,
        worker=worker,
    )


def alt_svc(config: Config, quic_sockets: list[socket.socket]) -> Headers:
    """The ``alt-svc`` header TCP responses carry: ``alt_svc_headers`` when
    set, else one ``h3=":PORT"; ma=86400`` per QUIC port (RFC 7838)."""
    values = list(config.alt_svc_headers)
    if not values:
        ports = dict.fromkeys(sock.getsockname()[1] for sock in quic_sockets)
        values = [f'h3=":{port}"; ma=86400' for port in ports]
    if not values:
        return []
    return [(b"alt-svc", ", ".join(values).encode("latin-1"))]


async def serve(
    app: Any,
    config: Config,
    *,
    sockets: BoundSockets | None = None,
    shutdown_trigger: ShutdownTrigger | None = None,
    io: BackendIO | None = None,
    metrics: MetricsRecorder | None = None,
    task_status: TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger()`` returns (or forever).

    :param app: an ASGI 3, ASGI 2 or WSGI application (see
        :func:`~tricorn.asgi.app.wrap_app`).
    :param config: the settings.
    :param sockets: already bound sockets (the process manager binds them
        once); by default they are bound here from ``config``.
    :param shutdown_trigger: an async callable; its return starts the
        graceful shutdown.
    :param io: the backend's fast paths (the ``tricorn._backend`` module;
        the CLI passes it): lean streams on asyncio and zero-copy
        ``http.response.pathsend`` on cleartext connections. Without it
        anyio's streams are used as they are and files are copied in
        bounded chunks.
    :param metrics: where this process counts requests for a metrics
        endpoint served elsewhere (the supervisor's); by default, with
        ``metrics_bind`` set, this call serves the endpoint itself.
    :param task_status: receives the list of URLs served once listening.
    :raises StartupFailure: lifespan startup failed or timed out.
    """
    if metrics is None and config.metrics_bind is not None:
        # (The map is freed with its last view: a recorder may outlive this.)
        from ..metrics import MetricsRegistry

        registry = MetricsRegistry(1)
        await _serve_with_metrics(app, config, registry, sockets, shutdown_trigger, io, task_status)
        return
    if sockets is None:
        sockets = bind_sockets(config)
    app = wrap_app(app, config)
    state: dict[str, Any] = {}
    server, date = config.include_server_header, config.include_date_header
    ctx = ServerContext(
        app=app,
        config=config,
        state=state,
        access_log=AccessLogger(config.access_log_format, json_lines=config.access_log_json),
        default_headers=DefaultHeaders(
            server=server, date=date, extra=alt_svc(config, sockets.quic)
        ),
        h1_settings=h1_settings(config),
        h1c_settings=dataclasses.replace(h1_settings(config), h2c="h2" in config.alpn_protocols),
        make_h2_settings=functools.partial(h2_settings, config),
        io=io,
        server_names=frozenset(config.server_names),
        clock=io.clock() if io is not None else anyio.current_time,
        max_requests=_max_requests(config),
        proxies=_trusted_proxies(config),
        statsd=_statsd(config),
        metrics=metrics,
    )
    ssl_context = config.create_ssl_context(("h2", "http/1.1")) if sockets.secure else None
    listeners = [Listener(ctx, sock, ssl_context) for sock in sockets.secure]
    listeners += [Listener(ctx, sock, None) for sock in sockets.insecure]
    endpoints = _quic_endpoints(ctx, sockets, DefaultHeaders(server=server, date=date))
    urls = [describe(sock, secure=True) for sock in sockets.secure]
    urls += [describe(sock, secure=False) for sock in sockets.insecure]
    urls += [describe(sock, secure=True, quic=True) for sock in sockets.quic]
    lifespan = Lifespan(app, state)
    failure: StartupFailure | None = None
    try:
        async with anyio.create_task_group() as root:
            try:
                await lifespan.startup(root, config.startup_timeout)
            except StartupFailure as exc:
                failure = exc  # raised below, outside the task group (no group)
            else:
                await _serve_listeners(
                    ctx, listeners, endpoints, urls, shutdown_trigger, task_status
                )
                await lifespan.shutdown(config.shutdown_timeout)
            root.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        for listener in listeners:
            listener.sock.close()
        for endpoint in endpoints:
            endpoint.close()
        if ctx.statsd is not None:
            _stop_statsd(ctx.statsd)


async def _serve_with_metrics(
    app: Any,
    config: Config,
    registry: MetricsRegistry,
    sockets: BoundSockets | None,
    shutdown_trigger: ShutdownTrigger | None,
    io: BackendIO | None,
    task_status: TaskStatus[list[str]],
) -> None:
    """``serve()`` in one process with its own metrics endpoint beside it,
    which stops once the server has drained."""
    from ..metrics import MetricsApp, metrics_config

    index = registry.acquire()
    assert index is not None
    registry.set_workers(1)
    settings = metrics_config(config)
    async with anyio.create_task_group() as tg:

        async def serving(*, task_status: TaskStatus[list[str]]) -> None:
            await serve(
                app,
                config,
                sockets=sockets,
                shutdown_trigger=shutdown_trigger,
                io=io,
                metrics=registry.recorder(index),
                task_status=task_status,
            )
            tg.cancel_scope.cancel()  # the metrics server ends with the app's

        metrics_urls = await tg.start(
            functools.partial(serve, MetricsApp(registry), settings, io=io)
        )
        urls = await tg.start(serving)
        task_status.started([*urls, *metrics_urls])


def _trusted_proxies(config: Config) -> TrustedProxies | None:
    proxies = TrustedProxies(
        config.forwarded_allow_ips, config.forwarded_trusted_hops, config.forwarded_headers
    )
    return proxies or None


def _statsd(config: Config) -> StatsdClient | None:
    """The statsd client of ``statsd_host``; WARNING-and-worse records of the
    error log are counted too."""
    if config.statsd_host is None:
        return None
    try:
        client = StatsdClient(config.statsd_host, config.statsd_prefix, config.dogstatsd_tags)
    except (ValueError, OSError) as exc:
        raise ConfigError("statsd_host", config.statsd_host, "host:port", str(exc)) from None
    logging.getLogger("tricorn.error").addHandler(StatsdLogHandler(client))
    return client


def _stop_statsd(client: StatsdClient) -> None:
    error_log = logging.getLogger("tricorn.error")
    for handler in list(error_log.handlers):
        if isinstance(handler, StatsdLogHandler) and handler.client is client:
            error_log.removeHandler(handler)
    client.close()


def _max_requests(config: Config) -> int | None:
    """``max_requests`` plus this worker's share of the jitter, so workers
    started together do not all retire at once."""
    if config.max_requests is None:
        return None
    return config.max_requests + random.randint(0, config.max_requests_jitter)


def _quic_endpoints(
    ctx: ServerContext, sockets: BoundSockets, default_headers: DefaultHeaders
) -> list[QuicEndpoint]:
    """One endpoint per UDP socket, sharing one aioquic configuration."""
    quic_sockets = sockets.quic
    if not quic_sockets:
        return []
    worker = (sockets.worker_index, sockets.quic_copies)
    config = ctx.config
    try:
        from ..protocol.quic import QuicDispatcher, server_configuration
        from .quic import QuicEndpoint
    except ImportError as exc:
        allowed = "empty unless aioquic is installed (pip install 'tricorn[h3]')"
        raise ConfigError("quic_bind", list(config.quic_bind), allowed, str(exc)) from None
    assert config.certfile is not None  # (Config requires both for quic_bind)
    assert config.keyfile is not None
    h3 = h3_settings(config)
    configuration = server_configuration(
        quic_settings(config, worker), h3, config.certfile, config.keyfile, config.keyfile_password
    )
    server_cert = TLSInfo.server_certificate(config.certfile)
    return [
        QuicEndpoint(
            ctx,
            sock,
            QuicDispatcher(configuration, quic_settings(config, worker), h3),
            default_headers,
            server_cert,
        )
        for sock in quic_sockets
    ]


async def _serve_listeners(
    ctx: ServerContext,
    listeners: list[Listener],
    endpoints: list[QuicEndpoint],
    urls: list[str],
    shutdown_trigger: ShutdownTrigger | None,
    task_status: TaskStatus[list[str]],
) -> None:
    async with anyio.create_task_group() as connections:
        async with anyio.create_task_group() as accepting:
            for listener in listeners:
                accepting.start_soon(listener.serve, connections)
            for endpoint in endpoints:
                # Not in ``accepting``: the endpoint carries its connections'
                # datagrams until they are drained.
                connections.start_soon(endpoint.serve, connections)
            for url in urls:
                log.info("Running on %s (CTRL + C to quit)", url)
            task_status.started(urls)
            await _until_shutdown(ctx, shutdown_trigger)
            accepting.cancel_scope.cancel()
            for endpoint in endpoints:
                endpoint.begin_shutdown()
            with anyio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()
        await _drain(ctx)
        connections.cancel_scope.cancel()


async def _until_shutdown(ctx: ServerContext, shutdown_trigger: ShutdownTrigger | None) -> None:
    """Return when ``shutdown_trigger`` returns or ``max_requests`` is reached."""
    async with anyio.create_task_group() as tg:

        async def retire() -> None:
            await ctx.retire.wait()
            log.info("max_requests (%d) reached: this worker retires", ctx.requests)
            tg.cancel_scope.cancel()

        async def trigger() -> None:
            await (shutdown_trigger or anyio.sleep_forever)()
            tg.cancel_scope.cancel()

        tg.start_soon(retire)
        tg.start_soon(trigger)


async def _drain(ctx: ServerContext) -> None:
    """Let in-flight requests finish within ``graceful_timeout``."""
    ctx.shutting_down = True
    for connection in list(ctx.connections):
        connection.begin_shutdown()
    timeout = ctx.config.graceful_timeout
    with anyio.move_on_after(timeout if timeout > 0 else 0) as scope:
        await ctx.wait_all_closed()
    if scope.cancelled_caught:
        log.info(
            "graceful_timeout (%s s) passed; cancelling %d connection(s)",
            timeout,
            len(ctx.connections),
        )
