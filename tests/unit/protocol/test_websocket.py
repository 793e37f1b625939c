"""The WebSocket framing driven with bytes only: client frames are written
by a wsproto client connection (or by hand, for malformed ones), and what
the framer sends is read back both as raw frames and as the client's
wsproto events."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from dataclasses import dataclass

import pytest
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Event as WSEvent
from wsproto.extensions import Extension, PerMessageDeflate

from tricorn.protocol.events import Event, Headers, WebSocketClose, WebSocketMessage
from tricorn.protocol.websocket import (
    WebSocketFramer,
    WSSettings,
    accept_key,
    handshake_problem,
    negotiate,
)

SID = 7
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
KEY = b"\x37\xfa\x21\x3d"
DEFLATE_OFFER: Headers = [(b"sec-websocket-extensions", b"permessage-deflate")]
MIB = 1024 * 1024


# ------------------------------------------------------------------ helpers


def mask(payload: bytes, key: bytes = KEY) -> bytes:
    if not payload:
        return b""
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame made by hand; ``length`` forces the length encoding
    (7-bit, 16-bit or 64-bit) to be the one for that size."""
    first = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    size = len(payload)
    encoding = size if length is None else length
    if encoding < 126:
        header = bytes((first, bit | size))
    elif encoding < 65536:
        header = struct.pack("!BBH", first, bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, bit | 127, size)
    return header + (KEY + mask(payload) if masked else payload)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class RawFrame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes


def server_frames(data: bytes) -> list[RawFrame]:
    """Split the framer's output into frames: unmasked, minimal lengths,
    nothing left over."""
    frames: list[RawFrame] = []
    view = memoryview(data)
    while view:
        assert len(view) >= 2, data
        first, second = view[0], view[1]
        assert not second & 0x80, "a server frame must not be masked"
        size = second & 0x7F
        offset = 2
        if size == 126:
            (size,) = struct.unpack("!H", view[2:4])
            assert size >= 126
            offset = 4
        elif size == 127:
            (size,) = struct.unpack("!Q", view[2:10])
            assert size >= 65536
            offset = 10
        assert len(view) >= offset + size, data
        payload = bytes(view[offset : offset + size])
        frames.append(RawFrame(bool(first & 0x80), first & 0x70, first & 0x0F, payload))
        view = view[offset + size :]
    return frames


class Peer:
    """A framer and the wsproto client talking to it."""

    def __init__(
        self,
        settings: WSSettings | None = None,
        offer: Headers | None = None,
        *,
        now: float | None = 0.0,
    ) -> None:
        self.settings = settings or WSSettings()
        extensions, response = negotiate(offer or [], self.settings)
        self.response = response
        self.framer = WebSocketFramer(SID, self.settings, extensions, now=now)
        client_extensions: list[Extension] = []
        if response is not None:
            client_extension = PerMessageDeflate()
            client_extension.finalize(response.decode("latin-1"))
            client_extensions.append(client_extension)
        self.client = Connection(ConnectionType.CLIENT, client_extensions)

    def send(self, *events: WSEvent, now: float = 0.0) -> list[Event]:
        """The client sends ``events``; the framer receives them at once."""
        return self.framer.receive(b"".join(self.client.send(event) for event in events), now)

    def raw(self, data: bytes, now: float = 0.0) -> list[Event]:
        return self.framer.receive(data, now)

    def output(self) -> bytes:
        data = self.framer.data_to_send()
        assert type(data) is bytes
        return data

    def read(self) -> list[WSEvent]:
        """What the framer sent, as the client's events."""
        self.client.receive_data(self.output())
        return list(self.client.events())

    def closed_with(self, code: int) -> None:
        """The framer's output is exactly one Close frame with ``code``."""
        frames = server_frames(self.output())
        assert [frame.opcode for frame in frames] == [CLOSE], frames
        assert struct.unpack("!H", frames[0].payload[:2])[0] == code


def one_close(events: list[Event], code: int, reason: str | None = None) -> WebSocketClose:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, WebSocketClose), events
    assert event.stream_id == SID
    assert event.code == code
    assert type(event.code) is int
    if reason is not None:
        assert event.reason == reason
    return event


def state(framer: WebSocketFramer) -> tuple[bool, bool]:
    """``(closing, done)`` (a call, so that mypy does not narrow them)."""
    return framer.closing, framer.done


def failed_with(peer: Peer, events: list[Event], code: int) -> WebSocketClose:
    """The peer broke the protocol: ``events`` tell the application at once
    (one close with ``code``), but the Close frame waits, the input is
    dropped, until the application has seen the close (``release``); then
    the Close goes out alone and the WebSocket is done."""
    close = one_close(events, code)
    framer = peer.framer
    assert state(framer) == (True, False)
    assert peer.output() == b""
    # Held: input is dropped (no message, no pong, not the peer's Close).
    more = client_frame(TEXT, b"more") + client_frame(PING, b"p")
    assert peer.raw(more + client_frame(CLOSE, close_payload(1000))) == []
    assert peer.output() == b""
    assert state(framer) == (True, False)
    framer.release()
    assert state(framer) == (True, True)
    peer.closed_with(code)
    assert framer.next_deadline(0.0) is None
    return close


def data_of(event: Event) -> bytes | str:
    assert isinstance(event, WebSocketMessage), event
    return event.data


def deflate_raw(data: bytes) -> bytes:
    """``data`` compressed as one permessage-deflate message."""
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# ------------------------------------------------------------------ handshake


def test_accept_key_matches_the_rfc_example() -> None:
    assert (
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    )  # RFC 6455 §1.3


VALID_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def ws_headers(*extra: tuple[bytes, bytes]) -> Headers:
    return [(b"host", b"example.com"), (b"upgrade", b"websocket"), *extra]


@pytest.mark.parametrize("key_required", [True, False])
def test_handshake_valid(key_required: bool) -> None:
    headers = ws_headers((b"sec-websocket-version", b"13"), (b"sec-websocket-key", VALID_KEY))
    assert handshake_problem(headers, key_required=key_required) is None


def test_handshake_without_key_is_fine_when_not_required() -> None:
    headers = ws_headers((b"sec-websocket-version", b"13"))
    assert handshake_problem(headers, key_required=False) is None


@pytest.mark.parametrize(
    "versions",
    [[], [b"8"], [b"12"], [b"14"], [b""], [b"13, 8"], [b"13", b"13"], [b"13", b"8"]],
)
@pytest.mark.parametrize("key_required", [True, False])
def test_handshake_bad_version_is_426(versions: list[bytes], key_required: bool) -> None:
    headers = ws_headers(
        *((b"sec-websocket-version", v) for v in versions), (b"sec-websocket-key", VALID_KEY)
    )
    problem = handshake_problem(headers, key_required=key_required)
    assert problem is not None
    status, extra, reason = problem
    assert status == 426
    assert extra == [(b"sec-websocket-version", b"13")]
    assert reason


def test_handshake_version_is_checked_before_the_key() -> None:
    problem = handshake_problem([(b"sec-websocket-version", b"7")], key_required=True)
    assert problem is not None
    assert problem[0] == 426


@pytest.mark.parametrize(
    "keys",
    [
        [],  # missing
        [b"!!!!notbase64!!!!!!!!!!="],  # not base64
        [b"dGhlIHNhbXBsZSBub25jZQ"],  # no padding
        [b"dGhlIHNhbXBsZSBub25j"],  # 15 bytes
        [b"dGhlIHNhbXBsZSBub25jZXM="],  # 17 bytes
        [b""],
        [VALID_KEY, VALID_KEY],  # duplicated
    ],
)
def test_handshake_bad_key(keys: list[bytes]) -> None:
    headers = ws_headers(
        (b"sec-websocket-version", b"13"), *((b"sec-websocket-key", k) for k in keys)
    )
    assert handshake_problem(headers, key_required=False) is None
    problem = handshake_problem(headers, key_required=True)
    assert problem is not None
    status, extra, reason = problem
    assert (status, extra) == (400, [])
    assert reason


def test_handshake_tolerates_surrounding_whitespace() -> None:
    headers = [(b"sec-websocket-version", b" 13 "), (b"sec-websocket-key", b" " + VALID_KEY)]
    assert handshake_problem(headers, key_required=True) is None


# ------------------------------------------------------------------ negotiation


def offer(*values: bytes) -> Headers:
    return [(b"sec-websocket-extensions", value) for value in values]


def test_negotiate_disabled() -> None:
    settings = WSSettings(permessage_deflate=False)
    assert negotiate(offer(b"permessage-deflate"), settings) == ([], None)


def test_negotiate_without_offer() -> None:
    assert negotiate([(b"host", b"a")], WSSettings()) == ([], None)


def negotiated(*values: bytes) -> tuple[PerMessageDeflate, bytes]:
    extensions, response = negotiate(offer(*values), WSSettings())
    assert response is not None
    assert len(extensions) == 1
    extension = extensions[0]
    assert isinstance(extension, PerMessageDeflate)
    assert extension.enabled()
    return extension, response


def test_negotiate_plain_offer() -> None:
    extension, response = negotiated(b"permessage-deflate")
    assert response == b"permessage-deflate"
    assert extension.client_max_window_bits == 15
    assert not extension.client_no_context_takeover
    assert not extension.server_no_context_takeover


def test_negotiate_bare_client_max_window_bits() -> None:
    extension, response = negotiated(b"permessage-deflate; client_max_window_bits")
    assert response == b"permessage-deflate; client_max_window_bits=15"
    assert extension.client_max_window_bits == 15


def test_negotiate_client_max_window_bits_value() -> None:
    extension, response = negotiated(b"permessage-deflate; client_max_window_bits=10")
    assert response == b"permessage-deflate; client_max_window_bits=10"
    assert extension.client_max_window_bits == 10


def test_negotiate_no_context_takeover() -> None:
    extension, response = negotiated(b"permessage-deflate; server_no_context_takeover")
    assert response == b"permessage-deflate; server_no_context_takeover"
    assert extension.server_no_context_takeover
    assert not extension.client_no_context_takeover

    extension, response = negotiated(b"permessage-deflate;client_no_context_takeover")
    assert response == b"permessage-deflate; client_no_context_takeover"
    assert extension.client_no_context_takeover
    assert not extension.server_no_context_takeover


@pytest.mark.parametrize(
    "bad",
    [
        b"client_max_window_bits=abc",
        b"client_max_window_bits=7",
        b"client_max_window_bits=16",
        b"server_max_window_bits=8",
        # RFC 7692 §7.1: unknown, repeated or malformed parameters decline the offer
        b"foo=1",
        b"server_max_window_bits",
        b"client_no_context_takeover=1",
        b"server_no_context_takeover; server_no_context_takeover",
    ],
)
def test_negotiate_skips_an_invalid_offer(bad: bytes) -> None:
    header = b"permessage-deflate; " + bad + b", permessage-deflate; server_no_context_takeover"
    extension, response = negotiated(header)
    assert response == b"permessage-deflate; server_no_context_takeover"
    assert extension.client_max_window_bits == 15
    assert extension.server_max_window_bits == 15


def test_negotiate_only_invalid_offers() -> None:
    assert negotiate(offer(b"permessage-deflate; client_max_window_bits=x"), WSSettings()) == (
        [],
        None,
    )


def test_negotiate_ignores_unrelated_extensions() -> None:
    assert negotiate(offer(b"x-webkit-deflate-frame", b"foo; bar=1"), WSSettings()) == ([], None)
    _, response = negotiated(b"x-webkit-deflate-frame; no_context_takeover", b"permessage-deflate")
    assert response == b"permessage-deflate"
    _, response = negotiated(b"foo, permessage-deflate; client_no_context_takeover")
    assert response == b"permessage-deflate; client_no_context_takeover"


# ------------------------------------------------------------------ messages


def test_text_and_binary_messages() -> None:
    peer = Peer()
    events = peer.send(TextMessage("héllo"), BytesMessage(b"\x00\xffbin"), TextMessage(""))
    assert events == [
        WebSocketMessage(SID, "héllo"),
        WebSocketMessage(SID, b"\x00\xffbin"),
        WebSocketMessage(SID, ""),
    ]
    assert [type(data_of(event)) for event in events] == [str, bytes, str]
    assert peer.output() == b""
    assert not peer.framer.done
    assert not peer.framer.closing


@pytest.mark.parametrize("deflate", [False, True])
def test_fragmented_messages_are_assembled(deflate: bool) -> None:
    peer = Peer(offer=DEFLATE_OFFER if deflate else None)
    assert peer.send(TextMessage("ab", message_finished=False)) == []
    assert peer.send(TextMessage("", message_finished=False)) == []
    assert peer.send(TextMessage("cdé", message_finished=False)) == []
    assert peer.send(TextMessage("f")) == [WebSocketMessage(SID, "abcdéf")]

    assert peer.send(BytesMessage(b"\x01", message_finished=False)) == []
    assert peer.send(BytesMessage(b"\x02\x03", message_finished=False)) == []
    events = peer.send(BytesMessage(b"\x04"))
    assert events == [WebSocketMessage(SID, b"\x01\x02\x03\x04")]
    assert type(data_of(events[0])) is bytes

    events = peer.send(BytesMessage(b"", message_finished=False), BytesMessage(b""))
    assert events == [WebSocketMessage(SID, b"")]
    assert type(data_of(events[0])) is bytes


def test_utf8_split_across_fragments() -> None:
    peer = Peer()
    events = peer.raw(
        client_frame(TEXT, b"a\xc3", fin=False)
        + client_frame(CONTINUATION, b"\xa9\xe2\x82", fin=False)
    )
    assert events == []
    assert peer.raw(client_frame(CONTINUATION, b"\xac", fin=True)) == [WebSocketMessage(SID, "aé€")]
    # A continuation after a finished message is an error: the message is over.
    one_close(peer.raw(client_frame(CONTINUATION, b"x")), 1002)


@pytest.mark.parametrize("deflate", [False, True])
def test_ping_between_fragments(deflate: bool) -> None:
    peer = Peer(offer=DEFLATE_OFFER if deflate else None)
    events = peer.send(
        TextMessage("first " * 20, message_finished=False),
        Ping(b"p1"),
        TextMessage("second " * 20, message_finished=False),
        Pong(b"unsolicited"),
        TextMessage("third"),
    )
    assert events == [WebSocketMessage(SID, "first " * 20 + "second " * 20 + "third")]
    assert peer.read() == [Pong(b"p1")]


@pytest.mark.parametrize("deflate", [False, True])
def test_control_frames_before_a_message(deflate: bool) -> None:
    """A control frame on its own between messages leaves the next
    message's compression alone (the client answering our ping, then
    sending a compressed message, is the everyday case)."""
    peer = Peer(offer=DEFLATE_OFFER if deflate else None)
    assert peer.send(Ping(b"x")) == []
    assert peer.send(TextMessage("hello " * 10)) == [WebSocketMessage(SID, "hello " * 10)]
    assert peer.send(Pong(b"tricorn")) == []
    assert peer.send(BytesMessage(b"data" * 10)) == [WebSocketMessage(SID, b"data" * 10)]
    assert peer.send(Ping(b""), Pong(b""), TextMessage("z")) == [WebSocketMessage(SID, "z")]
    assert peer.read() == [Pong(b"x"), Pong(b"")]
    assert not peer.framer.done


@pytest.mark.parametrize("deflate", [False, True])
def test_messages_split_byte_by_byte(deflate: bool) -> None:
    peer = Peer(offer=DEFLATE_OFFER if deflate else None)
    wire = b"".join(
        peer.client.send(event)
        for event in (
            TextMessage("ünïcode " * 30),
            BytesMessage(b"\x00" * 300, message_finished=False),
            Ping(b"ping"),
            BytesMessage(b"\x01" * 200),
        )
    )
    events: list[Event] = []
    for index in range(len(wire)):
        got = peer.raw(wire[index : index + 1])
        if index < len(wire) - 1:
            assert all(isinstance(e, WebSocketMessage) for e in got)
        events += got
    assert events == [
        WebSocketMessage(SID, "ünïcode " * 30),
        WebSocketMessage(SID, b"\x00" * 300 + b"\x01" * 200),
    ]
    assert peer.read() == [Pong(b"ping")]


def test_messages_split_in_uneven_chunks() -> None:
    peer = Peer()
    messages = [str(n) * n for n in range(1, 40)] + ["x" * 70000]  # 7-, 16- and 64-bit lengths
    wire = b"".join(peer.client.send(TextMessage(message)) for message in messages)
    events: list[Event] = []
    position, step = 0, 1
    while position < len(wire):
        events += peer.raw(wire[position : position + step])
        position += step
        step = step * 3 % 17 + 1
    assert events == [WebSocketMessage(SID, message) for message in messages]


def test_uncompressed_message_on_a_deflate_websocket() -> None:
    peer = Peer(offer=DEFLATE_OFFER)
    assert peer.raw(client_frame(TEXT, b"plain")) == [WebSocketMessage(SID, "plain")]
    assert peer.send(TextMessage("squeezed")) == [WebSocketMessage(SID, "squeezed")]
    assert peer.raw(client_frame(BINARY, b"plain")) == [WebSocketMessage(SID, b"plain")]


def test_compressed_messages_ending_their_deflate_stream() -> None:
    """A client may end each message with a BFINAL block (RFC 7692
    §7.2.3.4); each message then starts a new DEFLATE stream."""
    peer = Peer(offer=DEFLATE_OFFER)
    for payload in (b"one", b"two", b"three" * 50):
        compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_FINISH)
        assert peer.raw(client_frame(BINARY, data, rsv=RSV1)) == [WebSocketMessage(SID, payload)]


@pytest.mark.parametrize(
    "extra",
    [
        b"",
        b"; client_no_context_takeover",
        b"; server_no_context_takeover",
        b"; client_max_window_bits=9",
        b"; server_max_window_bits=10",
    ],
)
def test_compressed_round_trip(extra: bytes) -> None:
    peer = Peer(offer=[(b"sec-websocket-extensions", b"permessage-deflate" + extra)])
    messages: list[str | bytes] = ["hello " * 100, b"\x00\x01" * 1000, "hello " * 100, "", b""]
    for message in messages:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        assert peer.send(event) == [WebSocketMessage(SID, message)]
        peer.framer.send(WebSocketMessage(SID, message))
        (echo,) = peer.read()
        assert isinstance(echo, TextMessage | BytesMessage)
        assert echo.data == message


# ------------------------------------------------------------------ max_message_size


def small(limit: int = 10, deflate: bool = False) -> Peer:
    return Peer(WSSettings(max_message_size=limit), DEFLATE_OFFER if deflate else None)


def assert_too_big(peer: Peer, events: list[Event]) -> None:
    failed_with(peer, events, 1009)
    assert peer.framer.receive(b"\x81\x80" + KEY, 1.0) == []


@pytest.mark.parametrize("deflate", [False, True])
def test_message_at_the_limit(deflate: bool) -> None:
    peer = small(deflate=deflate)
    assert peer.send(BytesMessage(b"x" * 10)) == [WebSocketMessage(SID, b"x" * 10)]
    assert peer.send(TextMessage("y" * 10)) == [WebSocketMessage(SID, "y" * 10)]
    # Fragments adding up to the limit; the count restarts with each message.
    events = peer.send(BytesMessage(b"a" * 5, message_finished=False), BytesMessage(b"b" * 5))
    assert events == [WebSocketMessage(SID, b"a" * 5 + b"b" * 5)]
    assert not peer.framer.done
    assert peer.output() == b""


@pytest.mark.parametrize("deflate", [False, True])
def test_message_over_the_limit(deflate: bool) -> None:
    peer = small(deflate=deflate)
    assert_too_big(peer, peer.send(BytesMessage(b"x" * 11)))


@pytest.mark.parametrize("deflate", [False, True])
def test_fragments_over_the_limit(deflate: bool) -> None:
    peer = small(deflate=deflate)
    assert peer.send(TextMessage("a" * 4, message_finished=False)) == []
    assert peer.send(TextMessage("b" * 4, message_finished=False)) == []
    assert_too_big(peer, peer.send(TextMessage("c" * 3)))


@pytest.mark.parametrize("deflate", [False, True])
def test_limit_counts_utf8_bytes(deflate: bool) -> None:
    peer = small(deflate=deflate)
    assert peer.send(TextMessage("é" * 5)) == [WebSocketMessage(SID, "é" * 5)]  # 10 bytes
    assert peer.send(TextMessage("€" * 3)) == [WebSocketMessage(SID, "€" * 3)]  # 9 bytes
    assert_too_big(peer, peer.send(TextMessage("é" * 5 + "a")))  # 6 characters, 11 bytes


def test_huge_declared_length_trickled_in() -> None:
    """A frame announcing 2**40 bytes is refused once it delivers more
    than the limit, not before and not after."""
    peer = small(1000)
    header = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**40) + b"\x00\x00\x00\x00"
    assert peer.raw(header + b"z" * 600) == []
    assert peer.raw(b"z" * 400) == []
    assert_too_big(peer, peer.raw(b"z"))


def bomb_payload() -> bytes:
    """50 MB of zeros as one raw DEFLATE message (about 50 KB)."""
    compressor = zlib.compressobj(wbits=-15)
    chunk = bytes(MIB)
    out = b"".join(compressor.compress(chunk) for _ in range(50))
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(out) < 100_000
    return out[:-4]


def peak_during(peer: Peer, chunks: list[bytes]) -> tuple[list[Event], int]:
    events: list[Event] = []
    tracemalloc.start()
    try:
        for chunk in chunks:
            events += peer.raw(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return events, peak


@pytest.mark.parametrize("split", ["one frame", "fragments", "fragments fed apart"])
def test_compression_bomb(split: str) -> None:
    payload = bomb_payload()
    peer = Peer(WSSettings(max_message_size=MIB), DEFLATE_OFFER)
    if split == "one frame":
        chunks = [client_frame(BINARY, payload, rsv=RSV1)]
    else:
        size = 2048
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
        frames = [client_frame(BINARY, pieces[0], fin=False, rsv=RSV1)]
        frames += [client_frame(CONTINUATION, piece, fin=False) for piece in pieces[1:-1]]
        frames.append(client_frame(CONTINUATION, pieces[-1]))
        chunks = [b"".join(frames)] if split == "fragments" else frames
    events, peak = peak_during(peer, chunks)
    assert_too_big(peer, events)
    assert peak < 8 * MIB, peak


def test_compressed_message_at_the_limit() -> None:
    peer = Peer(WSSettings(max_message_size=MIB), DEFLATE_OFFER)
    payload = deflate_raw(bytes(MIB))
    events = peer.raw(client_frame(BINARY, payload, rsv=RSV1))
    assert events == [WebSocketMessage(SID, bytes(MIB))]
    assert_too_big(peer, peer.raw(client_frame(BINARY, deflate_raw(bytes(MIB + 1)), rsv=RSV1)))


# ------------------------------------------------------------------ ping / pong


def test_ping_is_answered_with_the_same_payload() -> None:
    peer = Peer()
    assert peer.send(Ping(b"abc")) == []
    frames = server_frames(peer.framer.data_to_send())
    assert frames == [RawFrame(True, 0, PONG, b"abc")]
    assert peer.send(Ping(b"\x00" * 125)) == []
    assert peer.read() == [Pong(b"\x00" * 125)]


def test_unsolicited_pong_is_fine() -> None:
    peer = Peer(WSSettings(ping_interval=10.0, ping_timeout=5.0))
    assert peer.send(Pong(b"whatever"), now=1.0) == []
    assert peer.output() == b""
    assert not peer.framer.done
    assert peer.framer.next_deadline(1.0) == 11.0


def test_server_pings_after_silence() -> None:
    peer = Peer(WSSettings(ping_interval=10.0, ping_timeout=5.0))
    framer = peer.framer
    assert framer.next_deadline(0.0) == 10.0
    assert peer.send(TextMessage("hi"), now=3.0) == [WebSocketMessage(SID, "hi")]
    assert framer.next_deadline(3.0) == 13.0
    assert framer.handle_timeout(12.9) == []
    assert peer.output() == b""
    assert framer.handle_timeout(13.0) == []
    assert peer.read() == [Ping(b"tricorn")]
    # Waiting for the pong now.
    assert framer.next_deadline(13.0) == 18.0
    assert framer.handle_timeout(17.9) == []
    assert peer.output() == b""


def test_unanswered_ping_fails_the_websocket() -> None:
    peer = Peer(WSSettings(ping_interval=10.0, ping_timeout=5.0))
    framer = peer.framer
    assert framer.handle_timeout(10.0) == []
    assert [f.opcode for f in server_frames(peer.output())] == [PING]
    # Other traffic is no answer.
    assert peer.send(TextMessage("busy"), now=12.0) == [WebSocketMessage(SID, "busy")]
    assert framer.next_deadline(12.0) == 15.0
    one_close(framer.handle_timeout(15.0), 1006)
    peer.closed_with(1011)
    assert framer.done
    assert framer.next_deadline(15.0) is None
    assert framer.handle_timeout(100.0) == []
    assert framer.receive_eof() == []


def test_answered_ping_keeps_the_websocket() -> None:
    peer = Peer(WSSettings(ping_interval=10.0, ping_timeout=5.0))
    framer = peer.framer
    assert framer.handle_timeout(10.0) == []
    (ping,) = peer.read()
    assert isinstance(ping, Ping)
    assert peer.send(ping.response(), now=11.0) == []
    assert framer.next_deadline(11.0) == 21.0
    assert framer.handle_timeout(15.0) == []
    assert peer.output() == b""
    assert not framer.done
    # And the next silence brings the next ping.
    assert framer.handle_timeout(21.0) == []
    assert peer.read() == [Ping(b"tricorn")]


def test_no_ping_interval_no_deadline() -> None:
    peer = Peer(WSSettings(ping_interval=None))
    assert peer.framer.next_deadline(0.0) is None
    assert peer.framer.handle_timeout(1e9) == []
    assert peer.output() == b""


def test_no_ping_timeout_waits_forever_for_the_pong() -> None:
    peer = Peer(WSSettings(ping_interval=10.0, ping_timeout=None))
    assert peer.framer.handle_timeout(10.0) == []
    assert peer.read() == [Ping(b"tricorn")]
    assert peer.framer.next_deadline(10.0) is None
    assert peer.framer.handle_timeout(1e9) == []
    assert not peer.framer.done


def test_ping_timer_starts_at_the_first_deadline_query() -> None:
    peer = Peer(WSSettings(ping_interval=10.0), now=None)
    assert peer.framer.next_deadline(100.0) == 110.0
    assert peer.framer.next_deadline(105.0) == 110.0


# ------------------------------------------------------------------ closing


def test_peer_closes() -> None:
    peer = Peer()
    events = peer.send(CloseConnection(1000, "bye"))
    one_close(events, 1000, "bye")
    assert peer.read() == [CloseConnection(1000, "bye")]
    assert peer.client.state is ConnectionState.CLOSED
    assert peer.framer.done
    assert peer.framer.closing
    assert peer.framer.next_deadline(0.0) is None
    assert peer.framer.receive(b"\x81\x80" + KEY, 0.0) == []
    assert peer.framer.receive_eof() == []


def test_peer_closes_with_an_application_code() -> None:
    peer = Peer()
    one_close(peer.send(CloseConnection(4321, "ünïcode")), 4321, "ünïcode")
    assert peer.read() == [CloseConnection(4321, "ünïcode")]


def test_peer_closes_without_a_code() -> None:
    peer = Peer()
    one_close(peer.raw(client_frame(CLOSE)), 1005, "")
    assert peer.output() == b"\x88\x00"  # an empty Close back
    assert peer.framer.done


def test_close_drops_a_partial_message() -> None:
    peer = Peer()
    assert peer.send(TextMessage("partial", message_finished=False)) == []
    one_close(peer.send(CloseConnection(1001)), 1001)


def test_application_closes() -> None:
    peer = Peer()
    framer = peer.framer
    framer.send(WebSocketClose(SID, 4000, "x"))
    assert state(framer) == (True, False)
    assert peer.read() == [CloseConnection(4000, "x")]
    # The client answers: over, and the application is not told again.
    assert peer.send(CloseConnection(4000, "x"), now=1.0) == []
    assert state(framer) == (True, True)
    assert peer.output() == b""
    assert framer.receive_eof() == []


def test_application_closes_without_reason() -> None:
    peer = Peer()
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    frames = server_frames(peer.output())
    assert frames == [RawFrame(True, 0, CLOSE, b"\x03\xe8")]


def test_messages_after_our_close_are_dropped() -> None:
    peer = Peer(WSSettings(ping_interval=10.0))
    framer = peer.framer
    framer.send(WebSocketClose(SID, 1000, ""))
    peer.output()
    assert peer.send(TextMessage("late"), BytesMessage(b"late"), Ping(b"p")) == []
    assert peer.output() == b""  # no pong either: we are closing
    framer.send(WebSocketMessage(SID, "ignored"))
    framer.send(WebSocketClose(SID, 1001, "again"))
    assert peer.output() == b""
    assert peer.send(CloseConnection(1000)) == []
    assert framer.done


def test_close_timeout() -> None:
    peer = Peer(WSSettings(close_timeout=5.0, ping_interval=1.0))
    framer = peer.framer
    framer.send(WebSocketClose(SID, 1000, ""))
    assert framer.next_deadline(100.0) == 105.0  # stamped at the first query
    assert framer.next_deadline(102.0) == 105.0
    assert framer.handle_timeout(104.9) == []
    assert state(framer) == (True, False)
    assert framer.handle_timeout(105.0) == []  # the application knows already
    assert state(framer) == (True, True)
    assert framer.next_deadline(105.0) is None
    assert framer.receive_eof() == []


def test_close_timeout_after_shutdown() -> None:
    peer = Peer(WSSettings(close_timeout=2.0))
    framer = peer.framer
    one_close(framer.begin_shutdown(), 1001, "")
    assert framer.next_deadline(10.0) == 12.0
    assert framer.handle_timeout(12.0) == []
    assert framer.done


def test_no_close_timeout() -> None:
    peer = Peer(WSSettings(close_timeout=None))
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.framer.next_deadline(0.0) is None
    assert peer.framer.handle_timeout(1e9) == []
    assert not peer.framer.done


def test_receive_eof() -> None:
    peer = Peer()
    one_close(peer.framer.receive_eof(), 1006, "")
    assert peer.framer.done
    assert peer.output() == b""
    assert peer.framer.receive_eof() == []
    assert peer.send(TextMessage("after")) == []
    assert peer.framer.begin_shutdown() == []
    assert peer.output() == b""


def test_begin_shutdown() -> None:
    peer = Peer()
    framer = peer.framer
    one_close(framer.begin_shutdown(), 1001, "")
    assert peer.read() == [CloseConnection(1001, "server shutting down")]
    assert framer.closing
    assert not framer.done
    assert framer.begin_shutdown() == []
    framer.send(WebSocketMessage(SID, b"dropped"))
    assert peer.output() == b""
    assert peer.send(CloseConnection(1001)) == []
    assert framer.done


def test_shutdown_after_the_application_closed() -> None:
    peer = Peer()
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.framer.begin_shutdown() == []
    assert [f.opcode for f in server_frames(peer.output())] == [CLOSE]


# ------------------------------------------------------------------ protocol errors


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        pytest.param(client_frame(0x3, b"x"), 1002, id="reserved data opcode"),
        pytest.param(client_frame(0xB), 1002, id="reserved control opcode"),
        pytest.param(client_frame(TEXT, b"x", rsv=RSV1), 1002, id="rsv1 without extension"),
        pytest.param(client_frame(TEXT, b"x", rsv=RSV3), 1002, id="rsv3"),
        pytest.param(client_frame(TEXT, b"x", masked=False), 1002, id="unmasked"),
        pytest.param(client_frame(TEXT, b"\xff"), 1007, id="invalid utf-8"),
        pytest.param(client_frame(TEXT, b"\xed\xa0\x80"), 1007, id="surrogate"),
        pytest.param(
            client_frame(TEXT, b"ok\xc3", fin=False) + client_frame(CONTINUATION, b"("),
            1007,
            id="invalid utf-8 across fragments",
        ),
        pytest.param(client_frame(TEXT, b"\xc3"), 1007, id="truncated utf-8"),
        pytest.param(client_frame(PING, b"x" * 126), 1002, id="control frame > 125"),
        pytest.param(client_frame(PING, b"x", fin=False), 1002, id="fragmented ping"),
        pytest.param(client_frame(CLOSE, b"", fin=False), 1002, id="fragmented close"),
        pytest.param(client_frame(CONTINUATION, b"x"), 1002, id="continuation without start"),
        pytest.param(
            client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b"),
            1002,
            id="new message inside a message",
        ),
        pytest.param(client_frame(CLOSE, close_payload(999)), 1002, id="close 999"),
        pytest.param(client_frame(CLOSE, close_payload(1005)), 1002, id="close 1005"),
        pytest.param(client_frame(CLOSE, close_payload(1006)), 1002, id="close 1006"),
        pytest.param(client_frame(CLOSE, close_payload(1015)), 1002, id="close 1015"),
        pytest.param(client_frame(CLOSE, close_payload(2999)), 1002, id="close 2999"),
        pytest.param(client_frame(CLOSE, close_payload(5000)), 1002, id="close 5000"),
        pytest.param(client_frame(CLOSE, b"\x03"), 1002, id="close 1-byte payload"),
        pytest.param(client_frame(CLOSE, close_payload(1000, b"\xff")), 1007, id="close bad utf-8"),
        pytest.param(client_frame(BINARY, b"x" * 10, length=126), 1002, id="16-bit length for 10"),
        pytest.param(
            client_frame(BINARY, b"x" * 200, length=65536), 1002, id="64-bit length for 200"
        ),
        pytest.param(struct.pack("!BBQ", 0x82, 0xFF, 2**63) + KEY, 1002, id="64-bit length msb"),
    ],
)
def test_protocol_errors(wire: bytes, code: int) -> None:
    peer = Peer()
    failed_with(peer, peer.raw(wire), code)
    assert peer.raw(client_frame(TEXT, b"more")) == []
    assert peer.framer.receive_eof() == []
    assert peer.framer.begin_shutdown() == []
    peer.framer.release()  # (again: nothing)
    assert peer.output() == b""


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        pytest.param(client_frame(PING, b"", rsv=RSV1), 1002, id="rsv1 on a ping"),
        pytest.param(
            client_frame(TEXT, deflate_raw(b"ab"), fin=False, rsv=RSV1)
            + client_frame(CONTINUATION, b"", rsv=RSV1),
            1002,
            id="rsv1 on a continuation",
        ),
        pytest.param(client_frame(TEXT, b"x", rsv=RSV2), 1002, id="rsv2"),
        pytest.param(client_frame(BINARY, b"\xff\xff\xff\xff", rsv=RSV1), 1007, id="bad deflate"),
        pytest.param(
            client_frame(TEXT, deflate_raw(b"\xff\xfe"), rsv=RSV1),
            1007,
            id="compressed invalid utf-8",
        ),
    ],
)
def test_protocol_errors_with_deflate(wire: bytes, code: int) -> None:
    peer = Peer(offer=DEFLATE_OFFER)
    failed_with(peer, peer.raw(wire), code)


def test_protocol_error_split_byte_by_byte() -> None:
    peer = Peer()
    wire = client_frame(TEXT, b"fine") + client_frame(0x5, b"bad") + client_frame(TEXT, b"never")
    events: list[Event] = []
    for index in range(len(wire)):
        events += peer.raw(wire[index : index + 1])
    assert events[0] == WebSocketMessage(SID, "fine")
    one_close(events[1:], 1002)
    assert peer.output() == b""  # held for the application
    peer.framer.release()
    peer.closed_with(1002)


def test_protocol_error_after_our_close() -> None:
    peer = Peer()
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    peer.output()
    assert peer.raw(client_frame(0x3)) == []  # the application knows already
    assert peer.framer.done
    assert peer.output() == b""  # no second Close


# ------------------------------------------------------------------ the held failure Close

FAILURES = [
    pytest.param(client_frame(0x3, b"bad"), 1002, id="protocol error"),
    pytest.param(client_frame(TEXT, b"\xff"), 1007, id="invalid utf-8"),
    pytest.param(client_frame(BINARY, b"x" * 11), 1009, id="too big"),
]


@pytest.mark.parametrize("deflate", [False, True])
@pytest.mark.parametrize(("failure", "code"), FAILURES)
def test_answers_before_the_failure_go_out_first(deflate: bool, failure: bytes, code: int) -> None:
    """A message and then a frame that fails the WebSocket, in one read:
    the application hears of both at once, and its echo of the message
    goes out before our Close, which waits for ``release``."""
    peer = small(deflate=deflate)
    framer = peer.framer
    events = peer.raw(peer.client.send(TextMessage("echo me")) + failure)
    assert events[0] == WebSocketMessage(SID, "echo me")
    close = one_close(events[1:], code)
    assert state(framer) == (True, False)
    assert peer.output() == b""  # no Close yet
    assert framer.next_deadline(0.0) == 5.0  # (close_timeout bounds the wait)
    # The input is dropped meanwhile: no message, no pong, no close.
    assert peer.raw(client_frame(TEXT, b"late") + client_frame(PING, b"p")) == []
    assert peer.raw(client_frame(CLOSE, close_payload(1000))) == []
    assert peer.output() == b""
    # The application answers the message before the error.
    framer.send(WebSocketMessage(SID, "echo me"))
    assert state(framer) == (True, False)
    out = peer.output()
    echo = server_frames(out)
    assert [(f.opcode, f.rsv) for f in echo] == [(TEXT, RSV1 if deflate else 0)]
    if not deflate:
        assert echo[0].payload == b"echo me"
    peer.client.receive_data(out)
    assert list(peer.client.events()) == [TextMessage("echo me")]
    # And it has seen the close: our Close now, with the failure's code.
    framer.release()
    assert state(framer) == (True, True)
    out = peer.output()
    assert [f.opcode for f in server_frames(out)] == [CLOSE]
    peer.client.receive_data(out)
    assert list(peer.client.events()) == [CloseConnection(code, close.reason)]
    assert framer.next_deadline(0.0) is None
    # Once: a second release, late sends, more input, the end: nothing.
    framer.release()
    framer.send(WebSocketMessage(SID, "too late"))
    framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.raw(client_frame(TEXT, b"more")) == []
    assert framer.receive_eof() == []
    assert framer.begin_shutdown() == []
    assert framer.handle_timeout(100.0) == []
    assert peer.output() == b""
    assert state(framer) == (True, True)


def test_echo_and_release_in_one_output() -> None:
    """Sent before the release and read together: the echo, then the Close."""
    peer = Peer()
    events = peer.raw(client_frame(BINARY, b"\x01\x02") + client_frame(TEXT, b"x", masked=False))
    assert events[0] == WebSocketMessage(SID, b"\x01\x02")
    one_close(events[1:], 1002)
    peer.framer.send(WebSocketMessage(SID, b"\x01\x02"))
    peer.framer.send(WebSocketMessage(SID, "and text"))
    peer.framer.release()
    frames = server_frames(peer.output())
    assert [(f.opcode, f.payload[:2]) for f in frames] == [
        (BINARY, b"\x01\x02"),
        (TEXT, b"an"),
        (CLOSE, close_payload(1002)),
    ]


@pytest.mark.parametrize(("failure", "code"), FAILURES)
def test_application_close_during_the_hold_sends_the_failure_code(
    failure: bytes, code: int
) -> None:
    peer = small()
    framer = peer.framer
    one_close(peer.raw(failure), code)
    framer.send(WebSocketMessage(SID, b"last"))
    framer.send(WebSocketClose(SID, 1000, "bye"))  # the application closes before it looks
    assert state(framer) == (True, True)
    frames = server_frames(peer.output())
    assert [f.opcode for f in frames] == [BINARY, CLOSE]
    assert frames[0].payload == b"last"
    assert struct.unpack("!H", frames[1].payload[:2])[0] == code  # not 1000
    assert b"bye" not in frames[1].payload
    # Once: then the application sees its close (release), or closes again.
    framer.release()
    framer.send(WebSocketClose(SID, 1000, "bye"))
    framer.send(WebSocketMessage(SID, b"late"))
    assert peer.output() == b""
    assert framer.receive_eof() == []  # the application was told already


@pytest.mark.parametrize(("failure", "code"), FAILURES)
def test_close_timeout_releases_a_held_close(failure: bytes, code: int) -> None:
    """An application that never looks: the Close goes out after
    ``close_timeout``."""
    peer = Peer(WSSettings(max_message_size=10, close_timeout=5.0, ping_interval=1.0))
    framer = peer.framer
    one_close(peer.raw(failure, now=99.0), code)
    assert framer.next_deadline(100.0) == 105.0  # stamped at the first query
    assert framer.next_deadline(103.0) == 105.0
    assert framer.handle_timeout(104.9) == []
    assert state(framer) == (True, False)
    assert peer.output() == b""
    assert framer.handle_timeout(105.0) == []  # the application was told already
    assert state(framer) == (True, True)
    peer.closed_with(code)
    assert framer.next_deadline(105.0) is None
    framer.release()  # the application looks, at last: nothing more
    assert peer.output() == b""


def test_no_close_timeout_holds_until_release() -> None:
    peer = Peer(WSSettings(close_timeout=None))
    framer = peer.framer
    one_close(peer.raw(client_frame(0x3)), 1002)
    assert framer.next_deadline(0.0) is None
    assert framer.handle_timeout(1e9) == []
    assert state(framer) == (True, False)
    assert peer.output() == b""
    framer.release()
    peer.closed_with(1002)
    assert state(framer) == (True, True)


def test_shutdown_during_the_hold_keeps_the_failure_code() -> None:
    peer = Peer()
    framer = peer.framer
    one_close(peer.raw(client_frame(TEXT, b"\xff")), 1007)
    assert framer.begin_shutdown() == []  # told already; no 1001 either
    assert peer.output() == b""
    framer.release()
    peer.closed_with(1007)


def test_release_without_a_failure_does_nothing() -> None:
    peer = Peer()
    framer = peer.framer
    framer.release()  # open
    assert peer.output() == b""
    assert state(framer) == (False, False)
    assert peer.send(TextMessage("still open")) == [WebSocketMessage(SID, "still open")]
    one_close(framer.begin_shutdown(), 1001)
    peer.output()
    framer.release()  # our own Close is out: waiting for the answer
    assert peer.output() == b""
    assert state(framer) == (True, False)
    assert peer.send(CloseConnection(1001)) == []
    framer.release()  # done
    assert peer.output() == b""
    assert state(framer) == (True, True)


def test_release_after_the_peer_closed_does_nothing() -> None:
    peer = Peer()
    one_close(peer.send(CloseConnection(1000, "bye")), 1000, "bye")
    assert peer.read() == [CloseConnection(1000, "bye")]
    peer.framer.release()
    assert peer.output() == b""


def test_ping_timeout_is_not_held() -> None:
    """A silent peer is no protocol error to answer: Close 1011 at once."""
    peer = Peer(WSSettings(ping_interval=10.0, ping_timeout=5.0))
    framer = peer.framer
    assert framer.handle_timeout(10.0) == []
    peer.output()
    assert peer.send(TextMessage("unanswered"), now=12.0) == [WebSocketMessage(SID, "unanswered")]
    one_close(framer.handle_timeout(15.0), 1006)
    assert state(framer) == (True, True)
    peer.closed_with(1011)
    framer.send(WebSocketMessage(SID, "unanswered"))  # too late to answer
    framer.release()
    assert peer.output() == b""


def test_eof_during_the_hold_ends_it() -> None:
    peer = Peer()
    framer = peer.framer
    one_close(peer.raw(client_frame(0x3)), 1002)
    assert framer.receive_eof() == []  # told already
    assert state(framer) == (True, True)
    framer.send(WebSocketMessage(SID, "after the end"))
    framer.release()
    framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.output() == b""  # the transport is gone: nothing more to write


# ------------------------------------------------------------------ sending


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_send_binary_length_encodings(size: int, header: bytes) -> None:
    peer = Peer()
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    peer.framer.send(WebSocketMessage(SID, payload))
    data = peer.framer.data_to_send()
    assert type(data) is bytes
    assert data == header + payload
    peer.client.receive_data(data)
    events = list(peer.client.events())
    assert len(events) == 1
    assert isinstance(events[0], BytesMessage)
    assert events[0].data == payload


def test_send_text() -> None:
    peer = Peer()
    peer.framer.send(WebSocketMessage(SID, "héllo €"))
    data = peer.output()
    assert data == b"\x81\x0a" + "héllo €".encode()
    peer.client.receive_data(data)
    assert list(peer.client.events()) == [TextMessage("héllo €")]
    peer.framer.send(WebSocketMessage(SID, "é" * 100))  # 100 characters, 200 bytes
    assert peer.output()[:4] == b"\x81\x7e\x00\xc8"


def test_send_compressed() -> None:
    peer = Peer(offer=DEFLATE_OFFER)
    peer.framer.send(WebSocketMessage(SID, "hello " * 1000))
    peer.framer.send(WebSocketMessage(SID, b"\x00" * 5000))
    data = peer.output()
    frames = server_frames(data)
    assert [(f.fin, f.rsv, f.opcode) for f in frames] == [(True, RSV1, TEXT), (True, RSV1, BINARY)]
    assert all(len(f.payload) < 200 for f in frames)
    peer.client.receive_data(data)
    assert list(peer.client.events()) == [
        TextMessage("hello " * 1000),
        BytesMessage(b"\x00" * 5000),
    ]


@pytest.mark.parametrize("no_context_takeover", [False, True])
def test_send_compressed_context_takeover(no_context_takeover: bool) -> None:
    value = b"permessage-deflate" + (
        b"; server_no_context_takeover" if no_context_takeover else b""
    )
    peer = Peer(offer=[(b"sec-websocket-extensions", value)])
    message = "a fairly long message, repeated " * 4
    peer.framer.send(WebSocketMessage(SID, message))
    first = peer.output()
    peer.framer.send(WebSocketMessage(SID, message))
    second = peer.output()
    # Without context takeover each message is compressed alone.
    assert (first == second) is no_context_takeover
    if not no_context_takeover:
        assert len(second) < len(first)
    peer.client.receive_data(first + second)
    assert list(peer.client.events()) == [TextMessage(message), TextMessage(message)]


def test_sends_after_the_end_are_dropped() -> None:
    peer = Peer()
    one_close(peer.send(CloseConnection(1000)), 1000)
    peer.output()
    peer.framer.send(WebSocketMessage(SID, "late"))
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.output() == b""


def test_data_to_send() -> None:
    peer = Peer()
    assert peer.framer.data_to_send() == b""
    assert type(peer.framer.data_to_send()) is bytes
    peer.send(Ping(b"1"))  # one wsproto bytearray queued
    data = peer.framer.data_to_send()
    assert type(data) is bytes
    assert data == b"\x8a\x011"
    assert peer.framer.data_to_send() == b""
    peer.send(Ping(b"2"), Ping(b"3"))
    peer.framer.send(WebSocketMessage(SID, b"4"))
    data = peer.framer.data_to_send()
    assert type(data) is bytes
    assert data == b"\x8a\x012\x8a\x013\x82\x014"


# ------------------------------------------------------------------ the inline path


def twin(settings: WSSettings | None = None, offer: Headers | None = None) -> tuple[Peer, Peer]:
    """Two identical framers: one fed by receive_messages, one by receive."""
    return Peer(settings, offer), Peer(settings, offer)


WHOLE = {
    "text": client_frame(TEXT, "héllo".encode()),
    "binary": client_frame(BINARY, b"\x00\xff" * 10),
    "empty text": client_frame(TEXT),
    "empty binary": client_frame(BINARY),
    "125 bytes": client_frame(TEXT, b"x" * 125),
    "126 bytes (16-bit length)": client_frame(BINARY, b"y" * 126),
    "three in one read": client_frame(TEXT, b"a") + client_frame(BINARY, b"b") + client_frame(TEXT),
}


@pytest.mark.parametrize("wire", list(WHOLE.values()), ids=list(WHOLE))
def test_receive_messages_takes_whole_messages(wire: bytes) -> None:
    """Whole unfragmented data frames: the same events as receive, and the
    same state after (the next message parses alike)."""
    inline, plain = twin()
    events = inline.framer.receive_messages(wire, 0.0, room=10)
    assert events is not None
    assert events == plain.raw(wire)
    assert all(isinstance(event, WebSocketMessage) and event.stream_id == SID for event in events)
    after = client_frame(TEXT, b"after")
    assert inline.raw(after) == plain.raw(after) == [WebSocketMessage(SID, "after")]
    assert inline.output() == plain.output() == b""


DECLINED = {
    "ping": client_frame(PING, b"p"),
    "close": client_frame(CLOSE, close_payload(1000)),
    "a fragment": client_frame(TEXT, b"ab", fin=False),
    "a continuation": client_frame(CONTINUATION, b"cd"),
    "incomplete": client_frame(TEXT, b"abcdef")[:-1],
    "just a header": client_frame(TEXT, b"abcdef")[:2],
    "a message then a ping": client_frame(TEXT, b"a") + client_frame(PING, b"p"),
    "a message then half of one": client_frame(TEXT, b"a") + client_frame(TEXT, b"bc")[:4],
    "unmasked": client_frame(TEXT, b"a", masked=False),
    "RSV1 without deflate": client_frame(TEXT, b"a", rsv=RSV1),
    "invalid UTF-8": client_frame(TEXT, b"\xff\xfe"),
    "overlong 16-bit length": client_frame(TEXT, b"a" * 10, length=200),
    "reserved opcode": client_frame(0x3, b"a"),
}


@pytest.mark.parametrize("wire", list(DECLINED.values()), ids=list(DECLINED))
def test_receive_messages_declines_anything_else(wire: bytes) -> None:
    """``None``, and nothing happened: receive then does exactly what it
    would have done with the bytes (events, answers, failures)."""
    inline, plain = twin()
    assert inline.framer.receive_messages(wire, 0.0, room=10) is None
    assert inline.output() == b""
    assert inline.raw(wire, 1.0) == plain.raw(wire, 1.0)
    assert inline.output() == plain.output()
    assert state(inline.framer) == state(plain.framer)


def test_receive_messages_over_the_limit_is_declined() -> None:
    settings = WSSettings(max_message_size=4)
    inline = Peer(settings)
    assert inline.framer.receive_messages(client_frame(TEXT, b"1234"), 0.0, room=10) == [
        WebSocketMessage(SID, "1234")
    ]
    wire = client_frame(TEXT, b"12345")
    assert inline.framer.receive_messages(wire, 0.0, room=10) is None
    one_close(inline.raw(wire), 1009)


@pytest.mark.parametrize("room", [-1, 0, 1, 2])
def test_receive_messages_room(room: int) -> None:
    """At most ``room`` messages, or none taken."""
    peer = Peer()
    two = client_frame(TEXT, b"a") + client_frame(TEXT, b"b")
    one = client_frame(TEXT, b"c")
    taken_two = peer.framer.receive_messages(two, 0.0, room)
    assert (taken_two is not None) is (room >= 2)
    taken_one = peer.framer.receive_messages(one, 0.0, room)
    assert (taken_one is not None) is (room >= 1)


def test_receive_messages_refreshes_the_ping_timer() -> None:
    peer = Peer(WSSettings(ping_interval=10.0))
    assert peer.framer.next_deadline(0.0) == 10.0
    assert peer.framer.receive_messages(client_frame(TEXT, b"a"), 4.0, room=1) is not None
    assert peer.framer.next_deadline(4.0) == 14.0
    # (declined input does not count: receive takes it and its time)
    assert peer.framer.receive_messages(client_frame(PING), 6.0, room=1) is None
    assert peer.framer.next_deadline(6.0) == 14.0


def test_receive_messages_only_on_the_plain_fast_path() -> None:
    # permessage-deflate negotiated: wsproto parses everything
    deflated = Peer(offer=DEFLATE_OFFER)
    assert deflated.framer.receive_messages(client_frame(TEXT, b"a"), 0.0, room=1) is None
    # wsproto holds half a frame: the rest is its
    peer = Peer()
    frame = client_frame(TEXT, b"abcdef")
    assert peer.raw(frame[:3]) == []
    assert peer.framer.receive_messages(frame[3:], 0.0, room=1) is None
    assert peer.raw(frame[3:]) == [WebSocketMessage(SID, "abcdef")]
    assert peer.framer.receive_messages(client_frame(TEXT, b"g"), 0.0, room=1) is not None
    # closing (our Close sent) and done: nothing is taken
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.framer.receive_messages(client_frame(TEXT, b"h"), 0.0, room=1) is None
    assert peer.raw(client_frame(TEXT, b"h")) == []
    peer.output()
    assert peer.raw(client_frame(CLOSE, close_payload(1000))) == []  # (the app closed: it knows)
    assert state(peer.framer) == (True, True)
    assert peer.framer.receive_messages(client_frame(TEXT, b"i"), 0.0, room=1) is None


MESSAGES: list[bytes | str] = [
    "",
    "x",
    "héllo wörld",
    "y" * 125,
    "z" * 126,
    b"",
    b"\x00",
    bytes(range(256)) * 300,
]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}-{len(m)}")
def test_frame_message_is_send_and_data_to_send(deflate: bool, message: bytes | str) -> None:
    offer = DEFLATE_OFFER if deflate else None
    quick, plain = twin(offer=offer)
    for _ in range(2):  # (twice: the compression context carries over)
        frame = quick.framer.frame_message(message)
        plain.framer.send(WebSocketMessage(SID, message))
        assert type(frame) is bytes
        assert frame == plain.output()
        quick.client.receive_data(frame)
        (event,) = quick.client.events()
        assert isinstance(event, TextMessage | BytesMessage)
        assert event.data == message


def test_frame_message_after_queued_bytes() -> None:
    peer = Peer()
    assert peer.raw(client_frame(PING, b"p")) == []  # a pong queued, not taken yet
    frame = peer.framer.frame_message("m")
    assert frame is not None
    assert [(f.opcode, f.payload) for f in server_frames(frame)] == [(PONG, b"p"), (TEXT, b"m")]
    assert peer.output() == b""


def test_frame_message_while_closing_is_none() -> None:
    peer = Peer()
    peer.framer.send(WebSocketClose(SID, 1000, ""))
    assert peer.framer.frame_message("late") is None
    peer.read()
    assert peer.send(CloseConnection(1000)) == []
    assert state(peer.framer) == (True, True)
    assert peer.framer.frame_message("later") is None
    # a failure's Close held for the app: the answers before it go by send()
    held = Peer()
    failed = held.raw(client_frame(TEXT, b"\xff"))
    one_close(failed, 1007)
    assert held.framer.frame_message("answer") is None
    held.framer.send(WebSocketMessage(SID, "answer"))
    assert [frame.opcode for frame in server_frames(held.output())] == [TEXT]
