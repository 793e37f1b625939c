"""The HTTP/1.1 adapter driven with bytes only; its responses are read back
with a real h11 client connection. Every request case is fed three ways:
whole, byte by byte, and followed by the bytes of a next request."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import h11
import pytest

from tricorn.errors import AppProtocolError
from tricorn.protocol import http1
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
    ReadyForBody,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
)
from tricorn.protocol.http1 import H1Adapter, H1Settings

NOW = 1000.0
HOST = b"Host: example.com\r\n"
GET = b"GET / HTTP/1.1\r\n" + HOST + b"\r\n"
NEXT = b"GET /next HTTP/1.1\r\n" + HOST + b"\r\n"
ERROR_STATUSES = {400, 408, 414, 431, 501, 505}


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Feeder:
    """Feeds a request to an adapter in one of three ways."""

    mode: str

    @property
    def trailing(self) -> bool:
        return self.mode == "trailing"

    def __call__(self, adapter: H1Adapter, data: bytes, now: float = NOW) -> list[Event]:
        if self.mode == "whole":
            return adapter.receive_data(data, now)
        if self.mode == "bytewise":
            events: list[Event] = []
            for i in range(len(data)):
                events += adapter.receive_data(data[i : i + 1], now)
            return merge_bodies(events)
        assert self.mode == "trailing"
        return adapter.receive_data(data + NEXT, now)


@pytest.fixture(params=["whole", "bytewise", "trailing"])
def feed(request: pytest.FixtureRequest) -> Feeder:
    return Feeder(request.param)


def merge_bodies(events: Sequence[Event]) -> list[Event]:
    """Join consecutive Body events of one stream (byte-by-byte feeding
    splits a body into as many events as bytes)."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, Body) and isinstance(last, Body) and last.stream_id == event.stream_id:
            merged[-1] = Body(event.stream_id, last.data + event.data)
        else:
            merged.append(event)
    return merged


def reads(a: H1Adapter) -> bool:
    """``a.wants_read``, through a call so that mypy does not narrow it."""
    return a.wants_read


PARSERS = ("h11", "httptools")
_parser = ["h11"]  # the request reader of the running test


@pytest.fixture(autouse=True, params=PARSERS)
def http1_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs with both request readers (``http1_parser``)."""
    _parser[0] = request.param
    yield request.param
    _parser[0] = "h11"


def adapter(**settings: object) -> H1Adapter:
    settings.setdefault("parser", _parser[0])
    return H1Adapter(H1Settings(**settings))  # type: ignore[arg-type]


@dataclass
class Parsed:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    informational: list[int] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


def parse_responses(
    raw: bytes, methods: Sequence[bytes] = (b"GET",), *, eof: bool = False
) -> list[Parsed]:
    """Parse ``raw`` as the answers to ``methods`` with an h11 client; every
    response must be complete (``eof`` ends a close-delimited body). No
    byte may be left over."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw)
    parsed: list[Parsed] = []
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("host", "example.com")]))
        client.send(h11.EndOfMessage())
        current: Parsed | None = None
        informational: list[int] = []
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                assert eof, f"incomplete response in {raw!r}"
                client.receive_data(b"")
                eof = False
                continue
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                current = Parsed(event.status_code, list(event.headers), b"", informational)
            elif isinstance(event, h11.Data):
                assert current is not None
                current.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert current is not None
                current.trailers = list(event.headers)
                parsed.append(current)
                break
            else:
                raise AssertionError(f"unexpected client event {event!r}")
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
        else:
            assert method == methods[-1], "connection must close after this response"
    assert client.trailing_data[0] == b"", "bytes after the last response"
    return parsed


def parse_one(raw: bytes, method: bytes = b"GET", *, eof: bool = False) -> Parsed:
    return parse_responses(raw, (method,), eof=eof)[0]


def respond(
    a: H1Adapter,
    stream_id: int = 1,
    body: bytes = b"ok",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """Send a complete content-length response; return its bytes."""
    if headers is None:
        headers = [(b"content-length", str(len(body)).encode())]
    a.send(Response(stream_id, 200, headers))
    a.send(Data(stream_id, body))
    a.send(EndData(stream_id))
    return a.data_to_send()


def assert_error(a: H1Adapter, events: Sequence[Event], status: int) -> Parsed:
    """The adapter answered with a text/plain ``status`` and closes."""
    assert events, "no events"
    assert isinstance(events[-1], ConnectionClosed)
    assert not any(isinstance(e, Request) for e in events)
    response = parse_one(a.data_to_send())
    assert response.status == status
    assert response.header(b"content-type") == [b"text/plain; charset=utf-8"]
    assert response.header(b"connection") == [b"close"]
    assert response.body.startswith(str(status).encode())
    assert not reads(a)
    assert a.next_events(NOW) == []  # ConnectionClosed was handed out once
    assert a.receive_data(NEXT, NOW) == []
    assert a.data_to_send() == b""
    return response


def finish_and_check_next(a: H1Adapter, feed: Feeder, stream_id: int = 1) -> None:
    """Complete the response of ``stream_id``; in trailing mode the next
    request comes out of ``next_events``, otherwise the adapter reads on."""
    parse_one(respond(a, stream_id))
    if feed.trailing:
        assert not reads(a)
        assert a.next_events(NOW) == [
            Request(stream_id + 2, b"GET", b"/next", [(b"host", b"example.com")], "1.1"),
            EndBody(stream_id + 2),
        ]
    else:
        assert a.next_events(NOW) == []
    assert reads(a)


# ------------------------------------------------------------------ requests


def test_simple_get(feed: Feeder) -> None:
    a = adapter()
    raw = b"GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Custom-Header: Value\r\n\r\n"
    events = feed(a, raw)
    assert events == [
        Request(
            stream_id=1,
            method=b"GET",
            target=b"/path?q=1",
            headers=[(b"host", b"example.com"), (b"x-custom-header", b"Value")],
            http_version="1.1",
        ),
        EndBody(1),
    ]
    assert not a.idle
    assert a.data_to_send() == b""
    finish_and_check_next(a, feed)


def test_empty_line_before_request_line_is_ignored(feed: Feeder) -> None:
    # RFC 9112 section 2.2: a server SHOULD ignore at least one empty line
    # received before the request-line (old clients send CRLF after a body).
    a = adapter()
    events = feed(a, b"\r\n" + GET)
    assert events == [Request(1, b"GET", b"/", [(b"host", b"example.com")], "1.1"), EndBody(1)]


def test_raw_headers_kept_when_asked() -> None:
    a = adapter(pass_raw_headers=True)
    (request, _) = a.receive_data(b"GET / HTTP/1.1\r\nHoSt: example.com\r\n\r\n", NOW)
    assert isinstance(request, Request)
    assert request.headers == [(b"host", b"example.com")]
    assert request.raw_headers == [(b"HoSt", b"example.com")]


def test_http10_request(feed: Feeder) -> None:
    a = adapter()
    events = feed(a, b"GET / HTTP/1.0\r\n\r\n")
    # Bytes after a non-persistent HTTP/1.0 request are ignored, not an error
    # that aborts the exchange (RFC 9112 section 9.3).
    assert events == [Request(1, b"GET", b"/", [], "1.0"), EndBody(1)]
    response = parse_one(respond(a), eof=True)
    assert response.body == b"ok"
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)


def test_keep_alive_second_request_waits_for_end_data() -> None:
    a = adapter()
    assert a.receive_data(GET, NOW) == [
        Request(1, b"GET", b"/", [(b"host", b"example.com")], "1.1"),
        EndBody(1),
    ]
    a.send(Response(1, 200, [(b"content-length", b"2")]))
    a.send(Data(1, b"ok"))
    # The next request arrives before the response ends: it waits.
    assert a.receive_data(NEXT, NOW) == []
    assert not reads(a)
    assert a.next_events(NOW) == []
    a.send(EndData(1))
    assert a.next_events(NOW) == [
        Request(3, b"GET", b"/next", [(b"host", b"example.com")], "1.1"),
        EndBody(3),
    ]
    assert reads(a)
    first, second = parse_responses(a.data_to_send() + respond(a, 3), (b"GET", b"GET"))
    assert (first.body, second.body) == (b"ok", b"ok")
    assert first.header(b"connection") == second.header(b"connection") == []
    # A third request, read after the second response, is stream 5.
    assert a.receive_data(GET, NOW)[0] == Request(
        5, b"GET", b"/", [(b"host", b"example.com")], "1.1"
    )


def test_pipelining_hands_out_one_request_at_a_time() -> None:
    a = adapter()
    raw = b"".join(b"GET /%d HTTP/1.1\r\n%s\r\n" % (i, HOST) for i in (1, 2, 3))
    events = a.receive_data(raw, NOW)
    assert events == [Request(1, b"GET", b"/1", [(b"host", b"example.com")], "1.1"), EndBody(1)]
    assert not reads(a)
    assert a.next_events(NOW) == []
    for stream_id, target in ((3, b"/2"), (5, b"/3")):
        respond(a, stream_id - 2)
        assert not reads(a)  # next_events has something to hand out
        assert not a.idle
        assert a.next_events(NOW) == [
            Request(stream_id, b"GET", target, [(b"host", b"example.com")], "1.1"),
            EndBody(stream_id),
        ]
        assert a.next_events(NOW) == []
        # Still bytes of the third request buffered after the second one.
        assert reads(a) is (stream_id == 5)
    respond(a, 5)
    assert a.next_events(NOW) == []
    assert reads(a)
    assert a.idle


def test_content_length_body(feed: Feeder) -> None:
    a = adapter()
    raw = b"POST /up HTTP/1.1\r\n" + HOST + b"Content-Length: 11\r\n\r\nhello world"
    events = feed(a, raw)
    assert events == [
        Request(1, b"POST", b"/up", [(b"host", b"example.com"), (b"content-length", b"11")], "1.1"),
        Body(1, b"hello world"),
        EndBody(1),
    ]
    finish_and_check_next(a, feed)


def test_chunked_body(feed: Feeder) -> None:
    a = adapter()
    raw = (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    events = feed(a, raw)
    assert isinstance(events[0], Request)
    assert events[0].headers[-1] == (b"transfer-encoding", b"chunked")
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"hello world"
    assert all(e.stream_id == 1 for e in events if isinstance(e, Body))
    assert events[-1] == EndBody(1)
    finish_and_check_next(a, feed)


def test_chunked_body_trailers_are_accepted(feed: Feeder) -> None:
    a = adapter()
    raw = (
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n"
    )
    events = feed(a, raw)
    assert events[1:] == [Body(1, b"hi"), EndBody(1)]
    finish_and_check_next(a, feed)


def test_backpressure_on_queued_body() -> None:
    a = adapter(max_queued_body=2)
    events = a.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 6\r\n\r\n", NOW)
    assert isinstance(events[0], Request)
    assert reads(a)
    assert a.receive_data(b"ab", NOW) == [Body(1, b"ab")]
    assert reads(a)
    assert a.receive_data(b"cd", NOW) == [Body(1, b"cd")]
    assert not reads(a)
    a.send(BodyConsumed(1, 2))
    assert reads(a)
    assert a.receive_data(b"ef", NOW) == [Body(1, b"ef"), EndBody(1)]


def test_expect_100_continue(feed: Feeder) -> None:
    a = adapter()
    raw = b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    events = feed(a, raw) if not feed.trailing else a.receive_data(raw, NOW)
    assert len(events) == 1
    assert isinstance(events[0], Request)
    assert events[0].expect_continue
    assert a.data_to_send() == b""
    a.send(ReadyForBody(1))
    interim = a.data_to_send()
    assert interim.startswith(b"HTTP/1.1 100 ")
    assert interim.endswith(b"\r\n\r\n")
    a.send(ReadyForBody(1))  # only once
    assert a.data_to_send() == b""
    assert a.receive_data(b"ok", NOW) == [Body(1, b"ok"), EndBody(1)]
    response = parse_one(interim + respond(a))
    assert response.informational == [100]
    assert response.status == 200


def test_no_100_continue_unless_asked(feed: Feeder) -> None:
    a = adapter()
    raw = b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\n"
    events = feed(a, raw) if not feed.trailing else a.receive_data(raw, NOW)
    assert isinstance(events[0], Request)
    assert not events[0].expect_continue
    a.send(ReadyForBody(1))
    assert a.data_to_send() == b""


def test_te_trailers_flag(feed: Feeder) -> None:
    a = adapter()
    events = feed(a, b"GET / HTTP/1.1\r\n" + HOST + b"TE: trailers\r\n\r\n")
    assert isinstance(events[0], Request)
    assert events[0].trailers_accepted


# ------------------------------------------------------------------ responses


def test_content_length_response() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, 200, [(b"content-type", b"text/plain"), (b"content-length", b"5")]))
    a.send(Data(1, b"hel"))
    a.send(Data(1, b""))
    a.send(Data(1, b"lo"))
    a.send(EndData(1))
    raw = a.data_to_send()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    response = parse_one(raw)
    assert response.body == b"hello"
    assert response.header(b"content-length") == [b"5"]
    assert response.header(b"transfer-encoding") == []
    assert a.next_events(NOW) == []
    assert a.idle


def test_chunked_response() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, 200, []))
    a.send(Data(1, b"hello "))
    a.send(Data(1, b"world"))
    a.send(EndData(1))
    raw = a.data_to_send()
    response = parse_one(raw)
    assert response.header(b"transfer-encoding") == [b"chunked"]
    assert response.body == b"hello world"
    assert raw.endswith(b"0\r\n\r\n")
    assert a.next_events(NOW) == []


@pytest.mark.parametrize("headers", [[(b"content-length", b"5")], []])
def test_head_response_has_no_body(headers: list[tuple[bytes, bytes]]) -> None:
    a = adapter()
    a.receive_data(b"HEAD / HTTP/1.1\r\n" + HOST + b"\r\n", NOW)
    a.send(Response(1, 200, headers))
    a.send(Data(1, b"hello"))
    a.send(EndData(1))
    raw = a.data_to_send()
    assert raw.endswith(b"\r\n\r\n")
    assert b"hello" not in raw
    assert parse_one(raw, b"HEAD").body == b""
    assert a.next_events(NOW) == []  # the connection stays usable
    assert a.receive_data(GET, NOW)[0] == Request(
        3, b"GET", b"/", [(b"host", b"example.com")], "1.1"
    )


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, status, []))
    a.send(Data(1, b"ignored"))
    a.send(EndData(1))
    raw = a.data_to_send()
    assert raw.startswith(b"HTTP/1.1 %d " % status)
    assert raw.endswith(b"\r\n\r\n")
    assert b"ignored" not in raw
    assert b"transfer-encoding" not in raw.lower()
    assert parse_one(raw).status == status
    assert a.next_events(NOW) == []
    assert a.receive_data(GET, NOW)[0] == Request(
        3, b"GET", b"/", [(b"host", b"example.com")], "1.1"
    )


def test_http10_close_delimited_response() -> None:
    a = adapter()
    a.receive_data(b"GET / HTTP/1.0\r\n\r\n", NOW)
    a.send(Response(1, 200, []))
    a.send(Data(1, b"hello"))
    a.send(EndData(1))
    raw = a.data_to_send()
    assert b"transfer-encoding" not in raw.lower()
    assert raw.endswith(b"\r\n\r\nhello")
    response = parse_one(raw, eof=True)
    assert response.body == b"hello"
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)
    assert not reads(a)
    assert a.next_events(NOW) == []


def test_informational_response_on_http11() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(InformationalResponse(1, 103, [(b"link", b"</s.css>; rel=preload")]))
    hint = a.data_to_send()
    assert hint.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    assert b"link: </s.css>; rel=preload\r\n" in hint
    response = parse_one(hint + respond(a))
    assert response.informational == [103]
    assert response.status == 200


def test_informational_response_dropped_on_http10() -> None:
    a = adapter()
    a.receive_data(b"GET / HTTP/1.0\r\n\r\n", NOW)
    a.send(InformationalResponse(1, 103, [(b"link", b"</s.css>; rel=preload")]))
    assert a.data_to_send() == b""
    a.send(Response(1, 200, [(b"content-length", b"2")]))
    a.send(Data(1, b"ok"))
    a.send(EndData(1))
    assert parse_one(a.data_to_send()).informational == []


def test_trailers_sent_when_accepted() -> None:
    a = adapter()
    a.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"TE: trailers\r\n\r\n", NOW)
    a.send(Response(1, 200, [(b"trailer", b"x-checksum")]))
    a.send(Data(1, b"hello"))
    a.send(Trailers(1, [(b"x-checksum", b"abc")]))
    response = parse_one(a.data_to_send())
    assert response.body == b"hello"
    assert response.trailers == [(b"x-checksum", b"abc")]
    assert a.next_events(NOW) == []
    assert a.idle


@pytest.mark.parametrize(
    ("request_headers", "response_headers"),
    [
        (b"", []),  # the client did not send TE: trailers
        (b"TE: trailers\r\n", [(b"content-length", b"5")]),  # not chunked
    ],
    ids=["no-te", "content-length"],
)
def test_trailers_dropped_but_response_ends(
    request_headers: bytes, response_headers: list[tuple[bytes, bytes]]
) -> None:
    a = adapter()
    a.receive_data(b"GET / HTTP/1.1\r\n" + HOST + request_headers + b"\r\n", NOW)
    a.send(Response(1, 200, response_headers))
    a.send(Data(1, b"hello"))
    a.send(Trailers(1, [(b"x-checksum", b"abc")]))
    raw = a.data_to_send()
    assert b"x-checksum: abc" not in raw.lower()
    response = parse_one(raw)
    assert response.body == b"hello"
    assert response.trailers == []
    assert a.next_events(NOW) == []
    assert a.receive_data(GET, NOW)[0] == Request(
        3, b"GET", b"/", [(b"host", b"example.com")], "1.1"
    )


def test_keep_alive_max_requests() -> None:
    a = adapter(keep_alive_max_requests=2)
    a.receive_data(GET, NOW)
    first = parse_one(respond(a))
    assert first.header(b"connection") == []
    assert a.next_events(NOW) == []
    a.receive_data(GET, NOW)
    second = parse_one(respond(a, 3))
    assert second.header(b"connection") == [b"close"]
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)
    assert not reads(a)


def test_client_connection_close(feed: Feeder) -> None:
    a = adapter()
    events = feed(a, b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    assert events[:2] == [
        Request(1, b"GET", b"/", [(b"host", b"example.com"), (b"connection", b"close")], "1.1"),
        EndBody(1),
    ]
    # The client promised to send nothing more; bytes it sends anyway must
    # not abort the exchange (RFC 9112 section 9.6: they are just ignored).
    assert len(events) == 2
    response = parse_one(respond(a))
    assert response.body == b"ok"
    assert response.header(b"connection") == [b"close"]
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)


def test_reset_stream_closes_connection() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, 200, []))
    a.send(Data(1, b"partial"))
    a.send(ResetStream(1))
    assert a.idle
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)
    assert a.next_events(NOW) == []
    assert not reads(a)
    a.send(Data(1, b"more"))
    assert b"more" not in a.data_to_send()


def test_reset_stream_before_response() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(ResetStream(1))
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)
    assert a.data_to_send() == b""


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-bad", b"a\r\nset-cookie: evil=1")],
        [(b"x-bad", b"a\nb")],
        [(b"x bad", b"a")],
    ],
)
def test_invalid_response_header_raises(headers: list[tuple[bytes, bytes]]) -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    with pytest.raises(AppProtocolError):
        a.send(Response(1, 200, headers))
    assert b"evil" not in a.data_to_send()


def remembered_lines() -> list[bytes]:
    return [line for values in http1._FIELD_LINES.values() for line in values.values()]


def test_validated_fields_are_remembered_within_a_bound() -> None:
    """Serialized fields are kept for the next responses (most repeat), at
    most ``_FIELD_VALUES_MAX`` values of a name and ``_FIELD_NAMES_MAX``
    names; a value that would split the response is never kept, and
    refused every time."""
    http1._FIELD_LINES.clear()
    for i in range(http1._FIELD_NAMES_MAX + 10):
        a = adapter()
        a.receive_data(GET, NOW)
        name, value = b"x-name-%d" % (i % (http1._FIELD_NAMES_MAX + 5)), b"v%d" % i
        headers = [(b"content-length", b"2"), (b"x-id", value), (name, b"same")]
        response = parse_one(respond(a, headers=headers))
        assert response.header(b"x-id") == [value]
        assert response.header(name) == [b"same"]
        assert len(http1._FIELD_LINES) <= http1._FIELD_NAMES_MAX
        assert all(len(values) <= http1._FIELD_VALUES_MAX for values in http1._FIELD_LINES.values())
        assert b"%s: same\r\n" % name in remembered_lines()  # (the latest is kept)
    assert b"content-length" not in http1._FIELD_LINES  # framing: never kept
    for _ in range(2):
        a = adapter()
        a.receive_data(GET, NOW)
        with pytest.raises(AppProtocolError):
            a.send(Response(1, 200, [(b"x-bad", b"a\r\nset-cookie: evil=1")]))
    assert not any(b"evil" in line for line in remembered_lines())


@pytest.mark.parametrize("remembered", [False, True])
def test_response_content_length_is_checked_each_time(remembered: bool) -> None:
    """A Content-Length value read once is remembered (bounded) with its
    number, and still checked against the others and the body."""
    http1._LENGTHS.clear()
    if remembered:
        for value in (b"2", b"3", b"x1"):
            a = adapter()
            a.receive_data(GET, NOW)
            if value.isdigit():
                a.send(Response(1, 200, [(b"content-length", value)]))
            else:
                with pytest.raises(AppProtocolError):
                    a.send(Response(1, 200, [(b"content-length", value)]))
    a = adapter()
    a.receive_data(GET, NOW)
    response = parse_one(respond(a, headers=[(b"content-length", b"2"), (b"content-length", b"2")]))
    assert response.header(b"content-length") == [b"2"]  # a repeated identical value: once
    for headers in (
        [(b"content-length", b"2"), (b"content-length", b"3")],
        [(b"content-length", b"x1")],
        [(b"content-length", b"1\r\nx-evil: 1")],
    ):
        a = adapter()
        a.receive_data(GET, NOW)
        with pytest.raises(AppProtocolError):
            a.send(Response(1, 200, headers))
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, 200, [(b"content-length", b"3")]))
    with pytest.raises(AppProtocolError):
        a.send(Data(1, b"four"))  # longer than the remembered 3
    for i in range(http1._LENGTHS_MAX + 10):
        a = adapter()
        a.receive_data(GET, NOW)
        body = b"x" * (i % 300)
        assert parse_one(respond(a, body=body)).body == body
        assert len(http1._LENGTHS) <= http1._LENGTHS_MAX


def test_host_values_matched_once_are_remembered_within_a_bound() -> None:
    """A Host value that matched is remembered (a bounded few); one that
    did not is refused every time and never remembered."""
    http1._VALID_HOSTS.clear()
    for i in range(http1._VALID_HOSTS_MAX + 10):
        host = b"h%d.example:80" % i
        events = adapter().receive_data(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", NOW)
        assert isinstance(events[0], Request)
        assert host in http1._VALID_HOSTS
        assert len(http1._VALID_HOSTS) <= http1._VALID_HOSTS_MAX
    for _ in range(2):
        a = adapter()
        assert_error(a, a.receive_data(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", NOW), 400)
    assert b"a b" not in http1._VALID_HOSTS


def test_a_remembered_line_is_the_one_for_its_value() -> None:
    """Two values of one name, and one value under two names, each get
    their own line (a cache keyed wrongly would answer with another's)."""
    http1._FIELD_LINES.clear()
    for headers in (
        [(b"x-a", b"1"), (b"x-b", b"1")],
        [(b"x-a", b"2"), (b"x-b", b"1")],
        [(b"x-b", b"2"), (b"x-a", b"1")],
    ) * 2:
        a = adapter()
        a.receive_data(GET, NOW)
        response = parse_one(respond(a, headers=[(b"content-length", b"2"), *headers]))
        for name, value in headers:
            assert response.header(name) == [value]


def test_remembered_field_keeps_its_meaning() -> None:
    """A remembered ``connection: close`` would lose its close: the fields
    that decide framing and persistence are looked at every time."""
    for _ in range(2):
        a = adapter()
        a.receive_data(GET, NOW)
        raw = respond(a, headers=[(b"content-length", b"2"), (b"connection", b"close")])
        assert parse_one(raw).header(b"connection") == [b"close"]
        (closed,) = a.next_events(NOW)
        assert isinstance(closed, ConnectionClosed)


def test_body_longer_than_content_length_raises() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, 200, [(b"content-length", b"2")]))
    with pytest.raises(AppProtocolError):
        a.send(Data(1, b"too long"))
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)


# ------------------------------------------------------------------ errors


def line(status_line: bytes, *headers: bytes) -> bytes:
    return status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


POST = b"POST / HTTP/1.1"
ERROR_CASES = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="malformed-request-line"),
    pytest.param(b"GET /\r\n" + HOST + b"\r\n", 400, id="no-version"),
    pytest.param(line(b"GET / HTTP/1.1"), 400, id="missing-host"),
    pytest.param(line(b"GET / HTTP/1.1", b"Host: a b"), 400, id="host-space"),
    pytest.param(line(b"GET / HTTP/1.1", b"Host: x/y"), 400, id="host-slash"),
    pytest.param(line(b"GET / HTTP/1.1", b"Host: a", b"Host: b"), 400, id="two-hosts"),
    pytest.param(line(b"GET / HTTP/1.1", b"Host: a", b"Host: a"), 400, id="two-same-hosts"),
    pytest.param(line(b"GET / HTTP/1.1", b"Host : a"), 400, id="space-before-colon"),
    pytest.param(line(POST, HOST[:-2], b"Content-Length : 2"), 400, id="cl-space-before-colon"),
    pytest.param(line(b"GET / HTTP/1.1", b"Host: a:b"), 400, id="host-bad-port"),
    pytest.param(line(b"GET / HTTP/2.0", b"Host: a"), 505, id="http-2.0"),
    pytest.param(line(b"GET / HTTP/1.2", b"Host: a"), 505, id="http-1.2"),
    pytest.param(
        line(POST, HOST[:-2], b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        400,
        id="cl-and-te",
    ),
    pytest.param(
        line(POST, HOST[:-2], b"Transfer-Encoding: chunked", b"Content-Length: 2"),
        400,
        id="te-and-cl",
    ),
    pytest.param(
        line(POST, HOST[:-2], b"Content-Length: 2", b"Content-Length: 2"), 400, id="duplicate-cl"
    ),
    pytest.param(
        line(POST, HOST[:-2], b"Content-Length: 2", b"Content-Length: 3"), 400, id="conflicting-cl"
    ),
    pytest.param(line(POST, HOST[:-2], b"Content-Length: 2, 2"), 400, id="cl-list"),
    pytest.param(line(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked"), 400, id="te-in-http-1.0"),
    pytest.param(line(POST, HOST[:-2], b"Content-Length: -1"), 400, id="negative-cl"),
    pytest.param(line(POST, HOST[:-2], b"Content-Length: abc"), 400, id="non-numeric-cl"),
    pytest.param(
        line(POST, HOST[:-2], b"Transfer-Encoding: chunked, chunked"), 400, id="te-chunked-twice"
    ),
    pytest.param(line(POST, HOST[:-2], b"Transfer-Encoding: gzip"), 400, id="te-not-chunked"),
    pytest.param(
        line(POST, HOST[:-2], b"Transfer-Encoding: chunked, gzip"), 400, id="te-chunked-not-last"
    ),
    pytest.param(
        line(POST, HOST[:-2], b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        400,
        id="two-te-headers",
    ),
    pytest.param(
        line(POST, HOST[:-2], b"Transfer-Encoding: gzip, chunked"), 501, id="te-gzip-chunked"
    ),
    pytest.param(
        line(POST, HOST[:-2], b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"),
        501,
        id="te-gzip-then-chunked-headers",
    ),
]


@pytest.mark.parametrize(("raw", "status"), ERROR_CASES)
def test_bad_request_head(feed: Feeder, raw: bytes, status: int) -> None:
    a = adapter()
    events = feed(a, raw)
    assert_error(a, events, status)


def test_request_line_too_long(feed: Feeder) -> None:
    a = adapter(max_incomplete_size=1024)
    raw = b"GET /" + b"a" * 2048 + b" HTTP/1.1\r\n" + HOST + b"\r\n"
    events = feed(a, raw)
    response = assert_error(a, events, 414)
    assert response.status == 414


def test_headers_too_large(feed: Feeder) -> None:
    a = adapter(max_incomplete_size=1024)
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 60) for i in range(40))
    raw = b"GET / HTTP/1.1\r\n" + HOST + headers + b"\r\n"
    events = feed(a, raw)
    assert_error(a, events, 431)


def test_bad_chunk_size_aborts_the_stream(feed: Feeder) -> None:
    a = adapter()
    raw = (
        b"POST / HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    )
    events = feed(a, raw)
    assert isinstance(events[0], Request)
    assert events[1:-1] == [StreamClosed(1)]
    assert isinstance(events[-1], ConnectionClosed)
    assert a.data_to_send() == b""
    assert not reads(a)
    assert a.next_events(NOW) == []


# ------------------------------------------------------------------ EOF


def test_eof_when_idle() -> None:
    a = adapter()
    (closed,) = a.receive_data(b"", NOW)
    assert isinstance(closed, ConnectionClosed)
    assert a.data_to_send() == b""
    assert not reads(a)


def test_eof_when_idle_after_a_response() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    respond(a)
    assert a.next_events(NOW) == []
    (closed,) = a.receive_data(b"", NOW)
    assert isinstance(closed, ConnectionClosed)


def test_eof_mid_head() -> None:
    a = adapter()
    assert a.receive_data(b"GET / HTTP/1.1\r\nHo", NOW) == []
    (closed,) = a.receive_data(b"", NOW)
    assert isinstance(closed, ConnectionClosed)
    assert a.data_to_send() == b""


def test_eof_mid_body() -> None:
    a = adapter()
    events = a.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc", NOW)
    assert events[1:] == [Body(1, b"abc")]
    events = a.receive_data(b"", NOW)
    assert events[:-1] == [StreamClosed(1)]
    assert isinstance(events[-1], ConnectionClosed)
    assert a.data_to_send() == b""


def test_eof_while_response_pending() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    events = a.receive_data(b"", NOW)
    assert events[:-1] == [StreamClosed(1)]
    assert isinstance(events[-1], ConnectionClosed)
    assert a.idle


# ------------------------------------------------------------------ timers


def test_keep_alive_idle_timeout() -> None:
    a = adapter(keep_alive_timeout=5.0, read_timeout=None)
    assert a.next_deadline(100.0) == 105.0
    assert a.next_deadline(103.0) == 105.0  # stamped once
    assert a.handle_timeout(104.9) == []
    (closed,) = a.handle_timeout(105.0)
    assert isinstance(closed, ConnectionClosed)
    assert a.data_to_send() == b""
    assert a.next_deadline(106.0) is None
    assert a.handle_timeout(200.0) == []


def test_keep_alive_timer_restarts_after_a_response() -> None:
    a = adapter(keep_alive_timeout=5.0)
    assert a.next_deadline(0.0) == 5.0
    a.receive_data(GET, 1.0)
    assert a.next_deadline(2.0) is None  # the response is in flight
    assert a.handle_timeout(100.0) == []
    respond(a)
    assert a.next_events(50.0) == []
    assert a.next_deadline(50.0) == 55.0
    assert a.handle_timeout(54.0) == []
    assert isinstance(a.handle_timeout(55.0)[0], ConnectionClosed)


def test_no_keep_alive_timeout_when_disabled() -> None:
    a = adapter(keep_alive_timeout=None)
    assert a.next_deadline(0.0) is None
    assert a.handle_timeout(1e9) == []


def test_header_read_timeout() -> None:
    a = adapter(keep_alive_timeout=5.0, header_read_timeout=10.0)
    assert a.next_deadline(0.0) == 5.0
    assert a.receive_data(b"GET / HTTP/1.1\r\n", 3.0) == []
    assert a.next_deadline(3.5) == 13.0  # from the first head byte, not the idle timer
    assert a.receive_data(b"Host: example.com\r\n", 8.0) == []
    assert a.next_deadline(8.0) == 13.0  # progress does not extend it (slowloris)
    assert a.handle_timeout(12.0) == []
    events = a.handle_timeout(13.0)
    assert isinstance(events[-1], ConnectionClosed)
    response = parse_one(a.data_to_send())
    assert response.status == 408
    assert response.header(b"connection") == [b"close"]


def test_header_read_timeout_for_a_pipelined_head() -> None:
    a = adapter(keep_alive_timeout=5.0, header_read_timeout=10.0)
    a.receive_data(GET + b"GET /next HTTP/1.1\r\n", 0.0)
    respond(a)
    assert a.next_events(20.0) == []
    deadline = a.next_deadline(20.0)
    assert deadline is not None
    assert deadline <= 30.0


def test_body_read_timeout_without_response() -> None:
    a = adapter(body_read_timeout=30.0)
    events = a.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc", 0.0)
    assert events[-1] == Body(1, b"abc")
    assert a.next_deadline(1.0) == 30.0
    a.receive_data(b"de", 20.0)  # progress restarts the timer
    assert a.next_deadline(21.0) == 50.0
    assert a.handle_timeout(49.0) == []
    events = a.handle_timeout(50.0)
    assert events[:-1] == [StreamClosed(1)]
    assert isinstance(events[-1], ConnectionClosed)
    assert parse_one(a.data_to_send()).status == 408


def test_body_read_timeout_after_response_started() -> None:
    a = adapter(body_read_timeout=30.0)
    a.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc", 0.0)
    a.send(Response(1, 200, []))
    assert a.data_to_send().startswith(b"HTTP/1.1 200 ")
    events = a.handle_timeout(30.0)
    assert events[:-1] == [StreamClosed(1)]
    assert isinstance(events[-1], ConnectionClosed)
    assert a.data_to_send() == b""  # no 408 after a response head


def test_no_body_timer_while_the_app_holds_the_body() -> None:
    # The module docstring: no timer runs "while the app has not consumed
    # the body already delivered" -- the client is not the one stalling.
    a = adapter(max_queued_body=1, body_read_timeout=30.0)
    a.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc", 0.0)
    assert not reads(a)
    assert a.next_deadline(1.0) is None
    assert a.handle_timeout(100.0) == []
    a.send(BodyConsumed(1, 3))
    assert reads(a)
    assert a.next_deadline(200.0) == 230.0


def test_no_body_timer_while_the_client_waits_for_100_continue() -> None:
    a = adapter(body_read_timeout=1.0)
    head = b"POST / HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    a.receive_data(head, 0.0)
    assert a.next_deadline(0.0) is None  # the app has not asked for the body yet
    assert a.handle_timeout(50.0) == []
    a.send(ReadyForBody(1))
    assert a.data_to_send().startswith(b"HTTP/1.1 100 ")
    assert a.next_deadline(60.0) == 61.0  # now the client owes us the body


def test_no_deadline_while_response_in_flight() -> None:
    a = adapter(keep_alive_timeout=5.0, header_read_timeout=10.0, read_timeout=1.0)
    a.receive_data(GET, 0.0)
    assert a.next_deadline(0.0) is None
    assert a.next_deadline(1e6) is None
    assert a.handle_timeout(1e6) == []


def test_read_timeout_caps_the_wait() -> None:
    a = adapter(keep_alive_timeout=5.0, header_read_timeout=10.0, read_timeout=2.0)
    assert a.next_deadline(0.0) == 2.0
    assert a.receive_data(b"GET / HTTP/1.1\r\n", 1.0) == []
    assert a.next_deadline(1.5) == 3.0
    assert a.receive_data(HOST, 2.5) == []
    assert a.next_deadline(2.5) == 4.5
    assert a.handle_timeout(4.0) == []
    events = a.handle_timeout(4.5)
    assert isinstance(events[-1], ConnectionClosed)
    assert parse_one(a.data_to_send()).status == 408


def test_read_timeout_caps_body_wait() -> None:
    a = adapter(body_read_timeout=30.0, read_timeout=2.0)
    a.receive_data(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 10\r\n\r\nabc", 0.0)
    assert a.next_deadline(0.5) == 2.0
    events = a.handle_timeout(2.0)
    assert events[0] == StreamClosed(1)


# ------------------------------------------------------------------ shutdown


def test_shutdown_when_idle_after_a_request() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    respond(a)
    assert a.next_events(NOW) == []
    (closed,) = a.begin_shutdown()
    assert isinstance(closed, ConnectionClosed)
    assert not reads(a)
    assert a.data_to_send() == b""


def test_shutdown_gives_a_fresh_connection_a_moment_for_its_request() -> None:
    """Accepted just before the listener closed: the request is on its way.
    Nothing at all within the grace (1 s from the start): a quiet close."""
    a = adapter(keep_alive_timeout=5.0)
    assert a.next_deadline(10.0) == 15.0  # the connection starts at 10.0
    assert a.begin_shutdown() == []
    assert reads(a)
    assert a.next_deadline(10.5) == 11.0
    assert a.handle_timeout(10.9) == []
    (closed,) = a.handle_timeout(11.0)
    assert isinstance(closed, ConnectionClosed)
    assert a.data_to_send() == b""


def test_shutdown_serves_the_first_request_of_a_fresh_connection() -> None:
    a = adapter()
    a.next_deadline(10.0)
    assert a.begin_shutdown() == []
    events = a.receive_data(GET, 10.2)
    assert events == [Request(1, b"GET", b"/", [(b"host", b"example.com")], "1.1"), EndBody(1)]
    response = parse_one(respond(a))
    assert response.header(b"connection") == [b"close"]
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)


def test_shutdown_during_a_request(feed: Feeder) -> None:
    a = adapter()
    events = feed(a, GET)
    assert events == [Request(1, b"GET", b"/", [(b"host", b"example.com")], "1.1"), EndBody(1)]
    assert a.begin_shutdown() == []
    response = parse_one(respond(a))
    assert response.header(b"connection") == [b"close"]
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)
    assert a.next_events(NOW) == []


def test_shutdown_during_a_response_already_started() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    a.send(Response(1, 200, [(b"content-length", b"2")]))
    assert a.begin_shutdown() == []
    a.send(Data(1, b"ok"))
    a.send(EndData(1))
    assert parse_one(a.data_to_send()).body == b"ok"
    (closed,) = a.next_events(NOW)
    assert isinstance(closed, ConnectionClosed)


# ------------------------------------------------------------------ h2c

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = bytes.fromhex("000006040000000000000300000064")  # SETTINGS MAX_CONCURRENT_STREAMS=100
GOAWAY_PROTOCOL_ERROR = bytes.fromhex("0000080700000000000000000000000001")
# SETTINGS_ENABLE_PUSH=0, SETTINGS_INITIAL_WINDOW_SIZE=65535: two 6-byte entries.
SETTINGS_PAYLOAD = bytes.fromhex("00020000000000040000ffff")
SETTINGS_B64 = base64.urlsafe_b64encode(SETTINGS_PAYLOAD).rstrip(b"=")
UPGRADE_HEADERS = (
    b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: " + SETTINGS_B64 + b"\r\n"
)
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"


def test_h2c_preface() -> None:
    a = adapter(h2c=True)
    data = H2_PREFACE + H2_SETTINGS
    assert a.receive_data(data, NOW) == [ProtocolSwitch("h2c", data)]
    assert a.data_to_send() == b""
    assert not reads(a)
    assert a.next_events(NOW) == []
    assert a.receive_data(b"more", NOW) == []


@pytest.mark.parametrize("extra", [b"", H2_SETTINGS])
def test_h2c_preface_byte_by_byte(extra: bytes) -> None:
    a = adapter(h2c=True)
    for i in range(len(H2_PREFACE) - 1):
        assert a.receive_data(H2_PREFACE[i : i + 1], NOW) == []
        assert reads(a)
    data = H2_PREFACE + extra
    assert a.receive_data(data[len(H2_PREFACE) - 1 :], NOW) == [ProtocolSwitch("h2c", data)]
    assert a.data_to_send() == b""


@pytest.mark.parametrize("cut", [1, 3, 10, 23])
def test_h2c_preface_in_two_parts(cut: int) -> None:
    a = adapter(h2c=True)
    data = H2_PREFACE + H2_SETTINGS
    assert a.receive_data(data[:cut], NOW) == []
    assert a.receive_data(data[cut:], NOW) == [ProtocolSwitch("h2c", data)]


@pytest.mark.parametrize(
    "raw",
    [
        b"PRI garbage\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
        b"PRI * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PRI / HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
@pytest.mark.parametrize("bytewise", [False, True])
def test_h2c_broken_preface(raw: bytes, bytewise: bool) -> None:
    a = adapter(h2c=True)
    events: list[Event] = []
    for chunk in [raw[i : i + 1] for i in range(len(raw))] if bytewise else [raw]:
        events += a.receive_data(chunk, NOW)
    assert len(events) == 1
    assert isinstance(events[0], ConnectionClosed)
    assert a.data_to_send() == GOAWAY_PROTOCOL_ERROR  # no HTTP/1.1 response
    assert not reads(a)
    assert a.next_events(NOW) == []


def test_h2c_partial_preface_then_eof() -> None:
    a = adapter(h2c=True)
    assert a.receive_data(H2_PREFACE[:8], NOW) == []
    (closed,) = a.receive_data(b"", NOW)
    assert isinstance(closed, ConnectionClosed)
    assert a.data_to_send() == b""


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"PATCH"])
def test_h2c_requests_starting_with_p(feed: Feeder, method: bytes) -> None:
    a = adapter(h2c=True)
    raw = method + b" /p HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\nhi"
    assert feed(a, raw) == [
        Request(1, method, b"/p", [(b"host", b"example.com"), (b"content-length", b"2")], "1.1"),
        Body(1, b"hi"),
        EndBody(1),
    ]
    assert a.data_to_send() == b""
    a.send(BodyConsumed(1, 2))
    finish_and_check_next(a, feed)


def test_h2c_only_on_the_first_bytes() -> None:
    a = adapter(h2c=True)
    a.receive_data(GET, NOW)
    parse_one(respond(a))
    events = a.receive_data(H2_PREFACE, NOW)
    assert [type(event) for event in events] == [ConnectionClosed]
    response = parse_one(a.data_to_send())
    assert response.status in {400, 505}


@pytest.mark.parametrize("bytewise", [False, True])
def test_h2c_off_preface_is_http11(bytewise: bool) -> None:
    a = adapter()  # h2c off (the TLS listener)
    events: list[Event] = []
    for chunk in (
        [H2_PREFACE[i : i + 1] for i in range(len(H2_PREFACE))] if bytewise else [H2_PREFACE]
    ):
        events += a.receive_data(chunk, NOW)
    assert not any(isinstance(event, ProtocolSwitch) for event in events)
    response = parse_one(a.data_to_send())
    assert response.status in {400, 505}
    assert isinstance(events[-1], ConnectionClosed)


def upgraded(method: bytes = b"GET", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request(
        1,
        method,
        b"/up",
        [(b"host", b"example.com"), *(headers or [])],
        "2",
        scheme="http",
        authority=b"example.com",
    )


def test_h2c_upgrade_get(feed: Feeder) -> None:
    a = adapter(h2c=True)
    raw = b"GET /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"X-A: 1\r\n\r\n"
    events = feed(a, raw)
    assert events == [
        ProtocolSwitch(
            "h2c",
            NEXT if feed.trailing else b"",
            upgraded(headers=[(b"x-a", b"1")]),
            SETTINGS_PAYLOAD,
            b"",
        )
    ]
    assert a.data_to_send() == SWITCHING
    assert not reads(a)
    assert a.next_events(NOW) == []


def test_h2c_upgrade_hands_over_the_preface() -> None:
    a = adapter(h2c=True)
    raw = b"GET /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n"
    (switch,) = a.receive_data(raw + H2_PREFACE + H2_SETTINGS, NOW)
    assert isinstance(switch, ProtocolSwitch)
    assert switch.data == H2_PREFACE + H2_SETTINGS


def test_h2c_upgrade_drops_hop_by_hop_headers() -> None:
    a = adapter(h2c=True)
    raw = (
        b"GET /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Keep-Alive: 5\r\nTE: trailers\r\n"
        b"Accept: */*\r\n\r\n"
    )
    (switch,) = a.receive_data(raw, NOW)
    assert isinstance(switch, ProtocolSwitch)
    assert switch.request is not None
    assert switch.request.headers == [(b"host", b"example.com"), (b"accept", b"*/*")]
    assert switch.request.trailers_accepted
    assert switch.request.http_version == "2"


def test_h2c_upgrade_post_with_content_length(feed: Feeder) -> None:
    a = adapter(h2c=True)
    raw = b"POST /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Content-Length: 5\r\n\r\nhello"
    events = feed(a, raw)
    assert events == [
        ProtocolSwitch(
            "h2c",
            NEXT if feed.trailing else b"",
            upgraded(b"POST", [(b"content-length", b"5")]),
            SETTINGS_PAYLOAD,
            b"hello",
        )
    ]
    assert a.data_to_send() == SWITCHING


def test_h2c_upgrade_post_chunked(feed: Feeder) -> None:
    a = adapter(h2c=True)
    raw = (
        b"POST /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    events = feed(a, raw)
    assert events == [
        ProtocolSwitch(
            "h2c", NEXT if feed.trailing else b"", upgraded(b"POST"), SETTINGS_PAYLOAD, b"abcdefg"
        )
    ]
    assert a.data_to_send() == SWITCHING


def test_h2c_upgrade_waits_for_the_whole_body() -> None:
    a = adapter(h2c=True)
    raw = b"POST /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Content-Length: 5\r\n\r\nhel"
    assert a.receive_data(raw, NOW) == []
    assert a.data_to_send() == b""
    assert reads(a)
    (switch,) = a.receive_data(b"lo", NOW)
    assert isinstance(switch, ProtocolSwitch)
    assert switch.body == b"hello"
    assert a.data_to_send() == SWITCHING


def test_h2c_upgrade_body_too_large(feed: Feeder) -> None:
    a = adapter(h2c=True, h2c_max_upgrade_body=4)
    raw = b"POST /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Content-Length: 10\r\n\r\n0123456789"
    events = feed(a, raw)
    assert [type(event) for event in events] == [Request, Body, EndBody]
    request = events[0]
    assert isinstance(request, Request)
    assert request.http_version == "1.1"
    assert (b"upgrade", b"h2c") in request.headers
    assert events[1:] == [Body(1, b"0123456789"), EndBody(1)]
    assert a.data_to_send() == b""  # no 101
    a.send(BodyConsumed(1, 10))
    finish_and_check_next(a, feed)


def test_h2c_upgrade_body_too_large_chunked() -> None:
    a = adapter(h2c=True, h2c_max_upgrade_body=4)
    raw = b"POST /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Transfer-Encoding: chunked\r\n\r\n"
    assert a.receive_data(raw + b"3\r\nabc\r\n", NOW) == []
    events = a.receive_data(b"3\r\ndef\r\n", NOW)
    assert [type(event) for event in events] == [Request, Body]
    assert events[1] == Body(1, b"abcdef")
    assert a.receive_data(b"2\r\ngh\r\n0\r\n\r\n", NOW) == [Body(1, b"gh"), EndBody(1)]
    assert a.data_to_send() == b""


NO_UPGRADE = {
    "connection without http2-settings": (
        b"Host: example.com\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + SETTINGS_B64 + b"\r\n"
    ),
    "connection without upgrade": (
        b"Host: example.com\r\nConnection: HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: " + SETTINGS_B64 + b"\r\n"
    ),
    "no connection": (
        b"Host: example.com\r\nUpgrade: h2c\r\nHTTP2-Settings: " + SETTINGS_B64 + b"\r\n"
    ),
    "no http2-settings": (
        b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    ),
    "two http2-settings": UPGRADE_HEADERS + b"HTTP2-Settings: " + SETTINGS_B64 + b"\r\n",
    "bad base64": (
        b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: !!!!\r\n"
    ),
    "base64 with a space": (
        b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAIA AAAA\r\n"
    ),
    "base64 padding": (
        b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: A\r\n"
    ),
    "not whole settings": (
        b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAIAAAA\r\n"
    ),
    "upgrade to websocket": (
        b"Host: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: websocket\r\n"
        b"HTTP2-Settings: " + SETTINGS_B64 + b"\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    ),
}


@pytest.mark.parametrize("headers", list(NO_UPGRADE.values()), ids=list(NO_UPGRADE))
def test_h2c_no_upgrade(feed: Feeder, headers: bytes) -> None:
    a = adapter(h2c=True)
    events = feed(a, b"GET /up HTTP/1.1\r\n" + headers + b"\r\n")
    assert [type(event) for event in events] == [Request, EndBody]
    request = events[0]
    assert isinstance(request, Request)
    assert request.http_version == "1.1"
    assert a.data_to_send() == b""
    finish_and_check_next(a, feed)


def test_h2c_no_upgrade_for_http10() -> None:
    a = adapter(h2c=True)
    events = a.receive_data(b"GET /up HTTP/1.0\r\n" + UPGRADE_HEADERS + b"\r\n", NOW)
    assert [type(event) for event in events] == [Request, EndBody]
    assert a.data_to_send() == b""


def test_h2c_upgrade_only_on_the_first_request() -> None:
    a = adapter(h2c=True)
    a.receive_data(GET, NOW)
    parse_one(respond(a))
    events = a.receive_data(b"GET /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n", NOW)
    assert [type(event) for event in events] == [Request, EndBody]
    assert a.data_to_send() == b""


def test_h2c_upgrade_off() -> None:
    a = adapter()
    events = a.receive_data(b"GET /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"\r\n", NOW)
    assert [type(event) for event in events] == [Request, EndBody]
    assert a.data_to_send() == b""


def test_h2c_no_upgrade_when_the_client_expects_100_continue() -> None:
    # The upgrade would wait for a body the client holds back until a
    # 100 Continue only the application can send: serve HTTP/1.1 instead.
    a = adapter(h2c=True)
    raw = (
        b"POST /up HTTP/1.1\r\n" + UPGRADE_HEADERS + b"Expect: 100-continue\r\n"
        b"Content-Length: 2\r\n\r\n"
    )
    (request,) = a.receive_data(raw, NOW)
    assert isinstance(request, Request)
    assert request.http_version == "1.1"
    assert request.expect_continue
    assert a.data_to_send() == b""
    a.send(ReadyForBody(1))
    assert a.data_to_send().startswith(b"HTTP/1.1 100 ")
    assert a.receive_data(b"ok", NOW) == [Body(1, b"ok"), EndBody(1)]


# ------------------------------------------------------------------ after a response


def test_bad_second_head_gets_an_error_response() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    parse_one(respond(a))
    events = a.receive_data(b"GET / HTTP/1.1\r\n" + HOST + b"bad header\r\n\r\n", NOW)
    assert_error(a, events, 400)


def test_second_head_read_timeout_gets_408() -> None:
    a = adapter()
    a.receive_data(GET, NOW)
    parse_one(respond(a))
    assert a.receive_data(b"GET / HTTP/1.1\r\n", NOW + 1) == []
    deadline = a.next_deadline(NOW + 1)
    assert deadline is not None
    assert_error(a, a.handle_timeout(deadline), 408)
