"""A ``Response`` that carries its body (and ``end``) is exactly the head
followed by ``Data(body)`` (when not empty) and ``EndData`` (with ``end``):
the same bytes on HTTP/1.1 and HTTP/2, the same frames and answer on
HTTP/3, for every kind of response (with and without a declared length,
HEAD, statuses without a body, a body that goes on after the head)."""

from __future__ import annotations

import pytest

from tests.unit.protocol import test_http2 as h2_tests
from tests.unit.protocol import test_http3 as h3_tests
from tests.unit.protocol.test_http1 import adapter as h1_adapter
from tricorn.protocol.events import Data, EndBody, EndData, Event, Request, Response

CASES = [
    pytest.param(b"GET", 200, [(b"content-length", b"5")], b"hello", True, id="length"),
    pytest.param(b"GET", 200, [], b"hello", True, id="chunked"),
    pytest.param(b"GET", 200, [], b"", True, id="empty"),
    pytest.param(b"HEAD", 200, [(b"content-length", b"5")], b"hello", True, id="head"),
    pytest.param(b"GET", 204, [], b"", True, id="204"),
    pytest.param(b"GET", 304, [], b"dropped", True, id="304"),
    pytest.param(b"GET", 404, [(b"x-a", b"1")], b"not here", True, id="404"),
    pytest.param(b"GET", 200, [], b"first", False, id="more-to-come"),
    pytest.param(b"GET", 200, [], b"", False, id="head-only"),
]


def _split(response: Response) -> list[Event]:
    """The three-event form of ``response``."""
    events: list[Event] = [Response(response.stream_id, response.status, response.headers)]
    if response.body:
        events.append(Data(response.stream_id, response.body))
    if response.end:
        events.append(EndData(response.stream_id))
    return events


def _forms(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, end: bool, sid: int
) -> tuple[list[Event], list[Event]]:
    whole = Response(sid, status, list(headers), body, end)
    return [whole], _split(whole)


@pytest.mark.parametrize(("method", "status", "headers", "body", "end"), CASES)
def test_http1(
    method: bytes, status: int, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
) -> None:
    outputs = []
    for events in _forms(status, headers, body, end, 1):
        adapter = h1_adapter()
        received = adapter.receive_data(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
        assert [type(e) for e in received] == [Request, EndBody]
        for event in events:
            adapter.send(event)
        outputs.append((adapter.data_to_send(), adapter.wants_read))
    assert outputs[0] == outputs[1]
    if end and method == b"GET" and status == 200:
        assert outputs[0][0].endswith(body if headers else b"0\r\n\r\n")


@pytest.mark.parametrize(("method", "status", "headers", "body", "end"), CASES)
def test_http2(
    method: bytes, status: int, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
) -> None:
    outputs = []
    for events in _forms(status, headers, body, end, 1):
        peer = h2_tests.Peer()
        peer.request(1, h2_tests.request_headers(method=method))
        for event in events:
            peer.adapter.send(event)
        outputs.append(peer.adapter.data_to_send())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(("method", "status", "headers", "body", "end"), CASES)
def test_http3(
    method: bytes, status: int, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
) -> None:
    answers = []
    for whole in (True, False):
        peer = h3_tests.Peer()
        stream_id = peer.request(h3_tests.request_headers(b"/", method))
        peer.pump()
        single, split = _forms(status, headers, body, end, stream_id)
        for event in single if whole else split:
            peer.adapter.send(event)
        peer.pump()
        answers.append((peer.answer(stream_id), peer.frames(stream_id), stream_id in peer.fin))
    assert answers[0] == answers[1]
