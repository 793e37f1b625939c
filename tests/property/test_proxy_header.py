"""Property tests for the PROXY protocol parser: any bytes give a header, a
request for more, or ProxyHeaderError; feeding byte by byte agrees with
feeding whole; the reading is bounded."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from tricorn.protocol.proxy import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)


def parse(data: bytes) -> ProxyHeader | str | None:
    try:
        return parse_proxy_header(data)
    except ProxyHeaderError:
        return "error"


prefixes = st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE])


@given(prefixes, st.binary(max_size=300))
def test_any_bytes_give_a_header_more_or_an_error(prefix: bytes, tail: bytes) -> None:
    data = prefix + tail
    result = parse(data)
    if isinstance(result, ProxyHeader):
        assert 0 < result.length <= len(data)
        # Whatever follows the header does not change it.
        assert parse(data[: result.length]) == result
    elif result is None:
        # Asking for more only while a valid header could still come.
        assert len(data) < V1_MAX or data.startswith(V2_SIGNATURE)


@given(prefixes, st.binary(max_size=120))
def test_bytewise_agrees_with_whole(prefix: bytes, tail: bytes) -> None:
    data = prefix + tail
    whole = parse(data)
    for end in range(len(data) + 1):
        part = parse(data[:end])
        if part is not None:
            assert part == whole
            break


@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535), st.integers(0, 65535))
def test_v1_round_trip(
    client: ipaddress.IPv4Address, server: ipaddress.IPv4Address, cport: int, sport: int
) -> None:
    line = f"PROXY TCP4 {client} {server} {cport} {sport}\r\n".encode()
    header = parse_proxy_header(line + b"GET / HTTP/1.1\r\n")
    assert header == ProxyHeader((str(client), cport), (str(server), sport), len(line))


@given(st.ip_addresses(v=6), st.ip_addresses(v=6), st.integers(0, 65535), st.integers(0, 65535))
def test_v2_round_trip(
    client: ipaddress.IPv6Address, server: ipaddress.IPv6Address, cport: int, sport: int
) -> None:
    body = client.packed + server.packed + cport.to_bytes(2, "big") + sport.to_bytes(2, "big")
    raw = V2_SIGNATURE + b"\x21\x21" + len(body).to_bytes(2, "big") + body
    header = parse_proxy_header(raw + b"\x16\x03\x01")
    assert header == ProxyHeader((str(client), cport), (str(server), sport), len(raw))
