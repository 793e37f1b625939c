"""tricorn.logging: access-log atoms, JSON lines, laziness, configure_logging."""

from __future__ import annotations

import calendar
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import pytest

from tricorn import logging as tricorn_logging
from tricorn.config import Config
from tricorn.config import fields as config_fields
from tricorn.errors import ConfigError
from tricorn.logging import (
    DEFAULT_ACCESS_LOG_FORMAT,
    JSON_FIELDS,
    STATUS_PHRASES,
    AccessLogAtoms,
    AccessLogger,
    access_logger,
    check_access_log_format,
    configure_logging,
    error_logger,
)

# 2024-05-01 10:00:00.25 UTC, which is 12:30:00 in the test zone (UTC+02:30).
NOW = calendar.timegm((2024, 5, 1, 10, 0, 0)) + 0.25
LOCAL_TIME = "[01/May/2024:12:30:00 +0230]"
DURATION = 2.0625

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "https",
    "path": "/café/x",
    "raw_path": b"/caf%C3%A9/x",
    "query_string": b"a=1&b=2",
    "root_path": "",
    "headers": [
        (b"host", b"example.com"),
        (b"user-agent", b"curl/8.5"),
        (b"referer", b"https://ref.example/"),
        (b"accept", b"*/*"),
        (b"accept", b"text/html"),
    ],
    "client": ("192.0.2.7", 51234),
    "server": ("192.0.2.1", 443),
}
RESPONSE_HEADERS = [(b"content-type", b"text/plain"), (b"Content-Length", b"12")]


# ---------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(autouse=True)
def _local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run every test in a fixed zone with a half-hour offset, so `t` is predictable."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "TST-02:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put every logger back as it was and close the handlers a test created."""
    manager = logging.Logger.manager
    loggers = [logging.root] + [
        lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = {
        lg.name: (lg.level, lg.propagate, lg.disabled, lg.handlers[:], lg.filters[:])
        for lg in loggers
    }
    yield
    for lg in [logging.root, *manager.loggerDict.values()]:
        if not isinstance(lg, logging.Logger):
            continue
        level, propagate, disabled, handlers, filters = saved.get(
            lg.name, (logging.NOTSET, True, False, [], [])
        )
        for handler in lg.handlers:
            if handler not in handlers:
                handler.close()
        lg.handlers[:] = handlers
        lg.filters[:] = filters
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled


class Collector(logging.Handler):
    """Keeps the formatted messages of the records it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.messages.append(record.getMessage())


def collecting_logger(level: int = logging.INFO) -> tuple[logging.Logger, Collector]:
    logger = logging.getLogger("tests.tricorn.access")
    collector = Collector()
    logger.handlers[:] = [collector]
    logger.setLevel(level)
    logger.propagate = False
    return logger, collector


def atoms(
    scope: Mapping[str, Any] = SCOPE,
    status: int = 201,
    headers: Sequence[tuple[bytes, bytes]] = RESPONSE_HEADERS,
    sent: int = 12,
) -> AccessLogAtoms:
    return AccessLogAtoms(scope, status, headers, sent, DURATION, NOW)


def log_line(fmt: str, **kwargs: Any) -> str:
    logger, collector = collecting_logger()
    AccessLogger(fmt, logger=logger, clock=lambda: NOW).log(
        kwargs.get("scope", SCOPE),
        kwargs.get("status", 201),
        kwargs.get("headers", RESPONSE_HEADERS),
        kwargs.get("sent", 12),
        DURATION,
    )
    [message] = collector.messages
    return message


def emit_request() -> None:
    AccessLogger(clock=lambda: NOW).log(SCOPE, 201, RESPONSE_HEADERS, 12, DURATION)


DEFAULT_LINE = (
    f'192.0.2.7:51234 - - {LOCAL_TIME} "POST /café/x 1.1" 201 12 "https://ref.example/" "curl/8.5"'
)
PREFIX = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(INFO|DEBUG|ERROR)\] "


# ---------------------------------------------------------------------------
# atoms


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "192.0.2.7:51234"),
        ("l", "-"),
        ("u", "-"),
        ("t", LOCAL_TIME),
        ("r", "POST /café/x 1.1"),
        ("R", "POST /café/x?a=1&b=2 1.1"),
        ("m", "POST"),
        ("U", "/café/x"),
        ("Uq", "/café/x?a=1&b=2"),
        ("q", "a=1&b=2"),
        ("H", "1.1"),
        ("s", "201"),
        ("st", "Created"),
        ("S", "https"),
        ("B", "12"),
        ("b", "12"),
        ("f", "https://ref.example/"),
        ("a", "curl/8.5"),
        ("T", 2),
        ("D", 2062500),
        ("L", "2.062500"),
        ("p", f"<{os.getpid()}>"),
        ("{User-Agent}i", "curl/8.5"),
        ("{host}i", "example.com"),
        ("{Accept}i", "*/*, text/html"),
        ("{content-type}o", "text/plain"),
        ("{content-length}o", "12"),
        ("{x-missing}i", "-"),
        ("{x-missing}o", "-"),
    ],
)
def test_atom(atom: str, expected: object) -> None:
    assert atoms()[atom] == expected
    assert log_line(f"%({atom})s") == str(expected)


def test_default_format_output() -> None:
    assert log_line(DEFAULT_ACCESS_LOG_FORMAT) == DEFAULT_LINE


def test_default_format_is_hypercorns() -> None:
    assert (
        DEFAULT_ACCESS_LOG_FORMAT == '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    )


def test_time_atom_follows_the_clock_and_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    later = calendar.timegm((2023, 12, 31, 23, 59, 59))
    assert AccessLogAtoms(SCOPE, 200, [], 0, 0.0, later)["t"] == "[01/Jan/2024:02:29:59 +0230]"
    monkeypatch.setenv("TZ", "WST+05")
    time.tzset()
    assert AccessLogAtoms(SCOPE, 200, [], 0, 0.0, later + 3600)["t"] == (
        "[31/Dec/2023:19:59:59 -0500]"
    )


def test_environment_atom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    monkeypatch.delenv("home", raising=False)
    monkeypatch.delenv("TRICORN_TEST_UNSET", raising=False)
    assert log_line("%({HOME}e)s") == "/home/tester"
    # Looked up case-insensitively, as Hypercorn does.
    assert log_line("%({home}e)s") == "/home/tester"
    assert log_line("%({TRICORN_TEST_UNSET}e)s") == "-"


@pytest.mark.parametrize("atom", ["zz", "x", "{host}x", "{}i", "", "{host}"])
def test_unknown_atom_is_a_dash(atom: str) -> None:
    assert atoms()[atom] == "-"
    assert log_line(f"<%({atom})s>") == "<->"


def test_websocket_scope() -> None:
    scope = {
        "type": "websocket",
        "http_version": "2",
        "scheme": "wss",
        "path": "/chat",
        "query_string": b"",
        "headers": [],
        "client": ("::1", 4000),
        "server": ("::1", 443),
    }
    line = log_line("%(h)s|%(r)s|%(R)s|%(m)s|%(S)s|%(Uq)s|%(q)s|%(a)s", scope=scope, status=101)
    assert line == "::1:4000|GET /chat 2|GET /chat 2|GET|wss|/chat||-"


def test_no_client_no_response_no_body() -> None:
    scope = {**SCOPE, "client": None}
    line = log_line("%(h)s %(s)s %(st)s %(b)s %(B)s", scope=scope, status=0, sent=0)
    assert line == "- - - - 0"


def test_unknown_status_phrase() -> None:
    assert atoms(status=599)["st"] == "<???599???>"


def test_control_characters_are_escaped() -> None:
    scope = {
        **SCOPE,
        "path": "/a\nb",
        "query_string": b"x=\r",
        "headers": [(b"user-agent", b"evil\x1b[31m\tx")],
    }
    line = log_line("%(r)s|%(Uq)s|%(a)s", scope=scope)
    assert line == "POST /a\\x0ab 1.1|/a\\x0ab?x=\\x0d|evil\\x1b[31m\\x09x"
    assert "\n" not in line


def test_atoms_are_a_read_only_mapping_of_the_letters() -> None:
    letters = {"h", "l", "u", "t", "r", "R", "m", "U", "Uq", "q", "H", "s", "st", "S"}
    letters |= {"B", "b", "f", "a", "T", "D", "L", "p"}
    assert set(atoms()) == letters
    assert len(atoms()) == len(letters)


def test_record_args_carry_the_atoms() -> None:
    """Custom formatters written for Hypercorn read the atoms from record.args."""
    logger, collector = collecting_logger()
    AccessLogger("%(s)s", logger=logger, clock=lambda: NOW).log(SCOPE, 201, [], 0, 0.5)
    [record] = collector.records
    assert record.msg == "%(s)s"
    assert isinstance(record.args, Mapping)
    assert record.args["h"] == "192.0.2.7:51234"


def test_status_phrases_table() -> None:
    assert STATUS_PHRASES[200] == b"OK"
    assert STATUS_PHRASES[404] == b"Not Found"
    assert STATUS_PHRASES[103] == b"Early Hints"
    assert all(isinstance(p, bytes) and p for p in STATUS_PHRASES.values())


@pytest.mark.parametrize("fmt", ["%(h)d", "%(h", "%s %s", "100%"])
def test_bad_format_is_rejected(fmt: str) -> None:
    with pytest.raises(ValueError, match="access_log_format"):
        check_access_log_format(fmt)
    with pytest.raises(ValueError, match="access_log_format"):
        AccessLogger(fmt)


# Config checks access_log_format itself (the config layer may not import this
# module); these keep its check and check_access_log_format in step.


def test_config_knows_the_integer_atoms() -> None:
    assert config_fields.ACCESS_LOG_INT_ATOMS == tricorn_logging._INT_ATOMS


@pytest.mark.parametrize(
    "fmt",
    [
        "%(h)d",
        "%(h",
        "%s %s",
        "100%",
        "%(D)d %(T)05d %(h)s 100%%",
        "%(D)s %(L)f",
        "%(L)d",
        "%(s)d",
        "%({user-agent}i)s",
        "%(h)s %s",
        DEFAULT_ACCESS_LOG_FORMAT,
    ],
)
def test_config_and_logging_agree_on_formats(fmt: str) -> None:
    try:
        check_access_log_format(fmt)
    except ValueError:
        with pytest.raises(ConfigError, match="access_log_format"):
            Config(access_log_format=fmt)
    else:
        assert Config(access_log_format=fmt).access_log_format == fmt


def test_integer_atoms_accept_integer_formats() -> None:
    check_access_log_format("%(D)d %(T)05d %(h)s 100%%")
    assert log_line("%(D)d %(T)03d 100%%") == "2062500 002 100%"


# ---------------------------------------------------------------------------
# JSON lines


def test_json_lines() -> None:
    logger, collector = collecting_logger()
    access = AccessLogger(json_lines=True, logger=logger, clock=lambda: NOW)
    access.log(SCOPE, 201, RESPONSE_HEADERS, 12, DURATION)
    [message] = collector.messages
    assert "\n" not in message
    entry = json.loads(message)
    assert list(entry) == list(JSON_FIELDS)
    assert entry == {
        "time": "2024-05-01T10:00:00.250+00:00",
        "remote": "192.0.2.7:51234",
        "method": "POST",
        "path": "/café/x",
        "query": "a=1&b=2",
        "http_version": "1.1",
        "status": 201,
        "bytes": 12,
        "duration_ms": 2062.5,
        "user_agent": "curl/8.5",
        "referer": "https://ref.example/",
    }


def test_json_lines_with_missing_values() -> None:
    logger, collector = collecting_logger()
    scope = {**SCOPE, "client": None, "headers": [], "path": "/a\nb"}
    AccessLogger(json_lines=True, logger=logger, clock=lambda: NOW).log(scope, 0, [], 0, 0.0)
    entry = json.loads(collector.messages[0])
    assert entry["remote"] is None
    assert entry["status"] is None
    assert entry["user_agent"] is None
    assert entry["referer"] is None
    assert entry["path"] == "/a\nb"


def test_json_lines_are_written_without_the_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(
        loglevel="info", errorlog=None, accesslog="-", logconfig=None, logconfig_dict=None
    )
    AccessLogger(json_lines=True, clock=lambda: NOW).log(SCOPE, 201, [], 12, DURATION)
    out = capsys.readouterr().out
    assert json.loads(out)["status"] == 201


# ---------------------------------------------------------------------------
# laziness: nothing is computed unless a line is written


class CountingScope(Mapping[str, Any]):
    def __init__(self, scope: Mapping[str, Any]) -> None:
        self._scope = scope
        self.keys_read: list[str] = []

    def __getitem__(self, key: str) -> Any:
        self.keys_read.append(key)
        return self._scope[key]

    def __iter__(self) -> Iterator[str]:
        self.keys_read.append("<iter>")
        return iter(self._scope)

    def __len__(self) -> int:
        self.keys_read.append("<len>")
        return len(self._scope)


class CountingHeaders(Sequence[tuple[bytes, bytes]]):
    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._headers = headers
        self.reads = 0

    @overload
    def __getitem__(self, index: int) -> tuple[bytes, bytes]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[bytes, bytes]]: ...
    def __getitem__(
        self, index: int | slice
    ) -> tuple[bytes, bytes] | Sequence[tuple[bytes, bytes]]:
        self.reads += 1
        return self._headers[index]

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        self.reads += 1
        return iter(self._headers)

    def __len__(self) -> int:
        self.reads += 1
        return len(self._headers)


class CountingClock:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return NOW


@pytest.mark.parametrize("json_lines", [False, True])
def test_nothing_is_computed_when_disabled(json_lines: bool) -> None:
    logger, collector = collecting_logger(level=logging.WARNING)
    clock = CountingClock()
    access = AccessLogger(
        DEFAULT_ACCESS_LOG_FORMAT, json_lines=json_lines, logger=logger, clock=clock
    )
    scope = CountingScope(SCOPE)
    headers = CountingHeaders(RESPONSE_HEADERS)
    assert not access.enabled
    access.log(scope, 200, headers, 12, DURATION)
    assert (scope.keys_read, headers.reads, clock.calls, collector.messages) == ([], 0, 0, [])


def test_nothing_is_computed_when_a_filter_drops_the_record() -> None:
    logger, collector = collecting_logger()
    logger.addFilter(lambda record: False)
    scope = CountingScope(SCOPE)
    headers = CountingHeaders(RESPONSE_HEADERS)
    access = AccessLogger(DEFAULT_ACCESS_LOG_FORMAT, logger=logger, clock=lambda: NOW)
    assert access.enabled
    access.log(scope, 200, headers, 12, DURATION)
    assert (scope.keys_read, headers.reads, collector.messages) == ([], 0, [])


def test_only_the_atoms_in_the_format_are_computed() -> None:
    logger, collector = collecting_logger()
    scope = CountingScope(SCOPE)
    headers = CountingHeaders(RESPONSE_HEADERS)
    AccessLogger("%(h)s %(s)s", logger=logger, clock=lambda: NOW).log(
        scope, 200, headers, 12, DURATION
    )
    assert collector.messages == ["192.0.2.7:51234 200"]
    assert scope.keys_read == ["client"]
    assert headers.reads == 0


# ---------------------------------------------------------------------------
# configure_logging


def configure(**overrides: Any) -> None:
    settings: dict[str, Any] = {
        "loglevel": "info",
        "errorlog": "-",
        "accesslog": None,
        "logconfig": None,
        "logconfig_dict": None,
    }
    settings.update(overrides)
    configure_logging(**settings)


def test_access_log_is_off_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    assert not AccessLogger().enabled
    assert not access_logger.isEnabledFor(logging.INFO)
    emit_request()
    assert capsys.readouterr() == ("", "")


def test_accesslog_dash_writes_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    configure(accesslog="-")
    assert AccessLogger().enabled
    emit_request()
    out, err = capsys.readouterr()
    assert re.fullmatch(PREFIX + re.escape(DEFAULT_LINE) + "\n", out)
    assert err == ""


def test_accesslog_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    configure(accesslog=str(path))
    emit_request()
    emit_request()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(PREFIX + re.escape(DEFAULT_LINE), line) for line in lines)


def test_loglevel_above_info_silences_the_access_log() -> None:
    configure(accesslog="-", loglevel="WARNING")
    assert not AccessLogger().enabled


def test_errorlog_dash_writes_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    error_logger.info("serving on %s", "127.0.0.1:8000")
    error_logger.debug("not shown")
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(PREFIX + r"serving on 127\.0\.0\.1:8000\n", err)
    assert "[INFO]" in err


def test_errorlog_file(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    configure(errorlog=str(path))
    error_logger.error("boom %d", 42)
    [line] = path.read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(PREFIX + "boom 42", line)
    assert "[ERROR]" in line


def test_errorlog_none_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    root = Collector()
    logging.root.addHandler(root)
    configure(errorlog=None)
    error_logger.error("nobody hears this")
    assert capsys.readouterr() == ("", "")
    assert root.messages == []


def test_debug_lowers_the_error_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure(loglevel="warning", debug=True)
    error_logger.debug("detail")
    assert "[DEBUG] detail" in capsys.readouterr().err


def test_unknown_loglevel() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure(loglevel="loud")


def test_unopenable_log_file(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no-such-dir"):
        configure(errorlog="-", accesslog=str(tmp_path / "no-such-dir" / "access.log"))


def test_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    theirs = Collector()
    error_logger.addHandler(theirs)
    path = tmp_path / "access.log"
    for _ in range(3):
        configure(accesslog=str(path))
    error_logger.info("once")
    emit_request()
    assert capsys.readouterr().err.count("once") == 1
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1
    # Handlers added by someone else are kept.
    assert theirs.messages == ["once"]


def test_reconfigure_turns_the_access_log_off(capsys: pytest.CaptureFixture[str]) -> None:
    configure(accesslog="-")
    configure(accesslog=None)
    assert not AccessLogger().enabled
    emit_request()
    assert capsys.readouterr().out == ""


# logconfig: each turns tricorn.access on with a file handler writing bare messages.


def dict_schema(path: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bare": {"format": "%(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "bare"}
        },
        "loggers": {"tricorn.access": {"level": "INFO", "handlers": ["file"], "propagate": False}},
    }


INI = """\
[loggers]
keys = root, access

[handlers]
keys = file

[formatters]
keys = bare

[logger_root]
level = WARNING
handlers =

[logger_access]
qualname = tricorn.access
level = INFO
handlers = file
propagate = 0

[handler_file]
class = FileHandler
args = ('%(here)s/out.log', 'a')
formatter = bare

[formatter_bare]
format = %(message)s
"""

TOML = """\
version = 1
disable_existing_loggers = false

[formatters.bare]
format = "%(message)s"

[handlers.file]
class = "logging.FileHandler"
filename = "{path}"
formatter = "bare"

[loggers."tricorn.access"]
level = "INFO"
handlers = ["file"]
propagate = false
"""


def write_logconfig(kind: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "out.log"
    if kind == "ini":
        config = tmp_path / "logging.ini"
        config.write_text(INI, encoding="utf-8")
        return {"logconfig": str(config)}
    if kind == "json":
        config = tmp_path / "logging.json"
        config.write_text(json.dumps(dict_schema(out)), encoding="utf-8")
        return {"logconfig": f"json:{config}"}
    if kind == "toml":
        config = tmp_path / "logging.toml"
        config.write_text(TOML.format(path=out.as_posix()), encoding="utf-8")
        return {"logconfig": f"toml:{config}"}
    return {"logconfig_dict": dict_schema(out)}


@pytest.mark.parametrize("kind", ["ini", "json", "toml", "dict"])
def test_logconfig(kind: str, tmp_path: Path) -> None:
    configure(accesslog=None, **write_logconfig(kind, tmp_path))
    assert AccessLogger().enabled
    emit_request()
    assert (tmp_path / "out.log").read_text(encoding="utf-8") == DEFAULT_LINE + "\n"


@pytest.mark.parametrize("prefix", ["", "json:", "toml:"])
def test_missing_logconfig_file(prefix: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    with pytest.raises(FileNotFoundError, match=r"missing\.conf"):
        configure(logconfig=f"{prefix}{missing}")


@pytest.mark.parametrize(
    ("prefix", "content", "message"),
    [
        ("json:", "{not json", "is not valid JSON"),
        ("toml:", "version = ", "is not valid TOML"),
        ("json:", "[1, 2]", "must be a mapping"),
        ("json:", '{"handlers": {}}', "cannot be applied"),
        ("toml:", 'version = 1\n[handlers.h]\nclass = "no.such.Handler"\n', "cannot be applied"),
        ("", "[loggers]\nkeys = root\n", "cannot be applied"),
        ("", "not an ini file", "cannot be applied"),
    ],
)
def test_bad_logconfig(prefix: str, content: str, message: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        configure(logconfig=f"{prefix}{config}")
    assert "bad.conf" in str(info.value)


def test_bad_logconfig_dict() -> None:
    with pytest.raises(ValueError, match=r"^logconfig_dict cannot be applied: .*version: 99"):
        configure(logconfig_dict={"version": 99})


def test_logconfig_error_gives_the_wrapped_cause(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"version": 1, "handlers": {"h": {"class": "no.Such"}}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"handler 'h'.*No module named 'no'") as info:
        configure(logconfig=f"json:{config}")
    assert "\n" not in str(info.value)


# --- statsd ------------------------------------------------------------------------------


def test_statsd_client_lines_prefix_and_tags() -> None:
    import socket as socket_module

    from tricorn.logging import StatsdClient, StatsdLogHandler

    with socket_module.socket(socket_module.AF_INET, socket_module.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(2)
        client = StatsdClient(f"127.0.0.1:{server.getsockname()[1]}", "app", "a:b")
        try:
            client.request(201, 0.0125)
            client.request(None, 0.5)
            handler = StatsdLogHandler(client)
            handler.emit(logging.LogRecord("x", logging.WARNING, "f", 1, "w", None, None))
            lines = [server.recv(256).decode() for _ in range(6)]
        finally:
            client.close()
    assert lines == [
        "app.hypercorn.requests:1|c|@1.0|#a:b",
        "app.hypercorn.request.duration:12.500|ms|#a:b",
        "app.hypercorn.request.status.201:1|c|@1.0|#a:b",
        "app.hypercorn.requests:1|c|@1.0|#a:b",
        "app.hypercorn.request.duration:500.000|ms|#a:b",
        "app.hypercorn.log.warning:1|c|@1.0|#a:b",
    ]


@pytest.mark.parametrize(
    "address", ["localhost", "localhost:x", "host:0", ":99999", "host:8\u00b9"]
)
def test_statsd_client_needs_host_and_port(address: str) -> None:
    from tricorn.logging import StatsdClient

    with pytest.raises(ValueError, match="host:port"):
        StatsdClient(address)
