"""The tricorn command up to the point where it would serve: flags → Config,
priority of sources, and exit status 2 with one stderr line for bad config."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

import tricorn.protocol.http1
from tricorn.cli import build_parser, cli_settings, config_from_args, main
from tricorn.config import FIELDS, Config

REPO = Path(__file__).resolve().parents[2]


def run_tricorn(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRICORN_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tricorn", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- subprocess: exits before serving ------------------------------------------------------


def test_unknown_toml_key(tmp_path: Path):
    (tmp_path / "c.toml").write_text('app = "x:app"\nkeep_alive_timout = 5\n')
    line = one_error_line(run_tricorn("-c", "c.toml", cwd=tmp_path))
    assert "keep_alive_timout" in line
    assert "did you mean 'keep_alive_timeout'?" in line


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("workers = -1", ["workers", "-1", ">= 0"]),
        ('worker_class = "gevent"', ["worker_class", "'gevent'", "asyncio, uvloop, trio"]),
        ('keep_alive_timeout = "abc"', ["keep_alive_timeout", "'abc'", "number of seconds"]),
        ("forwarded_trusted_hops = -1", ["forwarded_trusted_hops", "-1", ">= 0"]),
        ('reload_includes = ["*.toml", ""]', ["reload_includes", "''", "glob pattern"]),
    ],
)
def test_bad_toml_value(tmp_path: Path, toml: str, expected: list[str]):
    (tmp_path / "c.toml").write_text(f'app = "x:app"\n{toml}\n')
    line = one_error_line(run_tricorn("-c", "c.toml", cwd=tmp_path))
    assert all(part in line for part in expected), line


def test_bad_env_var(tmp_path: Path):
    line = one_error_line(run_tricorn("x:app", cwd=tmp_path, env={"TRICORN_WORKERS": "x"}))
    assert "TRICORN_WORKERS" in line
    assert "'x'" in line


def test_bad_flag_value(tmp_path: Path):
    line = one_error_line(run_tricorn("x:app", "-w", "many", cwd=tmp_path))
    assert "--workers = 'many'" in line


def test_missing_reload_dir(tmp_path: Path):
    line = one_error_line(
        run_tricorn("x:app", "-w", "1", "--reload", "--reload-dir", "nope", cwd=tmp_path)
    )
    assert line == "config error: reload_dirs = ['nope']: existing directories"


def test_missing_config_file(tmp_path: Path):
    line = one_error_line(run_tricorn("-c", "missing.toml", "x:app", cwd=tmp_path))
    assert "missing.toml" in line


def test_no_app(tmp_path: Path):
    line = one_error_line(run_tricorn(cwd=tmp_path))
    assert "app" in line
    assert "module:attribute" in line


def test_unknown_flag_is_one_line_too(tmp_path: Path):
    line = one_error_line(run_tricorn("x:app", "--wrokers", "2", cwd=tmp_path))
    assert "--wrokers" in line


# Logging settings are applied just before serving; their errors are config errors too.
LOGGING_ERRORS = [
    (
        ["--log-config", "json:log.json"],
        {"log.json": '{"handlers": {}}'},
        ["logconfig = 'json:log.json'", "log.json", "doesn't specify a version"],
    ),
    (
        ["--log-config", "log.ini"],
        {},
        ["logconfig = 'log.ini'", "No such file or directory"],
    ),
    (
        ["-c", "c.toml"],
        {"c.toml": "[logconfig_dict]\nversion = 1\nhandlers.h.class = 'no.Such'\n"},
        ["logconfig_dict = {", "handler 'h'", "No module named 'no'"],
    ),
    (
        ["--error-logfile", "missing/err.log"],
        {},
        ["errorlog = 'missing/err.log'", "No such file or directory"],
    ),
    (
        ["--access-logfile", "missing/access.log"],
        {},
        ["accesslog = 'missing/access.log'", "No such file or directory"],
    ),
    (
        ["--access-logformat", "%(s)d"],
        {},
        ["--access-logformat = '%(s)d'", "a real number is required"],
    ),
    (
        ["-c", "c.toml"],
        {"c.toml": "access_log_format = '%(h'\n"},
        ["access_log_format = '%(h'", "incomplete format key"],
    ),
]


@pytest.mark.parametrize(("argv", "files", "expected"), LOGGING_ERRORS)
def test_logging_setting_errors_name_the_key(
    tmp_path: Path, argv: list[str], files: dict[str, str], expected: list[str]
):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    # examples.hello lives in the repository; nothing is bound if the check works.
    argv = ["examples.hello:app", "-b", "127.0.0.1:0", *argv]
    line = one_error_line(run_tricorn(*argv, cwd=tmp_path, env={"PYTHONPATH": str(REPO)}))
    assert all(part in line for part in expected), line


def test_version(tmp_path: Path):
    result = run_tricorn("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("tricorn ")
    # The compiled build says so (setup.py: its modules are C extensions).
    compiled = not tricorn.protocol.http1.__file__.endswith(".py")
    assert result.stdout.rstrip().endswith(" (compiled)") == compiled


# --- in process: flags to settings ---------------------------------------------------------

HYPERCORN_FLAGS = [
    (["-b", "127.0.0.1:1", "--bind", "unix:/t.sock"], "bind", ("127.0.0.1:1", "unix:/t.sock")),
    (["--insecure-bind", "127.0.0.1:2"], "insecure_bind", ("127.0.0.1:2",)),
    (["--certfile", "c", "--keyfile", "k", "--quic-bind", ":3"], "quic_bind", (":3",)),
    (["--certfile", "c.pem", "--keyfile", "k.pem"], "certfile", "c.pem"),
    (["--certfile", "c", "--keyfile", "k", "--keyfile-password", "pw"], "keyfile_password", "pw"),
    (["--ca-certs", "ca.pem"], "ca_certs", "ca.pem"),
    (["--ciphers", "ECDHE+CHACHA20"], "ciphers", "ECDHE+CHACHA20"),
    (["--verify-mode", "CERT_REQUIRED"], "verify_mode", 2),
    (["-k", "trio"], "worker_class", "trio"),
    (["--worker-class", "uvloop"], "worker_class", "uvloop"),
    (["-w", "0"], "workers", 0),
    (["--workers", "3"], "workers", 3),
    (["--root-path", "/api/"], "root_path", "/api"),
    (["--access-logfile", "-"], "accesslog", "-"),
    (["--access-logformat", "%(h)s"], "access_log_format", "%(h)s"),
    (["--error-logfile", "err.log"], "errorlog", "err.log"),
    (["--log-file", "err.log"], "errorlog", "err.log"),
    (["--log-level", "warning"], "loglevel", "WARNING"),
    (["--log-config", "json:log.json"], "logconfig", "json:log.json"),
    (["--keep-alive", "7"], "keep_alive_timeout", 7.0),
    (["--graceful-timeout", "1.5"], "graceful_timeout", 1.5),
    (["--read-timeout", "30"], "read_timeout", 30.0),
    (["--backlog", "64"], "backlog", 64),
    (["--reload"], "use_reloader", True),
    (["-p", "t.pid"], "pid_path", "t.pid"),
    (["--pid", "t.pid"], "pid_path", "t.pid"),
    (["--server-name", "a.test", "--server-name", "b.test"], "server_names", ("a.test", "b.test")),
    (["--max-requests", "100"], "max_requests", 100),
    (["--max-requests-jitter", "10"], "max_requests_jitter", 10),
    (["-u", "1000"], "user", 1000),
    (["-g", "1000"], "group", 1000),
    (["-m", "077"], "umask", 0o077),
    (["--umask", "0o022"], "umask", 0o022),
    (["--statsd-host", "127.0.0.1:8125"], "statsd_host", "127.0.0.1:8125"),
    (["--statsd-prefix", "web"], "statsd_prefix", "web"),
    (["--websocket-ping-interval", "20"], "websocket_ping_interval", 20.0),
    (["--debug"], "debug", True),
    (["--no-include-date-header"], "include_date_header", False),
    (["--header-read-timeout", "3"], "header_read_timeout", 3.0),
    (["--forwarded-allow-ips", "10.0.0.0/8"], "forwarded_allow_ips", ("10.0.0.0/8",)),
    (["--forwarded-trusted-hops", "2"], "forwarded_trusted_hops", 2),
    (["--reload-dir", "src", "--reload-dir", "conf"], "reload_dirs", ("src", "conf")),
    (["--reload-include", "*.toml", "--reload-include", ".env"], "reload_includes",
     ("*.toml", ".env")),
    (["--reload-exclude", "build"], "reload_excludes", ("build",)),
    (["--proxy-protocol"], "proxy_protocol", True),
    (["--no-websocket-permessage-deflate"], "websocket_permessage_deflate", False),
    (["--logconfig-dict", '{"version": 1}'], "logconfig_dict", {"version": 1}),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "key", "expected"), HYPERCORN_FLAGS)
def test_flag_sets_its_setting(argv: list[str], key: str, expected: object):
    config = config_from_args(argv, env={})
    assert getattr(config, key) == expected


def test_every_setting_has_a_flag():
    actions = {action.dest for action in build_parser()._actions}
    assert {field.key for field in FIELDS} <= actions


def test_only_given_flags_count():
    args = build_parser().parse_args(["-w", "2"])
    assert cli_settings(args) == {"workers": "2"}
    assert cli_settings(build_parser().parse_args([])) == {}


def test_positional_app_overrides_the_app_setting(tmp_path: Path):
    (tmp_path / "c.toml").write_text('app = "from.file:app"\n')
    config_path = str(tmp_path / "c.toml")
    assert config_from_args(["-c", config_path], env={}).app == "from.file:app"
    assert config_from_args(["-c", config_path, "cli.mod:app"], env={}).app == "cli.mod:app"


def test_priority_defaults_file_env_cli(tmp_path: Path):
    (tmp_path / "c.toml").write_text("workers = 2\nbacklog = 20\nkeep_alive_timeout = 7\n")
    argv = ["-c", str(tmp_path / "c.toml"), "--keep-alive", "9"]
    env = {"TRICORN_BACKLOG": "30", "TRICORN_KEEP_ALIVE_TIMEOUT": "8"}
    config = config_from_args(argv, env=env)
    assert config.graceful_timeout == Config().graceful_timeout
    assert (config.workers, config.backlog, config.keep_alive_timeout) == (2, 30, 9.0)


def test_main_returns_2_on_config_error(capsys: pytest.CaptureFixture[str]):
    assert main(["x:app", "--backlog", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--backlog = '0'" in err


def test_the_parser_never_asks_shutil_for_the_terminal(monkeypatch: pytest.MonkeyPatch):
    # argparse's formatter measures the terminal with shutil unless given a
    # width, and makes one for every option added: shutil (with bz2 and
    # lzma) would be in every server process for the parser's sake.
    import shutil

    def refuse(*args: object, **kwargs: object) -> os.terminal_size:
        raise AssertionError("shutil.get_terminal_size called")

    monkeypatch.setattr(shutil, "get_terminal_size", refuse)
    description = "Serve an ASGI application over HTTP/1.1, HTTP/2 and HTTP/3."  # (61 chars)
    sizes = {}
    for columns in ("60", "120", "nonsense"):  # (not a number, and no terminal under pytest: 80)
        monkeypatch.setenv("COLUMNS", columns)
        text = build_parser().format_help()
        assert "--certfile" in text
        sizes[columns] = (description in text, len(text.splitlines()))
    assert sizes["60"][0] is False  # wrapped at 58 (COLUMNS less argparse's margin)
    assert sizes["120"][0] is True
    assert sizes["nonsense"][0] is True
    assert sizes["60"][1] > sizes["nonsense"][1] > sizes["120"][1]
