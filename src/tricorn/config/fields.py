"""THE settings table (STYLE.md principle 11).

Every setting is declared once, here, as a :class:`Field`: its key (Hypercorn's
TOML key, or tricorn's own), its kind (static type, check, text parser), its
default, its CLI flags, its ``TRICORN_<KEY>`` environment variable, a doc line
and whether its behaviour is wired yet. Everything else is generated from the
table: :class:`~tricorn.config.model.Config` is checked against it (a test
keeps the attribute names and types equal), :mod:`tricorn.cli` builds argparse
from it, :mod:`tricorn.config.load` reads files and the environment with it,
and :mod:`tricorn.config.docs` writes docs/configuration.md from it.

Rule: a setting that is not wired yet is still parsed and strictly checked, so
a config file that works today keeps working when the behaviour arrives.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from . import kinds
from .binds import parse_bind
from .kinds import Invalid, Kind

__all__ = ["FIELDS", "FIELDS_BY_KEY", "WIRED", "Field", "field_for", "suggest"]

WIRED = "wired"

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Field:
    """One setting. ``check`` and ``parse`` raise :class:`ConfigError` naming
    the key (or the name the user wrote: a flag or environment variable)."""

    key: str
    kind: Kind
    default: object
    doc: str
    flags: tuple[str, ...]
    status: str = WIRED
    tricorn: bool = False
    """True for tricorn's own settings (not in Hypercorn 0.18)."""

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return "TRICORN_" + self.key.upper()

    @property
    def flag(self) -> str:
        """The long CLI flag, as named in error lines."""
        return next(f for f in self.flags if f.startswith("--"))

    @property
    def wired(self) -> bool:
        """Whether the setting has its effect today, at least in part (else it
        is only parsed and checked)."""
        return self.status.startswith(WIRED)

    def check(self, value: object, *, name: str | None = None) -> object:
        """Return ``value`` normalised.

        :raises ConfigError: naming ``name`` (default: the key), the value and
            :attr:`Kind.allowed`.
        """
        try:
            return self.kind.check(value)
        except Invalid as exc:
            raise ConfigError(name or self.key, value, self.kind.allowed, str(exc)) from None

    def parse(self, text: str, *, name: str | None = None) -> object:
        """Read ``text`` (an environment variable or CLI argument) and check it.

        :raises ConfigError: as :meth:`check`.
        """
        try:
            return self.kind.check(self.kind.parse(text))
        except Invalid as exc:
            # Name the text as the user wrote it, not what it was parsed into.
            raise ConfigError(name or self.key, text, self.kind.allowed, str(exc)) from None


def _setting(
    key: str,
    kind: Kind,
    default: object,
    doc: str,
    *,
    flags: tuple[str, ...] = (),
    status: str = WIRED,
    tricorn: bool = False,
) -> Field:
    """Build a Field; without ``flags`` the flag is ``--key-with-dashes``."""
    flags = flags or ("--" + key.replace("_", "-"),)
    return Field(key, kind, default, doc, flags, status, tricorn)


def _own(key: str, kind: Kind, default: object, doc: str, *, status: str = WIRED) -> Field:
    """A setting tricorn adds to Hypercorn's."""
    return _setting(key, kind, default, doc, status=status, tricorn=True)


# --- item checks used by list and string kinds ---------------------------------------------


def _bind_item(text: str) -> str:
    try:
        parse_bind(text)
    except ConfigError as exc:
        raise Invalid(exc.hint) from None
    return text


def _quic_bind_item(text: str) -> str:
    if text.startswith("unix:"):
        raise Invalid("QUIC needs a UDP address, not a UNIX socket")
    return _bind_item(text)


def _forwarded_item(text: str) -> str:
    if text == "*":
        return text
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise Invalid(f"{text!r} is not an IP address or network") from None
    return text


def _alpn_item(text: str) -> str:
    if text not in ("h2", "http/1.1"):
        raise Invalid(f"{text!r} is not an ALPN protocol tricorn serves over TCP")
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise Invalid("it must not be empty")
    return text


def _glob_item(text: str) -> str:
    if not text.strip() or not text.strip("/"):
        raise Invalid(f"{text!r} is not a glob pattern (e.g. '*.toml' or 'templates/*')")
    return text


def _loglevel(text: str) -> str:
    return text.upper()


# The access-log atoms that tricorn.logging formats as integers (``%(D)d``);
# every other atom, ``{name}i`` ones included, is text. tests/unit/test_logging.py
# keeps this equal to tricorn.logging's own set (config may not import logging).
ACCESS_LOG_INT_ATOMS = frozenset({"T", "D"})


class _ProbeAtoms(dict[str, object]):
    """Stands in for a request's atoms: any key is an atom (``-``, or 0 for the
    integer ones), as in :class:`tricorn.logging.AccessLogAtoms`."""

    def __missing__(self, key: str) -> object:
        return 0 if key in ACCESS_LOG_INT_ATOMS else "-"


def _access_log_format(text: str) -> str:
    try:
        text % _ProbeAtoms()
    except (ValueError, TypeError, KeyError) as exc:
        raise Invalid(f"not a %-format over the access-log atoms: {exc}") from None
    return text


# An optional "wsgi:" / "asgi:" prefix forces the kind of app (Hypercorn's
# form; only before module:attribute, so "wsgi:app" stays module wsgi).
_APP = re.compile(r"((asgi|wsgi):(?=[A-Za-z_][\w.]*:))?[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*(\(\))?)?\Z")


def _app_path(text: str) -> str:
    if not _APP.match(text):
        raise Invalid("write it as module:attribute, e.g. 'examples.hello:app'")
    return text


# --- the table -----------------------------------------------------------------------------

_BINDS = "binds (host:port, [ipv6]:port, unix:PATH, fd://N)"
_SECONDS = kinds.number()
_OPT_SECONDS = kinds.optional(kinds.number(), none_means="off")
_PATH = kinds.optional(kinds.string(check=_non_empty, allowed="a file path"))

HYPERCORN_FIELDS: tuple[Field, ...] = (
    _setting(
        "access_log_format",
        kinds.string(check=_access_log_format),
        '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
        "Access log line format, in Hypercorn's %-atoms.",
        flags=("--access-logformat",),
    ),
    _setting(
        "accesslog",
        _PATH,
        None,
        'Access log target: a file path, "-" for stdout, or none (off).',
        flags=("--access-logfile",),
    ),
    _setting(
        "alpn_protocols",
        kinds.string_list(item=_alpn_item, allowed="ALPN protocols: h2, http/1.1"),
        ("h2", "http/1.1"),
        "ALPN protocols offered on TLS binds, in preference order; with h2 listed,"
        " cleartext binds also accept h2c (prior knowledge and Upgrade).",
    ),
    _setting(
        "alt_svc_headers",
        kinds.string_list(allowed="Alt-Svc header values"),
        (),
        "Alt-Svc header values added to responses on TCP binds (default: one"
        ' h3=":PORT"; ma=86400 per quic_bind port).',
    ),
    _setting(
        "application_path",
        kinds.optional(kinds.string(check=_app_path, allowed="module:attribute")),
        None,
        "Hypercorn's name for the application path; `app` (or APP) wins when both are set.",
    ),
    _setting(
        "backlog",
        kinds.integer(minimum=1),
        100,
        "Length of the kernel's queue of connections not yet accepted.",
    ),
    _setting(
        "bind",
        kinds.string_list(item=_bind_item, allowed=_BINDS),
        ("127.0.0.1:8000",),
        "Addresses to serve on; TLS when certfile and keyfile are set.",
        flags=("-b", "--bind"),
    ),
    _setting("ca_certs", _PATH, None, "CA bundle used to verify client certificates."),
    _setting(
        "certfile",
        _PATH,
        None,
        "TLS certificate chain (PEM); with keyfile it turns TLS on for `bind`.",
    ),
    _setting(
        "ciphers",
        kinds.string(check=_non_empty, allowed="an OpenSSL cipher string"),
        "ECDHE+AESGCM",
        "OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are not affected).",
    ),
    _setting(
        "debug",
        kinds.boolean(),
        False,
        "Debug mode: the error log at DEBUG whatever loglevel says.",
    ),
    _setting(
        "dogstatsd_tags",
        kinds.string(),
        "",
        "DogStatsD tags appended to every statsd metric (e.g. env:prod,service:web).",
    ),
    _setting(
        "errorlog",
        _PATH,
        "-",
        'Error log target: a file path, "-" for stderr, or none (off).',
        flags=("--error-logfile", "--log-file"),
    ),
    _setting(
        "graceful_timeout",
        kinds.number(strict=False),
        3.0,
        "On SIGINT/SIGTERM, how long in-flight requests may finish before they are cancelled;"
        " also how long an app may run on after its client has gone.",
    ),
    _setting(
        "group",
        kinds.optional(kinds.integer(minimum=0, unit="gid")),
        None,
        "Group id given to UNIX socket files.",
        flags=("-g", "--group"),
    ),
    _setting(
        "h11_max_incomplete_size",
        kinds.integer(minimum=1, unit="bytes"),
        16 * 1024,
        "Largest HTTP/1.1 request head kept in memory; past it 414 or 431.",
    ),
    _setting(
        "h11_pass_raw_headers",
        kinds.boolean(),
        False,
        "Pass HTTP/1.1 header names to the app with their original case.",
    ),
    _setting(
        "h2_max_concurrent_streams",
        kinds.integer(minimum=1),
        100,
        "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: concurrent ASGI calls per connection;"
        " streams past it get RST_STREAM(REFUSED_STREAM).",
    ),
    _setting(
        "h2_max_header_list_size",
        kinds.integer(minimum=1, unit="bytes"),
        2**16,
        "HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE; a larger (decoded) header block ends the"
        " connection with GOAWAY(ENHANCE_YOUR_CALM).",
    ),
    _setting(
        "h2_max_inbound_frame_size",
        kinds.integer(minimum=2**14, maximum=2**24 - 1, unit="bytes"),
        2**14,
        "HTTP/2 SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2 range); a header block may"
        " span at most 64 CONTINUATION frames of it.",
    ),
    _setting("include_date_header", kinds.boolean(), True, "Send a Date response header."),
    _setting("include_server_header", kinds.boolean(), True, "Send a Server response header."),
    _setting(
        "insecure_bind",
        kinds.string_list(item=_bind_item, allowed=_BINDS),
        (),
        "Cleartext addresses served beside the TLS `bind` ones.",
    ),
    _setting(
        "keep_alive_max_requests",
        kinds.integer(minimum=1),
        1000,
        "Requests served on one HTTP/1.1 connection before it closes.",
    ),
    _setting(
        "keep_alive_timeout",
        _SECONDS,
        5.0,
        "Idle seconds allowed on a keep-alive connection between requests (and before the first).",
        flags=("--keep-alive",),
    ),
    _setting("keyfile", _PATH, None, "Private key (PEM) of certfile."),
    _setting(
        "keyfile_password",
        kinds.optional(kinds.string()),
        None,
        "Password of an encrypted keyfile.",
    ),
    _setting(
        "logconfig",
        _PATH,
        None,
        'Logging config: an ini file, "json:PATH" or "toml:PATH".',
        flags=("--log-config",),
    ),
    _setting(
        "logconfig_dict",
        kinds.optional(kinds.json_object()),
        None,
        "Logging config as a logging.config.dictConfig table (ignored when logconfig is set).",
    ),
    _setting(
        "loglevel",
        kinds.choice(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), fold=_loglevel),
        "INFO",
        "Level of the error log (any case).",
        flags=("--log-level",),
    ),
    _setting(
        "max_app_queue_size",
        kinds.integer(minimum=1),
        10,
        "Request-body chunks (or WebSocket messages) buffered for an app that has not"
        " read them yet; past it the server stops reading (HTTP/2: stops crediting"
        " the stream's window).",
    ),
    _setting(
        "max_requests",
        kinds.optional(kinds.integer(minimum=1), none_means="never"),
        None,
        "Requests a worker serves before it retires and a fresh one replaces it"
        " (with workers = 0 the server stops).",
    ),
    _setting(
        "max_requests_jitter",
        kinds.integer(minimum=0),
        0,
        "A random 0..jitter added to max_requests per worker, so workers do not retire together.",
    ),
    _setting(
        "pid_path",
        _PATH,
        None,
        "File the process id is written to (removed on exit).",
        flags=("-p", "--pid"),
    ),
    _setting(
        "quic_bind",
        kinds.string_list(
            item=_quic_bind_item, allowed="UDP binds (host:port, [ipv6]:port, fd://N)"
        ),
        (),
        "UDP addresses for HTTP/3; needs certfile and keyfile.",
    ),
    _setting("read_timeout", _OPT_SECONDS, None, "Longest wait for any one read from a client."),
    _setting(
        "root_path",
        kinds.string(check=lambda s: s.rstrip("/"), allowed="a URL path prefix"),
        "",
        "ASGI root_path: the prefix the app is mounted under (trailing / dropped).",
    ),
    _setting(
        "server_names",
        kinds.string_list(item=_non_empty, allowed="host names"),
        (),
        "Host header values served (with the port if the client sends one); requests"
        " for other hosts get 404 without reaching the app.",
        flags=("--server-name",),
    ),
    _setting("shutdown_timeout", _SECONDS, 60.0, "How long lifespan shutdown may take."),
    _setting(
        "ssl_handshake_timeout",
        _SECONDS,
        10.0,
        "A TLS handshake must finish within this (Hypercorn: 60).",
    ),
    _setting("startup_timeout", _SECONDS, 60.0, "How long lifespan startup may take."),
    _setting(
        "statsd_host",
        kinds.optional(kinds.string(check=_non_empty, allowed="host:port")),
        None,
        "host:port of a statsd server to send metrics to (Hypercorn's metric names:"
        " hypercorn.requests, hypercorn.request.duration, hypercorn.request.status.N,"
        " hypercorn.log.LEVEL).",
    ),
    _setting("statsd_prefix", kinds.string(), "", "Prefix of every statsd metric name."),
    _setting(
        "umask",
        kinds.optional(kinds.octal(maximum=0o777)),
        None,
        "umask applied while UNIX socket files are created.",
        flags=("-m", "--umask"),
    ),
    _setting(
        "use_reloader",
        kinds.boolean(),
        False,
        "Replace the workers when a source file changes (.py files under the working"
        " directory and the app's package; see reload_dirs, reload_includes,"
        " reload_excludes): OS file events with watchfiles installed (`tricorn[reload]`),"
        " else polled once a second; needs workers >= 1.",
        flags=("--reload",),
    ),
    _setting(
        "user",
        kinds.optional(kinds.integer(minimum=0, unit="uid")),
        None,
        "User id given to UNIX socket files.",
        flags=("-u", "--user"),
    ),
    _setting(
        "verify_flags",
        kinds.optional(kinds.verify_flags()),
        None,
        "ssl.VerifyFlags for client-certificate verification.",
    ),
    _setting(
        "verify_mode",
        kinds.optional(kinds.verify_mode()),
        None,
        "Client certificates: CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED.",
    ),
    _setting(
        "websocket_max_message_size",
        kinds.integer(minimum=1, unit="bytes"),
        16 * MIB,
        "Largest WebSocket message accepted, after decompression; a larger one"
        " closes the WebSocket with 1009 (message too big).",
    ),
    _setting(
        "websocket_ping_interval",
        _OPT_SECONDS,
        None,
        "Ping a WebSocket peer after this many seconds without input (off by default).",
    ),
    _setting(
        "worker_class",
        kinds.choice(("asyncio", "uvloop", "trio")),
        "asyncio",
        "Event loop the server runs on.",
        flags=("-k", "--worker-class"),
    ),
    _setting(
        "workers",
        kinds.integer(minimum=0),
        1,
        "Worker processes under a supervisor (restarted when they crash, replaced"
        " one by one on SIGHUP); 0 serves in this process.",
        flags=("-w", "--workers"),
    ),
    _setting(
        "wsgi_max_body_size",
        kinds.integer(minimum=1, unit="bytes"),
        16 * MIB,
        "Largest request body read for a WSGI app (it is read whole before the app"
        " is called); a larger one is answered 413 without calling the app.",
    ),
)

TRICORN_FIELDS: tuple[Field, ...] = (
    _own(
        "app",
        kinds.optional(kinds.string(check=_app_path, allowed="module:attribute")),
        None,
        "The application as module:attribute, so a config file alone can start"
        " the server; a positional APP overrides it. ASGI or WSGI is detected;"
        " a wsgi: or asgi: prefix (wsgi:module:attribute) forces one.",
    ),
    _own(
        "header_read_timeout",
        _SECONDS,
        10.0,
        "The whole HTTP/1.1 request head must arrive within this (slowloris).",
    ),
    _own(
        "body_read_timeout",
        _SECONDS,
        30.0,
        "Longest wait without progress while reading a request body (slow POST).",
    ),
    _own(
        "write_timeout",
        _OPT_SECONDS,
        60.0,
        "Longest a write may wait for a client that does not read the response;"
        " then the connection closes (noticed within keep_alive_timeout more).",
    ),
    _own(
        "max_connections",
        kinds.integer(minimum=1),
        2048,
        "Open connections per worker; past it accept pauses and idle keep-alive"
        " connections close first.",
    ),
    _own(
        "h2_initial_window_size",
        kinds.integer(minimum=0, maximum=2**31 - 1, unit="bytes"),
        MIB,
        "HTTP/2 per-stream receive window we advertise: request data buffered per stream"
        " until the app reads it; also the largest body an h2c Upgrade request may carry.",
    ),
    _own(
        "h2_connection_window_size",
        kinds.integer(minimum=65535, maximum=2**31 - 1, unit="bytes"),
        2 * MIB,
        "HTTP/2 connection receive window we advertise (bounds the request data"
        " buffered per connection).",
    ),
    _own(
        "h2_ping_interval",
        _OPT_SECONDS,
        None,
        "Send an HTTP/2 PING after this many seconds without input; close the connection"
        " if it is not answered within as long again.",
    ),
    _own(
        "h2_max_control_frames",
        kinds.integer(minimum=1),
        1000,
        "HTTP/2 frames without request progress (PING, SETTINGS, PRIORITY, RST_STREAM,"
        " empty DATA, refused or malformed streams) per second; past it"
        " GOAWAY(ENHANCE_YOUR_CALM) (floods, rapid reset). On HTTP/3: streams"
        " reset by the client, refused or malformed per second; past it"
        " CONNECTION_CLOSE(H3_EXCESSIVE_LOAD).",
    ),
    _own(
        "quic_idle_timeout",
        _SECONDS,
        30.0,
        "Close a QUIC connection after this long without packets (max_idle_timeout).",
    ),
    _own(
        "quic_max_datagram_size",
        kinds.integer(minimum=1200, maximum=65527, unit="bytes"),
        16384,
        "Largest UDP payload QUIC sends. Connections start at 1200 bytes and probe the"
        " path for larger datagrams up to this (DPLPMTUD, RFC 8899); 1200 turns probing"
        " off.",
    ),
    _own(
        "quic_retry",
        kinds.boolean(),
        False,
        "Answer each new QUIC client with a Retry first, so it proves its address"
        " before the server does any work for it.",
    ),
    _own(
        "quic_max_concurrent_streams",
        kinds.integer(minimum=1),
        100,
        "HTTP/3 request streams a client may have open at once (initial MAX_STREAMS).",
    ),
    _own(
        "quic_stream_window",
        kinds.integer(minimum=1024, unit="bytes"),
        1024 * 1024,
        "HTTP/3 request body bytes a client may send beyond what the app has read,"
        " per stream (MAX_STREAM_DATA); also the per-stream bound on response bytes"
        " not yet acknowledged before the app's send() waits.",
    ),
    _own(
        "quic_connection_window",
        kinds.integer(minimum=1024, unit="bytes"),
        4 * 1024 * 1024,
        "The same bound for all streams of a QUIC connection together (MAX_DATA).",
    ),
    _own(
        "quic_congestion_control",
        kinds.choice(("reno", "cubic")),
        "reno",
        "QUIC congestion control algorithm.",
    ),
    _own(
        "websocket_permessage_deflate",
        kinds.boolean(),
        True,
        "Accept WebSocket permessage-deflate compression when the client offers it.",
    ),
    _own(
        "websocket_ping_timeout",
        _OPT_SECONDS,
        20.0,
        "Drop a WebSocket peer that does not answer a server ping within this"
        " (with websocket_ping_interval).",
    ),
    _own(
        "websocket_close_timeout",
        _OPT_SECONDS,
        5.0,
        "Seconds a WebSocket peer has to answer our Close frame before the"
        " connection (HTTP/2: the stream) is ended.",
    ),
    _own(
        "forwarded_allow_ips",
        kinds.string_list(item=_forwarded_item, allowed='IP addresses, CIDRs or "*"'),
        (),
        "Peers whose X-Forwarded-* / Forwarded headers are trusted (default: nobody):"
        " their client address, scheme, host and prefix go into the scope.",
    ),
    _own(
        "forwarded_trusted_hops",
        kinds.integer(minimum=0),
        0,
        "Number of proxies in front of tricorn, each adding one value to X-Forwarded-*"
        " (or one Forwarded element): the client, scheme, host and prefix are each"
        " header's Nth value from the right, a header with fewer values is ignored;"
        " with forwarded_allow_ips set too, only from peers it lists (0: off).",
    ),
    _own(
        "forwarded_headers",
        kinds.choice(("x-forwarded", "forwarded")),
        "x-forwarded",
        "Which headers the trusted proxies write: X-Forwarded-For/-Proto/-Host/-Prefix, or"
        " RFC 7239 Forwarded. The other family is ignored (a proxy passes a client's"
        " copy through).",
    ),
    _own(
        "proxy_protocol",
        kinds.boolean(),
        False,
        "Expect a PROXY protocol v1/v2 header on every connection of the TCP binds;"
        " without a valid one the connection is closed.",
    ),
    _own(
        "metrics_bind",
        kinds.optional(
            kinds.string(check=_bind_item, allowed="a bind (host:port, [ipv6]:port, unix:PATH)"),
            none_means="off",
        ),
        None,
        "Address of a Prometheus endpoint (GET /metrics, cleartext HTTP/1.1): requests by"
        " protocol and status, durations, open connections and streams, worker restarts;"
        " summed over every worker.",
    ),
    _own(
        "access_log_json",
        kinds.boolean(),
        False,
        "Write the access log as JSON lines instead of the %-atom format.",
    ),
    _own(
        "wsgi_max_threads",
        kinds.integer(minimum=1),
        10,
        "Threads per worker that run a WSGI app's requests at once; more requests"
        " wait in the event loop (not in threads) until one is free.",
    ),
    _setting(
        "reload_dirs",
        kinds.string_list(item=_non_empty, allowed="directories"),
        (),
        "Directories use_reloader watches (default: the working directory and the app's package).",
        flags=("--reload-dir",),
        tricorn=True,
    ),
    _setting(
        "reload_includes",
        kinds.string_list(item=_glob_item, allowed="glob patterns"),
        (),
        "Glob patterns of more files use_reloader watches besides `*.py`, matched against"
        " the end of the path (`*.toml`, `templates/*.html`); one without wildcards"
        " (`.env`) counts even where an exclude matches; naming a default exclude here"
        " drops it.",
        flags=("--reload-include",),
        tricorn=True,
    ),
    _setting(
        "reload_excludes",
        kinds.string_list(item=_glob_item, allowed="glob patterns"),
        (),
        "Glob patterns of files and directories use_reloader ignores besides `.*`,"
        " `.py[cod]`, `.sw.*`, `~*` (and `__pycache__`, `site-packages`, `node_modules`,"
        " virtualenvs); an existing directory is skipped whole; naming `*.py` here"
        " drops it.",
        flags=("--reload-exclude",),
        tricorn=True,
    ),
    _own(
        "http1_parser",
        kinds.choice(("auto", "h11", "httptools")),
        "auto",
        "What reads HTTP/1.1 requests: h11, or httptools (llhttp, from the extra"
        " tricorn[httptools]) for well-formed heads and Content-Length bodies with h11"
        " judging everything else (chunked bodies, anything llhttp refuses); auto: httptools"
        " when installed.",
    ),
)

FIELDS: tuple[Field, ...] = HYPERCORN_FIELDS + TRICORN_FIELDS
"""Every setting: Hypercorn's (alphabetical), then tricorn's own."""

FIELDS_BY_KEY: Mapping[str, Field] = {f.key: f for f in FIELDS}


def suggest(name: str, known: list[str]) -> str:
    """A "did you mean 'x'?" hint for a misspelt ``name``, or ""."""
    import difflib  # only for a misspelt key: kept out of a running server's memory

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def field_for(key: str, *, value: object = None, name: str | None = None) -> Field:
    """The field of ``key``.

    :param value: the value given with the unknown key, for the error line.
    :param name: how the user wrote the key (e.g. an environment variable).
    :raises ConfigError: ``key`` is not a setting, with a "did you mean" hint.
    """
    field = FIELDS_BY_KEY.get(key)
    if field is None:
        hint = suggest(key, list(FIELDS_BY_KEY)) or "see docs/configuration.md for every setting"
        raise ConfigError(name or key, value, "not a tricorn setting", hint)
    return field
