"""The httptools request reader on its own: which requests it reads itself
(the fast path) and which it hands to h11. That its answers are h11's for
any input is a property test (tests/property/test_http1_hostile.py); the
adapter's tests run with both readers (tests/unit/protocol/test_http1.py)."""

from __future__ import annotations

import h11
import pytest

from tricorn.errors import ConfigError
from tricorn.protocol._h1_fast import FastReader, ParsedHead
from tricorn.server import serve

LIMIT = 16 * 1024


def read_all(reader: FastReader) -> list[object]:
    events: list[object] = []
    while True:
        event = reader.next_event()
        events.append(event)
        if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.ConnectionClosed:
            return events


def test_a_get_is_read_by_llhttp() -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Pad:  v \t\r\nAccept: */*\r\n\r\n")
    head = reader.next_event()
    assert type(head) is ParsedHead
    assert (head.method, head.target, head.http_version) == (b"GET", b"/a?b=1", b"1.1")
    assert head.headers == [(b"host", b"x"), (b"x-pad", b"v"), (b"accept", b"*/*")]
    assert head.raw == [(b"Host", b"x"), (b"X-Pad", b"v"), (b"Accept", b"*/*")]
    assert reader.next_event() is h11.NEED_DATA
    assert reader.trailing_data == (b"", False)


def test_a_content_length_body_is_sliced_and_the_next_request_kept() -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    assert type(reader.next_event()) is ParsedHead
    assert reader.next_event() == h11.Data(data=b"ab")
    assert reader.next_event() is h11.NEED_DATA
    reader.receive_data(b"cdeGET / HTTP/1.1\r\n")
    assert reader.next_event() == h11.Data(data=b"cde")
    assert type(reader.next_event()) is h11.EndOfMessage
    assert reader.next_event() is h11.PAUSED  # the next request waits for a fresh reader
    assert reader.trailing_data == (b"GET / HTTP/1.1\r\n", False)


def test_a_zero_content_length_ends_the_body_at_once() -> None:
    """As h11: the message is complete with its head (an empty POST once
    waited for a body that never comes)."""
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    reader = FastReader(LIMIT)
    reader.receive_data(data)
    assert type(reader.next_event()) is ParsedHead
    assert type(reader.next_event()) is h11.EndOfMessage
    assert reader.next_event() is h11.NEED_DATA
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    assert [type(conn.next_event()) for _ in range(3)] == [
        h11.Request,
        h11.EndOfMessage,
        type(h11.NEED_DATA),
    ]


def test_a_body_cut_short_by_the_peer_is_an_error() -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
    reader.next_event()
    reader.next_event()
    reader.receive_data(b"")
    with pytest.raises(h11.RemoteProtocolError):
        reader.next_event()


def test_expect_100_continue_is_reported_until_the_body_comes() -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(
        b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert type(reader.next_event()) is ParsedHead
    assert reader.they_are_waiting_for_100_continue
    reader.receive_data(b"ok")
    reader.next_event()
    assert not reader.they_are_waiting_for_100_continue


@pytest.mark.parametrize(
    "raw",
    [
        # h11 reads these; llhttp refuses them or we refuse to trust it
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",  # obs-fold
        b"PURGEX / HTTP/1.1\r\nHost: x\r\n\r\n",  # a method llhttp does not know
        b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_unusual_requests_are_read_by_h11(raw: bytes) -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(raw)
    assert type(reader.next_event()) is h11.Request


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # llhttp allows the double space
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nX\x01: v\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400),
        (b"\x00GET", 400),  # refused before the head is complete, as h11 does
        (b"GET /" + b"a" * LIMIT, 431),  # past the limit without a complete head
    ],
)
def test_bad_requests_get_h11s_answer(raw: bytes, status: int) -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(raw)
    with pytest.raises(h11.RemoteProtocolError) as caught:
        read_all(reader)
    assert caught.value.error_status_hint == status


def test_an_incomplete_head_at_eof_is_h11s_to_judge() -> None:
    reader = FastReader(LIMIT)
    reader.receive_data(b"GET / HTTP/1.1\r\nHost")
    assert reader.next_event() is h11.NEED_DATA
    reader.receive_data(b"")
    with pytest.raises(h11.RemoteProtocolError):
        reader.next_event()
    empty = FastReader(LIMIT)
    empty.receive_data(b"")
    assert type(empty.next_event()) is h11.ConnectionClosed


def test_http1_parser_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve.http1_parser("auto") == "httptools"
    assert serve.http1_parser("h11") == "h11"
    monkeypatch.setattr(serve, "FAST_H1_AVAILABLE", False)
    assert serve.http1_parser("auto") == "h11"
    with pytest.raises(ConfigError, match="http1_parser"):
        serve.http1_parser("httptools")
