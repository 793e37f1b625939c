"""Trusted proxy headers: which peer is believed, and what each header does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tricorn.asgi.scope import ScopeFactory
from tricorn.middleware.proxy_headers import TrustedProxies
from tricorn.protocol.events import ConnectionInfo, Request


def scope(*headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, Any]:
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": ("10.0.0.2", 5555),
        "root_path": "/base",
        "headers": [(b"host", b"internal:8000"), *headers],
    }


PROXIES = TrustedProxies(["10.0.0.0/8", "192.168.1.1"])


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.1.2.3", True),
        ("192.168.1.1", True),
        ("192.168.1.2", False),
        ("::1", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_trusts(peer: str | None, trusted: bool) -> None:
    assert PROXIES.trusts(peer) is trusted


def test_nobody_by_default_and_everyone_with_a_star() -> None:
    assert not TrustedProxies([])
    assert not TrustedProxies([]).trusts("127.0.0.1")
    assert TrustedProxies(["*"]).trusts("203.0.113.9")


def test_x_forwarded_headers() -> None:
    s = scope(
        (b"x-forwarded-for", b"203.0.113.7, 10.9.9.9"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"example.com"),
        (b"x-forwarded-prefix", b"/api/"),
    )
    PROXIES.apply(s)
    assert s["client"] == ("203.0.113.7", 0)  # 10.9.9.9 is a trusted hop: skipped
    assert s["scheme"] == "https"
    assert (b"host", b"example.com") in s["headers"]
    assert s["root_path"] == "/api/base"


def test_the_first_untrusted_hop_from_the_right_is_the_client() -> None:
    # A client can prepend anything; only what trusted proxies appended counts.
    s = scope((b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 192.168.1.1"))
    PROXIES.apply(s)
    assert s["client"] == ("203.0.113.7", 0)


def test_forwarded_wins_and_carries_ports_and_ipv6() -> None:
    s = scope(
        (b"forwarded", b'for="[2001:db8::7]:4711";proto=https;host=example.org'),
        (b"forwarded", b"for=10.0.0.9"),
        (b"x-forwarded-for", b"198.51.100.1"),
        kind="websocket",
    )
    PROXIES.apply(s)
    assert s["client"] == ("2001:db8::7", 4711)
    assert s["scheme"] == "wss"
    assert (b"host", b"example.org") in s["headers"]


def test_obfuscated_and_garbage_values_change_nothing() -> None:
    s = scope(
        (b"forwarded", b'for=_hidden;proto=gopher;host="bad host"'),
    )
    PROXIES.apply(s)
    assert s["client"] == ("10.0.0.2", 5555)
    assert s["scheme"] == "http"
    assert (b"host", b"internal:8000") in s["headers"]


def test_scope_factory_applies_only_for_a_trusted_peer() -> None:
    request = Request(
        1, b"GET", b"/", [(b"host", b"a"), (b"x-forwarded-for", b"203.0.113.7")], "1.1"
    )
    trusted = ScopeFactory(ConnectionInfo(("10.0.0.2", 1), ("10.0.0.1", 80)), "", {}, PROXIES)
    untrusted = ScopeFactory(ConnectionInfo(("198.51.100.3", 1), ("10.0.0.1", 80)), "", {}, PROXIES)
    assert trusted.http(request)["client"] == ("203.0.113.7", 0)
    assert untrusted.http(request)["client"] == ("198.51.100.3", 1)


header_names = st.sampled_from(
    [
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    ]
)


@given(st.lists(st.tuples(header_names, st.binary(max_size=80)), max_size=6))
def test_any_header_values_are_safe(headers: list[tuple[bytes, bytes]]) -> None:
    s = scope(*headers)
    TrustedProxies(["*"]).apply(s)
    client = s["client"]
    assert isinstance(client, tuple)
    assert isinstance(client[0], str)
    assert isinstance(client[1], int)
    assert s["scheme"] in ("http", "https")
    assert all(isinstance(v, bytes) for _, v in s["headers"])
    assert isinstance(s["root_path"], str)
