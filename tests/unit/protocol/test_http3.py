"""The HTTP/3 adapter driven with bytes only: a real aioquic client
(QUIC connection and HTTP/3 layer) talks to an :class:`H3Adapter` made by
the :class:`QuicDispatcher`; datagrams are pumped both ways by hand on a
fake clock. What the adapter sends is read back both as the client's
HTTP/3 events and as the raw HTTP/3 frames of each stream."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aioquic._buffer import Buffer
from aioquic.buffer import encode_uint_var
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import FrameType, H3Connection
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

from tricorn.errors import ConfigError
from tricorn.protocol.events import (
    Body,
    BodyConsumed,
    ConnectionClosed,
    Data,
    EndBody,
    EndData,
    Event,
    Headers,
    InformationalResponse,
    PushPromise,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
    Writable,
)
from tricorn.protocol.http3 import H3Adapter, H3Settings
from tricorn.protocol.quic import (
    NewConnection,
    QuicDispatcher,
    QuicSettings,
    Reply,
    Routed,
    server_configuration,
)

CERTS = Path(__file__).resolve().parents[3] / "certs"
CERTFILE = str(CERTS / "localhost.pem")
KEYFILE = str(CERTS / "localhost-key.pem")
CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)

H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_MESSAGE_ERROR = 0x10E

DATA = FrameType.DATA
HEADERS = FrameType.HEADERS
PUSH_PROMISE = FrameType.PUSH_PROMISE
GOAWAY = FrameType.GOAWAY

# QUIC stream bytes beyond the body: DATA frame headers (a few bytes each).
FRAMING_SLACK = 256


# ------------------------------------------------------------------ helpers


def client_configuration() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
    )


class NoPushClient(H3Connection):
    """An HTTP/3 client that never sends MAX_PUSH_ID: it allows no push."""

    def _init_connection(self) -> None:
        self._max_push_id = None
        super()._init_connection()


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The HTTP/3 frames in ``data``; nothing may be left over."""
    frames: list[tuple[int, bytes]] = []
    buf = Buffer(data=data)
    while not buf.eof():
        kind = buf.pull_uint_var()
        length = buf.pull_uint_var()
        frames.append((kind, buf.pull_bytes(length)))
    return frames


def request_headers(
    path: bytes = b"/",
    method: bytes = b"GET",
    *extra: tuple[bytes, bytes],
    authority: bytes = b"localhost",
) -> Headers:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", path),
        *extra,
    ]


def get(stream_id: int, path: bytes = b"/", *extra: tuple[bytes, bytes]) -> Request:
    """The Request event for a plain ``request_headers(path)`` GET."""
    return Request(
        stream_id,
        b"GET",
        path,
        [(b"host", b"localhost"), *extra],
        "3",
        scheme="https",
        authority=b"localhost",
    )


def only(events: list[Any], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


@dataclass
class Answer:
    """What the client received on one stream."""

    heads: list[Headers] = field(default_factory=list)
    body: bytes = b""
    ended: bool = False
    data_events: int = 0

    @property
    def status(self) -> bytes:
        return dict(self.heads[-1])[b":status"] if self.heads else b""


class Peer:
    """An H3Adapter, its dispatcher, and the aioquic client talking to it."""

    def __init__(
        self,
        h3: H3Settings | None = None,
        quic: QuicSettings | None = None,
        *,
        client_h3: type[H3Connection] = H3Connection,
    ) -> None:
        self.settings = h3 or H3Settings()
        self.quic_settings = quic or QuicSettings()
        configuration = server_configuration(
            self.quic_settings, self.settings, CERTFILE, KEYFILE, None
        )
        self.dispatcher = QuicDispatcher(configuration, self.quic_settings, self.settings)
        self.now = 1.0
        self.client = QuicConnection(configuration=client_configuration())
        self.client.connect(SERVER_ADDR, now=self.now)
        self.h3 = client_h3(self.client)
        self.events: list[Event] = []  # the adapter's events, in order
        self.h3_events: list[h3_events.H3Event] = []  # the client's HTTP/3 events
        self.quic_events: list[quic_events.QuicEvent] = []  # the client's QUIC events
        self.received: dict[int, bytes] = {}  # raw stream bytes the client got
        self.fin: set[int] = set()  # streams the client saw FIN on
        self.results: list[Routed | Reply | NewConnection | None] = []  # the dispatcher's
        self.cids: list[tuple[bytes, bool]] = []  # every connection_ids() change
        self.path_mtu = 65527  # the server's datagrams above this are lost on the way
        self.sizes: list[int] = []  # every datagram the server sent, in bytes
        self.last_to_server = self.now  # when the server last got a datagram
        self.adapter = self._connect()
        self.pump()

    # -------------------------------------------------------------- wiring

    def _connect(self) -> H3Adapter:
        """Send the client's first flight through the dispatcher (answering
        a Retry if it replies with one) until it makes the adapter."""
        for _ in range(4):
            datagrams = self.client.datagrams_to_send(self.now)
            for i, (data, _addr) in enumerate(datagrams):
                result = self.dispatcher.receive(data, CLIENT_ADDR, self.now)
                self.results.append(result)
                if isinstance(result, Reply):
                    self.client.receive_datagram(result.data, SERVER_ADDR, self.now)
                    self._drain_client()
                elif isinstance(result, NewConnection):
                    adapter = result.adapter
                    self.dispatcher.add(result.original_cid, adapter)
                    self.adapter = adapter
                    self._sync_cids()
                    for rest, _ in datagrams[i:]:
                        self._take(adapter.receive_datagram(rest, CLIENT_ADDR, self.now))
                    return adapter
            self.now += 0.001
        raise AssertionError(f"no connection made: {self.results}")

    def _sync_cids(self) -> None:
        for cid, issued in self.adapter.connection_ids():
            self.cids.append((cid, issued))
            if issued:
                self.dispatcher.add(cid, self.adapter)
            else:
                self.dispatcher.remove(cid)

    def _take(self, events: list[Event]) -> None:
        self.events += events
        self._sync_cids()

    def _drain_client(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.quic_events.append(event)
            if isinstance(event, quic_events.StreamDataReceived):
                self.received[event.stream_id] = (
                    self.received.get(event.stream_id, b"") + event.data
                )
                if event.end_stream:
                    self.fin.add(event.stream_id)
            self.h3_events += self.h3.handle_event(event)

    def server_to_client(self) -> bool:
        datagrams = self.adapter.datagrams_to_send(self.now)
        self._sync_cids()
        for data, addr in datagrams:
            assert addr == CLIENT_ADDR
            self.sizes.append(len(data))
            if len(data) > self.path_mtu:
                continue
            self.client.receive_datagram(data, SERVER_ADDR, self.now)
        self._drain_client()
        return bool(datagrams)

    def client_to_server(self) -> bool:
        datagrams = self.client.datagrams_to_send(self.now)
        for data, _addr in datagrams:
            result = self.dispatcher.receive(data, CLIENT_ADDR, self.now)
            assert result == Routed(self.adapter)
            self._take(self.adapter.receive_datagram(data, CLIENT_ADDR, self.now))
            self.last_to_server = self.now
        return bool(datagrams)

    def pump(self, *, next_events: bool = True, horizon: float = 0.2) -> list[Event]:
        """Move datagrams both ways, advancing the clock (1 ms a round, or
        to the next timer when quiet) until nothing is due within
        ``horizon`` seconds; the adapter's new events."""
        start = len(self.events)
        for _ in range(2000):
            moved = self.server_to_client()
            moved = self.client_to_server() or moved
            if next_events:
                self._take(self.adapter.next_events(self.now))
            if moved:
                self.now += 0.001
                continue
            self.tick()
            # Timers still due after firing are stuck (a closed adapter's): ignored.
            timers = [
                t
                for t in (self.client.get_timer(), self.adapter.next_deadline(self.now))
                if t is not None and t > self.now
            ]
            if not timers or min(timers) > self.now + horizon:
                break
            self.now = min(timers)
            self.tick()
        else:
            raise AssertionError("the connection never went quiet")
        return self.events[start:]

    def tick(self) -> None:
        """Fire whatever timers are due on both sides."""
        timer = self.client.get_timer()
        if timer is not None and timer <= self.now:
            self.client.handle_timer(self.now)
            self._drain_client()
        deadline = self.adapter.next_deadline(self.now)
        if deadline is not None and deadline <= self.now:
            self._take(self.adapter.handle_timeout(self.now))

    # -------------------------------------------------------------- client side

    def request(
        self,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        end: bool = True,
        trailers: Headers | None = None,
    ) -> int:
        """Queue a request on the client; its stream id."""
        stream_id = self.client.get_next_available_stream_id()
        last_is_head = not body and trailers is None
        self.h3.send_headers(
            stream_id, request_headers() if headers is None else headers, end and last_is_head
        )
        if body:
            self.h3.send_data(stream_id, body, end and trailers is None)
        if trailers is not None:
            self.h3.send_headers(stream_id, trailers, end)
        return stream_id

    def answer(self, stream_id: int) -> Answer:
        answer = Answer()
        for event in self.h3_events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h3_events.HeadersReceived):
                answer.heads.append(event.headers)
                answer.ended = answer.ended or event.stream_ended
            elif isinstance(event, h3_events.DataReceived):
                answer.body += event.data
                answer.ended = answer.ended or event.stream_ended
                if event.data:
                    answer.data_events += 1
        return answer

    def frames(self, stream_id: int) -> list[int]:
        """The types of the HTTP/3 frames the client got on ``stream_id``."""
        return [kind for kind, _ in split_frames(self.received.get(stream_id, b""))]

    def reset_code(self, stream_id: int) -> int | None:
        """The error code of the RESET_STREAM the client got on ``stream_id``."""
        codes = [
            e.error_code
            for e in self.quic_events
            if isinstance(e, quic_events.StreamReset) and e.stream_id == stream_id
        ]
        assert len(codes) <= 1
        return codes[0] if codes else None

    def terminated(self) -> quic_events.ConnectionTerminated | None:
        ends = only(self.quic_events, quic_events.ConnectionTerminated)
        return ends[0] if ends else None

    # -------------------------------------------------------------- server side

    def respond(
        self,
        stream_id: int,
        body: bytes = b"ok",
        status: int = 200,
        headers: Headers | None = None,
    ) -> Answer:
        self.adapter.send(Response(stream_id, status, headers or []))
        if body:
            self.adapter.send(Data(stream_id, body))
        self.adapter.send(EndData(stream_id))
        self.pump()
        return self.answer(stream_id)

    def body_received(self, stream_id: int) -> bytes:
        return b"".join(
            e.data for e in self.events if isinstance(e, Body) and e.stream_id == stream_id
        )


def round_trip(peer: Peer, path: bytes = b"/again") -> None:
    """A GET that must work: the connection is still usable."""
    stream_id = peer.request(request_headers(path))
    assert peer.pump() == [get(stream_id, path), EndBody(stream_id)]
    answer = peer.respond(stream_id, b"fine")
    assert answer.status == b"200"
    assert answer.body == b"fine"
    assert answer.ended
    assert peer.terminated() is None


# ------------------------------------------------------------------ handshake


def test_handshake() -> None:
    peer = Peer()
    assert peer.adapter.peer.handshake_done
    assert peer.adapter.peer.alpn == "h3"
    assert only(peer.quic_events, quic_events.HandshakeCompleted)
    assert peer.events == []
    assert peer.adapter.idle
    assert peer.adapter.wants_read
    assert peer.adapter.receive_data(b"x", peer.now) == []
    assert peer.adapter.data_to_send() == b""
    assert peer.adapter.file_framing(0, 10) is None


def test_connection_ids_are_reported() -> None:
    peer = Peer()
    # The first report is the connection ID the client talks to.
    assert peer.cids[0] == (peer.client._peer_cid.cid, True)
    assert len(peer.cids) > 1
    assert all(issued for _, issued in peer.cids)
    issued = {cid for cid, _ in peer.cids}
    assert len(issued) == len(peer.cids)
    # Every spare connection ID the client may switch to was reported.
    spare = {cid.cid for cid in peer.client._peer_cid_available}
    assert spare
    assert spare <= issued
    # Each report is given once.
    assert peer.adapter.connection_ids() == []
    for cid in issued:
        assert peer.dispatcher.receive(b"\x40" + cid + b"\x00" * 30, CLIENT_ADDR, 0) == Routed(
            peer.adapter
        )


# ------------------------------------------------------------------ requests


def test_get() -> None:
    peer = Peer()
    headers = request_headers(b"/a/b?c=d", b"GET", (b"te", b"trailers"), (b"x-a", b"1"))
    stream_id = peer.request(headers)
    assert peer.pump() == [
        Request(
            stream_id,
            b"GET",
            b"/a/b?c=d",
            [(b"host", b"localhost"), (b"te", b"trailers"), (b"x-a", b"1")],
            "3",
            scheme="https",
            authority=b"localhost",
            trailers_accepted=True,
        ),
        EndBody(stream_id),
    ]
    assert not peer.adapter.idle
    answer = peer.respond(stream_id, b"hello", headers=[(b"content-type", b"text/plain")])
    assert answer.heads == [[(b":status", b"200"), (b"content-type", b"text/plain")]]
    assert answer.body == b"hello"
    assert answer.ended
    assert peer.frames(stream_id) == [HEADERS, DATA]
    assert stream_id in peer.fin
    assert peer.adapter.idle


def test_host_header_kept_once() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/", b"GET", (b"host", b"localhost")))
    assert peer.pump() == [get(stream_id), EndBody(stream_id)]


def test_response_without_body_is_one_headers_frame_with_fin() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    answer = peer.respond(stream_id, b"", status=204)
    assert answer.heads == [[(b":status", b"204")]]
    assert answer.ended
    assert answer.data_events == 0
    assert not only(peer.h3_events, h3_events.DataReceived)
    (head,) = only(peer.h3_events, h3_events.HeadersReceived)
    assert head.stream_ended
    assert peer.frames(stream_id) == [HEADERS]
    assert stream_id in peer.fin


def test_head_request_gets_no_body() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/", b"HEAD"))
    peer.pump()
    answer = peer.respond(stream_id, b"ignored", headers=[(b"x-a", b"1")])
    assert answer.status == b"200"
    assert answer.body == b""
    assert answer.ended
    assert peer.frames(stream_id) == [HEADERS]


def test_response_sent_in_parts() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.pump()
    assert peer.answer(stream_id).heads == [[(b":status", b"200")]]
    assert not peer.answer(stream_id).ended
    peer.adapter.send(Data(stream_id, b"one "))
    peer.pump()
    peer.adapter.send(Data(stream_id, b"two"))
    peer.adapter.send(EndData(stream_id))
    peer.pump()
    answer = peer.answer(stream_id)
    assert answer.body == b"one two"
    assert answer.ended
    assert peer.frames(stream_id) == [HEADERS, DATA, DATA]


def test_request_body() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/up", b"POST"), b"x" * 5000)
    events = peer.pump()
    assert events[0] == Request(
        stream_id,
        b"POST",
        b"/up",
        [(b"host", b"localhost")],
        "3",
        scheme="https",
        authority=b"localhost",
    )
    assert events[-1] == EndBody(stream_id)
    assert all(isinstance(e, Body) for e in events[1:-1])
    assert peer.body_received(stream_id) == b"x" * 5000
    answer = peer.respond(stream_id, b"thanks")
    assert answer.body == b"thanks"


def test_request_body_in_several_sends() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/up", b"POST"), end=False)
    peer.pump()
    peer.h3.send_data(stream_id, b"abc", end_stream=False)
    assert peer.pump() == [Body(stream_id, b"abc")]
    peer.h3.send_data(stream_id, b"def", end_stream=True)
    assert peer.pump() == [Body(stream_id, b"def"), EndBody(stream_id)]


def test_request_trailers() -> None:
    peer = Peer()
    stream_id = peer.request(
        request_headers(b"/up", b"POST"), b"data", trailers=[(b"x-checksum", b"abc")]
    )
    events = peer.pump()
    assert events[1:] == [
        Body(stream_id, b"data"),
        Trailers(stream_id, [(b"x-checksum", b"abc")]),
        EndBody(stream_id),
    ]


def test_request_trailers_without_body() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/up", b"POST"), trailers=[(b"x-t", b"1")])
    assert peer.pump()[1:] == [Trailers(stream_id, [(b"x-t", b"1")]), EndBody(stream_id)]


def test_response_trailers() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/", b"GET", (b"te", b"trailers")))
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(Data(stream_id, b"body"))
    peer.adapter.send(Trailers(stream_id, [(b"x-checksum", b"1234")]))
    peer.pump()
    answer = peer.answer(stream_id)
    assert answer.heads == [[(b":status", b"200")], [(b"x-checksum", b"1234")]]
    assert answer.body == b"body"
    assert answer.ended
    # HEADERS, DATA, HEADERS (trailers) with FIN: no empty DATA frame after.
    assert peer.frames(stream_id) == [HEADERS, DATA, HEADERS]
    assert stream_id in peer.fin
    stream_events = [e for e in peer.h3_events if getattr(e, "stream_id", None) == stream_id]
    assert isinstance(stream_events[-1], h3_events.HeadersReceived)
    assert stream_events[-1].stream_ended
    assert peer.adapter.idle


def test_response_trailers_without_body() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(Trailers(stream_id, [(b"x-a", b"1"), (b"connection", b"close")]))
    peer.pump()
    assert peer.frames(stream_id) == [HEADERS, HEADERS]
    assert peer.answer(stream_id).heads[-1] == [(b"x-a", b"1")]
    assert stream_id in peer.fin


def test_early_hints() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(InformationalResponse(stream_id, 103, [(b"link", b"</s.css>; rel=preload")]))
    peer.pump()
    heads = peer.answer(stream_id).heads
    assert heads == [[(b":status", b"103"), (b"link", b"</s.css>; rel=preload")]]
    assert not peer.answer(stream_id).ended
    answer = peer.respond(stream_id, b"page")
    assert [dict(head)[b":status"] for head in answer.heads] == [b"103", b"200"]
    assert answer.body == b"page"
    assert answer.ended
    assert peer.frames(stream_id) == [HEADERS, HEADERS, DATA]


def test_informational_and_final_response_in_one_flush() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(InformationalResponse(stream_id, 103, [(b"link", b"</a>")]))
    answer = peer.respond(stream_id, b"")
    assert [dict(head)[b":status"] for head in answer.heads] == [b"103", b"200"]
    assert answer.ended
    assert peer.frames(stream_id) == [HEADERS, HEADERS]


def test_informational_after_final_response_is_ignored() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(InformationalResponse(stream_id, 103, []))
    peer.adapter.send(EndData(stream_id))
    peer.pump()
    assert [dict(head)[b":status"] for head in peer.answer(stream_id).heads] == [b"200"]


def test_connection_specific_response_headers_dropped() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    answer = peer.respond(
        stream_id,
        b"x",
        headers=[
            (b"connection", b"close"),
            (b"transfer-encoding", b"chunked"),
            (b"keep-alive", b"timeout=5"),
            (b"x-kept", b"1"),
        ],
    )
    assert answer.heads == [[(b":status", b"200"), (b"x-kept", b"1")]]
    assert answer.body == b"x"
    assert peer.terminated() is None


def test_send_after_the_response_is_ignored() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.respond(stream_id, b"done")
    peer.adapter.send(Data(stream_id, b"more"))
    peer.adapter.send(EndData(stream_id))
    peer.pump()
    assert peer.answer(stream_id).body == b"done"
    assert peer.terminated() is None


def test_several_streams_in_parallel() -> None:
    peer = Peer()
    first = peer.request(request_headers(b"/1"))
    second = peer.request(request_headers(b"/2"))
    assert peer.pump() == [get(first, b"/1"), EndBody(first), get(second, b"/2"), EndBody(second)]
    peer.adapter.send(Response(second, 200, []))
    peer.adapter.send(Data(second, b"two"))
    peer.adapter.send(EndData(second))
    peer.adapter.send(Response(first, 200, []))
    peer.adapter.send(Data(first, b"one"))
    peer.adapter.send(EndData(first))
    peer.pump()
    assert peer.answer(first).body == b"one"
    assert peer.answer(second).body == b"two"


# ------------------------------------------------------------------ packets per request


def test_a_prompt_response_carries_the_ack_of_its_request() -> None:
    peer = Peer()
    round_trip(peer)
    stream_id = peer.request()
    assert peer.client_to_server()  # the request, in one datagram
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(Data(stream_id, b"ok"))
    peer.adapter.send(EndData(stream_id))
    sizes = len(peer.sizes)
    assert peer.server_to_client()
    assert len(peer.sizes) == sizes + 1  # one datagram: the response and the ACK
    assert peer.answer(stream_id).body == b"ok"
    assert peer.client._loss.bytes_in_flight == 0  # the request is acknowledged


def test_responses_need_no_qpack_acknowledgements() -> None:
    """The encoder keeps to the static table: no response head refers to
    the dynamic table, so the client never writes to its decoder stream."""
    peer = Peer()
    for index in range(5):
        stream_id = peer.request(request_headers(b"/%d" % index))
        peer.pump()
        headers = [(b"content-type", b"text/plain"), (b"x-same", b"every time")]
        assert peer.respond(stream_id, b"hi", headers=headers).status == b"200"
    assert peer.h3._decoder_bytes_sent == 0


def test_small_requests_send_no_credit_updates() -> None:
    """MAX_DATA goes out once the client has used half its credit, not
    with every packet as the used bytes grow."""
    settings = H3Settings()
    peer = Peer(settings)
    for index in range(20):
        round_trip(peer, b"/%d" % index)
    assert peer.client._remote_max_data == settings.connection_window


# ------------------------------------------------------------------ push


def test_push_promise() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(PushPromise(stream_id, b"/style.css", [(b"accept", b"text/css")]))
    pushed = peer.adapter.next_events(peer.now)
    assert len(pushed) == 2
    request, end = pushed
    assert isinstance(request, Request)
    promised = request.stream_id
    assert promised % 4 == 3  # a server-initiated unidirectional stream
    assert request == Request(
        promised,
        b"GET",
        b"/style.css",
        [(b"host", b"localhost"), (b"accept", b"text/css")],
        "3",
        scheme="https",
        authority=b"localhost",
    )
    assert end == EndBody(promised)
    peer.respond(stream_id, b"page")
    (promise,) = only(peer.h3_events, h3_events.PushPromiseReceived)
    assert promise.stream_id == stream_id
    assert (b":path", b"/style.css") in promise.headers
    assert (b"accept", b"text/css") in promise.headers
    assert peer.frames(stream_id) == [PUSH_PROMISE, HEADERS, DATA]
    peer.adapter.send(Response(promised, 200, [(b"content-type", b"text/css")]))
    peer.adapter.send(Data(promised, b"body{}"))
    peer.adapter.send(EndData(promised))
    peer.pump()
    pushed_heads = [
        e
        for e in peer.h3_events
        if isinstance(e, h3_events.HeadersReceived) and e.push_id == promise.push_id
    ]
    assert [e.headers for e in pushed_heads] == [
        [(b":status", b"200"), (b"content-type", b"text/css")]
    ]
    pushed_data = [
        e
        for e in peer.h3_events
        if isinstance(e, h3_events.DataReceived) and e.push_id == promise.push_id
    ]
    assert b"".join(e.data for e in pushed_data) == b"body{}"
    assert pushed_data[-1].stream_ended
    assert peer.terminated() is None
    assert peer.adapter.idle


def test_push_promise_connection_survives() -> None:
    """A push must not make the client close the connection (e.g. by
    receiving flow-control frames for the push stream, which is
    send-only for the server)."""
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(PushPromise(stream_id, b"/a.js", []))
    (request, _) = peer.adapter.next_events(peer.now)
    assert isinstance(request, Request)
    peer.pump()
    assert peer.terminated() is None
    round_trip(peer)


def test_push_without_max_push_id_is_skipped() -> None:
    peer = Peer(client_h3=NoPushClient)
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(PushPromise(stream_id, b"/style.css", []))
    assert peer.adapter.next_events(peer.now) == []
    answer = peer.respond(stream_id, b"page")
    assert answer.body == b"page"
    assert not only(peer.h3_events, h3_events.PushPromiseReceived)
    assert peer.frames(stream_id) == [HEADERS, DATA]
    assert peer.terminated() is None


def test_push_after_the_response_head_is_skipped() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.pump()
    peer.adapter.send(PushPromise(stream_id, b"/late.css", []))
    assert peer.adapter.next_events(peer.now) == []


def test_push_with_a_bad_path_is_skipped() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(PushPromise(stream_id, b"style.css", []))
    assert peer.adapter.next_events(peer.now) == []


# ------------------------------------------------------------------ reset


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (2, H3_INTERNAL_ERROR),
        (7, H3_REQUEST_REJECTED),
        (8, H3_REQUEST_CANCELLED),
        (1, H3_MESSAGE_ERROR),
        (0, H3_NO_ERROR),
        (0x99, H3_INTERNAL_ERROR),
    ],
)
def test_reset_stream(code: int, expected: int) -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(ResetStream(stream_id, code))
    peer.pump()
    assert peer.reset_code(stream_id) == expected
    assert peer.adapter.idle
    assert peer.terminated() is None
    round_trip(peer)


def test_reset_after_response_head() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(Data(stream_id, b"partial"))
    peer.pump()
    peer.adapter.send(ResetStream(stream_id))
    peer.adapter.send(Data(stream_id, b"ignored"))
    peer.pump()
    assert peer.reset_code(stream_id) == H3_INTERNAL_ERROR
    round_trip(peer)


def test_client_reset_closes_the_stream() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/up", b"POST"), b"part", end=False)
    events = peer.pump()
    assert events[-1] == Body(stream_id, b"part")
    peer.client.reset_stream(stream_id, H3_REQUEST_CANCELLED)
    assert peer.pump() == [StreamClosed(stream_id, H3_REQUEST_CANCELLED)]
    assert peer.adapter.idle
    # What the application still sends is dropped.
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(EndData(stream_id))
    peer.pump()
    assert peer.answer(stream_id).heads == []
    round_trip(peer)


def test_client_stop_sending_closes_the_stream() -> None:
    peer = Peer()
    stream_id = peer.request()
    peer.pump()
    peer.client.stop_stream(stream_id, H3_REQUEST_CANCELLED)
    assert peer.pump() == [StreamClosed(stream_id, H3_REQUEST_CANCELLED)]
    round_trip(peer)


# ------------------------------------------------------------------ malformed


MALFORMED: dict[str, Headers] = {
    "uppercase-name": request_headers(b"/", b"GET", (b"X-Upper", b"1")),
    "missing-path": [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")],
    "missing-method": [(b":scheme", b"https"), (b":path", b"/"), (b":authority", b"localhost")],
    "connection-header": request_headers(b"/", b"GET", (b"connection", b"close")),
    "te-not-trailers": request_headers(b"/", b"GET", (b"te", b"gzip")),
    "host-mismatch": request_headers(b"/", b"GET", (b"host", b"other.example")),
    "pseudo-after-regular": [
        (b":method", b"GET"),
        (b"x-a", b"1"),
        (b":scheme", b"https"),
        (b":path", b"/"),
        (b":authority", b"localhost"),
    ],
    "unknown-pseudo": request_headers(b"/", b"GET", (b":status", b"200")),
    "relative-path": request_headers(b"no-slash"),
    "missing-authority": [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")],
    "empty-authority": request_headers(authority=b""),
    "bad-content-length": request_headers(b"/", b"GET", (b"content-length", b"-1")),
    "nul-in-value": request_headers(b"/", b"GET", (b"x-a", b"a\x00b")),
    "padded-value": request_headers(b"/", b"GET", (b"x-a", b" a")),
    "space-in-name": request_headers(b"/", b"GET", (b"x a", b"1")),
}


@pytest.mark.parametrize("headers", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_is_a_stream_error(headers: Headers) -> None:
    peer = Peer()
    stream_id = peer.request(headers)
    assert peer.pump() == []
    assert peer.reset_code(stream_id) == H3_MESSAGE_ERROR
    assert peer.terminated() is None
    round_trip(peer)


@pytest.mark.parametrize(("declared", "sent"), [(5, 3), (2, 5), (3, 0)])
def test_content_length_mismatch_is_a_stream_error(declared: int, sent: int) -> None:
    peer = Peer()
    headers = request_headers(b"/up", b"POST", (b"content-length", str(declared).encode()))
    stream_id = peer.request(headers, b"x" * sent)
    events = peer.pump()
    if sent:  # the head was delivered: the application is told
        assert events[-1] == StreamClosed(stream_id, H3_MESSAGE_ERROR)
    else:  # found with the head: never delivered
        assert events == []
    assert EndBody(stream_id) not in events
    assert peer.reset_code(stream_id) == H3_MESSAGE_ERROR
    assert peer.terminated() is None
    round_trip(peer)


def test_content_length_mismatch_at_a_lone_fin_is_a_stream_error() -> None:
    peer = Peer()
    headers = request_headers(b"/up", b"POST", (b"content-length", b"5"))
    stream_id = peer.request(headers, b"abc", end=False)
    events = peer.pump()
    assert Body(stream_id, b"abc") in events
    peer.client.send_stream_data(stream_id, b"", end_stream=True)  # FIN alone
    events = peer.pump()
    assert peer.terminated() is None
    assert StreamClosed(stream_id, H3_MESSAGE_ERROR) in events
    assert peer.reset_code(stream_id) == H3_MESSAGE_ERROR
    round_trip(peer)


def test_content_length_match() -> None:
    peer = Peer()
    headers = request_headers(b"/up", b"POST", (b"content-length", b"3"))
    stream_id = peer.request(headers, b"abc")
    events = peer.pump()
    assert events[1:] == [Body(stream_id, b"abc"), EndBody(stream_id)]


def test_invalid_request_trailers_are_a_stream_error() -> None:
    peer = Peer()
    stream_id = peer.request(
        request_headers(b"/up", b"POST"), b"data", trailers=[(b"x-bad", b" padded")]
    )
    events = peer.pump()
    assert StreamClosed(stream_id, H3_MESSAGE_ERROR) in events
    assert not only(events, Trailers)
    assert peer.reset_code(stream_id) == H3_MESSAGE_ERROR
    assert peer.terminated() is None
    round_trip(peer)


def test_oversized_header_section_gets_431() -> None:
    peer = Peer(H3Settings(max_header_list_size=200))
    stream_id = peer.request(request_headers(b"/", b"GET", (b"x-big", b"v" * 300)))
    assert peer.pump() == []
    answer = peer.answer(stream_id)
    assert answer.status == b"431"
    assert answer.ended
    round_trip(peer)


# ------------------------------------------------------------------ late input


def test_late_data_on_an_answered_stream_is_dropped() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/up", b"POST"), b"first", end=False)
    events = peer.pump()
    assert events[-1] == Body(stream_id, b"first")
    # The application answers before the request body is over...
    peer.adapter.send(Response(stream_id, 413, []))
    peer.adapter.send(EndData(stream_id))
    held = peer.adapter.datagrams_to_send(peer.now)
    assert held
    # ...while the client still sends (it has not seen the answer yet).
    peer.h3.send_data(stream_id, b"late" * 100, end_stream=False)
    assert peer.client_to_server()
    for data, _ in held:
        peer.client.receive_datagram(data, SERVER_ADDR, peer.now)
    peer._drain_client()
    events = peer.pump()
    assert not only(events, Body)
    assert not only(events, ConnectionClosed)
    assert peer.terminated() is None
    answer = peer.answer(stream_id)
    assert answer.status == b"413"
    assert answer.ended
    round_trip(peer)


def test_late_fin_on_an_answered_stream_is_dropped() -> None:
    peer = Peer()
    stream_id = peer.request(request_headers(b"/up", b"POST"), b"first", end=False)
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(EndData(stream_id))
    held = peer.adapter.datagrams_to_send(peer.now)
    peer.h3.send_data(stream_id, b"rest", end_stream=True)
    peer.client_to_server()
    for data, _ in held:
        peer.client.receive_datagram(data, SERVER_ADDR, peer.now)
    peer._drain_client()
    events = peer.pump()
    assert events == []
    assert peer.terminated() is None
    round_trip(peer)


def test_late_data_on_a_refused_stream_is_dropped() -> None:
    """A malformed request is refused at once; the body the client sent
    before it learnt that must not look like DATA without HEADERS (a
    connection error)."""
    peer = Peer()
    headers = request_headers(b"/up", b"POST", (b"X-Upper", b"1"))
    stream_id = peer.request(headers, end=False)
    assert peer.client_to_server()
    held = peer.adapter.datagrams_to_send(peer.now)  # the reset, not delivered yet
    peer.h3.send_data(stream_id, b"late" * 100, end_stream=True)
    assert peer.client_to_server()
    for data, _ in held:
        peer.client.receive_datagram(data, SERVER_ADDR, peer.now)
    peer._drain_client()
    assert peer.pump() == []
    assert peer.reset_code(stream_id) == H3_MESSAGE_ERROR
    assert peer.terminated() is None
    round_trip(peer)


def test_malformed_request_with_body_in_the_same_packet_is_a_stream_error() -> None:
    peer = Peer()
    headers = request_headers(b"/up", b"POST", (b"X-Upper", b"1"))
    stream_id = peer.request(headers, b"body")  # HEADERS + DATA + FIN in one packet
    assert peer.pump() == []
    assert peer.terminated() is None
    assert peer.reset_code(stream_id) == H3_MESSAGE_ERROR
    round_trip(peer)


# ------------------------------------------------------------------ flow control


def max_stream_data(peer: Peer, stream_id: int) -> int:
    """The limit the client has from the server for ``stream_id``."""
    value: int = peer.client._streams[stream_id].max_stream_data_remote
    return value


def test_request_body_credited_as_consumed() -> None:
    window = 32 * 1024
    peer = Peer(H3Settings(stream_window=window, connection_window=1024 * 1024))
    body = bytes(range(256)) * (8 * window // 256)
    stream_id = peer.request(request_headers(b"/up", b"POST"), body)
    peer.pump()
    delivered = len(peer.body_received(stream_id))
    assert 0 < delivered <= window
    assert max_stream_data(peer, stream_id) <= window + FRAMING_SLACK
    assert EndBody(stream_id) not in peer.events
    # The application consumes what it got: more comes, window by window.
    consumed = 0
    for _ in range(40):
        delivered = len(peer.body_received(stream_id))
        if EndBody(stream_id) in peer.events:
            break
        peer.adapter.send(BodyConsumed(stream_id, delivered - consumed))
        consumed = delivered
        peer.pump()
        assert len(peer.body_received(stream_id)) <= consumed + window
        assert max_stream_data(peer, stream_id) <= consumed + window + 2 * FRAMING_SLACK
        assert len(peer.body_received(stream_id)) > delivered  # progress
    assert peer.body_received(stream_id) == body
    assert peer.events[-1] == EndBody(stream_id)


def test_connection_window_shared_by_streams() -> None:
    window = 32 * 1024
    conn = 48 * 1024
    peer = Peer(H3Settings(stream_window=window, connection_window=conn))
    streams = [peer.request(request_headers(b"/up", b"POST"), b"z" * 2 * window) for _ in range(3)]
    peer.pump()
    delivered = {sid: len(peer.body_received(sid)) for sid in streams}
    assert sum(delivered.values()) <= conn
    assert sum(delivered.values()) > conn - 4 * FRAMING_SLACK  # the window is used
    assert all(n <= window for n in delivered.values())
    assert peer.client._remote_max_data <= conn + 4 * FRAMING_SLACK
    # Consuming one stream's body lets more in, within the connection window.
    first = streams[0]
    peer.adapter.send(BodyConsumed(first, delivered[first]))
    peer.pump()
    total = sum(len(peer.body_received(sid)) for sid in streams)
    assert total > sum(delivered.values())
    assert total <= conn + delivered[first]


def test_body_consumed_for_more_than_held_is_capped() -> None:
    window = 16 * 1024
    peer = Peer(H3Settings(stream_window=window, connection_window=1024 * 1024))
    stream_id = peer.request(request_headers(b"/up", b"POST"), b"q" * 8 * window)
    peer.pump()
    delivered = len(peer.body_received(stream_id))
    peer.adapter.send(BodyConsumed(stream_id, 10 * 1024 * 1024))
    peer.pump()
    # Only what was held is credited: one more window, not ten megabytes.
    assert len(peer.body_received(stream_id)) <= delivered + window
    assert max_stream_data(peer, stream_id) <= delivered + window + 2 * FRAMING_SLACK


def test_incomplete_headers_frame_cannot_grow_the_window() -> None:
    window = 16 * 1024
    peer = Peer(H3Settings(stream_window=window, connection_window=1024 * 1024))
    stream_id = peer.client.get_next_available_stream_id()
    # A HEADERS frame announcing 8 windows' worth, sent as fast as allowed.
    header = encode_uint_var(HEADERS) + encode_uint_var(8 * window)
    peer.client.send_stream_data(stream_id, header + b"\x00" * 8 * window)
    peer.pump()
    assert max_stream_data(peer, stream_id) <= window + FRAMING_SLACK


# ------------------------------------------------------------------ writable


def test_writable_waits_for_acknowledgement() -> None:
    peer = Peer(H3Settings(send_buffer=16 * 1024))
    stream_id = peer.request()
    peer.pump()
    assert peer.adapter.writable(stream_id)
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(Data(stream_id, b"w" * 100_000))
    assert not peer.adapter.writable(stream_id)
    assert peer.server_to_client()  # sent, not acknowledged yet
    assert not peer.adapter.writable(stream_id)
    events = peer.pump()
    assert events.count(Writable(stream_id)) == 1
    assert peer.adapter.writable(stream_id)
    assert peer.answer(stream_id).body == b"w" * 100_000
    peer.adapter.send(EndData(stream_id))
    peer.pump()
    assert peer.answer(stream_id).ended
    assert peer.adapter.writable(stream_id)  # an unknown stream is writable


def test_writable_after_reset_is_true() -> None:
    peer = Peer(H3Settings(send_buffer=1024))
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    peer.adapter.send(Data(stream_id, b"w" * 10_000))
    assert not peer.adapter.writable(stream_id)
    peer.adapter.send(ResetStream(stream_id))
    assert peer.adapter.writable(stream_id)


# ------------------------------------------------------------------ shutdown


def control_frames(peer: Peer) -> list[tuple[int, bytes]]:
    """The frames on the server's control stream (after its type byte)."""
    control = peer.adapter._h3._local_control_stream_id
    assert control is not None
    data = peer.received[control]
    buf = Buffer(data=data)
    assert buf.pull_uint_var() == 0x00  # control stream
    return split_frames(data[buf.tell() :])


def test_begin_shutdown_finishes_streams_in_flight() -> None:
    peer = Peer()
    first = peer.request()
    peer.pump()
    assert peer.adapter.begin_shutdown() == []
    peer.pump()
    goaways = [payload for kind, payload in control_frames(peer) if kind == GOAWAY]
    assert goaways == [encode_uint_var(first + 4)]
    # A request after the GOAWAY is refused...
    second = peer.request(request_headers(b"/late"))
    assert peer.pump() == []
    assert peer.reset_code(second) == H3_REQUEST_REJECTED
    # ...the one in flight completes...
    peer.adapter.send(Response(first, 200, []))
    peer.adapter.send(Data(first, b"last"))
    peer.adapter.send(EndData(first))
    peer.pump(next_events=False)
    answer = peer.answer(first)
    assert answer.body == b"last"
    assert answer.ended
    assert peer.terminated() is None
    # ...and then the connection closes with H3_NO_ERROR.
    assert only(peer.adapter.next_events(peer.now), ConnectionClosed)
    peer.pump()
    terminated = peer.terminated()
    assert terminated is not None
    assert terminated.error_code == H3_NO_ERROR
    assert not peer.adapter.wants_read


def test_begin_shutdown_when_idle_closes_at_once() -> None:
    peer = Peer()
    events = peer.adapter.begin_shutdown()
    assert only(events, ConnectionClosed)
    peer.pump()
    terminated = peer.terminated()
    assert terminated is not None
    assert terminated.error_code == H3_NO_ERROR


def test_keep_alive_max_requests_sends_goaway() -> None:
    peer = Peer(H3Settings(keep_alive_max_requests=2))
    first = peer.request()
    second = peer.request()
    peer.pump()
    assert only(peer.events, Request) == [get(first), get(second)]
    goaways = [payload for kind, payload in control_frames(peer) if kind == GOAWAY]
    assert goaways == [encode_uint_var(second + 4)]
    third = peer.request()
    peer.pump()
    assert peer.reset_code(third) == H3_REQUEST_REJECTED
    peer.respond(first)
    peer.respond(second)
    assert only(peer.events, ConnectionClosed)
    terminated = peer.terminated()
    assert terminated is not None
    assert terminated.error_code == H3_NO_ERROR


def test_max_concurrent_streams() -> None:
    peer = Peer(H3Settings(max_concurrent_streams=2))
    streams = [peer.request(end=False) for _ in range(2)]
    peer.pump()
    assert len(only(peer.events, Request)) == 2
    assert peer.client._remote_max_streams_bidi == 2
    for stream_id in streams:
        peer.h3.send_data(stream_id, b"", end_stream=True)
        peer.pump()
        peer.respond(stream_id)
    assert peer.answer(streams[1]).ended
    round_trip(peer)


# ------------------------------------------------------------------ idle timeout


def test_idle_timeout_closes_streams_and_connection() -> None:
    peer = Peer(quic=QuicSettings(idle_timeout=1.0))
    stream_id = peer.request(request_headers(b"/up", b"POST"), b"a", end=False)
    peer.pump()
    assert Body(stream_id, b"a") in peer.events
    start = peer.last_to_server  # the idle period starts with the last datagram in
    events: list[Event] = []
    while not only(events, ConnectionClosed):
        deadline = peer.adapter.next_deadline(peer.now)
        assert deadline is not None
        assert deadline < start + 10
        peer.now = max(peer.now, deadline) + 0.001
        events += peer.adapter.handle_timeout(peer.now)
        peer.adapter.datagrams_to_send(peer.now)  # the client hears nothing
    assert peer.now - start >= 1.0
    assert StreamClosed(stream_id) in events
    assert events.index(StreamClosed(stream_id)) < events.index(only(events, ConnectionClosed)[0])
    assert peer.adapter.idle
    assert not peer.adapter.wants_read
    assert peer.adapter.handle_timeout(peer.now + 100) == []


# ------------------------------------------------------------------ WebSocket


def connect_headers(*extra: tuple[bytes, bytes], protocol: bytes = b"websocket") -> Headers:
    """An extended CONNECT (RFC 9220)."""
    return [
        (b":method", b"CONNECT"),
        (b":protocol", protocol),
        (b":scheme", b"https"),
        (b":path", b"/chat"),
        (b":authority", b"localhost"),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]


def ws_client() -> Connection:
    """A wsproto client past its handshake: it frames and masks."""
    return Connection(ConnectionType.CLIENT)


def open_websocket(peer: Peer) -> int:
    stream_id = peer.request(connect_headers(), end=False)
    assert peer.pump() == [
        Request(
            stream_id,
            b"CONNECT",
            b"/chat",
            [(b"host", b"localhost"), (b"sec-websocket-version", b"13")],
            "3",
            scheme="https",
            authority=b"localhost",
            protocol="websocket",
        )
    ]
    peer.adapter.send(WebSocketAccept(stream_id))
    peer.pump()
    return stream_id


def test_enable_connect_protocol_setting() -> None:
    peer = Peer()
    assert peer.h3._received_settings is not None
    assert peer.h3._received_settings.get(0x8) == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL


def test_websocket_accept_and_messages() -> None:
    peer = Peer()
    stream_id = open_websocket(peer)
    answer = peer.answer(stream_id)
    assert answer.heads == [[(b":status", b"200")]]
    assert not answer.ended
    ws = ws_client()
    frame = ws.send(TextMessage(data="hello"))
    assert frame[1] & 0x80  # masked, as a client must
    peer.h3.send_data(stream_id, frame, end_stream=False)
    assert peer.pump() == [WebSocketMessage(stream_id, "hello")]
    peer.adapter.send(BodyConsumed(stream_id, 1))
    peer.adapter.send(WebSocketMessage(stream_id, "hi there"))
    peer.pump()
    data = peer.answer(stream_id).body
    assert data[0] == 0x81  # FIN + text
    assert not data[1] & 0x80  # a server's frames are not masked
    ws.receive_data(data)
    assert list(ws.events()) == [TextMessage(data="hi there", frame_finished=True)]
    peer.adapter.send(WebSocketMessage(stream_id, b"\x00\x01"))
    peer.pump()
    assert peer.answer(stream_id).body[len(data)] == 0x82  # FIN + binary


def test_websocket_data_before_accept_is_delivered_after() -> None:
    peer = Peer()
    stream_id = peer.request(connect_headers(), end=False)
    peer.pump()
    ws = ws_client()
    peer.h3.send_data(stream_id, ws.send(TextMessage(data="early")), end_stream=False)
    assert peer.pump() == []
    peer.adapter.send(WebSocketAccept(stream_id, subprotocol="chat"))
    assert peer.adapter.next_events(peer.now) == [WebSocketMessage(stream_id, "early")]
    peer.pump()
    assert peer.answer(stream_id).heads == [
        [(b":status", b"200"), (b"sec-websocket-protocol", b"chat")]
    ]


def test_websocket_close_both_ways() -> None:
    peer = Peer()
    stream_id = open_websocket(peer)
    ws = ws_client()
    peer.h3.send_data(
        stream_id, ws.send(CloseConnection(code=1000, reason="bye")), end_stream=False
    )
    events = peer.pump()
    assert events == [WebSocketClose(stream_id, 1000, "bye")]
    peer.adapter.send(BodyConsumed(stream_id, 0))
    peer.adapter.send(WebSocketClose(stream_id, 1000))
    peer.pump()
    answer = peer.answer(stream_id)
    assert answer.ended
    assert answer.body[0] == 0x88  # FIN + close
    code = int.from_bytes(answer.body[2:4], "big")
    assert code == CloseReason.NORMAL_CLOSURE
    assert stream_id in peer.fin
    assert peer.terminated() is None
    assert peer.adapter.idle


def test_begin_shutdown_closes_websockets_with_1001() -> None:
    peer = Peer()
    stream_id = open_websocket(peer)
    peer.adapter.begin_shutdown()
    peer.pump()
    data = peer.answer(stream_id).body
    assert data[0] == 0x88  # FIN + close
    assert int.from_bytes(data[2:4], "big") == CloseReason.GOING_AWAY
    goaways = [payload for kind, payload in control_frames(peer) if kind == GOAWAY]
    assert goaways == [encode_uint_var(stream_id + 4)]
    assert peer.terminated() is None


def test_websocket_denied_with_a_response() -> None:
    peer = Peer()
    stream_id = peer.request(connect_headers(), end=False)
    peer.pump()
    answer = peer.respond(stream_id, b"no", status=403)
    assert answer.status == b"403"
    assert answer.body == b"no"
    assert answer.ended
    round_trip(peer)


def test_websocket_wrong_version_gets_426() -> None:
    peer = Peer()
    headers = [h for h in connect_headers() if h[0] != b"sec-websocket-version"]
    stream_id = peer.request([*headers, (b"sec-websocket-version", b"8")], end=False)
    assert peer.pump() == []
    answer = peer.answer(stream_id)
    assert answer.status == b"426"
    assert (b"sec-websocket-version", b"13") in answer.heads[0]
    assert answer.ended


def test_plain_connect_is_not_implemented() -> None:
    peer = Peer()
    stream_id = peer.request(
        [(b":method", b"CONNECT"), (b":authority", b"localhost:443")], end=False
    )
    assert peer.pump() == []
    answer = peer.answer(stream_id)
    assert answer.status == b"501"
    assert answer.ended
    assert peer.frames(stream_id) == [HEADERS]
    round_trip(peer)


def test_connect_with_another_protocol_is_not_implemented() -> None:
    peer = Peer()
    stream_id = peer.request(connect_headers(protocol=b"webtransport"), end=False)
    assert peer.pump() == []
    assert peer.answer(stream_id).status == b"501"
    round_trip(peer)


# ------------------------------------------------------------------ configuration


def test_missing_certfile_is_a_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError) as info:
        server_configuration(QuicSettings(), H3Settings(), missing, KEYFILE, None)
    assert info.value.key == "certfile"
    assert info.value.value == missing
    assert "certfile" in str(info.value)


def test_missing_keyfile_is_a_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope-key.pem")
    with pytest.raises(ConfigError) as info:
        server_configuration(QuicSettings(), H3Settings(), CERTFILE, missing, None)
    assert info.value.key == "keyfile"
    assert info.value.value == missing


def test_keyfile_that_is_not_a_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        server_configuration(QuicSettings(), H3Settings(), CERTFILE, CERTFILE, None)
    assert info.value.key == "keyfile"


def test_server_configuration_carries_the_settings() -> None:
    configuration = server_configuration(
        QuicSettings(idle_timeout=7.0, max_datagram_size=1350),
        H3Settings(stream_window=12345, connection_window=67890),
        CERTFILE,
        KEYFILE,
        None,
    )
    assert not configuration.is_client
    assert configuration.alpn_protocols == ["h3"]
    assert configuration.idle_timeout == 7.0
    assert configuration.max_datagram_size == 1200  # where connections start; 1350: the ceiling
    assert configuration.max_data == 67890
    assert configuration.max_stream_data == 12345
    assert configuration.connection_id_length == 8


# ------------------------------------------------------------------ path MTU


def download(peer: Peer, size: int) -> Answer:
    """A response of ``size`` bytes, sent in 64 KiB pieces as the app would."""
    stream_id = peer.request()
    peer.pump()
    peer.adapter.send(Response(stream_id, 200, []))
    piece = bytes(range(256)) * 256
    for offset in range(0, size, len(piece)):
        peer.adapter.send(Data(stream_id, piece[: size - offset]))
        peer.pump()
    peer.adapter.send(EndData(stream_id))
    peer.pump()
    answer = peer.answer(stream_id)
    assert answer.ended
    assert answer.body == (piece * (size // len(piece) + 1))[:size]
    return answer


def test_a_bulk_transfer_finds_larger_datagrams() -> None:
    peer = Peer()
    download(peer, 2 * 1024 * 1024)
    assert peer.sizes[0] <= 1200  # the handshake: the QUIC minimum
    assert max(peer.sizes) == 16384  # probed 1452, 8952, 16384: all got through
    assert peer.sizes.count(16384) > 50  # and used
    assert peer.terminated() is None
    round_trip(peer)


def test_small_responses_send_no_probe() -> None:
    peer = Peer()
    for _ in range(3):
        round_trip(peer)
    assert max(peer.sizes) <= 1200


def test_a_lost_probe_ends_the_search_without_a_congestion_reaction() -> None:
    peer = Peer()
    peer.path_mtu = 1500  # a 1500-byte Ethernet path: 8952 does not get through
    download(peer, 1024 * 1024)
    delivered = [size for size in peer.sizes if size <= 1500]
    assert max(delivered) == 1452
    assert peer.sizes.count(8952) == 1  # one probe, lost, never retried
    assert 16384 not in peer.sizes
    window = peer.adapter._quic._loss.congestion_window
    assert window > 10 * 1452  # not cut down by the probe's loss
    round_trip(peer)


def test_the_ceiling_setting_caps_the_search() -> None:
    peer = Peer(quic=QuicSettings(max_datagram_size=4000))
    download(peer, 1024 * 1024)
    assert max(peer.sizes) == 4000  # 1452, then the ceiling itself


def test_1200_turns_probing_off() -> None:
    peer = Peer(quic=QuicSettings(max_datagram_size=1200))
    download(peer, 1024 * 1024)
    assert max(peer.sizes) <= 1200


def test_a_path_that_shrinks_falls_back_to_1200_bytes() -> None:
    """A route change to a smaller MTU after the search: the large datagrams
    vanish, the probe timeouts pile up, and the connection goes back to 1200
    bytes and finishes the transfer (RFC 8899 §4.3, black hole detection)."""
    peer = Peer()
    download(peer, 1024 * 1024)
    assert max(peer.sizes) == 16384
    peer.path_mtu = 1200
    peer.sizes.clear()
    download(peer, 512 * 1024)
    assert peer.sizes[-1] <= 1200
    assert peer.terminated() is None
