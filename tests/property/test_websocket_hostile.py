"""Hostile input for the WebSocket framing: arbitrary bytes and arbitrary
sequences of well-formed but hostile frames, fed in arbitrary splits while
time passes and a simulated application sends and closes, never make the
framer raise, emit anything but whole messages within the size limit and at
most one close, or write anything but whole unmasked frames (nothing after
its Close). When the peer breaks the protocol, the application may still
answer what came before before it takes the close; then (or at the close
timeout) the Close goes out with the failure's code. Valid client traffic
cut anywhere always comes out as the same messages."""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, Pong, TextMessage
from wsproto.events import Event as WSEvent
from wsproto.extensions import Extension, PerMessageDeflate

from tricorn.protocol.events import Event, Headers, WebSocketClose, WebSocketMessage
from tricorn.protocol.websocket import WebSocketFramer, WSSettings, negotiate

from ..unit.protocol.test_websocket import RawFrame, client_frame, server_frames
from .test_http1_hostile import splits

HYPOTHESIS = settings(max_examples=100, deadline=None)
SID = 3
LIMIT = 1000
CLOSE = 0x8
DEFLATE: Headers = [(b"sec-websocket-extensions", b"permessage-deflate")]
LIMITS = WSSettings(max_message_size=LIMIT, ping_interval=2.0, ping_timeout=1.0, close_timeout=1.0)


def size_of(data: bytes | str) -> int:
    return len(data.encode("utf-8")) if isinstance(data, str) else len(data)


# ------------------------------------------------------------------ the driver


class Driver:
    """Feeds a framer the way a transport would and checks the invariants
    after every step; plays a simple application."""

    def __init__(self, deflate: bool, limits: WSSettings = LIMITS) -> None:
        extensions, response = negotiate(DEFLATE if deflate else [], limits)
        assert (response is not None) is deflate
        self.framer = WebSocketFramer(SID, limits, extensions, now=0.0)
        self.now = 0.0
        self.messages: list[bytes | str] = []
        self.closes: list[WebSocketClose] = []
        self.app_closed = False  # the application sent WebSocketClose before any close event
        self.taken = False  # the application took the close event (or closed after it)
        self.close_sent = False  # a Close frame went out
        self.close_code: int | None = None  # its code
        self.sent_before_close = False  # our Close was out before the close event

    def check(self, events: Sequence[Event]) -> None:
        assert isinstance(events, list)
        for event in events:
            assert isinstance(event, WebSocketMessage | WebSocketClose), events
            assert event.stream_id == SID
            assert not self.closes, events  # nothing after the close
            if isinstance(event, WebSocketMessage):
                assert type(event.data) in (bytes, str)
                assert size_of(event.data) <= LIMIT
                self.messages.append(event.data)
            else:
                assert type(event.code) is int
                assert 1000 <= event.code <= 4999
                self.closes.append(event)
                self.sent_before_close = self.close_sent
        assert len(self.closes) + self.app_closed <= 1
        if self.framer.done:
            assert self.framer.closing
            assert self.closes or self.app_closed
            assert self.framer.next_deadline(self.now) is None
        self.drain()
        if self.closes and self.close_sent and not self.sent_before_close:
            # The Close that answers a close event (the peer's, a failure's,
            # the shutdown's) has its code; 1006 never goes out (a ping
            # timeout: 1011); 1005 is an empty Close.
            code = self.closes[0].code
            if code == 1005:
                assert self.close_code is None
            elif code != 1006:
                assert self.close_code == code, (self.close_code, code)

    def held(self) -> bool:
        """A failure's Close waits for the application."""
        return bool(self.closes) and not self.close_sent and not self.framer.done

    def drain(self) -> list[RawFrame]:
        data = self.framer.data_to_send()
        assert type(data) is bytes
        frames = server_frames(data)
        for frame in frames:  # whole unmasked frames, minimal lengths
            assert not self.close_sent, "a frame after our Close"
            assert frame.rsv in (0, 0x40)
            if frame.opcode == CLOSE:
                self.close_sent = True
                assert len(frame.payload) != 1
                if frame.payload:
                    (code,) = struct.unpack("!H", frame.payload[:2])
                    assert 1000 <= code <= 4999
                    assert code not in (1004, 1005, 1006, 1015)
                    frame.payload[2:].decode("utf-8")
                    self.close_code = code
        return frames

    def feed(self, chunk: bytes, advance: float) -> None:
        self.now += advance
        closing = self.framer.closing
        events = self.framer.receive(chunk, self.now)
        if closing:  # after our Close, nobody listens
            assert not any(isinstance(event, WebSocketMessage) for event in events), events
        self.check(events)

    def tick(self) -> None:
        deadline = self.framer.next_deadline(self.now)
        if deadline is not None:
            assert deadline >= self.now - 10  # (never far in the past)
            if deadline <= self.now + 5:
                self.now = max(self.now, deadline)
                self.check(self.framer.handle_timeout(self.now))

    def act(self, action: int) -> None:
        """One application step, while it has not heard of the end; told
        of it but not having looked yet, it may still answer (echo) or
        close, or it takes the close (the adapter then calls ``release``)."""
        if self.app_closed or self.taken:
            return
        framer = self.framer
        if self.closes:
            held = self.held()
            if action in (0, 1):
                echo = self.messages[-1] if self.messages else "echo"
                framer.send(WebSocketMessage(SID, echo))
                frames = self.drain()
                if held:  # the echo goes out; the Close still waits
                    assert [frame.opcode for frame in frames] in ([0x1], [0x2]), frames
                    assert self.held()
                self.check([])
                return
            if action == 2:  # it closes before it looks: the failure's code goes out
                framer.send(WebSocketClose(SID, 4000, "bye"))
            else:
                framer.release()
            self.taken = True
            self.check([])
            if held:
                assert framer.done
                assert self.close_sent
                assert self.close_code == self.closes[0].code
            # Once it has taken the close, only the peer's answer to our
            # Close (after a shutdown's 1001) is awaited.
            assert framer.done or self.closes[0].code == 1001
            return
        if action == 0:
            framer.send(WebSocketMessage(SID, "é" * 70))
        elif action == 1:
            framer.send(WebSocketMessage(SID, b"\x00" * 300))
        elif action == 2:
            framer.send(WebSocketClose(SID, 4000, "bye"))
            self.app_closed = True
        elif action == 3:
            self.check(framer.begin_shutdown())
            return
        self.check([])

    def finish(self, garbage: bytes) -> None:
        """The transport ends: the application has heard of the end, once,
        and nothing happens any more."""
        self.check(self.framer.receive_eof())
        assert self.framer.done
        assert len(self.closes) + self.app_closed == 1
        framer = self.framer
        assert framer.receive(garbage or b"\x88\x80\x00\x00\x00\x00", self.now) == []
        assert framer.receive_eof() == []
        assert framer.handle_timeout(self.now + 1e6) == []
        assert framer.begin_shutdown() == []
        framer.send(WebSocketMessage(SID, "late"))
        self.drain()
        assert framer.data_to_send() == b""


def run(data: st.DataObject, driver: Driver, raw: bytes) -> None:
    """Feed ``raw`` in random splits, with time passing, timers firing and
    the application acting between the pieces."""
    for chunk in data.draw(splits(raw)):
        driver.feed(chunk, data.draw(st.sampled_from([0.0, 0.0, 0.1, 0.7, 1.5])))
        if data.draw(st.integers(0, 3)) == 0:
            driver.act(data.draw(st.integers(0, 5)))
        if data.draw(st.integers(0, 3)) == 0:
            driver.tick()
    driver.finish(raw[:16])


# ------------------------------------------------------------------ strategies

OPCODES = st.one_of(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]), st.integers(0, 15))
RSV = st.one_of(st.just(0), st.just(0), st.just(0x40), st.integers(0, 7).map(lambda n: n << 4))


def deflated(payload: bytes, final: bool) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    if final:
        return compressor.compress(payload) + compressor.flush(zlib.Z_FINISH)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "close", "deflate", "long", "bomb"]))
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "text":
        return draw(st.text(max_size=60)).encode("utf-8")
    if kind == "close":
        code = draw(st.one_of(st.sampled_from([1000, 1005, 1006, 1016, 2999, 3000, 4999]),
                              st.integers(0, 0xFFFF)))  # fmt: skip
        return struct.pack("!H", code) + draw(st.binary(max_size=10))
    if kind == "deflate":
        return deflated(draw(st.binary(max_size=100)), draw(st.booleans()))
    if kind == "long":
        return b"x" * draw(st.sampled_from([124, 125, 126, 127, LIMIT, LIMIT + 1, 2 * LIMIT]))
    return deflated(bytes(draw(st.sampled_from([LIMIT, LIMIT + 1, 50 * LIMIT]))), False)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One client frame, well-formed on the wire but hostile (or now and
    then simply valid: a small message, ping or pong)."""
    if draw(st.integers(0, 3)) == 0:
        opcode = draw(st.sampled_from([0x1, 0x2, 0x9, 0xA]))
        return client_frame(opcode, draw(st.sampled_from([b"", b"hi", b"x" * 125])))
    payload = draw(payloads())
    length = draw(st.one_of(st.none(), st.none(), st.sampled_from([126, 65536])))
    if length is not None and length < len(payload):
        length = None  # (only a wider encoding than needed)
    frame = client_frame(
        draw(OPCODES),
        payload,
        fin=draw(st.integers(0, 3)) > 0,
        rsv=draw(RSV),
        masked=draw(st.integers(0, 15)) > 0,
        length=length,
    )
    if draw(st.integers(0, 15)) == 0:  # cut short
        frame = frame[: draw(st.integers(0, len(frame)))]
    return frame


# ------------------------------------------------------------------ hostile input


@HYPOTHESIS
@given(st.data(), st.booleans(), st.binary(max_size=1024))
def test_arbitrary_bytes(data: st.DataObject, deflate: bool, raw: bytes) -> None:
    run(data, Driver(deflate), raw)


@HYPOTHESIS
@given(st.data(), st.booleans(), st.binary(max_size=256))
def test_arbitrary_bytes_after_a_frame_header(
    data: st.DataObject, deflate: bool, raw: bytes
) -> None:
    """Past the masking check: the garbage is a masked frame's payload and
    what follows."""
    header = data.draw(
        st.sampled_from([b"\x81\xfe\x01\x00", b"\xc2\x9e", b"\x01\x84", b"\x89\x85"])
    )
    run(data, Driver(deflate), header + b"\x00\x00\x00\x00" + raw)


@HYPOTHESIS
@given(st.data(), st.booleans(), st.lists(frames(), max_size=12), st.binary(max_size=32))
def test_hostile_frames(
    data: st.DataObject, deflate: bool, sequence: list[bytes], garbage: bytes
) -> None:
    run(data, Driver(deflate), b"".join(sequence) + garbage)


# ------------------------------------------------------------------ valid traffic

OFFERS = st.sampled_from(
    [
        b"permessage-deflate",
        b"permessage-deflate; client_no_context_takeover",
        b"permessage-deflate; server_no_context_takeover",
        b"permessage-deflate; client_max_window_bits",
        b"permessage-deflate; client_max_window_bits=9",
        b"permessage-deflate; server_max_window_bits=12; client_no_context_takeover",
    ]
)
MESSAGES = st.one_of(st.text(max_size=100), st.binary(max_size=300))


class Client:
    """A wsproto client for the extensions ``negotiate`` chose."""

    def __init__(self, offer: bytes | None, limits: WSSettings) -> None:
        headers = [(b"sec-websocket-extensions", offer)] if offer else []
        extensions, response = negotiate(headers, limits)
        self.framer = WebSocketFramer(SID, limits, extensions, now=0.0)
        client_extensions: list[Extension] = []
        if response is not None:
            extension = PerMessageDeflate()
            extension.finalize(response.decode("latin-1"))
            client_extensions.append(extension)
        self.deflate = bool(client_extensions)
        self.connection = Connection(ConnectionType.CLIENT, client_extensions)


def cut(data: st.DataObject, message: bytes | str) -> list[bytes | str]:
    """``message`` in one or more fragments (some maybe empty)."""
    points = sorted(data.draw(st.lists(st.integers(0, len(message)), max_size=4)))
    bounds = [0, *points, len(message)]
    return [message[start:end] for start, end in itertools.pairwise(bounds)]


def client_wire(data: st.DataObject, client: Client, messages: list[bytes | str]) -> bytes:
    """The client's frames for ``messages``, fragmented, with pings in
    between; by hand (UTF-8 cut anywhere) or by wsproto."""
    out: list[bytes] = []
    for message in messages:
        if not client.deflate and isinstance(message, str) and data.draw(st.booleans()):
            parts = cut(data, message.encode("utf-8"))
            for index, part in enumerate(parts):
                assert isinstance(part, bytes)
                opcode = 0x1 if index == 0 else 0x0
                out.append(client_frame(opcode, part, fin=index == len(parts) - 1))
                if data.draw(st.integers(0, 3)) == 0:
                    out.append(client.connection.send(Ping(b"p%d" % index)))
            continue
        parts = cut(data, message)
        for index, part in enumerate(parts):
            finished = index == len(parts) - 1
            event: WSEvent
            if isinstance(part, str):
                event = TextMessage(part, message_finished=finished)
            else:
                event = BytesMessage(part, message_finished=finished)
            out.append(client.connection.send(event))
            if data.draw(st.integers(0, 3)) == 0:
                out.append(client.connection.send(Ping(b"q%d" % index)))
        if data.draw(st.integers(0, 3)) == 0:
            out.append(client.connection.send(Pong(b"unsolicited")))
    return b"".join(out)


@settings(max_examples=75, deadline=None)
@given(
    st.data(),
    st.one_of(st.none(), OFFERS),
    st.lists(MESSAGES, max_size=6),
)
def test_valid_messages_in_any_split(
    data: st.DataObject, offer: bytes | None, messages: list[bytes | str]
) -> None:
    client = Client(offer, WSSettings(max_message_size=LIMIT))
    framer = client.framer
    wire = client_wire(data, client, messages)
    received: list[bytes | str] = []
    for chunk in data.draw(splits(wire)):
        for event in framer.receive(chunk, 0.0):
            assert isinstance(event, WebSocketMessage), event
            received.append(event.data)
            framer.send(event)  # the application echoes
    assert received == messages
    assert [type(m) for m in received] == [type(m) for m in messages]
    assert not framer.closing
    # The echoes and the pongs parse back on the client side.
    output = framer.data_to_send()
    assert type(output) is bytes
    client.connection.receive_data(output)
    echoed: list[bytes | str] = []
    for reply in client.connection.events():
        if isinstance(reply, TextMessage):
            echoed.append(reply.data)
        elif isinstance(reply, BytesMessage):
            echoed.append(bytes(reply.data))
        else:
            assert isinstance(reply, Pong), reply
    assert echoed == messages


SIZED = st.one_of(
    st.integers(LIMIT - 3, LIMIT + 3).map(lambda n: b"b" * n),
    st.integers(LIMIT // 2 - 2, LIMIT // 2 + 2).map(lambda n: "é" * n),  # 2 bytes each
    st.integers(0, 2 * LIMIT).map(lambda n: b"\x00" * n),
)


@settings(max_examples=50, deadline=None)
@given(st.data(), st.one_of(st.none(), OFFERS), st.lists(SIZED, min_size=1, max_size=5))
def test_message_size_limit_is_exact(
    data: st.DataObject, offer: bytes | None, messages: list[bytes | str]
) -> None:
    """Every message up to the limit comes through; the first one past it
    fails the WebSocket with 1009 and nothing after it is delivered."""
    client = Client(offer, WSSettings(max_message_size=LIMIT))
    framer = client.framer
    wire = client_wire(data, client, messages)
    events: list[Event] = []
    for chunk in data.draw(splits(wire)):
        events += framer.receive(chunk, 0.0)
    fitting: list[bytes | str] = []
    for message in messages:
        if size_of(message) > LIMIT:
            break
        fitting.append(message)
    delivered = [e.data for e in events if isinstance(e, WebSocketMessage)]
    assert delivered == fitting
    closes = [e for e in events if isinstance(e, WebSocketClose)]
    if len(fitting) == len(messages):
        assert closes == []
        assert not framer.done
    else:
        assert closes == [WebSocketClose(SID, 1009, closes[0].reason)]
        assert events[-1] is closes[0]
        # The Close waits for the application (the pongs before it go out).
        assert (framer.closing, framer.done) == (True, False)
        assert CLOSE not in [frame.opcode for frame in server_frames(framer.data_to_send())]
        framer.release()
        assert (framer.closing, framer.done) == (True, True)
        frames = server_frames(framer.data_to_send())
        assert [frame.opcode for frame in frames] == [CLOSE]
        assert frames[0].payload[:2] == b"\x03\xf1"  # 1009
