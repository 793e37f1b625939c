"""Hostile input for the HTTP/1.1 adapter: arbitrary bytes, mutated request
heads and arbitrary splits never raise, never depend on how the bytes were
split, always end in a request or a short error response, and never buffer
more than ``max_incomplete_size`` plus one read."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tricorn.protocol.events import (
    Body,
    ConnectionClosed,
    EndBody,
    Event,
    Request,
    StreamClosed,
)
from tricorn.protocol.http1 import H1Adapter, H1Settings

from ..unit.protocol.test_http1 import merge_bodies

NOW = 0.0
ERROR_STATUSES = {400, 408, 414, 431, 501, 505}
EVENT_TYPES = (Request, Body, EndBody, StreamClosed, ConnectionClosed)
HYPOTHESIS = settings(max_examples=200, deadline=None)
# Every property holds for both request readers (``http1_parser``).
PARSERS = pytest.mark.parametrize("parser", ["h11", "httptools"])


# ------------------------------------------------------------------ helpers


def feed(adapter: H1Adapter, chunks: Sequence[bytes], *, eof: bool = False) -> list[Event]:
    """Feed ``chunks`` the way the core would (ignoring ``wants_read``, as
    a hostile client's bytes may already sit in the socket buffer), then
    poll ``next_events`` once."""
    events: list[Event] = []
    for chunk in chunks:
        if chunk:
            events += adapter.receive_data(chunk, NOW)
    if eof:
        events += adapter.receive_data(b"", NOW)
    events += adapter.next_events(NOW)
    return merge_bodies(events)


def outcome(
    chunks: Sequence[bytes], *, eof: bool = False, **kwargs: object
) -> tuple[list[Event], int | None, bool]:
    """What the adapter did with ``chunks``: its events (close reasons, which
    are for logging, left out), the status of its error response if it sent
    one, and whether it reads on."""
    adapter = H1Adapter(H1Settings(**kwargs))  # type: ignore[arg-type]
    events = feed(adapter, chunks, eof=eof)
    assert all(isinstance(event, EVENT_TYPES) for event in events), events
    out = adapter.data_to_send()
    normalized = [ConnectionClosed() if isinstance(e, ConnectionClosed) else e for e in events]
    return normalized, error_status(out) if out else None, adapter.wants_read


def error_status(raw: bytes) -> int:
    """Parse ``raw`` as one complete response with an h11 client."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.Response), raw
    headers = dict(response.headers)
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"].startswith(b"text/plain")
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data), raw
    assert client.trailing_data[0] == b""
    return int(response.status_code)


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random points."""
    if not data:
        return [data]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


TOKEN = st.binary(min_size=1, max_size=12).filter(lambda b: b.strip() == b)
INJECTIONS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b",",
    b"\x7f",
    b"\xff",
]
NAMES = st.one_of(
    st.sampled_from(
        [b"Host", b"Content-Length", b"Transfer-Encoding", b"TE", b"Expect", b"Connection", b"X-A"]
    ),
    st.binary(max_size=10),
)
VALUES = st.one_of(
    st.sampled_from(
        [
            b"example.com",
            b"a b",
            b"0",
            b"3",
            b"-1",
            b"chunked",
            b"gzip, chunked",
            b"chunked, chunked",
            b"100-continue",
            b"close",
            b"trailers",
        ]
    ),
    st.binary(max_size=20),
)


@st.composite
def hostile_heads(draw: st.DrawFn) -> bytes:
    """A request head built from tricky parts and then mutated."""
    method = draw(st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT"]), TOKEN))
    target = draw(st.one_of(st.just(b"/"), st.binary(max_size=16).map(lambda b: b"/" + b)))
    version = draw(
        st.one_of(
            st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/11"]),
            st.binary(max_size=9),
        )
    )
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    headers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=6))
    if draw(st.booleans()):
        headers.insert(0, (b"Host", b"example.com"))
    lines = [method + b" " + target + b" " + version]
    lines += [name + b": " + value for name, value in headers]
    head = bytearray(eol.join(lines) + eol + eol)
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(head)))
        head[position:position] = draw(st.sampled_from(INJECTIONS))
    body = draw(st.binary(max_size=16))
    return bytes(head) + body


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    """One to three well-formed pipelined requests, with bodies (a
    Content-Length body may be empty: ``Content-Length: 0``)."""
    requests = []
    for _ in range(draw(st.integers(1, 3))):
        value = draw(st.binary(max_size=20).map(lambda b: bytes(c for c in b if 0x21 <= c < 0x7F)))
        body = draw(st.binary(max_size=40))
        framing = draw(st.sampled_from(["none", "length", "chunked"]))
        head = b"POST /p HTTP/1.1\r\nHost: example.com\r\nX-V: " + value + b"\r\n"
        if framing == "none" or (framing == "chunked" and not body):
            requests.append(b"GET /g HTTP/1.1\r\nHost: example.com\r\n\r\n")
        elif framing == "length":
            requests.append(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        else:
            cut = draw(st.integers(1, len(body)))
            parts = [body[:cut], body[cut:]]
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
            requests.append(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
    return b"".join(requests)


# ------------------------------------------------------------------ properties


@PARSERS
@HYPOTHESIS
@given(st.data(), st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(parser: str, data: st.DataObject, raw: bytes) -> None:
    adapter = H1Adapter(H1Settings(max_incomplete_size=1024, parser=parser))
    events = feed(adapter, data.draw(splits(raw)), eof=data.draw(st.booleans()))
    assert all(isinstance(event, EVENT_TYPES) for event in events)
    adapter.data_to_send()
    assert all(isinstance(e, EVENT_TYPES) for e in adapter.handle_timeout(1e9))


@PARSERS
@HYPOTHESIS
@given(st.data(), st.binary(max_size=1000))
def test_arbitrary_bytes_split_invariant(parser: str, data: st.DataObject, raw: bytes) -> None:
    chunks = data.draw(splits(raw))
    assert outcome(chunks, max_incomplete_size=1024, parser=parser) == outcome(
        [raw], max_incomplete_size=1024, parser=parser
    )


@PARSERS
@HYPOTHESIS
@given(st.data(), hostile_heads())
def test_hostile_heads_split_invariant(parser: str, data: st.DataObject, raw: bytes) -> None:
    chunks = data.draw(splits(raw))
    assert outcome(chunks, parser=parser) == outcome([raw], parser=parser)


@PARSERS
@HYPOTHESIS
@given(hostile_heads())
def test_every_head_is_a_request_or_an_error(parser: str, raw: bytes) -> None:
    adapter = H1Adapter(H1Settings(parser=parser))
    events = feed(adapter, [raw])
    if not events:  # a mutation broke the blank line that ends the head
        assert adapter.wants_read
        events = feed(adapter, [], eof=True)
        assert events == [ConnectionClosed("connection closed by the peer")]
        assert adapter.data_to_send() == b""
        return
    if isinstance(events[0], Request):
        assert events[0].stream_id == 1
        assert adapter.data_to_send() == b""
        return
    assert not any(isinstance(event, (Request, Body, EndBody)) for event in events)
    assert isinstance(events[-1], ConnectionClosed)
    assert error_status(adapter.data_to_send()) in ERROR_STATUSES
    assert not adapter.wants_read


@PARSERS
@HYPOTHESIS
@given(st.data(), valid_requests())
def test_valid_requests_split_invariant(parser: str, data: st.DataObject, raw: bytes) -> None:
    chunks = data.draw(splits(raw))
    events, status, _ = outcome(chunks, parser=parser)
    assert (events, status) == outcome([raw], parser=parser)[:2]
    assert status is None
    assert isinstance(events[0], Request)
    assert events[0].stream_id == 1
    assert events[-1] == EndBody(1)
    assert not any(isinstance(event, (StreamClosed, ConnectionClosed)) for event in events)


@PARSERS
@settings(max_examples=50, deadline=None)
@given(
    st.integers(256, 16 * 1024),
    st.integers(64, 8192),
    st.sampled_from(["request-line", "headers"]),
)
def test_unterminated_head_is_bounded(parser: str, max_size: int, chunk: int, kind: str) -> None:
    adapter = H1Adapter(H1Settings(max_incomplete_size=max_size, parser=parser))
    if kind == "request-line":
        stream = b"GET /" + b"a" * (1 << 20)
        expected = 414
    else:
        stream = b"GET / HTTP/1.1\r\n" + b"X-Filler: v\r\n" * ((1 << 20) // 13)
        expected = 431
    fed = 0
    events: list[Event] = []
    while fed < len(stream) and adapter.wants_read:
        events = adapter.receive_data(stream[fed : fed + chunk], NOW)
        fed += chunk
        if events:
            break
    assert fed <= max_size + chunk
    assert isinstance(events[-1], ConnectionClosed)
    assert error_status(adapter.data_to_send()) == expected
    assert not adapter.wants_read
    assert adapter.receive_data(stream[fed : fed + chunk], NOW) == []


# ------------------------------------------------------------------ httptools answers as h11 does


@settings(max_examples=500, deadline=None)
@given(st.data(), hostile_heads(), st.booleans())
def test_httptools_reader_answers_hostile_heads_as_h11(
    data: st.DataObject, raw: bytes, eof: bool
) -> None:
    """llhttp reads the requests it and h11 both find well formed; for any
    other input h11 decides. Either way the outcome is exactly h11's."""
    chunks = data.draw(splits(raw))
    assert outcome(chunks, eof=eof, parser="httptools") == outcome(chunks, eof=eof, parser="h11")


@HYPOTHESIS
@given(st.data(), valid_requests(), st.booleans())
def test_httptools_reader_answers_pipelines_as_h11(
    data: st.DataObject, raw: bytes, eof: bool
) -> None:
    chunks = data.draw(splits(raw))
    cut = data.draw(st.integers(0, len(raw)))  # a peer that closes mid-request, too
    for sent in (chunks, [raw[:cut]]):
        assert outcome(sent, eof=eof, parser="httptools") == outcome(sent, eof=eof, parser="h11")


@HYPOTHESIS
@given(st.data(), st.binary(max_size=600), st.booleans())
def test_httptools_reader_answers_arbitrary_bytes_as_h11(
    data: st.DataObject, raw: bytes, eof: bool
) -> None:
    chunks = data.draw(splits(raw))
    fast = outcome(chunks, eof=eof, max_incomplete_size=256, parser="httptools")
    assert fast == outcome(chunks, eof=eof, max_incomplete_size=256, parser="h11")
