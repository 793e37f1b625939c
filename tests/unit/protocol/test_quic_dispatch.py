"""The QUIC dispatcher driven with datagrams only: what it routes, answers
(Version Negotiation, Retry), admits as a new connection, and drops."""

from __future__ import annotations

import os

import pytest
from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, QuicProtocolVersion, pull_quic_header

from tricorn.protocol.http3 import H3Adapter, H3Settings
from tricorn.protocol.quic import (
    CID_LENGTH,
    NewConnection,
    QuicDispatcher,
    QuicSettings,
    Reply,
    Routed,
    cid_factory,
    server_configuration,
)

from .test_http3 import (
    CERTFILE,
    CLIENT_ADDR,
    KEYFILE,
    SERVER_ADDR,
    Peer,
    client_configuration,
    round_trip,
)

OTHER_ADDR = ("127.0.0.2", 50001)
UNKNOWN_VERSION = 0x1A2A3A4A  # a reserved version (RFC 9000 §15): never supported
NOW = 1.0


# ------------------------------------------------------------------ helpers


_CONFIGURATION: QuicConfiguration | None = None


def configuration() -> QuicConfiguration:
    """The server configuration (loaded once: the certificate is the same)."""
    global _CONFIGURATION
    if _CONFIGURATION is None:
        _CONFIGURATION = server_configuration(QuicSettings(), H3Settings(), CERTFILE, KEYFILE, None)
    return _CONFIGURATION


def dispatcher(quic: QuicSettings | None = None) -> QuicDispatcher:
    return QuicDispatcher(configuration(), quic or QuicSettings(), H3Settings())


def client() -> QuicConnection:
    connection = QuicConnection(configuration=client_configuration())
    connection.connect(SERVER_ADDR, now=NOW)
    return connection


def first_initial() -> bytes:
    """A real client's first datagram (an Initial padded to 1200 bytes)."""
    (datagram, _), *_ = client().datagrams_to_send(NOW)
    return datagram


def long_packet(
    version: int,
    dcid: bytes,
    scid: bytes,
    *,
    size: int = 1200,
    token: bytes = b"",
    first: int = 0xC0,  # long header, fixed bit, Initial (version 1 encoding)
) -> bytes:
    """A long-header packet of ``size`` bytes; an Initial's token and
    length fields are filled in so that it parses."""
    buf = Buffer(capacity=size + 64)
    buf.push_uint8(first)
    buf.push_uint32(version)
    buf.push_uint8(len(dcid))
    buf.push_bytes(dcid)
    buf.push_uint8(len(scid))
    buf.push_bytes(scid)
    buf.push_uint_var(len(token))
    buf.push_bytes(token)
    rest = size - buf.tell() - 2  # a two-byte length field
    assert 64 <= rest < 16384
    buf.push_uint16(0x4000 | rest)
    buf.push_bytes(b"\x00" * rest)
    assert buf.tell() == size
    return buf.data


def short_packet(dcid: bytes) -> bytes:
    return bytes([0x40]) + dcid + os.urandom(30)


def new_cid() -> bytes:
    return os.urandom(CID_LENGTH)


# ------------------------------------------------------------------ dropped


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"hello, world", b"\x00" * 1300, b"\x80", bytes(range(256))],
    ids=["empty", "zero", "text", "zeros", "one-byte-long-header", "bytes"],
)
def test_garbage_is_dropped(data: bytes) -> None:
    assert dispatcher().receive(data, CLIENT_ADDR, NOW) is None


@pytest.mark.parametrize("length", [1, 5, 10, 30, 600, 1199])
def test_truncated_initial_is_dropped(length: int) -> None:
    d = dispatcher()
    assert d.receive(first_initial()[:length], CLIENT_ADDR, NOW) is None
    assert len(d) == 0


def test_short_header_for_an_unknown_connection_is_dropped() -> None:
    assert dispatcher().receive(short_packet(new_cid()), CLIENT_ADDR, NOW) is None


def test_small_initial_is_dropped() -> None:
    d = dispatcher()
    small = long_packet(QuicProtocolVersion.VERSION_1, new_cid(), new_cid(), size=1199)
    assert d.receive(small, CLIENT_ADDR, NOW) is None
    # The same Initial at the minimum size makes a connection.
    big = long_packet(QuicProtocolVersion.VERSION_1, new_cid(), new_cid(), size=1200)
    assert isinstance(d.receive(big, CLIENT_ADDR, NOW), NewConnection)


def test_small_initial_inside_a_coalesced_datagram_counts_the_datagram() -> None:
    """RFC 9000 §14.1: the *datagram* carrying an Initial must be 1200 bytes."""
    packet = long_packet(QuicProtocolVersion.VERSION_1, new_cid(), new_cid(), size=200)
    datagram = packet + b"\x00" * 1000  # padding after the packet
    assert isinstance(dispatcher().receive(datagram, CLIENT_ADDR, NOW), NewConnection)


@pytest.mark.parametrize("first", [0xD0, 0xE0], ids=["zero-rtt", "handshake"])
def test_other_long_header_packets_for_unknown_connections_are_dropped(first: int) -> None:
    buf = Buffer(capacity=1300)
    buf.push_uint8(first)
    buf.push_uint32(QuicProtocolVersion.VERSION_1)
    buf.push_uint8(CID_LENGTH)
    buf.push_bytes(new_cid())
    buf.push_uint8(CID_LENGTH)
    buf.push_bytes(new_cid())
    rest = 1200 - buf.tell() - 2
    buf.push_uint16(0x4000 | rest)
    buf.push_bytes(b"\x00" * rest)
    assert dispatcher().receive(buf.data, CLIENT_ADDR, NOW) is None


def test_new_connections_refused_while_not_accepting() -> None:
    d = dispatcher()
    d.accepting = False
    assert d.receive(first_initial(), CLIENT_ADDR, NOW) is None
    # Known connections are still routed.
    cid = new_cid()
    d.add(cid, "owner")
    assert d.receive(short_packet(cid), CLIENT_ADDR, NOW) == Routed("owner")
    d.accepting = True
    assert isinstance(d.receive(first_initial(), CLIENT_ADDR, NOW), NewConnection)


# ------------------------------------------------------------------ version negotiation


def test_unknown_version_gets_version_negotiation() -> None:
    dcid, scid = new_cid(), os.urandom(5)
    result = dispatcher().receive(long_packet(UNKNOWN_VERSION, dcid, scid), CLIENT_ADDR, NOW)
    assert isinstance(result, Reply)
    header = pull_quic_header(Buffer(data=result.data), host_cid_length=CID_LENGTH)
    assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION
    assert header.version == 0
    assert result.data[1:5] == b"\x00\x00\x00\x00"
    # The CIDs are echoed swapped (RFC 9000 §17.2.1).
    assert header.destination_cid == scid
    assert header.source_cid == dcid
    assert QuicProtocolVersion.VERSION_1 in header.supported_versions
    assert UNKNOWN_VERSION not in header.supported_versions
    assert set(header.supported_versions) <= set(configuration().supported_versions)


def test_unknown_version_in_a_small_datagram_is_dropped() -> None:
    packet = long_packet(UNKNOWN_VERSION, new_cid(), new_cid(), size=1199)
    assert dispatcher().receive(packet, CLIENT_ADDR, NOW) is None


@pytest.mark.parametrize(
    ("first", "tail"),
    [(0x80, b"\x00" * 1100), (0xC0, b"\xff" * 1100)],
    ids=["fixed-bit-clear", "not-a-v1-initial-layout"],
)
def test_unknown_version_answered_from_invariant_fields_only(first: int, tail: bytes) -> None:
    dcid, scid = new_cid(), new_cid()
    packet = (
        bytes([first])
        + UNKNOWN_VERSION.to_bytes(4, "big")
        + bytes([len(dcid)])
        + dcid
        + bytes([len(scid)])
        + scid
        + tail
    )
    packet += b"\x00" * (1200 - len(packet))
    result = dispatcher().receive(packet, CLIENT_ADDR, NOW)
    assert isinstance(result, Reply)
    header = pull_quic_header(Buffer(data=result.data), host_cid_length=CID_LENGTH)
    assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION


def test_version_negotiation_packet_is_never_answered() -> None:
    buf = Buffer(capacity=1300)
    buf.push_uint8(0xC0)
    buf.push_uint32(0)  # Version Negotiation
    buf.push_uint8(CID_LENGTH)
    buf.push_bytes(new_cid())
    buf.push_uint8(CID_LENGTH)
    buf.push_bytes(new_cid())
    while buf.tell() < 1200:
        buf.push_uint32(UNKNOWN_VERSION)
    assert dispatcher().receive(buf.data, CLIENT_ADDR, NOW) is None


# ------------------------------------------------------------------ routing


def test_new_connection() -> None:
    d = dispatcher()
    datagram = first_initial()
    result = d.receive(datagram, CLIENT_ADDR, NOW)
    assert isinstance(result, NewConnection)
    assert isinstance(result.adapter, H3Adapter)
    header = pull_quic_header(Buffer(data=datagram), host_cid_length=CID_LENGTH)
    assert result.original_cid == header.destination_cid
    # The dispatcher keeps no route by itself: the server adds them.
    assert len(d) == 0
    assert isinstance(d.receive(datagram, CLIENT_ADDR, NOW), NewConnection)


def test_routing_after_add_and_remove() -> None:
    d = dispatcher()
    cid, other = new_cid(), new_cid()
    d.add(cid, "first")
    d.add(other, "second")
    assert len(d) == 2
    assert d.receive(short_packet(cid), CLIENT_ADDR, NOW) == Routed("first")
    assert d.receive(short_packet(other), OTHER_ADDR, NOW) == Routed("second")
    # A long-header packet to a known CID is routed too (e.g. Handshake).
    packet = long_packet(QuicProtocolVersion.VERSION_1, cid, new_cid())
    assert d.receive(packet, CLIENT_ADDR, NOW) == Routed("first")
    d.remove(cid)
    assert len(d) == 1
    assert d.receive(short_packet(cid), CLIENT_ADDR, NOW) is None
    d.remove(cid)  # removing twice is harmless
    assert d.receive(short_packet(other), CLIENT_ADDR, NOW) == Routed("second")


def test_connection_through_the_dispatcher() -> None:
    peer = Peer()
    assert [type(r) for r in peer.results] == [NewConnection]
    assert peer.adapter.peer.handshake_done
    # The client's Initial DCID and every CID the adapter issued are routed.
    assert len(peer.dispatcher) == len(peer.cids) + 1
    round_trip(peer)


# ------------------------------------------------------------------ retry


def test_retry_then_connection() -> None:
    peer = Peer(quic=QuicSettings(retry=True))
    first, second = peer.results
    assert isinstance(first, Reply)
    assert isinstance(second, NewConnection)
    retry = pull_quic_header(Buffer(data=first.data), host_cid_length=CID_LENGTH)
    assert retry.packet_type == QuicPacketType.RETRY
    assert retry.destination_cid == peer.client.host_cid
    assert retry.token
    # The client came back to the CID the Retry chose, with the token.
    assert second.original_cid == retry.source_cid
    assert peer.adapter.peer.handshake_done
    assert peer.adapter.peer.alpn == "h3"
    round_trip(peer)


def test_retry_token_checked() -> None:
    d = dispatcher(QuicSettings(retry=True))
    connection = client()
    (initial, _), *_ = connection.datagrams_to_send(NOW)
    original = pull_quic_header(Buffer(data=initial), host_cid_length=CID_LENGTH)
    reply = d.receive(initial, CLIENT_ADDR, NOW)
    assert isinstance(reply, Reply)
    connection.receive_datagram(reply.data, SERVER_ADDR, NOW)
    (again, _), *_ = connection.datagrams_to_send(NOW)
    header = pull_quic_header(Buffer(data=again), host_cid_length=CID_LENGTH)
    assert header.token
    # From another address the token is worthless.
    assert d.receive(again, OTHER_ADDR, NOW) is None
    # A forged token is dropped, not answered with another Retry.
    forged = long_packet(
        QuicProtocolVersion.VERSION_1, header.destination_cid, new_cid(), token=b"x" * 40
    )
    assert d.receive(forged, CLIENT_ADDR, NOW) is None
    # The real one makes the connection; aioquic learns the original DCID.
    result = d.receive(again, CLIENT_ADDR, NOW)
    assert isinstance(result, NewConnection)
    assert result.original_cid == header.destination_cid
    assert result.adapter._quic._original_destination_connection_id == original.destination_cid
    assert result.adapter._quic._retry_source_connection_id == header.destination_cid


def test_retry_every_initial_without_token() -> None:
    d = dispatcher(QuicSettings(retry=True))
    for _ in range(3):
        assert isinstance(d.receive(first_initial(), CLIENT_ADDR, NOW), Reply)
    assert len(d) == 0


def test_token_without_retry_is_ignored() -> None:
    packet = long_packet(QuicProtocolVersion.VERSION_1, new_cid(), new_cid(), token=b"t" * 16)
    assert isinstance(dispatcher().receive(packet, CLIENT_ADDR, NOW), NewConnection)


# ------------------------------------------------------------------ several workers


@pytest.mark.parametrize(("index", "count"), [(0, 2), (1, 2), (2, 3), (5, 7)])
def test_cid_factory_names_the_worker(index: int, count: int) -> None:
    new_cid = cid_factory(index, count)
    cids = {new_cid() for _ in range(200)}
    assert len(cids) == 200  # still random
    assert all(len(cid) == CID_LENGTH and cid[0] % count == index for cid in cids)


@pytest.mark.parametrize("retry", [False, True])
def test_every_issued_cid_routes_to_this_worker(retry: bool) -> None:
    peer = Peer(quic=QuicSettings(retry=retry, worker=(1, 3)))
    round_trip(peer)
    issued = [cid for cid, new in peer.cids if new]
    assert len(issued) >= 2  # the first one and those NEW_CONNECTION_ID announced
    assert all(cid[0] % 3 == 1 for cid in issued)
    # The client now addresses us by one of them; so did a Retry's SCID.
    assert peer.client._peer_cid.cid in issued
    if retry:
        first = peer.results[0]
        assert isinstance(first, Reply)
        header = pull_quic_header(Buffer(data=first.data), host_cid_length=CID_LENGTH)
        assert header.source_cid[0] % 3 == 1
