"""Error and access logging, with an access log that costs nothing when off.

Theory of operation
-------------------
Two stdlib loggers carry everything tricorn says: ``tricorn.error`` (server
events, app tracebacks) and ``tricorn.access`` (one line per request).
:func:`configure_logging` attaches handlers to them from the Hypercorn-style
settings (``errorlog``, ``accesslog``, ``loglevel``, ``logconfig``,
``logconfig_dict``) and is safe to call again: it replaces only the handlers
it installed itself.

The access log is off unless ``accesslog`` (or a logging config) turns
``tricorn.access`` on for INFO. The per-request path is::

    if access_log.enabled:           # one isEnabledFor(INFO): a cached dict lookup
        access_log.log(scope, ...)   # the only place anything is built

:class:`AccessLogAtoms` is a lazy mapping: ``fmt % atoms`` asks it only for the
atoms ``fmt`` names, and each atom is computed from the scope when asked, so
``%(h)s %(s)s`` never looks at headers or the environment. The atoms mapping is
passed to ``logger.info(fmt, atoms)`` as Hypercorn does, so the line is built
by the handler (not at all if a filter drops the record), and custom
formatters still find the atoms in ``record.args``.

The atoms and the default format are Hypercorn 0.18's, so existing log parsers
keep working. Where tricorn differs, on purpose:

* ``b``/``B`` are the response body bytes actually sent (Hypercorn echoes the
  ``Content-Length`` header, which is ``-`` for chunked responses);
* ``h`` is ``-`` when the client address is unknown (Hypercorn prints ``None``);
* repeated request/response headers in ``{name}i``/``{name}o`` are joined
  with ``", "`` (RFC 9110 §5.3) instead of keeping only the last one;
* control characters in request-derived values (path, query, headers) are
  escaped as ``\\xNN`` so a client cannot forge log lines (CWE-117);
* JSON lines (``access_log_json``) are a tricorn addition.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from typing import IO, Any, Final

__all__ = [
    "ACCESS_LOGGER_NAME",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "ERROR_LOGGER_NAME",
    "JSON_FIELDS",
    "STATUS_PHRASES",
    "AccessLogAtoms",
    "AccessLogger",
    "StatsdClient",
    "StatsdLogHandler",
    "access_logger",
    "check_access_log_format",
    "configure_logging",
    "error_logger",
]

ERROR_LOGGER_NAME: Final = "tricorn.error"
ACCESS_LOGGER_NAME: Final = "tricorn.access"
error_logger: Final = logging.getLogger(ERROR_LOGGER_NAME)
access_logger: Final = logging.getLogger(ACCESS_LOGGER_NAME)

DEFAULT_ACCESS_LOG_FORMAT: Final = '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
"""Hypercorn's ``access_log_format`` default (gunicorn's, with ``r`` as Hypercorn builds it)."""

STATUS_PHRASES: Final[dict[int, bytes]] = {
    status.value: status.phrase.encode("ascii") for status in HTTPStatus
}
"""Reason phrase for every status :class:`http.HTTPStatus` knows, as bytes for the wire."""

JSON_FIELDS: Final = (
    "time",
    "remote",
    "method",
    "path",
    "query",
    "http_version",
    "status",
    "bytes",
    "duration_ms",
    "user_agent",
    "referer",
)
"""The keys of every JSON access-log line, in order. ``time`` is ISO-8601 UTC with
milliseconds; ``remote`` is ``"host:port"`` or null; ``status`` is null when no
response was sent; ``bytes`` counts body bytes sent; ``duration_ms`` is a float;
``user_agent``/``referer`` are null when absent; the rest are strings."""

_SERVER_FORMAT: Final = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
_SERVER_DATEFMT: Final = "[%Y-%m-%d %H:%M:%S %z]"
_RAW_RECORD: Final = {"tricorn_raw": True}
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
# C0 controls and DEL, escaped so a request cannot start a new log line.
_ESCAPES: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}

# ---------------------------------------------------------------------------
# setup


class _ServerFormatter(logging.Formatter):
    """Hypercorn's line prefix, except for records that must stay raw (JSON lines)."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "tricorn_raw", False):
            return record.getMessage()
        return super().format(record)


# The handlers configure_logging attached, per logger name, so a second call
# replaces them instead of adding more (and leaves anyone else's alone).
_installed: dict[str, logging.Handler] = {}


def configure_logging(
    *,
    loglevel: str,
    errorlog: str | None,
    accesslog: str | None,
    logconfig: str | None,
    logconfig_dict: dict[str, Any] | None,
    debug: bool = False,
) -> None:
    """Set up ``tricorn.error`` and ``tricorn.access`` from Hypercorn's settings.

    :param loglevel: a level name (``"info"``, ``"DEBUG"`` …) for both loggers.
    :param errorlog: ``"-"`` for stderr, a file path, or None for no error log
        (``tricorn.error`` then does not propagate to the root logger either).
    :param accesslog: ``"-"`` for stdout, a file path, or None: access logging
        off (``tricorn.access`` at WARNING, so :attr:`AccessLogger.enabled` is
        False unless a logging config turns it on).
    :param logconfig: ``"json:PATH"`` or ``"toml:PATH"`` (a :func:`dictConfig`
        schema) or an ini file path (:func:`fileConfig`). Applied after the
        handlers above, so it can override them.
    :param logconfig_dict: a :func:`dictConfig` schema; ignored when
        ``logconfig`` is given (as in Hypercorn).
    :param debug: lower ``tricorn.error`` to DEBUG whatever ``loglevel`` says.

    Calling it again replaces the handlers an earlier call installed; handlers
    added by anyone else are kept. File handlers append, in UTF-8.

    :raises ValueError: an unknown level name, or a logging config that cannot
        be parsed or applied (the message names the file).
    :raises OSError: a log or config file that cannot be opened.
    """
    level = _level_number(loglevel)
    error_handler = _make_handler(errorlog, sys.stderr)
    try:
        access_handler = _make_handler(accesslog, sys.stdout)
    except BaseException:
        error_handler.close()
        raise
    error_level = logging.DEBUG if debug else level
    # As Hypercorn: errors also reach the root logger's handlers, unless the error log is off.
    _install(error_logger, error_handler, error_level, propagate=errorlog is not None)
    access_level = max(level, logging.WARNING) if accesslog is None else level
    _install(access_logger, access_handler, access_level, propagate=False)
    if logconfig is not None:
        _apply_logconfig(logconfig)
    elif logconfig_dict is not None:
        _dict_config(logconfig_dict, "logconfig_dict")


def _level_number(name: str) -> int:
    number = logging.getLevelName(name.upper())
    if not isinstance(number, int):
        raise ValueError(
            f"unknown log level {name!r}; expected one of debug, info, warning, error, critical"
        )
    return number


def _make_handler(target: str | None, stream: IO[str]) -> logging.Handler:
    handler: logging.Handler
    if target is None:
        # Without any handler a message would reach logging.lastResort (stderr).
        handler = logging.NullHandler()
    elif target == "-":
        handler = logging.StreamHandler(stream)
    else:
        handler = logging.FileHandler(target, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(_ServerFormatter(_SERVER_FORMAT, _SERVER_DATEFMT))
    return handler


def _install(
    logger: logging.Logger, handler: logging.Handler, level: int, *, propagate: bool
) -> None:
    previous = _installed.pop(logger.name, None)
    if previous is not None:
        logger.removeHandler(previous)
        previous.close()
    logger.addHandler(handler)
    _installed[logger.name] = handler
    logger.setLevel(level)
    logger.propagate = propagate


def _apply_logconfig(logconfig: str) -> None:
    if logconfig.startswith("json:"):
        import json

        path = logconfig[5:]
        with open(path, encoding="utf-8") as file:
            try:
                schema = json.load(file)
            except ValueError as exc:
                raise ValueError(f"logconfig {path!r} is not valid JSON: {exc}") from exc
        _dict_config(schema, f"logconfig {path!r}")
    elif logconfig.startswith("toml:"):
        path = logconfig[5:]
        with open(path, "rb") as binary:
            try:
                schema = _load_toml(binary)
            except ValueError as exc:
                raise ValueError(f"logconfig {path!r} is not valid TOML: {exc}") from exc
        _dict_config(schema, f"logconfig {path!r}")
    else:
        _file_config(logconfig)


def _load_toml(file: IO[bytes]) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        # tomli is a dependency on 3.10 only; the ignore is for type-checking without it.
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    return tomllib.load(file)


# What dictConfig/fileConfig raise for a bad schema (they wrap most errors in
# ValueError, but not all of them).
_CONFIG_ERRORS: Final = (ValueError, TypeError, AttributeError, KeyError, ImportError, RuntimeError)


def _dict_config(schema: object, source: str) -> None:
    """Apply a dictConfig schema; ``source`` names it in errors
    (``logconfig '/path'`` or ``logconfig_dict``)."""
    if not isinstance(schema, dict):
        raise ValueError(f"{source} must be a mapping, not {type(schema).__name__}")
    import logging.config  # (with its handlers, pickle and socketserver: only when configured)

    try:
        logging.config.dictConfig(schema)
    except _CONFIG_ERRORS as exc:
        raise ValueError(f"{source} cannot be applied: {_describe(exc)}") from exc


def _file_config(path: str) -> None:
    import configparser
    import logging.config

    # Opened here so a missing file is an OSError on every Python version
    # (before 3.12 fileConfig silently reads nothing, then fails on a KeyError).
    with open(path, encoding="utf-8") as file:
        defaults = {"__file__": path, "here": os.path.dirname(path)}
        try:
            logging.config.fileConfig(file, defaults, disable_existing_loggers=False)
        except (*_CONFIG_ERRORS, configparser.Error) as exc:
            raise ValueError(f"logconfig {path!r} cannot be applied: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line, with the cause that dictConfig wraps
    ("Unable to configure handler 'h'" says nothing of why)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        text += f" ({' '.join(f'{type(cause).__name__}: {cause}'.split())})"
    return text


# ---------------------------------------------------------------------------
# access log


def check_access_log_format(fmt: str) -> None:
    """Raise ValueError if ``fmt`` cannot format access-log atoms.

    ``T`` and ``D`` are ints (so ``%(D)d`` works, as in Hypercorn); every other
    atom is a string.
    """
    try:
        fmt % _ProbeAtoms()
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"access_log_format {fmt!r} is not a valid %-format: {exc}") from exc


class _ProbeAtoms(Mapping[str, object]):
    def __getitem__(self, key: str) -> object:
        return 0 if key in _INT_ATOMS else "-"

    def __iter__(self) -> Iterator[str]:
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)


class AccessLogger:
    """Writes one access-log line per request to ``tricorn.access`` (or ``logger``).

    :param fmt: a %-format over the atoms of :class:`AccessLogAtoms`.
    :param json_lines: write one JSON object per request (keys :data:`JSON_FIELDS`)
        instead of ``fmt``.
    :param logger: where to log; ``tricorn.access`` by default.
    :param clock: wall-clock seconds for the ``t`` atom and the JSON ``time``.
    :raises ValueError: ``fmt`` is not a valid format (see :func:`check_access_log_format`).
    """

    __slots__ = ("_clock", "_dumps", "_fmt", "_logger")

    def __init__(
        self,
        fmt: str = DEFAULT_ACCESS_LOG_FORMAT,
        *,
        json_lines: bool = False,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not json_lines:
            check_access_log_format(fmt)
        self._fmt = fmt
        self._dumps: Callable[[object], str] | None = None
        if json_lines:
            import json  # (only for JSON lines: kept out of every worker's memory)

            self._dumps = functools.partial(json.dumps, separators=(",", ":"))
        self._logger = access_logger if logger is None else logger
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """Whether a line would be written; check it before gathering anything per request."""
        return self._logger.isEnabledFor(logging.INFO)

    def log(
        self,
        scope: Mapping[str, Any],
        status: int,
        response_headers: Sequence[tuple[bytes, bytes]],
        sent_bytes: int,
        duration: float,
    ) -> None:
        """Log one finished request or WebSocket.

        :param scope: the ASGI ``http`` or ``websocket`` scope.
        :param status: the response status, or 0 if no response was sent.
        :param response_headers: the response headers as sent.
        :param sent_bytes: response body bytes sent.
        :param duration: seconds from the request's arrival to the end of the response.
        """
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        atoms = AccessLogAtoms(scope, status, response_headers, sent_bytes, duration, self._clock())
        if self._dumps is not None:
            logger.info("%s", self._dumps(atoms.as_json()), extra=_RAW_RECORD)
        else:
            logger.info(self._fmt, atoms)


class AccessLogAtoms(Mapping[str, object]):
    """The access-log atoms of one request, each computed only when looked up.

    ====== =============================================================
    atom   value
    ====== =============================================================
    h      remote address ``host:port`` (``-`` if unknown)
    l, u   ``-`` (identd and user are not known; as Hypercorn)
    t      time of logging, ``[01/May/2024:12:00:00 +0200]``, local zone
    r      ``GET /path 1.1``: method, path without query, HTTP version
    R      ``GET /path?query 1.1``
    m      method (``GET`` for WebSockets)
    U      path;  Uq  path and ``?query``;  q  query string
    H      HTTP version (``1.1``, ``2``, ``3``)
    s      status (``-`` if none);  st  its reason phrase
    S      scheme (``http``, ``https``, ``ws``, ``wss``)
    B      response body bytes;  b  the same, ``-`` when 0
    f      ``Referer`` header;  a  ``User-Agent`` header
    T      duration in whole seconds (int);  D  in microseconds (int)
    L      duration in seconds with 6 decimals
    p      ``<pid>``
    {h}i   request header ``h``;  {h}o  response header ``h``
    {v}e   environment variable ``v``
    ====== =============================================================

    Header names are case-insensitive; unknown atoms and absent values are ``-``.
    """

    __slots__ = ("_duration", "_now", "_response_headers", "_scope", "_sent_bytes", "_status")

    def __init__(
        self,
        scope: Mapping[str, Any],
        status: int,
        response_headers: Sequence[tuple[bytes, bytes]],
        sent_bytes: int,
        duration: float,
        now: float,
    ) -> None:
        self._scope = scope
        self._status = status
        self._response_headers = response_headers
        self._sent_bytes = sent_bytes
        self._duration = duration
        self._now = now

    def __getitem__(self, key: str) -> object:
        atom = _ATOMS.get(key)
        if atom is not None:
            return atom(self)
        if len(key) > 3 and key[0] == "{" and key[-2] == "}":
            name = key[1:-2]
            kind = key[-1]
            if kind == "i":
                return _clean(self.request_header(name))
            if kind == "o":
                return _clean(self.response_header(name))
            if kind == "e":
                return _environ(name)
        return "-"

    def __iter__(self) -> Iterator[str]:
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)

    def __contains__(self, key: object) -> bool:
        return key in _ATOMS

    # The raw values, shared by the text atoms and the JSON line.

    def remote(self) -> str | None:
        client = self._scope.get("client")
        if not client:
            return None
        if len(client) == 2:
            return f"{client[0]}:{client[1]}"
        return str(client[0])

    def method(self) -> str:
        return str(self._scope.get("method", "GET"))

    def path(self) -> str:
        return str(self._scope["path"])

    def query(self) -> str:
        return bytes(self._scope.get("query_string", b"")).decode("utf-8", "backslashreplace")

    def path_with_query(self) -> str:
        query = self.query()
        return f"{self.path()}?{query}" if query else self.path()

    def http_version(self) -> str:
        return str(self._scope.get("http_version", "ws"))

    def request_header(self, name: str) -> str | None:
        return _find_header(self._scope.get("headers", ()), name)

    def response_header(self, name: str) -> str | None:
        return _find_header(self._response_headers, name)

    def as_json(self) -> dict[str, object]:
        """The fields of :data:`JSON_FIELDS` for this request."""
        return {
            "time": datetime.fromtimestamp(self._now, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "remote": self.remote(),
            "method": self.method(),
            "path": self.path(),
            "query": self.query(),
            "http_version": self.http_version(),
            "status": self._status or None,
            "bytes": self._sent_bytes,
            "duration_ms": round(self._duration * 1000, 3),
            "user_agent": self.request_header("user-agent"),
            "referer": self.request_header("referer"),
        }

    # The text atoms.

    def _h(self) -> str:
        return _clean(self.remote())

    def _t(self) -> str:
        return _clf_time(self._now)

    def _r(self) -> str:
        return _clean(f"{self.method()} {self.path()} {self.http_version()}")

    def _big_r(self) -> str:
        return _clean(f"{self.method()} {self.path_with_query()} {self.http_version()}")

    def _m(self) -> str:
        return _clean(self.method())

    def _big_u(self) -> str:
        return _clean(self.path())

    def _uq(self) -> str:
        return _clean(self.path_with_query())

    def _q(self) -> str:
        return _clean(self.query())

    def _big_h(self) -> str:
        return self.http_version()

    def _s(self) -> str:
        return str(self._status) if self._status else "-"

    def _st(self) -> str:
        if not self._status:
            return "-"
        phrase = STATUS_PHRASES.get(self._status)
        return f"<???{self._status}???>" if phrase is None else phrase.decode("ascii")

    def _big_s(self) -> str:
        return str(self._scope.get("scheme", "-"))

    def _big_b(self) -> str:
        return str(self._sent_bytes)

    def _b(self) -> str:
        return str(self._sent_bytes) if self._sent_bytes else "-"

    def _f(self) -> str:
        return _clean(self.request_header("referer"))

    def _a(self) -> str:
        return _clean(self.request_header("user-agent"))

    def _big_t(self) -> int:
        return int(self._duration)

    def _big_d(self) -> int:
        return int(self._duration * 1_000_000)

    def _big_l(self) -> str:
        return f"{self._duration:.6f}"

    def _dash(self) -> str:
        return "-"

    def _p(self) -> str:
        return f"<{os.getpid()}>"


_ATOMS: Final[dict[str, Callable[[AccessLogAtoms], object]]] = {
    "h": AccessLogAtoms._h,
    "l": AccessLogAtoms._dash,
    "u": AccessLogAtoms._dash,
    "t": AccessLogAtoms._t,
    "r": AccessLogAtoms._r,
    "R": AccessLogAtoms._big_r,
    "m": AccessLogAtoms._m,
    "U": AccessLogAtoms._big_u,
    "Uq": AccessLogAtoms._uq,
    "q": AccessLogAtoms._q,
    "H": AccessLogAtoms._big_h,
    "s": AccessLogAtoms._s,
    "st": AccessLogAtoms._st,
    "S": AccessLogAtoms._big_s,
    "B": AccessLogAtoms._big_b,
    "b": AccessLogAtoms._b,
    "f": AccessLogAtoms._f,
    "a": AccessLogAtoms._a,
    "T": AccessLogAtoms._big_t,
    "D": AccessLogAtoms._big_d,
    "L": AccessLogAtoms._big_l,
    "p": AccessLogAtoms._p,
}
_INT_ATOMS: Final = frozenset({"T", "D"})


def _clean(value: str | None) -> str:
    if value is None:
        return "-"
    return value if value.isprintable() else value.translate(_ESCAPES)


def _find_header(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    try:
        wanted = name.lower().encode("latin-1")
    except UnicodeEncodeError:
        return None
    values = [value for key, value in headers if key.lower() == wanted]
    if not values:
        return None
    return b", ".join(values).decode("latin-1")


def _environ(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        # Hypercorn looks variables up case-insensitively.
        folded = name.lower()
        value = next((v for k, v in os.environ.items() if k.lower() == folded), "-")
    return value


_clf_cache: tuple[int, str] = (-1, "")


def _clf_time(now: float) -> str:
    """``[dd/Mon/YYYY:HH:MM:SS +zzzz]`` in local time, locale-independent, cached per second."""
    global _clf_cache
    second = int(now)
    cached_second, text = _clf_cache
    if second != cached_second:
        tm = time.localtime(second)
        offset = tm.tm_gmtoff // 60
        sign = "-" if offset < 0 else "+"
        hours, minutes = divmod(abs(offset), 60)
        text = (
            f"[{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year:04d}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {sign}{hours:02d}{minutes:02d}]"
        )
        _clf_cache = (second, text)
    return text


class StatsdClient:
    """Metrics to a statsd (or DogStatsD) server over UDP, with Hypercorn's
    names, so dashboards keep working after the switch:

    * ``hypercorn.requests`` (counter) and ``hypercorn.request.status.N``
      (counter) per answered request or WebSocket;
    * ``hypercorn.request.duration`` (timer, milliseconds);
    * ``hypercorn.log.warning`` / ``.error`` / ``.critical`` /
      ``.exception`` (counters), one per record of the error log.

    Each metric is one datagram, sent without waiting; one that cannot be
    sent (no route, full buffer) is lost, as statsd expects. ``prefix`` is
    put in front of every name (a ``.`` added), ``tags`` (DogStatsD) after
    every line.

    :param address: ``host:port`` of the statsd server.
    :raises ValueError: ``address`` has no valid port.
    """

    def __init__(self, address: str, prefix: str = "", tags: str = "") -> None:
        host, sep, port = address.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"{address!r} is not host:port")
        self.target = (host.strip("[]") or "127.0.0.1", int(port))
        self.prefix = prefix + "." if prefix and not prefix.endswith(".") else prefix
        self.suffix = f"|#{tags}" if tags else ""
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def request(self, status: int | None, seconds: float) -> None:
        """One answered request (``status`` ``None``: no response started)."""
        self.increment("hypercorn.requests")
        self.histogram("hypercorn.request.duration", seconds * 1000)
        if status is not None:
            self.increment(f"hypercorn.request.status.{status}")

    def increment(self, name: str, value: int = 1) -> None:
        self._send(f"{self.prefix}{name}:{value}|c|@1.0")

    def histogram(self, name: str, milliseconds: float) -> None:
        self._send(f"{self.prefix}{name}:{milliseconds:.3f}|ms")

    def _send(self, line: str) -> None:
        try:
            self._sock.sendto((line + self.suffix).encode("ascii", "replace"), self.target)
        except OSError:
            pass  # statsd is best effort

    def close(self) -> None:
        self._sock.close()


class StatsdLogHandler(logging.Handler):
    """Counts the error log's WARNING and worse records in statsd."""

    def __init__(self, client: StatsdClient) -> None:
        super().__init__(logging.WARNING)
        self.client = client

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.levelno >= logging.ERROR:
            self.client.increment("hypercorn.log.exception")
        elif record.levelno >= logging.CRITICAL:
            self.client.increment("hypercorn.log.critical")
        elif record.levelno >= logging.ERROR:
            self.client.increment("hypercorn.log.error")
        else:
            self.client.increment("hypercorn.log.warning")
