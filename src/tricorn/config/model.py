"""``Config``: every setting as one frozen, fully checked value.

The attributes are exactly the keys of :data:`tricorn.config.fields.FIELDS`,
declared here with their precise static types; defaults come from the table
(a test keeps names and type spellings equal). Every way of making a Config
-- ``Config()``, ``Config(workers=4)``, :meth:`Config.replace`,
``dataclasses.replace``, :meth:`Config.from_mapping` -- runs the same checks
in ``__post_init__``, so an invalid Config cannot exist. Checked values are
normalised: lists become tuples, whole seconds become floats, ``verify_mode``
names become ``ssl.VerifyMode``.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..errors import ConfigError
from . import tls
from .binds import BindAddress, parse_bind
from .fields import FIELDS, FIELDS_BY_KEY, field_for

__all__ = ["Config"]


def _default(key: str) -> Any:
    # Every default in the table is immutable (None, scalars, tuples), so a
    # shared class-level default is safe; RUF009 cannot see that for some types.
    return FIELDS_BY_KEY[key].default


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """All settings; see docs/configuration.md for what each one means.

    :raises ConfigError: (from the constructor) a value is not allowed, or
        settings contradict each other (certfile without keyfile, quic_bind
        without TLS, nothing to bind).
    """

    # Hypercorn 0.18's settings.
    access_log_format: str = _default("access_log_format")
    accesslog: str | None = _default("accesslog")
    alpn_protocols: tuple[str, ...] = _default("alpn_protocols")
    alt_svc_headers: tuple[str, ...] = _default("alt_svc_headers")
    application_path: str | None = _default("application_path")
    backlog: int = _default("backlog")
    bind: tuple[str, ...] = _default("bind")
    ca_certs: str | None = _default("ca_certs")
    certfile: str | None = _default("certfile")
    ciphers: str = _default("ciphers")
    debug: bool = _default("debug")
    dogstatsd_tags: str = _default("dogstatsd_tags")
    errorlog: str | None = _default("errorlog")
    graceful_timeout: float = _default("graceful_timeout")
    group: int | None = _default("group")
    h11_max_incomplete_size: int = _default("h11_max_incomplete_size")
    h11_pass_raw_headers: bool = _default("h11_pass_raw_headers")
    h2_max_concurrent_streams: int = _default("h2_max_concurrent_streams")
    h2_max_header_list_size: int = _default("h2_max_header_list_size")
    h2_max_inbound_frame_size: int = _default("h2_max_inbound_frame_size")
    include_date_header: bool = _default("include_date_header")
    include_server_header: bool = _default("include_server_header")
    insecure_bind: tuple[str, ...] = _default("insecure_bind")
    keep_alive_max_requests: int = _default("keep_alive_max_requests")
    keep_alive_timeout: float = _default("keep_alive_timeout")
    keyfile: str | None = _default("keyfile")
    # A secret: kept out of repr() so it never reaches a log line.
    keyfile_password: str | None = dataclasses.field(
        default=_default("keyfile_password"), repr=False
    )
    logconfig: str | None = _default("logconfig")
    logconfig_dict: dict[str, Any] | None = _default("logconfig_dict")  # noqa: RUF009 (None)
    loglevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _default("loglevel")
    max_app_queue_size: int = _default("max_app_queue_size")
    max_requests: int | None = _default("max_requests")
    max_requests_jitter: int = _default("max_requests_jitter")
    pid_path: str | None = _default("pid_path")
    quic_bind: tuple[str, ...] = _default("quic_bind")
    read_timeout: float | None = _default("read_timeout")
    root_path: str = _default("root_path")
    server_names: tuple[str, ...] = _default("server_names")
    shutdown_timeout: float = _default("shutdown_timeout")
    ssl_handshake_timeout: float = _default("ssl_handshake_timeout")
    startup_timeout: float = _default("startup_timeout")
    statsd_host: str | None = _default("statsd_host")
    statsd_prefix: str = _default("statsd_prefix")
    umask: int | None = _default("umask")
    use_reloader: bool = _default("use_reloader")
    user: int | None = _default("user")
    verify_flags: ssl.VerifyFlags | None = _default("verify_flags")  # noqa: RUF009 (None)
    verify_mode: ssl.VerifyMode | None = _default("verify_mode")  # noqa: RUF009 (None)
    websocket_max_message_size: int = _default("websocket_max_message_size")
    websocket_ping_interval: float | None = _default("websocket_ping_interval")
    worker_class: Literal["asyncio", "uvloop", "trio"] = _default("worker_class")
    workers: int = _default("workers")
    wsgi_max_body_size: int = _default("wsgi_max_body_size")
    # tricorn's own settings.
    app: str | None = _default("app")
    header_read_timeout: float = _default("header_read_timeout")
    body_read_timeout: float = _default("body_read_timeout")
    write_timeout: float | None = _default("write_timeout")
    max_connections: int = _default("max_connections")
    h2_initial_window_size: int = _default("h2_initial_window_size")
    h2_connection_window_size: int = _default("h2_connection_window_size")
    h2_ping_interval: float | None = _default("h2_ping_interval")
    h2_max_control_frames: int = _default("h2_max_control_frames")
    quic_idle_timeout: float = _default("quic_idle_timeout")
    quic_max_datagram_size: int = _default("quic_max_datagram_size")
    quic_retry: bool = _default("quic_retry")
    quic_max_concurrent_streams: int = _default("quic_max_concurrent_streams")
    quic_stream_window: int = _default("quic_stream_window")
    quic_connection_window: int = _default("quic_connection_window")
    quic_congestion_control: Literal["reno", "cubic"] = _default("quic_congestion_control")
    websocket_permessage_deflate: bool = _default("websocket_permessage_deflate")
    websocket_ping_timeout: float | None = _default("websocket_ping_timeout")
    websocket_close_timeout: float | None = _default("websocket_close_timeout")
    forwarded_allow_ips: tuple[str, ...] = _default("forwarded_allow_ips")
    forwarded_trusted_hops: int = _default("forwarded_trusted_hops")
    forwarded_headers: Literal["x-forwarded", "forwarded"] = _default("forwarded_headers")
    proxy_protocol: bool = _default("proxy_protocol")
    metrics_bind: str | None = _default("metrics_bind")
    access_log_json: bool = _default("access_log_json")
    wsgi_max_threads: int = _default("wsgi_max_threads")
    reload_dirs: tuple[str, ...] = _default("reload_dirs")
    reload_includes: tuple[str, ...] = _default("reload_includes")
    reload_excludes: tuple[str, ...] = _default("reload_excludes")
    http1_parser: Literal["auto", "h11", "httptools"] = _default("http1_parser")

    def __post_init__(self) -> None:
        for field in FIELDS:
            value = getattr(self, field.key)
            checked = field.check(value)
            if checked is not value:
                # Frozen: normalising in place is the one sanctioned write.
                object.__setattr__(self, field.key, checked)
        self._check_together()

    def _check_together(self) -> None:
        """Rules that involve two settings."""
        if (self.certfile is None) != (self.keyfile is None):
            key, missing = (
                ("keyfile", "certfile") if self.keyfile is None else ("certfile", "keyfile")
            )
            raise ConfigError(key, None, f"a file path, since {missing} is set (TLS needs both)")
        if self.quic_bind and not self.ssl_enabled:
            raise ConfigError(
                "quic_bind", list(self.quic_bind), "empty unless certfile and keyfile are set"
            )
        if not self.bind and not self.insecure_bind:
            raise ConfigError("bind", [], "at least one address (in bind or insecure_bind)")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object]) -> Config:
        """Build from ``{key: value}`` (e.g. parsed TOML); missing keys keep
        their defaults.

        :raises ConfigError: an unknown key (with a "did you mean" hint) or a
            value that is not allowed.
        """
        for key, value in mapping.items():
            field_for(key, value=value)
        return cls(**mapping)  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied and checked (as ``dataclasses.replace``).

        :raises ConfigError: as the constructor; :class:`TypeError` for an
            unknown key.
        """
        return dataclasses.replace(self, **changes)

    @property
    def ssl_enabled(self) -> bool:
        """Whether ``bind`` serves TLS (certfile and keyfile are both set)."""
        return self.certfile is not None and self.keyfile is not None

    @property
    def app_path(self) -> str | None:
        """The application to serve: ``app``, else Hypercorn's ``application_path``."""
        return self.app or self.application_path

    @property
    def bind_addresses(self) -> tuple[BindAddress, ...]:
        """``bind``, parsed."""
        return tuple(parse_bind(text, key="bind") for text in self.bind)

    @property
    def insecure_bind_addresses(self) -> tuple[BindAddress, ...]:
        """``insecure_bind``, parsed."""
        return tuple(parse_bind(text, key="insecure_bind") for text in self.insecure_bind)

    @property
    def quic_bind_addresses(self) -> tuple[BindAddress, ...]:
        """``quic_bind``, parsed."""
        return tuple(parse_bind(text, key="quic_bind") for text in self.quic_bind)

    def create_ssl_context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """A server-side TLS context for the TCP binds; see
        :func:`tricorn.config.tls.create_ssl_context`.

        :param alpn: the protocols this server can speak now, e.g.
            ``("http/1.1",)``; only configured ``alpn_protocols`` among them
            are offered.
        :raises ConfigError: TLS is not configured, or a file cannot be used.
        """
        return tls.create_ssl_context(self, alpn)
