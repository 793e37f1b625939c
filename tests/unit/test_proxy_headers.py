"""Trusted proxy headers: which peer is believed, and what each header does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tricorn.asgi.scope import ScopeFactory
from tricorn.middleware.proxy_headers import ProxyHeadersMiddleware, TrustedProxies
from tricorn.protocol.events import ConnectionInfo, Request


def scope(*headers: tuple[bytes, bytes], kind: str = "http") -> dict[str, Any]:
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": ("10.0.0.2", 5555),
        "root_path": "/base",
        "headers": [(b"host", b"internal:8000"), *headers],
    }


FORWARDED_PROXIES = TrustedProxies(["10.0.0.0/8"], headers="forwarded")
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


def test_forwarded_mode_carries_ports_and_ipv6_and_ignores_x_forwarded() -> None:
    s = scope(
        (b"forwarded", b'for="[2001:db8::7]:4711";proto=https;host=example.org'),
        (b"forwarded", b"for=10.0.0.9"),
        (b"x-forwarded-for", b"198.51.100.1"),
        (b"x-forwarded-prefix", b"/spoofed"),
        kind="websocket",
    )
    FORWARDED_PROXIES.apply(s)
    assert s["client"] == ("2001:db8::7", 4711)
    assert s["root_path"] == "/base"  # no /spoofed in front
    assert s["scheme"] == "wss"
    assert (b"host", b"example.org") in s["headers"]


def test_x_forwarded_mode_ignores_a_forwarded_header_the_client_sent() -> None:
    """nginx and HAProxy set X-Forwarded-For and pass a client's own
    Forwarded header through: the default mode must not believe it."""
    s = scope(
        (b"forwarded", b"for=203.0.113.66;proto=https;host=evil.example"),
        (b"x-forwarded-for", b"198.51.100.1"),
    )
    PROXIES.apply(s)
    assert s["client"] == ("198.51.100.1", 0)
    assert s["scheme"] == "http"
    assert (b"host", b"internal:8000") in s["headers"]


def test_a_family_name_is_checked() -> None:
    with pytest.raises(ValueError, match="x-forwarded"):
        TrustedProxies(["10.0.0.0/8"], headers="both")


def test_obfuscated_and_garbage_values_change_nothing() -> None:
    s = scope(
        (b"forwarded", b'for=_hidden;proto=gopher;host="bad host"'),
    )
    FORWARDED_PROXIES.apply(s)
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


@pytest.mark.parametrize("port", [b"\xb9", b"8\xb2", b"\xb3"])
def test_a_port_of_other_digits_is_no_port(port: bytes) -> None:
    """``str.isdigit`` is true of superscript digits, which ``int`` refuses:
    such a port is ignored, not a crash (found by the property test below)."""
    s = scope((b"x-forwarded-for", b"1.2.3.4:" + port))
    TrustedProxies(["*"]).apply(s)
    assert s["client"] == ("1.2.3.4", 0)
    s = scope((b"x-forwarded-for", b"[2001:db8::1]:" + port))
    TrustedProxies(["*"]).apply(s)
    assert s["client"] == ("2001:db8::1", 0)


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


# ---------------------------------------------------------------- forwarded_trusted_hops


def test_a_hop_count_trusts_any_peer_unless_addresses_are_listed_too() -> None:
    assert not TrustedProxies([], 0)
    counted = TrustedProxies([], 2)
    assert counted
    assert counted.trusts("198.51.100.3")
    assert counted.trusts(None)  # a UNIX socket peer
    both = TrustedProxies(["10.0.0.0/8"], 2)
    assert both.trusts("10.1.1.1")
    assert not both.trusts("198.51.100.3")  # both checks, never either
    with pytest.raises(ValueError, match=">= 0"):
        TrustedProxies([], -1)


@pytest.mark.parametrize(
    ("hops", "headers", "client", "scheme", "host", "root_path"),
    [
        # One proxy: the last value of each header.
        (1, [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7")], "203.0.113.7", "http", None, "/base"),
        # Two: the second from the right, whatever the client put before it.
        (
            2,
            [
                (b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.0.0.5"),
                (b"x-forwarded-proto", b"http, https, http"),
                (b"x-forwarded-host", b"evil.test, example.com, internal"),
                (b"x-forwarded-prefix", b"/evil, /api, /inner"),
            ],
            "203.0.113.7",
            "https",
            "example.com",
            "/api/base",
        ),
        # Repeated lines make one list.
        (
            2,
            [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.5")],
            "203.0.113.7",
            "http",
            None,
            "/base",
        ),
        # Too few values: that header did not pass N proxies, so it is ignored;
        # the others are read on their own.
        (
            2,
            [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https, http")],
            "10.0.0.2",
            "https",
            None,
            "/base",
        ),
        # The port, when X-Forwarded-For gives one.
        (1, [(b"x-forwarded-for", b"[2001:db8::7]:4711")], "2001:db8::7", "http", None, "/base"),
    ],
)
def test_x_forwarded_headers_by_hop_count(
    hops: int,
    headers: list[tuple[bytes, bytes]],
    client: str,
    scheme: str,
    host: str | None,
    root_path: str,
) -> None:
    s = scope(*headers)
    TrustedProxies([], hops).apply(s)
    assert s["client"][0] == client
    assert s["scheme"] == scheme
    assert (b"host", (host or "internal:8000").encode()) in s["headers"]
    assert s["root_path"] == root_path


def test_forwarded_by_hop_count() -> None:
    s = scope(
        (b"forwarded", b"for=6.6.6.6;proto=http, for=203.0.113.7;proto=https;host=example.org"),
        (b"forwarded", b'for="[2001:db8::5]:80";proto=http'),
        (b"x-forwarded-for", b"198.51.100.1, 198.51.100.2"),
    )
    TrustedProxies([], 2, "forwarded").apply(s)
    assert s["client"] == ("203.0.113.7", 0)
    assert s["scheme"] == "https"
    assert (b"host", b"example.org") in s["headers"]


def test_by_hop_count_a_too_short_forwarded_is_not_believed() -> None:
    # A Forwarded header the client sent alone has fewer than N elements.
    s = scope(
        (b"forwarded", b"for=6.6.6.6;proto=https"),
        (b"x-forwarded-for", b"203.0.113.7, 10.0.0.5"),
    )
    TrustedProxies([], 2, "forwarded").apply(s)
    assert s["client"] == ("10.0.0.2", 5555)
    assert s["scheme"] == "http"
    TrustedProxies([], 2).apply(s)  # x-forwarded mode: the proxies' header
    assert s["client"] == ("203.0.113.7", 0)


def test_a_stray_quote_cannot_swallow_what_the_proxy_appended() -> None:
    # The client opens a quote; the proxy appends ", for=203.0.113.7". Split
    # naively, the whole value would be one element holding proto=https.
    s = scope((b"forwarded", b'proto=https;for=", for=203.0.113.7'))
    TrustedProxies([], 1).apply(s)
    assert s["client"] == ("10.0.0.2", 5555)
    assert s["scheme"] == "http"


def test_scope_factory_with_a_hop_count_and_an_allow_list() -> None:
    request = Request(
        1, b"GET", b"/", [(b"host", b"a"), (b"x-forwarded-for", b"6.6.6.6, 203.0.113.7")], "1.1"
    )
    server = ("10.0.0.1", 80)
    counted = TrustedProxies([], 1)
    anyone = ScopeFactory(ConnectionInfo(("198.51.100.3", 1), server), "", {}, counted)
    assert anyone.http(request)["client"] == ("203.0.113.7", 0)
    both = TrustedProxies(["10.0.0.0/8"], 1)
    listed = ScopeFactory(ConnectionInfo(("10.0.0.2", 1), server), "", {}, both)
    unlisted = ScopeFactory(ConnectionInfo(("198.51.100.3", 1), server), "", {}, both)
    assert listed.http(request)["client"] == ("203.0.113.7", 0)  # the count, not the walk
    assert unlisted.http(request)["client"] == ("198.51.100.3", 1)


@pytest.mark.anyio
async def test_the_middleware_takes_a_hop_count() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    headers = ((b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.0.0.5"),)
    middleware = ProxyHeadersMiddleware(app, trusted=[], trusted_hops=2)
    original = scope(*headers)
    await middleware(original, None, None)
    assert seen[-1]["client"] == ("203.0.113.7", 0)
    assert original["client"] == ("10.0.0.2", 5555)  # the caller's scope is not changed
    listed = ProxyHeadersMiddleware(app, trusted=["192.168.0.0/16"], trusted_hops=2)
    await listed(scope(*headers), None, None)
    assert seen[-1]["client"] == ("10.0.0.2", 5555)  # the peer is not listed


# Printable latin-1 without the comma: what a client may put in front.
client_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
addresses = st.ip_addresses(v=4).map(str)


@given(st.lists(client_text, max_size=3), addresses, st.lists(addresses, max_size=3))
def test_a_client_cannot_choose_its_address_through_n_proxies(
    sent: list[str], real: str, inner: list[str]
) -> None:
    """Whatever the client sends, N appending proxies make ``real`` (what
    the outermost proxy saw) the client."""
    appended = [real, *inner]  # the outermost proxy's value first
    value = ", ".join([*sent, *appended])
    s = scope((b"x-forwarded-for", value.encode("latin-1")))
    TrustedProxies([], len(appended)).apply(s)
    assert s["client"] == (real, 0)


@given(client_text, addresses, st.lists(addresses, max_size=3))
def test_a_client_cannot_choose_its_address_through_forwarded(
    sent: str, real: str, inner: list[str]
) -> None:
    """The same with ``Forwarded``: the client's text may break the header
    (then nothing is believed), never name another client."""
    elements = [f"for={address}" for address in (real, *inner)]
    value = ", ".join([sent, *elements]) if sent else ", ".join(elements)
    s = scope((b"forwarded", value.encode("latin-1")))
    TrustedProxies([], len(elements)).apply(s)
    assert s["client"] in ((real, 0), ("10.0.0.2", 5555))


@given(st.lists(st.tuples(header_names, st.binary(max_size=80)), max_size=6), st.integers(1, 4))
def test_any_header_values_are_safe_by_hop_count(
    headers: list[tuple[bytes, bytes]], hops: int
) -> None:
    s = scope(*headers)
    TrustedProxies([], hops).apply(s)
    client = s["client"]
    assert isinstance(client[0], str)
    assert isinstance(client[1], int)
    assert s["scheme"] in ("http", "https")
    assert isinstance(s["root_path"], str)
