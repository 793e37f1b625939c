"""Loading: TOML, python:, file:, TRICORN_* and CLI values, in priority order."""

from __future__ import annotations

import ssl
import sys
import textwrap
from pathlib import Path

import pytest

from tricorn.config import Config, load_config
from tricorn.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_no_sources_gives_the_defaults():
    assert load_config() == Config()
    assert load_config(env={"HOME": "/root", "PATH": "/bin"}) == Config()


def test_toml_file(tmp_path: Path):
    path = write(
        tmp_path / "c.toml",
        """
        bind = "0.0.0.0:80"
        workers = 0
        keep_alive_timeout = 2
        verify_mode = "CERT_OPTIONAL"
        umask = 0o077
        [logconfig_dict]
        version = 1
        """,
    )
    config = load_config(config_path=path)
    assert config.bind == ("0.0.0.0:80",)
    assert config.workers == 0
    assert config.keep_alive_timeout == 2.0
    assert config.umask == 0o077
    assert config.logconfig_dict == {"version": 1}
    assert config.verify_mode == ssl.CERT_OPTIONAL


def test_unknown_toml_key_has_a_hint(tmp_path: Path):
    path = write(tmp_path / "c.toml", 'worker = 4\nbind = ["127.0.0.1:0"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(config_path=path)
    assert info.value.key == "worker"
    assert "did you mean 'workers'?" in info.value.line()


@pytest.mark.parametrize(
    ("toml", "key", "value"),
    [
        ("workers = -1", "workers", -1),
        ('worker_class = "gevent"', "worker_class", "gevent"),
        ('keep_alive_timeout = "abc"', "keep_alive_timeout", "abc"),
        ('bind = ["127.0.0.1:http"]', "bind", ["127.0.0.1:http"]),
    ],
)
def test_bad_toml_value(tmp_path: Path, toml: str, key: str, value: object):
    path = write(tmp_path / "c.toml", toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_path=path)
    assert (info.value.key, info.value.value) == (key, value)


def test_missing_file_names_the_path(tmp_path: Path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(config_path=path)
    assert (info.value.key, info.value.value) == ("config", path)
    assert "No such file" in info.value.line()


def test_bad_toml_gives_the_parser_message(tmp_path: Path):
    path = write(tmp_path / "c.toml", "workers = = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_path=path)
    assert info.value.allowed == "valid TOML"
    assert "line 1" in info.value.hint


def test_file_config_takes_public_non_callable_attributes(tmp_path: Path):
    path = write(
        tmp_path / "conf.py",
        """
        import os
        from ssl import VerifyMode

        _base = 8000
        bind = [f"127.0.0.1:{_base + 1}"]
        workers = 2

        def helper():
            return 1
        """,
    )
    config = load_config(config_path=f"file:{path}")
    assert (config.bind, config.workers) == (("127.0.0.1:8001",), 2)


def test_file_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="an existing Python file"):
        load_config(config_path=f"file:{tmp_path / 'missing.py'}")
    broken = write(tmp_path / "broken.py", "raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="boom"):
        load_config(config_path=f"file:{broken}")
    typo = write(tmp_path / "typo.py", "keep_alive = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'keep_alive_timeout'"):
        load_config(config_path=f"file:{typo}")


def test_python_config_module_and_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(
        tmp_path / "tricorn_test_conf.py",
        """
        workers = 3

        class Production:
            workers = 5
            backlog = 50
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_config(config_path="python:tricorn_test_conf").workers == 3
        config = load_config(config_path="python:tricorn_test_conf.Production")
        assert (config.workers, config.backlog) == (5, 50)
        with pytest.raises(ConfigError, match="importable"):
            load_config(config_path="python:tricorn_test_conf.Missing")
        with pytest.raises(ConfigError, match="importable"):
            load_config(config_path="python:no_such_module_here")
    finally:
        sys.modules.pop("tricorn_test_conf", None)


def test_env_vars_parse_by_type():
    env = {
        "TRICORN_WORKERS": "4",
        "TRICORN_DEBUG": "yes",
        "TRICORN_BIND": "127.0.0.1:1, [::1]:2",
        "TRICORN_READ_TIMEOUT": "none",
        "TRICORN_ACCESSLOG": "-",
        "OTHER": "ignored",
    }
    config = load_config(env=env)
    assert config.workers == 4
    assert config.debug is True
    assert config.bind == ("127.0.0.1:1", "[::1]:2")
    assert config.read_timeout is None
    assert config.accesslog == "-"


def test_bad_env_var_names_the_variable():
    with pytest.raises(ConfigError) as info:
        load_config(env={"TRICORN_WORKERS": "x"})
    assert (info.value.key, info.value.value) == ("TRICORN_WORKERS", "x")
    assert "whole number" in info.value.allowed


def test_unknown_env_var_has_a_hint():
    with pytest.raises(ConfigError) as info:
        load_config(env={"TRICORN_WROKERS": "2"})
    assert info.value.key == "TRICORN_WROKERS"
    assert "did you mean 'TRICORN_WORKERS'?" in info.value.line()


def test_cli_values_parse_text_and_name_the_flag():
    config = load_config(cli={"workers": "2", "debug": True, "bind": ["127.0.0.1:0"]})
    assert (config.workers, config.debug, config.bind) == (2, True, ("127.0.0.1:0",))
    with pytest.raises(ConfigError) as info:
        load_config(cli={"workers": "many"})
    assert info.value.key == "--workers"


def test_priority_defaults_file_env_cli(tmp_path: Path):
    path = write(
        tmp_path / "c.toml",
        "workers = 2\nbacklog = 20\nkeep_alive_timeout = 7\ngraceful_timeout = 9\n",
    )
    env = {"TRICORN_BACKLOG": "30", "TRICORN_KEEP_ALIVE_TIMEOUT": "8"}
    config = load_config(config_path=path, env=env, cli={"keep_alive_timeout": "9.5"})
    assert config.max_connections == Config().max_connections  # default
    assert config.workers == 2  # file
    assert config.graceful_timeout == 9.0  # file
    assert config.backlog == 30  # env over file
    assert config.keep_alive_timeout == 9.5  # cli over env and file


def test_settings_across_sources_are_checked_together(tmp_path: Path):
    path = write(tmp_path / "c.toml", 'certfile = "c.pem"\n')
    with pytest.raises(ConfigError, match="keyfile"):
        load_config(config_path=path)
    config = load_config(config_path=path, cli={"keyfile": "k.pem"})
    assert config.ssl_enabled


@pytest.mark.parametrize("name", ["development.toml", "production.toml", "push.toml", "trio.toml"])
def test_shipped_example_configs_load(name: str):
    config = load_config(config_path=str(REPO / "config" / name))
    assert config.app_path is not None
