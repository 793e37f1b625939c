"""Hostile input for the HTTP/2 adapter: after a valid client preface,
arbitrary bytes and arbitrary sequences of well-formed but hostile frames,
fed in arbitrary splits while a simulated application answers, never make
the adapter raise, report ``ConnectionClosed`` more than once or anything
after it, emit anything but whole frames, or hold more streams than
``max_concurrent_streams``."""

from __future__ import annotations

from collections.abc import Sequence

import h2.config
import h2.connection
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tricorn.protocol.events import (
    Body,
    BodyConsumed,
    ConnectionClosed,
    Data,
    EndBody,
    EndData,
    Event,
    InformationalResponse,
    ProtocolSwitch,
    PushPromise,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
    Writable,
)
from tricorn.protocol.http2 import H2Adapter, H2Settings

from ..unit.protocol.test_http2 import raw_frame
from .test_http1_hostile import splits

HYPOTHESIS = settings(max_examples=200, deadline=None)
LIMITS = H2Settings(
    max_concurrent_streams=3,
    max_header_list_size=4096,
    initial_window_size=1000,
    connection_window_size=70000,
    keep_alive_timeout=5.0,
    keep_alive_max_requests=6,
    ping_interval=3.0,
    max_control_frames=40,
)
INBOUND = (Request, Body, EndBody, Trailers, StreamClosed, ConnectionClosed, Writable)


def client_preface() -> bytes:
    client = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    return client.data_to_send()


PREFACE = client_preface()


# ------------------------------------------------------------------ the driver


class Driver:
    """Feeds an adapter the way the core would and checks the invariants
    after every step; plays a simple application."""

    def __init__(self, limits: H2Settings = LIMITS) -> None:
        self.limits = limits
        self.adapter = H2Adapter(limits, now=0.0)
        self.now = 0.0
        self.closed = False
        self.open: dict[int, int] = {}  # stream id -> body bytes not yet consumed
        self.out = bytearray()
        self.check(self.adapter.receive_data(PREFACE, self.now))

    def check(self, events: Sequence[Event]) -> None:
        assert isinstance(events, list)
        assert all(isinstance(event, INBOUND) for event in events), events
        if self.closed:
            assert events == [], events
        closes = [event for event in events if isinstance(event, ConnectionClosed)]
        assert len(closes) <= 1, events
        if closes:
            assert events[-1] is closes[0], events  # nothing after it
            self.closed = True
            self.open.clear()
        for event in events:
            if isinstance(event, Request):
                self.open[event.stream_id] = 0
            elif isinstance(event, Body):
                if event.stream_id in self.open:
                    self.open[event.stream_id] += len(event.data)
            elif isinstance(event, StreamClosed):
                self.open.pop(event.stream_id, None)
        self.drain()
        assert len(self.adapter._streams) <= self.limits.max_concurrent_streams
        if self.closed:
            assert not self.adapter.wants_read

    def drain(self) -> None:
        data = self.adapter.data_to_send()
        assert isinstance(data, bytes)
        self.out += data
        # The output is always whole frames.
        view = memoryview(data)
        while view:
            assert len(view) >= 9
            length = int.from_bytes(view[:3], "big")
            assert len(view) >= 9 + length
            view = view[9 + length :]

    def feed(self, chunk: bytes, advance: float) -> None:
        self.now += advance
        self.check(self.adapter.receive_data(chunk, self.now))
        self.check(self.adapter.next_events(self.now))

    def tick(self) -> None:
        deadline = self.adapter.next_deadline(self.now)
        if deadline is not None and deadline <= self.now + 10:
            self.now = max(self.now, deadline)
            self.check(self.adapter.handle_timeout(self.now))
            self.check(self.adapter.next_events(self.now))

    def act(self, action: int, stream_pick: int) -> None:
        """One application step on an open stream."""
        if not self.open:
            return
        stream_id = sorted(self.open)[stream_pick % len(self.open)]
        adapter = self.adapter
        if action == 0:
            adapter.send(Response(stream_id, 200, [(b"content-length", b"5")]))
            adapter.send(Data(stream_id, b"hello"))
            adapter.send(EndData(stream_id))
            del self.open[stream_id]
        elif action == 1:
            adapter.send(BodyConsumed(stream_id, self.open[stream_id]))
            self.open[stream_id] = 0
        elif action == 2:
            adapter.send(ResetStream(stream_id))
            del self.open[stream_id]
        elif action == 3:
            adapter.send(InformationalResponse(stream_id, 103, [(b"link", b"</a>")]))
            adapter.send(PushPromise(stream_id, b"/pushed", []))
            adapter.send(Response(stream_id, 200, []))
            adapter.send(Data(stream_id, b"x" * 3000))  # past the default window
            adapter.writable(stream_id)
        elif action == 4:
            adapter.send(Trailers(stream_id, [(b"x-t", b"1")]))
            del self.open[stream_id]
        self.check(adapter.next_events(self.now))


# ------------------------------------------------------------------ strategies

STREAM_IDS = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 0x7FFFFFFF]),
    st.integers(0, 0x7FFFFFFF),
)
ODD_STREAMS = st.sampled_from([1, 3, 5, 7, 9, 11, 13, 15])
FLAGS = st.integers(0, 0xFF)
WINDOW = st.integers(1, 0x7FFFFFFF)
SETTING_VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 16383, 16384, 65535, 0x7FFFFFFF, 0x80000000, 0xFFFFFF, 0x1000000]),
    st.integers(0, 0xFFFFFFFF),
)
FIELD_NAMES = st.one_of(
    st.sampled_from(
        [
            b":method",
            b":path",
            b":scheme",
            b":authority",
            b":status",
            b":protocol",
            b"host",
            b"te",
            b"connection",
            b"content-length",
            b"cookie",
            b"priority",
            b"X-Upper",
            b"x-a",
        ]
    ),
    st.binary(max_size=8),
)
FIELD_VALUES = st.one_of(
    st.sampled_from(
        [b"GET", b"POST", b"CONNECT", b"/", b"", b"https", b"a", b"0", b"5", b"u=0, i"]
    ),
    st.binary(max_size=12),
)
VALID_REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":path", b"/"),
    (b":authority", b"example.com"),
]


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """HPACK bytes: a (fresh-encoder) encoding of a valid or mangled field
    list, or random bytes."""
    kind = draw(st.sampled_from(["valid", "fields", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    fields = list(VALID_REQUEST) if kind == "valid" else []
    fields += draw(st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=6))
    if kind == "fields":
        fields = draw(st.permutations(fields))
    return bytes(hpack.Encoder().encode(fields))


def with_stream(frame: bytes, stream_id: int) -> bytes:
    """``frame`` moved to ``stream_id`` (hyperframe refuses, e.g., a PING
    on a stream or DATA on stream 0)."""
    return frame[:5] + stream_id.to_bytes(4, "big") + frame[9:]


ALL_KINDS = (
    "raw",
    "data",
    "headers",
    "request",
    "priority",
    "rst",
    "settings",
    "push",
    "ping",
    "goaway",
    "window",
    "continuation",
    "priority_update",
)


@st.composite
def frames(
    draw: st.DrawFn,
    kinds: Sequence[str] = ALL_KINDS,
    stream_ids: st.SearchStrategy[int] = STREAM_IDS,
) -> bytes:
    """One serialized frame, well-formed on the wire but hostile."""
    kind = draw(st.sampled_from(kinds))
    sid = draw(stream_ids)
    stream = sid or 1
    frame: bytes
    if kind == "raw":  # any type, including unknown ones, any flags
        return raw_frame(draw(st.integers(0, 0xFF)), draw(FLAGS), sid, draw(st.binary(max_size=40)))
    if kind == "data":
        data = DataFrame(stream, draw(st.binary(max_size=1200)))
        data.flags = set(draw(st.sets(st.sampled_from(["END_STREAM", "PADDED"]))))  # type: ignore[assignment]
        if "PADDED" in data.flags:
            data.pad_length = draw(st.integers(0, 255))
        frame = data.serialize()
    elif kind in ("headers", "request"):
        if kind == "request":
            stream = draw(ODD_STREAMS)
            block = bytes(hpack.Encoder().encode(VALID_REQUEST))
            flags = {"END_HEADERS"} | draw(st.sets(st.just("END_STREAM")))
        else:
            block = draw(header_blocks())
            flags = draw(st.sets(st.sampled_from(["END_STREAM", "END_HEADERS", "PRIORITY"])))
        headers = HeadersFrame(stream, block)
        headers.flags = set(flags)  # type: ignore[assignment]
        if "PRIORITY" in flags:
            headers.depends_on = draw(st.one_of(st.just(stream), STREAM_IDS))
            headers.stream_weight = draw(st.integers(0, 255))
            headers.exclusive = draw(st.booleans())
        frame = headers.serialize()
    elif kind == "priority":
        priority = PriorityFrame(stream)
        # Self-dependency, or a loop with another stream.
        priority.depends_on = draw(st.one_of(st.just(stream), STREAM_IDS))
        priority.stream_weight = draw(st.integers(0, 255))
        priority.exclusive = draw(st.booleans())
        frame = priority.serialize()
    elif kind == "rst":
        frame = RstStreamFrame(stream, error_code=draw(st.integers(0, 0xFFFFFFFF))).serialize()
    elif kind == "settings":
        if draw(st.booleans()):
            frame = SettingsFrame(0, flags=["ACK"]).serialize()
        else:
            values = draw(st.dictionaries(st.integers(0, 0xFFFF), SETTING_VALUES, max_size=4))
            frame = SettingsFrame(0, settings=values).serialize()
    elif kind == "push":
        push = PushPromiseFrame(stream, promised_stream_id=draw(STREAM_IDS) or 2)
        push.data = draw(header_blocks())
        push.flags = {"END_HEADERS"}  # type: ignore[assignment]
        frame = push.serialize()
    elif kind == "ping":
        ping = PingFrame(0, opaque_data=draw(st.binary(min_size=8, max_size=8)))
        if draw(st.booleans()):
            ping.flags = {"ACK"}  # type: ignore[assignment]
        frame = ping.serialize()
    elif kind == "goaway":
        goaway = GoAwayFrame(
            0,
            last_stream_id=draw(STREAM_IDS),
            error_code=draw(st.integers(0, 0xFFFFFFFF)),
            additional_data=draw(st.binary(max_size=8)),
        )
        frame = goaway.serialize()
    elif kind == "window":
        if draw(st.integers(0, 9)) == 0:  # a zero increment
            return raw_frame(0x8, 0, sid, b"\x00\x00\x00\x00")
        frame = WindowUpdateFrame(sid, window_increment=draw(WINDOW)).serialize()
    elif kind == "continuation":
        continuation = ContinuationFrame(stream, draw(header_blocks()))
        continuation.flags = set(draw(st.sets(st.just("END_HEADERS"))))  # type: ignore[assignment]
        frame = continuation.serialize()
    else:
        assert kind == "priority_update"
        if draw(st.booleans()):
            value = draw(
                st.one_of(FIELD_VALUES, st.sampled_from([b"u=0", b"u=7, i", b"u=9", b"i=?0"]))
            )
            body = sid.to_bytes(4, "big") + value
        else:
            body = draw(st.binary(max_size=6))
        return raw_frame(0x10, draw(FLAGS), draw(st.sampled_from([0, 0, sid])), body)
    if draw(st.integers(0, 7)) == 0:  # the wrong kind of stream id
        frame = with_stream(bytes(frame), sid)
    return bytes(frame)


def run(data: st.DataObject, driver: Driver, raw: bytes) -> None:
    """Feed ``raw`` in random splits, with time passing, timers firing and
    the application acting between the pieces."""
    for chunk in data.draw(splits(raw)):
        if chunk:
            driver.feed(chunk, data.draw(st.sampled_from([0.0, 0.0, 0.01, 0.5, 1.1])))
        if data.draw(st.booleans()):
            driver.act(data.draw(st.integers(0, 5)), data.draw(st.integers(0, 7)))
        if data.draw(st.integers(0, 7)) == 0:
            driver.tick()
    if data.draw(st.booleans()):
        driver.check(driver.adapter.begin_shutdown())
    for _ in range(3):
        driver.act(data.draw(st.integers(0, 5)), data.draw(st.integers(0, 7)))
    driver.tick()
    driver.feed(b"", 0.0)  # the peer closes
    assert driver.closed
    assert driver.adapter.idle
    # Nothing more, whatever happens next.
    assert driver.adapter.receive_data(raw[:20] or b"x", driver.now) == []
    assert driver.adapter.next_events(driver.now) == []
    assert driver.adapter.handle_timeout(driver.now + 1e6) == []
    assert driver.adapter.begin_shutdown() == []
    assert isinstance(driver.adapter.data_to_send(), bytes)


# ------------------------------------------------------------------ properties


@HYPOTHESIS
@given(st.data(), st.binary(max_size=2048))
def test_arbitrary_bytes_after_the_preface(data: st.DataObject, raw: bytes) -> None:
    run(data, Driver(), raw)


@HYPOTHESIS
@given(st.data(), st.lists(frames(), max_size=40))
def test_hostile_frames(data: st.DataObject, sequence: list[bytes]) -> None:
    run(data, Driver(), b"".join(sequence))


@HYPOTHESIS
@given(st.data(), st.lists(frames(), max_size=40), st.binary(max_size=64))
def test_hostile_frames_then_garbage(
    data: st.DataObject, sequence: list[bytes], garbage: bytes
) -> None:
    run(data, Driver(), b"".join(sequence) + garbage)


@st.composite
def busy_traffic(draw: st.DrawFn) -> bytes:
    """Mostly well-behaved requests on increasing streams, with bodies,
    window updates, resets and priorities, and now and then a hostile
    frame."""
    encoder = hpack.Encoder()
    next_stream = 1
    opened: list[int] = []
    out: list[bytes] = []
    for _ in range(draw(st.integers(1, 40))):
        step = draw(st.sampled_from(["open", "open", "data", "data", "window", "reset", "other"]))
        if step == "open" or not opened:
            fields = list(VALID_REQUEST)
            fields += draw(st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=2))
            flags = 0x4 | (0x1 if draw(st.booleans()) else 0)  # END_HEADERS, END_STREAM?
            out.append(raw_frame(0x1, flags, next_stream, bytes(encoder.encode(fields))))
            opened.append(next_stream)
            next_stream += 2
        elif step == "data":
            stream_id = draw(st.sampled_from(opened))
            body = draw(st.binary(max_size=1500))
            out.append(raw_frame(0x0, 0x1 if draw(st.booleans()) else 0, stream_id, body))
        elif step == "window":
            stream_id = draw(st.sampled_from([0, *opened]))
            increment = draw(st.one_of(st.integers(1, 70000), WINDOW))
            out.append(raw_frame(0x8, 0, stream_id, increment.to_bytes(4, "big")))
        elif step == "reset":
            stream_id = draw(st.sampled_from(opened))
            out.append(raw_frame(0x3, 0, stream_id, draw(st.integers(0, 13)).to_bytes(4, "big")))
        else:
            out.append(draw(frames()))
    return b"".join(out)


@HYPOTHESIS
@given(st.data(), busy_traffic())
def test_busy_traffic_with_hostile_frames(data: st.DataObject, raw: bytes) -> None:
    run(data, Driver(), raw)


@settings(max_examples=50, deadline=None)
@given(st.data(), st.lists(ODD_STREAMS, min_size=1, max_size=30))
def test_many_requests_stay_within_the_stream_limit(
    data: st.DataObject, stream_ids: list[int]
) -> None:
    encoder = hpack.Encoder()
    raw = b"".join(
        raw_frame(0x1, 0x4, sid, bytes(encoder.encode(VALID_REQUEST))) for sid in stream_ids
    )
    run(data, Driver(), raw)


@settings(max_examples=50, deadline=None)
@given(st.data(), st.lists(frames(), max_size=20))
def test_hostile_frames_after_an_upgrade(data: st.DataObject, sequence: list[bytes]) -> None:
    request = Request(1, b"GET", b"/", [(b"host", b"a")], "2", scheme="http", authority=b"a")
    # HTTP2-Settings: whole 6-byte entries, any values (HTTP/1.1 checks no more).
    entries = data.draw(st.lists(st.tuples(st.integers(0, 9), SETTING_VALUES), max_size=3))
    payload = b"".join(
        code.to_bytes(2, "big") + value.to_bytes(4, "big") for code, value in entries
    )
    switch = ProtocolSwitch("h2c", b"", request, payload, b"")
    adapter = H2Adapter(LIMITS, now=0.0, scheme="http", upgrade=switch)
    driver = Driver.__new__(Driver)
    driver.limits = LIMITS
    driver.adapter = adapter
    driver.now = 0.0
    driver.closed = False
    driver.open = {}
    driver.out = bytearray()
    driver.check(adapter.next_events(0.0))
    if not driver.closed:
        driver.check(adapter.receive_data(PREFACE, 0.0))
    run(data, driver, b"".join(sequence))
