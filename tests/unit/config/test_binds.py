"""Bind parsing: Hypercorn's forms, and errors for everything else."""

from __future__ import annotations

import pytest

from tricorn.config import BindAddress, parse_bind
from tricorn.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "127.0.0.1:8000",
            BindAddress(kind="tcp", text="127.0.0.1:8000", host="127.0.0.1", port=8000),
        ),
        ("localhost:0", BindAddress(kind="tcp", text="localhost:0", host="localhost", port=0)),
        ("example.com", BindAddress(kind="tcp", text="example.com", host="example.com", port=8000)),
        (":443", BindAddress(kind="tcp", text=":443", host="", port=443)),
        ("[::1]:8443", BindAddress(kind="tcp", text="[::1]:8443", host="::1", port=8443)),
        ("[::]", BindAddress(kind="tcp", text="[::]", host="::", port=8000)),
        (
            "unix:/run/app.sock",
            BindAddress(kind="unix", text="unix:/run/app.sock", path="/run/app.sock"),
        ),
        ("unix:rel.sock", BindAddress(kind="unix", text="unix:rel.sock", path="rel.sock")),
        ("fd://3", BindAddress(kind="fd", text="fd://3", fd=3)),
    ],
)
def test_good_binds(text, expected):
    assert parse_bind(text) == expected


def test_ipv6_is_known_from_the_host():
    assert parse_bind("[::1]:80").is_ipv6
    assert not parse_bind("127.0.0.1:80").is_ipv6
    assert not parse_bind("unix:/x").is_ipv6


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:65536", "port must be a number"),
        ("127.0.0.1:-1", "port must be a number"),
        ("127.0.0.1:", "port must be a number"),
        ("127.0.0.1:\u00b9", "port must be a number"),  # (isdigit, but not to int())
        ("::1:8000", "brackets"),
        ("[::1:8000", "closing ']'"),
        ("[::1]8000", "closing ']'"),
        ("[not-v6]:80", "not an IPv6 address"),
        ("bad host:80", "not a host name"),
        ("unix:", "needs a path"),
        ("fd://", "file descriptor number"),
        ("fd://three", "file descriptor number"),
        ("fd://-1", "file descriptor number"),
        ("fd://\u00b3", "file descriptor number"),
    ],
)
def test_bad_binds_name_the_setting_and_say_why(text, hint):
    with pytest.raises(ConfigError) as info:
        parse_bind(text, key="insecure_bind")
    assert (info.value.key, info.value.value) == ("insecure_bind", text)
    assert hint in info.value.hint
    assert "host:port" in info.value.allowed
