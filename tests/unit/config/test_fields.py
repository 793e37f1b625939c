"""The settings table and the Config built from it."""

from __future__ import annotations

import dataclasses
import ssl

import pytest

from tricorn.config import FIELDS, FIELDS_BY_KEY, Config
from tricorn.config.fields import HYPERCORN_FIELDS, TRICORN_FIELDS, field_for
from tricorn.errors import ConfigError

HYPERCORN_KEYS = [
    "access_log_format",
    "accesslog",
    "alpn_protocols",
    "alt_svc_headers",
    "application_path",
    "backlog",
    "bind",
    "ca_certs",
    "certfile",
    "ciphers",
    "debug",
    "dogstatsd_tags",
    "errorlog",
    "graceful_timeout",
    "group",
    "h11_max_incomplete_size",
    "h11_pass_raw_headers",
    "h2_max_concurrent_streams",
    "h2_max_header_list_size",
    "h2_max_inbound_frame_size",
    "include_date_header",
    "include_server_header",
    "insecure_bind",
    "keep_alive_max_requests",
    "keep_alive_timeout",
    "keyfile",
    "keyfile_password",
    "logconfig",
    "logconfig_dict",
    "loglevel",
    "max_app_queue_size",
    "max_requests",
    "max_requests_jitter",
    "pid_path",
    "quic_bind",
    "read_timeout",
    "root_path",
    "server_names",
    "shutdown_timeout",
    "ssl_handshake_timeout",
    "startup_timeout",
    "statsd_host",
    "statsd_prefix",
    "umask",
    "use_reloader",
    "user",
    "verify_flags",
    "verify_mode",
    "websocket_max_message_size",
    "websocket_ping_interval",
    "worker_class",
    "workers",
    "wsgi_max_body_size",
]

TRICORN_KEYS = [
    "app",
    "header_read_timeout",
    "body_read_timeout",
    "write_timeout",
    "max_connections",
    "h2_initial_window_size",
    "h2_connection_window_size",
    "h2_ping_interval",
    "h2_max_control_frames",
    "quic_idle_timeout",
    "quic_max_datagram_size",
    "quic_retry",
    "quic_max_concurrent_streams",
    "quic_stream_window",
    "quic_connection_window",
    "quic_congestion_control",
    "websocket_permessage_deflate",
    "websocket_ping_timeout",
    "websocket_close_timeout",
    "forwarded_allow_ips",
    "forwarded_trusted_hops",
    "forwarded_headers",
    "proxy_protocol",
    "metrics_bind",
    "access_log_json",
    "wsgi_max_threads",
    "reload_dirs",
    "reload_includes",
    "reload_excludes",
    "http1_parser",
]


def test_table_has_every_hypercorn_key_and_the_tricorn_additions():
    assert [f.key for f in HYPERCORN_FIELDS] == HYPERCORN_KEYS
    assert [f.key for f in TRICORN_FIELDS] == TRICORN_KEYS
    assert all(f.tricorn for f in TRICORN_FIELDS)
    assert not any(f.tricorn for f in HYPERCORN_FIELDS)


def test_config_attributes_are_exactly_the_table_keys_with_the_table_types():
    declared = {f.name: f.type for f in dataclasses.fields(Config)}
    assert list(declared) == [f.key for f in FIELDS]
    for field in FIELDS:
        assert declared[field.key] == field.kind.annotation, field.key


def test_defaults_come_from_the_table_and_pass_their_own_check():
    config = Config()
    for field in FIELDS:
        assert getattr(config, field.key) == field.default, field.key
        assert field.check(field.default) == field.default, field.key


def test_flags_and_env_vars_are_unique_and_well_formed():
    flags = [flag for field in FIELDS for flag in field.flags]
    assert len(flags) == len(set(flags))
    assert all(flag.startswith("-") for flag in flags)
    assert all(field.env == "TRICORN_" + field.key.upper() for field in FIELDS)
    assert all(field.doc.endswith(".") for field in FIELDS)


def test_hypercorn_defaults_except_the_shorter_handshake_timeout():
    config = Config()
    assert config.bind == ("127.0.0.1:8000",)
    assert config.alpn_protocols == ("h2", "http/1.1")
    assert config.keep_alive_timeout == 5.0
    assert config.graceful_timeout == 3.0
    assert config.workers == 1
    assert config.worker_class == "asyncio"
    assert config.errorlog == "-"
    assert config.accesslog is None
    assert config.ssl_handshake_timeout == 10.0


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("workers", 0, 0),
        ("keep_alive_timeout", 2, 2.0),
        ("read_timeout", None, None),
        ("bind", "unix:/tmp/a.sock", ("unix:/tmp/a.sock",)),
        ("bind", ["[::1]:80", "fd://3"], ("[::1]:80", "fd://3")),
        ("loglevel", "debug", "DEBUG"),
        ("root_path", "/api/", "/api"),
        ("verify_mode", "CERT_REQUIRED", ssl.CERT_REQUIRED),
        ("verify_mode", 1, ssl.CERT_OPTIONAL),
        ("verify_flags", "VERIFY_X509_STRICT", ssl.VERIFY_X509_STRICT),
        ("verify_flags", ["VERIFY_CRL_CHECK_LEAF", "VERIFY_X509_STRICT"], ssl.VerifyFlags(36)),
        ("umask", 0o077, 0o077),
        ("forwarded_allow_ips", ["10.0.0.0/8", "::1", "*"], ("10.0.0.0/8", "::1", "*")),
        ("app", "examples.hello:app", "examples.hello:app"),
        ("app", "pkg.mod:make_app()", "pkg.mod:make_app()"),
        ("logconfig_dict", {"version": 1}, {"version": 1}),
        ("metrics_bind", "127.0.0.1:9100", "127.0.0.1:9100"),
        ("forwarded_trusted_hops", 2, 2),
        ("forwarded_headers", "forwarded", "forwarded"),
        ("reload_dirs", "src", ("src",)),
        ("reload_includes", ["*.toml", "templates/*.html"], ("*.toml", "templates/*.html")),
        ("reload_excludes", [".py[cod]", "build"], (".py[cod]", "build")),
    ],
)
def test_good_values_are_normalised(key, value, expected):
    config = Config(**{key: value})
    assert getattr(config, key) == expected


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("workers", -1, ">= 0"),
        ("workers", "4", "whole number"),
        ("workers", True, "whole number"),
        ("workers", 2.0, "whole number"),
        ("worker_class", "gevent", "asyncio, uvloop, trio"),
        ("keep_alive_timeout", "abc", "number of seconds"),
        ("keep_alive_timeout", 0, "> 0"),
        ("keep_alive_timeout", float("nan"), "number of seconds"),
        ("graceful_timeout", -1, ">= 0"),
        ("debug", "yes", "true or false"),
        ("bind", ["localhost:99999"], "binds"),
        ("bind", ["::1:80"], "binds"),
        ("bind", [80], "binds"),
        ("quic_bind", ["unix:/tmp/q"], "UDP binds"),
        ("loglevel", "verbose", "DEBUG, INFO"),
        ("umask", 0o1000, "0o777"),
        ("verify_mode", "CERT_MAYBE", "CERT_NONE"),
        ("verify_flags", "VERIFY_NOTHING", "VerifyFlags"),
        ("alpn_protocols", ["h3"], "h2, http/1.1"),
        ("forwarded_allow_ips", ["not-an-ip"], "CIDRs"),
        ("forwarded_trusted_hops", -1, ">= 0"),
        ("forwarded_trusted_hops", "2", "whole number"),
        ("forwarded_headers", "both", "x-forwarded"),
        ("reload_dirs", [""], "directories"),
        ("reload_includes", ["*.py", ""], "glob patterns"),
        ("reload_excludes", ["/"], "glob patterns"),
        ("reload_excludes", [3], "glob patterns"),
        ("h2_initial_window_size", 2**31, "2147483647"),
        ("h2_max_inbound_frame_size", 1024, "from 16384"),
        ("app", "no app here", "module:attribute"),
        ("logconfig_dict", [1], "table"),
        ("certfile", "", "file path"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ConfigError) as info:
        Config(**{key: value})
    err = info.value
    assert (err.key, err.value) == (key, value)
    assert allowed in err.allowed
    line = err.line()
    assert "\n" not in line
    assert key in line
    assert repr(value) in line


def test_tls_needs_both_certfile_and_keyfile():
    with pytest.raises(ConfigError, match=r"keyfile.*certfile is set"):
        Config(certfile="cert.pem")
    with pytest.raises(ConfigError, match=r"certfile.*keyfile is set"):
        Config(keyfile="key.pem")
    assert Config(certfile="c.pem", keyfile="k.pem").ssl_enabled
    assert not Config().ssl_enabled


def test_quic_bind_needs_tls():
    with pytest.raises(ConfigError, match="quic_bind"):
        Config(quic_bind=("127.0.0.1:4433",))
    config = Config(quic_bind=("127.0.0.1:4433",), certfile="c.pem", keyfile="k.pem")
    assert config.quic_bind_addresses[0].port == 4433


def test_something_must_be_bound():
    with pytest.raises(ConfigError, match="at least one address"):
        Config(bind=())
    assert Config(bind=(), insecure_bind=("127.0.0.1:0",)).insecure_bind == ("127.0.0.1:0",)


def test_replace_checks_like_the_constructor():
    config = Config().replace(workers=3, bind=("127.0.0.1:0",))
    assert (config.workers, config.bind) == (3, ("127.0.0.1:0",))
    with pytest.raises(ConfigError):
        config.replace(workers=-5)
    with pytest.raises(ConfigError):
        dataclasses.replace(config, backlog=0)


def test_config_is_frozen_and_hides_the_key_password():
    config = Config(keyfile_password="s3cret")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2  # type: ignore[misc]
    assert "s3cret" not in repr(config)


def test_from_mapping_rejects_unknown_keys_with_a_hint():
    assert Config.from_mapping({"workers": 2}).workers == 2
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({"bnid": "127.0.0.1:80"})
    assert info.value.key == "bnid"
    assert "did you mean 'bind'?" in info.value.line()


def test_unknown_key_far_from_any_setting_points_to_the_docs():
    with pytest.raises(ConfigError, match=r"docs/configuration\.md"):
        field_for("zzzzzz")


def test_app_path_prefers_app_over_application_path():
    assert Config().app_path is None
    assert Config(application_path="a:b").app_path == "a:b"
    assert Config(application_path="a:b", app="c:d").app_path == "c:d"


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("debug", "yes", True),
        ("debug", "0", False),
        ("debug", "On", True),
        ("workers", "4", 4),
        ("read_timeout", "none", None),
        ("read_timeout", "", None),
        ("read_timeout", "2.5", 2.5),
        ("bind", "127.0.0.1:80, [::1]:80", ("127.0.0.1:80", "[::1]:80")),
        ("bind", "[::1]:80", ("[::1]:80",)),
        (
            "alt_svc_headers",
            '["h3=\\":443\\"; ma=60, h3-29=\\":443\\""]',
            ('h3=":443"; ma=60, h3-29=":443"',),
        ),
        ("umask", "077", 0o077),
        ("umask", "0o022", 0o022),
        ("umask", "18", 18),
        ("logconfig_dict", '{"version": 1}', {"version": 1}),
        ("verify_mode", "cert_none", ssl.CERT_NONE),
    ],
)
def test_text_values_parse_by_kind(key, text, expected):
    assert FIELDS_BY_KEY[key].parse(text) == expected


@pytest.mark.parametrize(
    ("key", "text"),
    [("debug", "maybe"), ("workers", "x"), ("workers", "1.5"), ("read_timeout", "soon"),
     ("logconfig_dict", "{nope")],
)  # fmt: skip
def test_bad_text_names_the_given_name(key, text):
    with pytest.raises(ConfigError) as info:
        FIELDS_BY_KEY[key].parse(text, name="TRICORN_X")
    assert (info.value.key, info.value.value) == ("TRICORN_X", text)


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [
        ("%(h)d", "a real number is required"),
        ("%(h", "incomplete format key"),
        ("%s %s", "not enough arguments"),
        ("100%", "incomplete format"),
    ],
)
def test_bad_access_log_format_is_a_config_error(fmt: str, reason: str):
    with pytest.raises(ConfigError) as info:
        Config(access_log_format=fmt)
    err = info.value
    assert (err.key, err.value) == ("access_log_format", fmt)
    assert "%-format over the access-log atoms" in err.hint
    assert reason in err.hint
    assert "\n" not in err.line()


@pytest.mark.parametrize(
    "fmt", ["%(D)d %(T)05d %(h)s 100%%", "%({user-agent}i)s %({x}o)s %({HOME}e)s", "plain"]
)
def test_good_access_log_formats(fmt: str):
    assert Config(access_log_format=fmt).access_log_format == fmt
