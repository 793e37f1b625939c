"""The HTTP/2 adapter driven with bytes only: requests are written by a real
h2 client connection, and what the adapter sends is read back both as raw
frames (hyperframe) and as the client's h2 events."""

from __future__ import annotations

import base64
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tricorn.errors import AppProtocolError
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
    ProtocolSwitch,
    PushPromise,
    ReadyForBody,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
    Writable,
)
from tricorn.protocol.http1 import H1Adapter, H1Settings
from tricorn.protocol.http2 import PREFACE, H2Adapter, H2Settings

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
SettingCodes = h2.settings.SettingCodes


# ------------------------------------------------------------------ helpers


class _Client(h2.connection.H2Connection):
    """An h2 client that ignores the server's concurrency limit, so that
    tests can open the streams the adapter must refuse."""

    @property
    def open_outbound_streams(self) -> int:
        return 0


def parse_frames(data: bytes) -> list[Frame]:
    """Split ``data`` into hyperframe frames; nothing may be left over."""
    frames: list[Frame] = []
    view = memoryview(data)
    while view:
        assert len(view) >= 9, f"truncated frame header in {data!r}"
        frame, length = Frame.parse_frame_header(view[:9])
        assert len(view) >= 9 + length, f"truncated frame in {data!r}"
        frame.parse_body(view[9 : 9 + length])
        frames.append(frame)
        view = view[9 + length :]
    return frames


def raw_frame(kind: int, flags: int, stream_id: int, body: bytes) -> bytes:
    """A frame of any type (hyperframe's ExtensionFrame mis-serializes)."""
    return len(body).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + body


def priority_update(stream_id: int, value: bytes) -> bytes:
    return raw_frame(0x10, 0, 0, stream_id.to_bytes(4, "big") + value)


def request_headers(
    path: bytes = b"/",
    method: bytes = b"GET",
    *extra: tuple[bytes, bytes],
    authority: bytes = b"example.com",
) -> Headers:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":path", path),
        (b":authority", authority),
        *extra,
    ]


class Peer:
    """An adapter and the h2 client talking to it."""

    def __init__(
        self,
        settings: H2Settings | None = None,
        *,
        client_settings: dict[int, int] | None = None,
        validate: bool = True,
        handshake: bool = True,
        scheme: str = "https",
    ) -> None:
        self.adapter = H2Adapter(settings or H2Settings(), now=0.0, scheme=scheme)
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.client = _Client(config=config)
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.frames: list[Frame] = []  # the frames of the last read()
        self.handshake_events: list[Event] = []
        if handshake:
            self.handshake_events = self.flush()
            self.read()
            self.flush()  # the client's SETTINGS ack

    # client -> adapter

    def flush(self, now: float = 0.0) -> list[Event]:
        """Feed the client's queued bytes to the adapter."""
        data = self.client.data_to_send()
        return self.adapter.receive_data(data, now) if data else []

    def raw(self, *frames: Frame | bytes, now: float = 0.0) -> list[Event]:
        """Feed hand-made frames (after the client's queued bytes)."""
        data = self.client.data_to_send() + b"".join(
            frame if isinstance(frame, bytes) else frame.serialize() for frame in frames
        )
        return self.adapter.receive_data(data, now)

    def request(
        self,
        stream_id: int,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        end: bool = True,
        now: float = 0.0,
    ) -> list[Event]:
        self.client.send_headers(
            stream_id, request_headers() if headers is None else headers, end and not body
        )
        if body:
            self.send_body(stream_id, body, end=end)
        return self.flush(now)

    def send_body(self, stream_id: int, body: bytes, *, end: bool = False) -> None:
        """Queue ``body`` on the client in frames it may send."""
        for start in range(0, len(body), 16384):
            last = start + 16384 >= len(body)
            self.client.send_data(stream_id, body[start : start + 16384], end_stream=end and last)

    # adapter -> client

    def read(self, *, client: bool = True) -> list[h2.events.Event]:
        """Take the adapter's bytes: their frames go to ``self.frames`` and,
        unless ``client`` is false, to the h2 client, whose events are
        returned."""
        data = self.adapter.data_to_send()
        assert isinstance(data, bytes)
        self.frames = parse_frames(data)
        return self.client.receive_data(data) if client and data else []

    def respond(
        self, stream_id: int, body: bytes = b"ok", status: int = 200, headers: Headers | None = None
    ) -> list[h2.events.Event]:
        self.adapter.send(Response(stream_id, status, headers or []))
        if body:
            self.adapter.send(Data(stream_id, body))
        self.adapter.send(EndData(stream_id))
        return self.read()

    def of(self, kind: type[Any], stream_id: int | None = None) -> list[Any]:
        return [
            f
            for f in self.frames
            if isinstance(f, kind) and (stream_id is None or f.stream_id == stream_id)
        ]


def reads(adapter: H2Adapter) -> bool:
    """``adapter.wants_read``, through a call so that mypy does not narrow it."""
    return adapter.wants_read


def is_idle(adapter: H2Adapter) -> bool:
    """``adapter.idle``, through a call so that mypy does not narrow it."""
    return adapter.idle


def kinds(peer: Peer) -> list[str]:
    """The types of the frames of the last read, by name."""
    return [type(frame).__name__ for frame in peer.frames]


def only(events: list[Any], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def body_of(events: list[h2.events.Event], stream_id: int) -> bytes:
    return b"".join(
        e.data or b""
        for e in events
        if isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id
    )


def rst(peer: Peer, stream_id: int) -> int | None:
    """The error code of the RST_STREAM the adapter sent on ``stream_id``."""
    frames = peer.of(RstStreamFrame, stream_id)
    assert len(frames) <= 1
    return frames[0].error_code if frames else None


def goaway(peer: Peer) -> tuple[int, int]:
    (frame,) = peer.of(GoAwayFrame)
    return frame.error_code, frame.last_stream_id


def get(stream_id: int = 1, path: bytes = b"/", **kwargs: Any) -> Request:
    """The Request event for a plain ``request_headers()`` GET."""
    return Request(
        stream_id,
        b"GET",
        path,
        [(b"host", b"example.com")],
        "2",
        scheme="https",
        authority=b"example.com",
        **kwargs,
    )


# ------------------------------------------------------------------ preface


def test_preface_and_settings() -> None:
    settings = H2Settings(
        max_concurrent_streams=7,
        max_header_list_size=4000,
        max_inbound_frame_size=32768,
        initial_window_size=70000,
        connection_window_size=3_000_000,
    )
    peer = Peer(settings, handshake=False)
    assert peer.flush() == []
    events = peer.read()
    settings_frame = peer.frames[0]
    assert isinstance(settings_frame, SettingsFrame)
    assert "ACK" not in settings_frame.flags
    assert settings_frame.settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert settings_frame.settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 4000
    assert settings_frame.settings[SettingCodes.MAX_FRAME_SIZE] == 32768
    assert settings_frame.settings[SettingCodes.INITIAL_WINDOW_SIZE] == 70000
    assert settings_frame.settings[SettingCodes.ENABLE_PUSH] == 0
    assert settings_frame.settings[0x9] == 1  # SETTINGS_NO_RFC7540_PRIORITIES
    (update,) = peer.of(WindowUpdateFrame)
    assert update.stream_id == 0
    assert update.window_increment == 3_000_000 - 65535
    assert any(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in peer.frames)
    assert only(events, h2.events.RemoteSettingsChanged)
    assert peer.client.outbound_flow_control_window == 3_000_000
    assert peer.client.remote_settings.max_concurrent_streams == 7
    assert peer.client.remote_settings.initial_window_size == 70000
    peer.flush()
    assert peer.adapter.idle
    assert reads(peer.adapter)
    assert peer.adapter.writable(1)
    assert peer.adapter.file_framing(1, 10) is None


def test_small_connection_window_sends_no_window_update() -> None:
    peer = Peer(H2Settings(connection_window_size=65535), handshake=False)
    peer.flush()
    peer.read()
    assert peer.of(WindowUpdateFrame) == []


def test_preface_fed_byte_by_byte() -> None:
    peer = Peer(handshake=False)
    data = peer.client.data_to_send()
    for i in range(len(data)):
        assert peer.adapter.receive_data(data[i : i + 1], 0.0) == []
    peer.read()
    assert peer.request(1) == [get(), EndBody(1)]


def test_bad_preface_closes_the_connection() -> None:
    peer = Peer(handshake=False)
    events = peer.adapter.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    assert only(events, ConnectionClosed)
    assert peer.adapter.receive_data(PREFACE, 0.0) == []
    assert peer.adapter.next_events(0.0) == []


# ------------------------------------------------------------------ requests


def test_get() -> None:
    peer = Peer()
    headers = request_headers(b"/a/b?c=d", b"GET", (b"te", b"trailers"), (b"x-a", b"1"))
    events = peer.request(1, headers)
    assert events == [
        Request(
            1,
            b"GET",
            b"/a/b?c=d",
            [(b"host", b"example.com"), (b"te", b"trailers"), (b"x-a", b"1")],
            "2",
            scheme="https",
            authority=b"example.com",
            trailers_accepted=True,
        ),
        EndBody(1),
    ]
    assert not peer.adapter.idle


def test_host_without_authority() -> None:
    peer = Peer()
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h.test")]
    (request, _) = peer.request(1, headers)
    assert isinstance(request, Request)
    assert request.authority == b"h.test"
    assert request.scheme == "http"
    assert request.headers == [(b"host", b"h.test")]


def test_host_equal_to_authority_is_kept_once() -> None:
    peer = Peer()
    (request, _) = peer.request(1, request_headers(b"/", b"GET", (b"host", b"example.com")))
    assert isinstance(request, Request)
    assert request.headers == [(b"host", b"example.com")]


def test_options_asterisk() -> None:
    peer = Peer()
    (request, _) = peer.request(1, request_headers(b"*", b"OPTIONS"))
    assert isinstance(request, Request)
    assert request.target == b"*"


def test_cookies_are_joined() -> None:
    peer = Peer(validate=False)
    headers = request_headers(
        b"/", b"GET", (b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"b=2"), (b"cookie", b"c=3")
    )
    (request, _) = peer.request(1, headers)
    assert isinstance(request, Request)
    assert request.headers == [
        (b"host", b"example.com"),
        (b"x-b", b"2"),
        (b"cookie", b"a=1; b=2; c=3"),
    ]


def test_post_body_and_flow_control_credit() -> None:
    peer = Peer(H2Settings(initial_window_size=1024))
    assert peer.request(1, request_headers(b"/p", b"POST"), b"x" * 600, end=False) == [
        Request(
            1,
            b"POST",
            b"/p",
            [(b"host", b"example.com")],
            "2",
            scheme="https",
            authority=b"example.com",
        ),
        Body(1, b"x" * 600),
    ]
    peer.client.send_data(1, b"y" * 424, end_stream=True)
    assert peer.flush() == [Body(1, b"y" * 424), EndBody(1)]
    # Nothing is credited on arrival: the client's window is used up.
    peer.read()
    assert peer.of(WindowUpdateFrame) == []
    assert peer.client.local_flow_control_window(1) == 0
    # The application consumes: now the window opens.
    peer.adapter.send(ReadyForBody(1))
    peer.adapter.send(BodyConsumed(1, 1024))
    peer.read()
    updates = peer.of(WindowUpdateFrame)
    assert updates
    assert all(update.window_increment > 0 for update in updates)
    assert sum(u.window_increment for u in updates if u.stream_id == 1) == 1024


def test_credit_follows_consumption() -> None:
    peer = Peer(H2Settings(initial_window_size=1000))
    peer.request(1, request_headers(b"/p", b"POST"), b"x" * 1000, end=False)
    peer.read()
    assert peer.client.local_flow_control_window(1) == 0
    peer.adapter.send(BodyConsumed(1, 200))
    peer.read()
    assert peer.of(WindowUpdateFrame) == []  # h2 batches small credits
    peer.adapter.send(BodyConsumed(1, 800))
    peer.read()
    assert peer.client.local_flow_control_window(1) == 1000
    peer.adapter.send(BodyConsumed(1, 5000))  # more than delivered: ignored
    peer.read()
    assert peer.of(WindowUpdateFrame) == []


def test_unread_body_credited_when_the_response_ends() -> None:
    peer = Peer(H2Settings(initial_window_size=65535, connection_window_size=65535))
    peer.request(1, request_headers(b"/p", b"POST"), b"x" * 40000, end=False)
    peer.read()
    assert peer.client.outbound_flow_control_window == 65535 - 40000
    events = peer.respond(1)
    assert rst(peer, 1) == NO_ERROR  # RFC 9113 §8.1: the request may stop now
    assert only(events, h2.events.StreamEnded)
    assert peer.client.outbound_flow_control_window == 65535
    assert peer.adapter.idle


def test_request_trailers() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/p", b"POST"), b"abc", end=False)
    peer.client.send_headers(1, [(b"x-sum", b"1")], end_stream=True)
    assert peer.flush() == [Trailers(1, [(b"x-sum", b"1")]), EndBody(1)]


def test_invalid_request_trailers_reset_the_stream() -> None:
    peer = Peer(validate=False)
    peer.request(1, request_headers(b"/p", b"POST"), b"abc", end=False)
    peer.client.send_headers(1, [(b"X-Sum", b"1")], end_stream=True)
    assert peer.flush() == [StreamClosed(1, PROTOCOL_ERROR)]
    peer.read()
    assert rst(peer, 1) == PROTOCOL_ERROR


# ------------------------------------------------------------------ responses


def test_response_with_small_body() -> None:
    peer = Peer()
    peer.request(1)
    events = peer.respond(1, b"hello", headers=[(b"content-type", b"text/plain")])
    headers, data = peer.frames
    assert isinstance(headers, HeadersFrame)
    assert "END_STREAM" not in headers.flags
    assert isinstance(data, DataFrame)
    assert data.data == b"hello"
    assert "END_STREAM" in data.flags
    (response,) = only(events, h2.events.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert body_of(events, 1) == b"hello"
    assert only(events, h2.events.StreamEnded)
    assert peer.adapter.idle


def test_response_without_body() -> None:
    peer = Peer()
    peer.request(1)
    peer.respond(1, b"", status=404)
    (headers,) = peer.frames
    assert isinstance(headers, HeadersFrame)
    assert "END_STREAM" in headers.flags


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_no_body_responses_send_no_data(method: bytes, status: int) -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/", method))
    events = peer.respond(1, b"ignored", status, [(b"content-length", b"7")])
    (headers,) = peer.frames
    assert isinstance(headers, HeadersFrame)
    assert "END_STREAM" in headers.flags
    assert body_of(events, 1) == b""


def test_head_response_sent_in_parts() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/", b"HEAD"))
    peer.adapter.send(Response(1, 200, [(b"content-length", b"3")]))
    peer.read()
    peer.adapter.send(Data(1, b"abc"))
    peer.read()
    assert peer.frames == []
    peer.adapter.send(EndData(1))
    events = peer.read()
    assert all(not f.data for f in peer.of(DataFrame))  # an empty END_STREAM at most
    assert only(events, h2.events.StreamEnded)


def test_connection_specific_response_headers_dropped() -> None:
    peer = Peer()
    peer.request(1)
    headers = [
        (b"connection", b"close"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"close"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"x-kept", b"1"),
    ]
    events = peer.respond(1, b"", headers=headers)
    (response,) = only(events, h2.events.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"x-kept", b"1")]


@pytest.mark.parametrize(
    "header",
    [(b"x-a", b"a\r\nb"), (b"x-a", b"\x00"), (b"X-Upper", b"1"), (b"bad name", b"1"), (b"", b"1")],
)
def test_invalid_response_header_raises(header: tuple[bytes, bytes]) -> None:
    peer = Peer()
    peer.request(1)
    with pytest.raises(AppProtocolError):
        peer.adapter.send(Response(1, 200, [header]))
    with pytest.raises(AppProtocolError):
        peer.adapter.send(InformationalResponse(1, 103, [header]))
    with pytest.raises(AppProtocolError):
        peer.adapter.send(Trailers(1, [header]))


def test_response_trailers() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/", b"GET", (b"te", b"trailers")))
    peer.adapter.send(Response(1, 200, [(b"trailer", b"x-checksum")]))
    peer.adapter.send(Data(1, b"body"))
    peer.adapter.send(Trailers(1, [(b"x-checksum", b"abc"), (b"connection", b"x")]))
    events = peer.read()
    assert kinds(peer) == ["HeadersFrame", "DataFrame", "HeadersFrame"]
    assert "END_STREAM" not in peer.frames[1].flags
    assert "END_STREAM" in peer.frames[2].flags
    (trailers,) = only(events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-checksum", b"abc")]
    assert body_of(events, 1) == b"body"
    assert peer.adapter.idle


def test_response_trailers_without_body() -> None:
    peer = Peer()
    peer.request(1)
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Trailers(1, [(b"x-t", b"1")]))
    events = peer.read()
    assert kinds(peer) == ["HeadersFrame", "HeadersFrame"]
    assert only(events, h2.events.TrailersReceived)


def test_informational_response() -> None:
    peer = Peer()
    peer.request(1)
    peer.adapter.send(InformationalResponse(1, 103, [(b"link", b"</s.css>; rel=preload")]))
    first = peer.read()
    (info,) = only(first, h2.events.InformationalResponseReceived)
    assert info.headers == [(b":status", b"103"), (b"link", b"</s.css>; rel=preload")]
    events = peer.respond(1)
    (response,) = only(events, h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", b"200")
    # After the final head, a 1xx is ignored.
    peer.request(3)
    peer.adapter.send(Response(3, 200, []))
    peer.adapter.send(InformationalResponse(3, 103, []))
    peer.adapter.send(EndData(3))
    peer.read()
    assert len(peer.of(HeadersFrame, 3)) == 1


def test_large_body_is_split_into_frames() -> None:
    peer = Peer()
    peer.request(1)
    body = bytes(range(256)) * 200  # 51200 bytes, within the default window
    events = peer.respond(1, body)
    frames = peer.of(DataFrame, 1)
    assert len(frames) == 4
    assert all(len(f.data) <= 16384 for f in frames)
    assert body_of(events, 1) == body


def test_data_parts_are_the_bytes_of_data_to_send() -> None:
    """``data_parts`` gives what ``data_to_send`` would, unjoined: the
    body's frames as views of the application's bytes (no copy), behind
    what h2 queued itself (the SETTINGS ack here), and nothing twice."""
    body = bytes(range(256)) * 200
    outputs = []
    peers = []
    for gathered in (False, True):
        peer = Peer(handshake=False)
        peers.append(peer)
        peer.flush()  # the client's preface and SETTINGS: our SETTINGS and ack queued
        peer.client.send_headers(1, request_headers(), True)
        peer.flush()
        peer.adapter.send(Response(1, 200, []))
        peer.adapter.send(Data(1, body))
        peer.adapter.send(EndData(1))
        if gathered:
            parts = peer.adapter.data_parts()
            assert any(isinstance(part, memoryview) and part.obj is body for part in parts)
            outputs.append(b"".join(parts))
            assert peer.adapter.data_parts() == []
        else:
            outputs.append(peer.adapter.data_to_send())
    plain, gathered_bytes = outputs
    assert gathered_bytes == plain
    events = peers[1].client.receive_data(gathered_bytes)
    assert body_of(events, 1) == body


def test_send_after_response_complete_is_ignored() -> None:
    peer = Peer()
    peer.request(1)
    peer.respond(1)
    peer.adapter.send(Data(1, b"late"))
    peer.adapter.send(EndData(1))
    assert peer.adapter.data_to_send() == b""


# ------------------------------------------------------------------ flow control out


def test_outbound_flow_control() -> None:
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 100})
    peer.request(1)
    body = bytes(range(256)) * 4
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, body))
    events = peer.read()
    assert sum(len(f.data) for f in peer.of(DataFrame)) == 100
    assert not peer.adapter.writable(1)
    assert peer.adapter.writable(3)  # no such stream: never blocks
    assert peer.adapter.next_events(0.0) == []
    # The client opens its window a little: still not writable.
    peer.client.increment_flow_control_window(300, stream_id=1)
    assert peer.flush() == []
    events += peer.read()
    assert not peer.adapter.writable(1)
    assert peer.adapter.next_events(0.0) == []
    # Then enough for the rest.
    peer.client.increment_flow_control_window(5000, stream_id=1)
    assert peer.flush() == []
    assert not reads(peer.adapter)  # a Writable is waiting
    assert peer.adapter.next_events(0.0) == [Writable(1)]
    assert reads(peer.adapter)
    assert peer.adapter.writable(1)
    events += peer.read()
    peer.adapter.send(EndData(1))
    events += peer.read()
    assert body_of(events, 1) == body
    assert only(events, h2.events.StreamEnded)


def test_writable_after_window_opens_through_data_to_send() -> None:
    """A window already open when data_to_send runs: no waiting at all."""
    peer = Peer()
    peer.request(1)
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, b"x" * 10))
    peer.read()
    assert peer.adapter.writable(1)
    assert peer.adapter.next_events(0.0) == []


def test_reset_while_waiting_releases_the_writer() -> None:
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    peer.request(1)
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, b"x" * 100))
    peer.read()
    assert not peer.adapter.writable(1)
    peer.client.reset_stream(1, CANCEL)
    assert peer.flush() == [StreamClosed(1, CANCEL)]
    assert peer.adapter.next_events(0.0) == [Writable(1)]
    assert peer.adapter.writable(1)


def test_connection_window_is_shared() -> None:
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    peer.request(1)
    peer.request(3)
    body1 = b"a" * 50000
    body3 = b"b" * 50000
    for stream_id, body in ((1, body1), (3, body3)):
        peer.adapter.send(Response(stream_id, 200, []))
        peer.adapter.send(Data(stream_id, body))
        peer.adapter.send(EndData(stream_id))
    events = peer.read()
    sent = sum(len(f.data) for f in peer.of(DataFrame))
    assert sent == 65535  # the client's connection window, not more
    assert not peer.adapter.writable(3)
    received: list[h2.events.Event] = list(events)
    for _ in range(10):
        if peer.adapter.idle:
            break
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                peer.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        peer.flush()
        events = peer.read()
        received += events
    assert peer.adapter.idle
    assert body_of(received, 1) == body1
    assert body_of(received, 3) == body3
    assert len(only(received, h2.events.StreamEnded)) == 2
    assert Writable(3) in peer.adapter.next_events(0.0)


# ------------------------------------------------------------------ priorities


def stream_order(peer: Peer) -> list[int]:
    """Stream ids of the DATA frames with a payload, in wire order."""
    return [f.stream_id for f in peer.frames if isinstance(f, DataFrame) and f.data]


def queue_responses(peer: Peer, size: int, *stream_ids: int) -> None:
    for stream_id in stream_ids:
        peer.adapter.send(Response(stream_id, 200, []))
        peer.adapter.send(Data(stream_id, bytes([stream_id]) * size))
        peer.adapter.send(EndData(stream_id))


def test_urgency_orders_streams() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/low", b"GET", (b"priority", b"u=5")))
    peer.request(3, request_headers(b"/high", b"GET", (b"priority", b"u=0")))
    peer.request(5)  # default u=3
    queue_responses(peer, 100, 1, 3, 5)
    peer.read()
    assert stream_order(peer) == [3, 5, 1]
    assert [f.stream_id for f in peer.of(HeadersFrame)] == [3, 5, 1]


def test_priority_update_changes_the_order() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/a", b"GET", (b"priority", b"u=5")))
    peer.request(3, request_headers(b"/b", b"GET", (b"priority", b"u=1")))
    assert peer.raw(priority_update(1, b"u=0")) == []
    # Short, unknown-stream or unparsable updates change nothing.
    assert (
        peer.raw(
            raw_frame(0x10, 0, 0, b"\x00"),
            priority_update(99, b"u=7"),
            priority_update(3, b"u=9, x=?"),
        )
        == []
    )
    queue_responses(peer, 100, 1, 3)
    peer.read()
    assert stream_order(peer) == [1, 3]


def test_incremental_streams_round_robin() -> None:
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    peer.client.increment_flow_control_window(1 << 20)
    peer.request(1, request_headers(b"/a", b"GET", (b"priority", b"i")))
    peer.request(3, request_headers(b"/b", b"GET", (b"priority", b"u=3, i")))
    queue_responses(peer, 3 * 16384, 1, 3)
    events = peer.read()
    assert stream_order(peer) == [1, 3, 1, 3, 1, 3]
    assert body_of(events, 1) == b"\x01" * 3 * 16384
    assert body_of(events, 3) == b"\x03" * 3 * 16384


def test_non_incremental_streams_in_stream_order() -> None:
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    peer.client.increment_flow_control_window(1 << 20)
    peer.request(1)
    peer.request(3)
    queue_responses(peer, 2 * 16384, 3, 1)
    peer.read()
    assert stream_order(peer) == [1, 1, 3, 3]


# ------------------------------------------------------------------ push


def test_push_promise() -> None:
    peer = Peer()
    peer.request(1)
    peer.adapter.send(
        PushPromise(1, b"/style.css", [(b"accept", b"text/css"), (b"connection", b"x")])
    )
    events = peer.read()
    (pushed,) = only(events, h2.events.PushedStreamReceived)
    assert pushed.parent_stream_id == 1
    assert pushed.pushed_stream_id == 2
    assert pushed.headers == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":path", b"/style.css"),
        (b":authority", b"example.com"),
        (b"accept", b"text/css"),
    ]
    assert peer.adapter.next_events(0.0) == [
        Request(
            2,
            b"GET",
            b"/style.css",
            [(b"host", b"example.com"), (b"accept", b"text/css")],
            "2",
            scheme="https",
            authority=b"example.com",
        ),
        EndBody(2),
    ]
    # A pushed stream cannot push.
    peer.adapter.send(PushPromise(2, b"/other.css", []))
    peer.read()
    assert peer.of(PushPromiseFrame) == []
    assert peer.adapter.next_events(0.0) == []
    # Bad paths are ignored.
    peer.adapter.send(PushPromise(1, b"relative", []))
    peer.adapter.send(PushPromise(1, b"/a\r\nb", []))
    peer.read()
    assert peer.frames == []
    events = peer.respond(2, b"css")
    assert body_of(events, 2) == b"css"
    events = peer.respond(1, b"html")
    assert body_of(events, 1) == b"html"
    assert peer.adapter.idle


def test_push_refused_when_client_disables_it() -> None:
    peer = Peer(client_settings={SettingCodes.ENABLE_PUSH: 0})
    peer.request(1)
    peer.adapter.send(PushPromise(1, b"/style.css", []))
    peer.read()
    assert peer.frames == []
    assert peer.adapter.next_events(0.0) == []


def test_push_within_our_stream_limit() -> None:
    peer = Peer(H2Settings(max_concurrent_streams=2))
    peer.request(1)
    peer.adapter.send(PushPromise(1, b"/a.css", []))
    peer.read()
    assert len(peer.of(PushPromiseFrame)) == 1
    assert [type(e) for e in peer.adapter.next_events(0.0)] == [Request, EndBody]
    # Two streams held: no more pushes, and new requests are refused.
    peer.adapter.send(PushPromise(1, b"/b.css", []))
    peer.read()
    assert peer.frames == []
    assert peer.request(3) == []
    peer.read()
    assert rst(peer, 3) == REFUSED_STREAM


def test_push_within_the_client_stream_limit() -> None:
    peer = Peer(client_settings={SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    peer.request(1)
    peer.adapter.send(PushPromise(1, b"/a.css", []))
    peer.adapter.send(PushPromise(1, b"/b.css", []))
    peer.read()
    assert len(peer.of(PushPromiseFrame)) == 1


def test_push_after_response_end_is_ignored() -> None:
    peer = Peer()
    peer.request(1)
    peer.respond(1)
    peer.adapter.send(PushPromise(1, b"/late.css", []))
    peer.read()
    assert peer.frames == []


# ------------------------------------------------------------------ resets


def test_reset_stream() -> None:
    peer = Peer()
    peer.request(1)
    peer.adapter.send(ResetStream(1, CANCEL))
    events = peer.read()
    assert rst(peer, 1) == CANCEL
    (reset,) = only(events, h2.events.StreamReset)
    assert reset.error_code == CANCEL
    assert peer.adapter.idle
    peer.adapter.send(Response(1, 200, []))
    assert peer.adapter.data_to_send() == b""


def test_client_reset() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/p", b"POST"), b"abc", end=False)
    peer.client.reset_stream(1, CANCEL)
    assert peer.flush() == [StreamClosed(1, CANCEL)]
    assert peer.adapter.idle
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, b"x"))
    peer.adapter.send(EndData(1))
    peer.adapter.send(BodyConsumed(1, 3))
    peer.read()
    assert [f for f in peer.frames if not isinstance(f, WindowUpdateFrame)] == []
    # The connection goes on.
    assert peer.request(3) == [get(3), EndBody(3)]


def test_data_on_a_reset_stream_is_credited() -> None:
    peer = Peer(H2Settings(connection_window_size=65535))
    peer.request(1, request_headers(b"/p", b"POST"), b"a" * 30000, end=False)
    peer.adapter.send(ResetStream(1, CANCEL))
    # Data the client sent before it saw the reset: dropped, but credited.
    peer.send_body(1, b"b" * 30000)
    assert peer.flush() == []
    peer.read(client=False)
    # h2 answers each late DATA frame with RST_STREAM(STREAM_CLOSED).
    assert [f.error_code for f in peer.of(RstStreamFrame, 1)][:1] == [CANCEL]
    credited = sum(f.window_increment for f in peer.of(WindowUpdateFrame) if f.stream_id == 0)
    assert credited > 30000  # the unread body and the late frames
    assert peer.adapter.idle


# ------------------------------------------------------------------ validation


MALFORMED = {
    "missing :method": [(b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")],
    "missing :scheme": [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a")],
    "missing :path": [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")],
    "duplicate :method": [(b":method", b"GET"), *request_headers()],
    "duplicate :path": [*request_headers(), (b":path", b"/x")],
    "duplicate :authority": request_headers()[:3] + [(b":authority", b"a")] * 2,
    "duplicate :scheme": [(b":scheme", b"http"), *request_headers()],
    "uppercase name": request_headers(b"/", b"GET", (b"X-Upper", b"1")),
    "name with space": request_headers(b"/", b"GET", (b"x a", b"1")),
    "connection": request_headers(b"/", b"GET", (b"connection", b"keep-alive")),
    "keep-alive": request_headers(b"/", b"GET", (b"keep-alive", b"5")),
    "proxy-connection": request_headers(b"/", b"GET", (b"proxy-connection", b"x")),
    "transfer-encoding": request_headers(b"/", b"GET", (b"transfer-encoding", b"chunked")),
    "upgrade": request_headers(b"/", b"GET", (b"upgrade", b"websocket")),
    "te gzip": request_headers(b"/", b"GET", (b"te", b"gzip")),
    "te trailers, gzip": request_headers(b"/", b"GET", (b"te", b"trailers, gzip")),
    "pseudo after regular": [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b"x-a", b"1"),
        (b":path", b"/"),
    ],
    "empty :path": request_headers(b""),
    "relative :path": request_headers(b"a/b"),
    "asterisk not OPTIONS": request_headers(b"*"),
    ":status in a request": [*request_headers(), (b":status", b"200")],
    "unknown pseudo": [(b":protocol", b"x"), *request_headers()],
    "host differs": request_headers(b"/", b"GET", (b"host", b"other.example")),
    "duplicate host": [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":path", b"/"),
        (b"host", b"a"),
        (b"host", b"a"),
    ],
    "value with CR": request_headers(b"/", b"GET", (b"x-a", b"a\rb")),
    "value with NUL": request_headers(b"/", b"GET", (b"x-a", b"a\x00b")),
    "leading space": request_headers(b"/", b"GET", (b"x-a", b" a")),
    "trailing tab": request_headers(b"/", b"GET", (b"x-a", b"a\t")),
    "bad content-length": request_headers(b"/", b"GET", (b"content-length", b"-1")),
    "two content-lengths": request_headers(
        b"/", b"POST", (b"content-length", b"1"), (b"content-length", b"2")
    ),
    "bad method": request_headers(b"/", b"G T"),
    "CONNECT with path": [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
    "CONNECT without authority": [(b":method", b"CONNECT")],
}


@pytest.mark.parametrize("headers", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_resets_the_stream(headers: Headers) -> None:
    peer = Peer(validate=False)
    assert peer.request(1, headers) == []
    peer.read(client=False)
    assert rst(peer, 1) == PROTOCOL_ERROR
    assert peer.of(GoAwayFrame) == []
    assert peer.adapter.idle
    # The connection goes on.
    assert peer.request(3) == [get(3), EndBody(3)]


@pytest.mark.parametrize(("declared", "sent"), [(5, 3), (2, 5), (0, 1), (3, 0)])
def test_content_length_mismatch(declared: int, sent: int) -> None:
    peer = Peer()
    headers = request_headers(b"/p", b"POST", (b"content-length", str(declared).encode()))
    events = peer.request(1, headers, b"x" * sent)
    assert isinstance(events[0], Request)
    assert events[-1] == StreamClosed(1, PROTOCOL_ERROR)
    assert not any(isinstance(e, EndBody) for e in events)
    assert sum(len(e.data) for e in only(events, Body)) <= declared
    peer.read(client=False)
    assert rst(peer, 1) == PROTOCOL_ERROR
    assert peer.adapter.idle
    assert peer.request(3) == [get(3), EndBody(3)]


def test_content_length_match() -> None:
    peer = Peer()
    headers = request_headers(b"/p", b"POST", (b"content-length", b"3"))
    peer.client.send_headers(1, headers)
    peer.client.send_data(1, b"ab")
    peer.client.send_data(1, b"c", end_stream=True)
    events = peer.flush()
    assert events[1:] == [Body(1, b"ab"), Body(1, b"c"), EndBody(1)]


def test_connect_is_not_implemented() -> None:
    peer = Peer()
    events = peer.request(
        1, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")], end=False
    )
    assert events == []
    client_events = peer.read()
    (response,) = only(client_events, h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", b"501")
    assert "END_STREAM" in peer.of(HeadersFrame, 1)[0].flags
    assert peer.adapter.idle


def test_streams_past_the_limit_are_refused() -> None:
    peer = Peer(H2Settings(max_concurrent_streams=2))
    assert peer.request(1) == [get(1), EndBody(1)]
    assert peer.request(3) == [get(3), EndBody(3)]
    assert peer.request(5) == []
    peer.read()
    assert rst(peer, 5) == REFUSED_STREAM
    assert peer.of(GoAwayFrame) == []
    peer.respond(1)
    assert peer.request(7) == [get(7), EndBody(7)]


# ------------------------------------------------------------------ closing


def test_begin_shutdown_when_idle() -> None:
    peer = Peer()
    assert peer.adapter.begin_shutdown() == [ConnectionClosed("shutdown")]
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 0)
    assert not reads(peer.adapter)
    assert peer.adapter.next_events(0.0) == []
    assert peer.adapter.begin_shutdown() == []


def test_begin_shutdown_finishes_streams_in_flight() -> None:
    peer = Peer()
    peer.request(1)
    peer.request(3, request_headers(b"/p", b"POST"), b"abc", end=False)
    assert peer.adapter.begin_shutdown() == []
    # A stream the client opened before it saw the GOAWAY is refused.
    assert peer.request(5) == []
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 3)
    assert rst(peer, 5) == REFUSED_STREAM
    # The streams in flight go on.
    peer.client.send_data(3, b"def", end_stream=True)
    assert peer.flush() == [Body(3, b"def"), EndBody(3)]
    assert reads(peer.adapter)
    peer.respond(1)
    assert peer.adapter.next_events(0.0) == []
    peer.adapter.send(Response(3, 200, []))
    peer.adapter.send(EndData(3))
    peer.read(client=False)
    assert peer.of(GoAwayFrame) == []  # one GOAWAY
    assert peer.adapter.idle
    assert not reads(peer.adapter)
    assert peer.adapter.next_events(0.0) == [ConnectionClosed("done after GOAWAY")]
    assert peer.adapter.next_events(0.0) == []
    assert peer.adapter.begin_shutdown() == []


def test_client_goaway_lets_streams_in_flight_finish() -> None:
    peer = Peer(H2Settings(ping_interval=1.0))
    peer.request(1)
    peer.client.close_connection()
    assert peer.flush() == []
    assert peer.adapter.handle_timeout(1.0) == []  # a PING still goes out
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, b"late"))
    peer.adapter.send(EndData(1))
    peer.read(client=False)  # the h2 client is closed: frames only
    assert kinds(peer) == ["PingFrame", "HeadersFrame", "DataFrame"]
    assert peer.of(DataFrame, 1)[0].data == b"late"
    assert peer.adapter.next_events(0.0) == [ConnectionClosed("done after GOAWAY")]


def test_client_goaway_keeps_queued_frames() -> None:
    peer = Peer()
    peer.request(1)
    peer.client.ping(b"12345678")
    peer.client.close_connection()
    assert peer.flush() == []
    peer.read(client=False)
    (ack,) = peer.of(PingFrame)
    assert "ACK" in ack.flags


def test_client_goaway_refuses_new_streams() -> None:
    peer = Peer()
    peer.request(1)
    peer.client.send_headers(3, request_headers(), end_stream=True)
    request3 = peer.client.data_to_send()
    peer.client.close_connection()
    goaway_frame = peer.client.data_to_send()
    assert peer.adapter.receive_data(goaway_frame, 0.0) == []
    assert peer.adapter.receive_data(request3, 0.0) == []
    peer.read(client=False)
    assert rst(peer, 3) == REFUSED_STREAM


def test_keep_alive_timeout() -> None:
    peer = Peer(H2Settings(keep_alive_timeout=5.0))
    assert peer.adapter.next_deadline(0.0) == 5.0
    assert peer.adapter.handle_timeout(4.9) == []
    assert peer.adapter.handle_timeout(5.0) == [ConnectionClosed("idle timeout")]
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 0)
    assert peer.adapter.handle_timeout(100.0) == []
    assert peer.adapter.receive_data(b"\x00" * 9, 100.0) == []


def test_keep_alive_timer_waits_for_streams() -> None:
    peer = Peer(H2Settings(keep_alive_timeout=5.0))
    peer.request(1, now=1.0)
    assert peer.adapter.next_deadline(2.0) is None
    assert peer.adapter.handle_timeout(10.0) == []
    peer.respond(1)
    assert peer.adapter.next_deadline(20.0) == 25.0  # stamped when waiting begins
    assert peer.adapter.handle_timeout(24.0) == []
    assert peer.adapter.handle_timeout(25.0) == [ConnectionClosed("idle timeout")]
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 1)


def test_no_keep_alive_timeout() -> None:
    peer = Peer(H2Settings(keep_alive_timeout=None))
    assert peer.adapter.next_deadline(0.0) is None
    assert peer.adapter.handle_timeout(1e9) == []


def test_ping_unanswered_closes() -> None:
    peer = Peer(H2Settings(keep_alive_timeout=None, ping_interval=10.0))
    assert peer.adapter.next_deadline(0.0) == 10.0
    assert peer.adapter.handle_timeout(9.0) == []
    assert peer.adapter.handle_timeout(10.0) == []
    peer.read(client=False)
    (ping,) = peer.of(PingFrame)
    assert "ACK" not in ping.flags
    assert peer.adapter.next_deadline(10.0) == 20.0
    assert peer.adapter.handle_timeout(15.0) == []
    events = peer.adapter.handle_timeout(20.0)
    assert only(events, ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == NO_ERROR


def test_ping_answered_keeps_the_connection() -> None:
    peer = Peer(H2Settings(keep_alive_timeout=None, ping_interval=10.0))
    assert peer.adapter.handle_timeout(10.0) == []
    events = peer.read()  # the client answers the PING
    assert only(events, h2.events.PingReceived)
    assert peer.flush(now=12.0) == []
    assert peer.adapter.next_deadline(12.0) == 22.0
    assert peer.adapter.handle_timeout(20.0) == []
    peer.read(client=False)
    assert peer.frames == []


def test_keep_alive_max_requests() -> None:
    peer = Peer(H2Settings(keep_alive_max_requests=2))
    peer.request(1)
    peer.read(client=False)
    assert peer.of(GoAwayFrame) == []
    peer.request(3)
    assert peer.request(5) == []  # sent before the client saw the GOAWAY
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 3)
    assert rst(peer, 5) == REFUSED_STREAM
    peer.respond(1)
    assert peer.adapter.next_events(0.0) == []
    peer.adapter.send(Response(3, 200, []))
    peer.adapter.send(EndData(3))
    peer.adapter.data_to_send()
    assert peer.adapter.next_events(0.0) == [ConnectionClosed("done after GOAWAY")]


def test_control_frame_flood() -> None:
    peer = Peer(H2Settings(max_control_frames=10))
    for i in range(20):
        peer.client.ping(b"%08d" % i)
    events = peer.flush(now=0.5)
    assert events == [ConnectionClosed("too many HTTP/2 control frames")]
    peer.read(client=False)
    assert goaway(peer)[0] == ENHANCE_YOUR_CALM
    assert peer.adapter.receive_data(b"", 0.6) == []
    assert peer.adapter.next_events(0.6) == []


def test_control_frames_under_the_limit_per_second() -> None:
    peer = Peer(H2Settings(max_control_frames=10))
    for second in range(1, 6):
        for i in range(8):
            peer.client.ping(b"%08d" % i)
        assert peer.flush(now=float(second)) == []
    peer.read(client=False)
    assert peer.of(GoAwayFrame) == []
    assert len(peer.of(PingFrame)) == 40


def test_refused_streams_count_as_control_frames() -> None:
    peer = Peer(H2Settings(max_control_frames=5), validate=False)
    events: list[Event] = []
    for stream_id in range(1, 20, 2):
        events += peer.request(stream_id, [(b":method", b"GET")], now=0.5)
    assert only(events, ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == ENHANCE_YOUR_CALM


def test_peer_close_ends_open_streams() -> None:
    peer = Peer()
    peer.request(1)
    peer.request(3, request_headers(b"/p", b"POST"), b"x", end=False)
    events = peer.adapter.receive_data(b"", 1.0)
    assert events == [
        StreamClosed(1),
        StreamClosed(3),
        ConnectionClosed("the client closed the connection"),
    ]
    assert peer.adapter.idle
    assert not reads(peer.adapter)
    assert peer.adapter.next_events(1.0) == []
    assert peer.adapter.receive_data(b"", 1.0) == []
    peer.adapter.send(Response(1, 200, []))
    assert peer.adapter.handle_timeout(1e9) == []


def test_connection_error_sends_goaway() -> None:
    peer = Peer()
    peer.request(1)
    # DATA on stream 0 is a connection error.
    events = peer.raw(raw_frame(0x0, 0, 0, b"x"))
    assert events == [StreamClosed(1), events[-1]]
    assert isinstance(events[-1], ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == PROTOCOL_ERROR


def test_frames_up_to_our_max_frame_size() -> None:
    peer = Peer(H2Settings(max_inbound_frame_size=32768))
    assert peer.client.max_outbound_frame_size == 32768
    peer.client.send_headers(1, request_headers(b"/p", b"POST"))
    peer.client.send_data(1, b"x" * 30000, end_stream=True)
    assert peer.flush()[1:] == [Body(1, b"x" * 30000), EndBody(1)]


def test_frames_past_our_max_frame_size() -> None:
    peer = Peer(H2Settings(max_inbound_frame_size=16384))
    peer.request(1, request_headers(b"/p", b"POST"), end=False)
    events = peer.raw(raw_frame(0x0, 0, 1, b"x" * 16385))
    assert only(events, ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == 0x6  # FRAME_SIZE_ERROR


def test_header_list_within_our_limit() -> None:
    peer = Peer(H2Settings(max_header_list_size=200_000))
    headers = request_headers(b"/", b"GET", *[(b"x-%d" % i, b"v" * 1000) for i in range(100)])
    (request, _) = peer.request(1, headers)
    assert isinstance(request, Request)
    assert len(request.headers) == 101


def test_hpack_bomb_is_refused() -> None:
    peer = Peer(H2Settings(max_header_list_size=1000))
    headers = request_headers(b"/", b"GET", *[(b"x-%d" % i, b"v" * 100) for i in range(20)])
    events = peer.request(1, headers)
    assert only(events, ConnectionClosed)
    assert not only(events, Request)
    peer.read(client=False)
    assert goaway(peer)[0] == ENHANCE_YOUR_CALM


# ------------------------------------------------------------------ upgrade


def upgrade_switch(
    client: h2.connection.H2Connection, method: bytes = b"GET", body: bytes = b""
) -> ProtocolSwitch:
    settings = client.initiate_upgrade_connection()
    assert settings is not None
    request = Request(
        1,
        method,
        b"/up",
        [(b"host", b"example.com"), (b"accept", b"*/*")],
        "2",
        scheme="http",
        authority=b"example.com",
    )
    return ProtocolSwitch("h2c", b"", request, base64.urlsafe_b64decode(settings), body)


@pytest.mark.parametrize("body", [b"", b"posted"])
def test_upgrade(body: bytes) -> None:
    client = _Client(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    switch = upgrade_switch(client, b"POST" if body else b"GET", body)
    adapter = H2Adapter(H2Settings(), now=0.0, scheme="http", upgrade=switch)
    assert not reads(adapter)
    assert not adapter.idle
    expected: list[Event] = [switch.request] if switch.request else []
    if body:
        expected.append(Body(1, body))
    expected.append(EndBody(1))
    assert adapter.next_events(0.0) == expected
    assert reads(adapter)
    assert adapter.receive_data(client.data_to_send(), 0.0) == []
    client.receive_data(adapter.data_to_send())
    adapter.send(Response(1, 200, [(b"content-length", b"2")]))
    adapter.send(Data(1, b"ok"))
    adapter.send(EndData(1))
    events = client.receive_data(adapter.data_to_send())
    (response,) = only(events, h2.events.ResponseReceived)
    assert response.stream_id == 1
    assert body_of(events, 1) == b"ok"
    assert is_idle(adapter)
    # The connection goes on with stream 3.
    client.send_headers(3, request_headers(), end_stream=True)
    assert adapter.receive_data(client.data_to_send(), 0.0) == [get(3), EndBody(3)]


@pytest.mark.parametrize(
    "settings",
    [
        bytes.fromhex("000200000002"),  # ENABLE_PUSH=2
        bytes.fromhex("000480000000"),  # INITIAL_WINDOW_SIZE past 2^31-1
        bytes.fromhex("000500000001"),  # MAX_FRAME_SIZE below 16384
    ],
)
def test_upgrade_with_invalid_settings(settings: bytes) -> None:
    request = get(1)
    switch = ProtocolSwitch("h2c", b"", request, settings, b"")
    adapter = H2Adapter(H2Settings(), now=0.0, scheme="http", upgrade=switch)
    assert not reads(adapter)
    assert adapter.next_events(0.0) == [ConnectionClosed("invalid HTTP2-Settings")]
    assert adapter.next_events(0.0) == []
    assert adapter.receive_data(PREFACE, 0.0) == []
    frames = parse_frames(adapter.data_to_send())
    assert isinstance(frames[-1], GoAwayFrame)
    assert frames[-1].error_code == PROTOCOL_ERROR


def test_h2c_upgrade_through_the_http1_adapter() -> None:
    """HTTP/1.1 Upgrade: h2c, then the HTTP/2 adapter takes over."""
    client = _Client(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = client.initiate_upgrade_connection()
    assert settings is not None
    h1 = H1Adapter(H1Settings(h2c=True))
    raw = (
        b"POST /up HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\nContent-Length: 4\r\n\r\nbody"
    )
    (switch,) = h1.receive_data(raw + client.data_to_send(), 0.0)
    assert isinstance(switch, ProtocolSwitch)
    assert h1.data_to_send().startswith(b"HTTP/1.1 101 ")
    adapter = H2Adapter(H2Settings(), now=0.0, scheme="http", upgrade=switch)
    assert adapter.receive_data(switch.data, 0.0) == []
    events = adapter.next_events(0.0)
    assert events == [
        Request(
            1,
            b"POST",
            b"/up",
            [(b"host", b"example.com"), (b"content-length", b"4")],
            "2",
            scheme="http",
            authority=b"example.com",
        ),
        Body(1, b"body"),
        EndBody(1),
    ]
    client.receive_data(adapter.data_to_send())
    adapter.send(Response(1, 204, []))
    adapter.send(EndData(1))
    (response, *_) = client.receive_data(adapter.data_to_send())
    assert isinstance(response, h2.events.ResponseReceived)


def test_prior_knowledge_through_the_http1_adapter() -> None:
    client = _Client(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, request_headers(), end_stream=True)
    h1 = H1Adapter(H1Settings(h2c=True))
    data = client.data_to_send()
    (switch,) = h1.receive_data(data, 0.0)
    assert switch == ProtocolSwitch("h2c", data)
    adapter = H2Adapter(H2Settings(), now=0.0, scheme="https")
    assert adapter.receive_data(switch.data, 0.0) == [get(1), EndBody(1)]


# ------------------------------------------------------------------ fast paths
# A new request's HEADERS frame (END_HEADERS, no PADDED, no PRIORITY) is read
# without hyperframe and h2's stream handling; every other shape goes the
# h2 way. Both must give the same events and leave h2 in the same state.


def _headers_frame(peer: Peer, stream_id: int, *flags: str, **fields: Any) -> HeadersFrame:
    frame = HeadersFrame(stream_id, peer.client.encoder.encode(request_headers()), **fields)
    for flag in ("END_HEADERS", "END_STREAM", *flags):
        frame.flags.add(flag)
    return frame


@pytest.mark.parametrize(
    ("flags", "fields"),
    [((), {}), (("PADDED",), {"pad_length": 7}), (("PRIORITY",), {"depends_on": 0})],
    ids=["plain", "padded", "priority"],
)
def test_request_headers_every_way_give_the_same_request(
    flags: tuple[str, ...], fields: dict[str, Any]
) -> None:
    peer = Peer()
    events = peer.raw(_headers_frame(peer, 1, *flags, **fields))
    assert events[:2] == [get(1), EndBody(1)]
    stream = peer.adapter._conn.streams[1]
    assert stream.state_machine.state is h2.stream.StreamState.HALF_CLOSED_REMOTE
    assert peer.adapter._conn.highest_inbound_stream_id == 1
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, b"hello"))
    peer.adapter.send(EndData(1))
    peer.read(client=False)  # (the client did not open stream 1 itself)
    assert kinds(peer) == ["HeadersFrame", "DataFrame"]
    assert peer.of(DataFrame, 1)[0].data == b"hello"
    assert 1 not in peer.adapter._conn.streams  # closed: dropped from h2 at once


def test_request_headers_split_across_reads() -> None:
    peer = Peer()
    peer.client.send_headers(1, request_headers(), end_stream=True)
    data = peer.client.data_to_send()
    events: list[Event] = []
    for i in range(len(data)):
        events += peer.adapter.receive_data(data[i : i + 1], 0.0)
    assert events == [get(1), EndBody(1)]


def test_request_with_body_after_fast_headers() -> None:
    peer = Peer()
    events = peer.request(1, request_headers(b"/up", b"POST"), b"x" * 40000)
    assert only(events, Request)[0].method == b"POST"
    assert b"".join(e.data for e in only(events, Body)) == b"x" * 40000
    assert only(events, EndBody) == [EndBody(1)]


def test_trailers_on_an_open_stream_take_h2s_way() -> None:
    peer = Peer()
    peer.request(1, request_headers(b"/up", b"POST"), b"abc", end=False)
    peer.client.send_headers(1, [(b"x-sum", b"1")], end_stream=True)
    events = peer.flush()
    assert Trailers(1, [(b"x-sum", b"1")]) in events
    assert EndBody(1) in events


def test_informational_headers_from_a_client_end_the_connection() -> None:
    peer = Peer()
    block = peer.client.encoder.encode([(b":status", b"100"), *request_headers()])
    events = peer.raw(HeadersFrame(1, block, flags=["END_HEADERS"]))
    assert only(events, ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == PROTOCOL_ERROR


def test_headers_on_an_even_stream_take_h2s_way() -> None:
    peer = Peer()
    events = peer.raw(_headers_frame(peer, 2))
    assert only(events, ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == PROTOCOL_ERROR


def test_headers_with_a_lower_stream_id_take_h2s_way() -> None:
    peer = Peer()
    peer.request(5)
    peer.respond(5)
    events = peer.raw(_headers_frame(peer, 3))
    assert only(events, ConnectionClosed)
    peer.read(client=False)
    assert goaway(peer)[0] == PROTOCOL_ERROR


def test_request_fields_remembered_are_still_checked_in_order() -> None:
    """A field seen (and remembered) as a valid regular field still may not
    come before a pseudo-header, and the malformed request is refused."""
    peer = Peer(validate=False)
    peer.request(1, [*request_headers(), (b"accept", b"*/*")])
    peer.respond(1)
    peer.client.send_headers(3, [(b"accept", b"*/*"), *request_headers()], end_stream=True)
    assert not only(peer.flush(), Request)
    peer.read(client=False)
    assert rst(peer, 3) == PROTOCOL_ERROR


def test_request_headers_are_plain_tuples() -> None:
    peer = Peer()
    for stream_id in (1, 3):  # the second block is a repeat (indexed fields)
        (request,) = only(peer.request(stream_id), Request)
        assert all(type(field) is tuple for field in request.headers)
        peer.respond(stream_id)


def test_h2_frames_keep_their_place_among_ours() -> None:
    """A PING ack h2 queues between our frames goes out between them."""
    peer = Peer()
    peer.request(1)
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, b"a"))
    peer.read()
    peer.raw(PingFrame(0, opaque_data=b"12345678"))
    peer.adapter.send(Data(1, b"b"))
    peer.adapter.send(EndData(1))
    events = peer.read()
    assert kinds(peer) == ["PingFrame", "DataFrame"]
    assert body_of(events, 1) == b"b"


def test_chunk_split_at_the_window_and_the_frame_size() -> None:
    """One chunk across frames (the peer's frame size) and across window
    updates: every byte once, in order, END_STREAM on the last frame."""
    peer = Peer(client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 40000})
    peer.request(1)
    body = bytes(range(256)) * 400  # 102400 bytes
    peer.adapter.send(Response(1, 200, []))
    peer.adapter.send(Data(1, body))
    peer.adapter.send(EndData(1))
    received = b""
    events = peer.read()
    while True:
        received += body_of(events, 1)
        sizes = [len(f.data) for f in peer.of(DataFrame, 1)]
        assert all(size <= 16384 for size in sizes)
        if any("END_STREAM" in f.flags for f in peer.of(DataFrame, 1)):
            break
        peer.client.increment_flow_control_window(40000, 1)
        peer.client.increment_flow_control_window(40000)
        peer.flush()
        events = peer.read()
    assert received == body


def test_repeated_requests_get_their_own_headers() -> None:
    """A request block answered from memory is a fresh list each time (the
    application may change its scope's headers)."""
    peer = Peer()
    (first,) = only(peer.request(1), Request)
    peer.respond(1)
    first.headers.append((b"x-mutated", b"1"))
    (second,) = only(peer.request(3), Request)
    assert second == get(3)
    assert second.headers is not first.headers


def test_malformed_request_refused_every_time() -> None:
    peer = Peer(validate=False)
    bad = [*request_headers(), (b"connection", b"close")]
    for stream_id in (1, 3):
        assert not only(peer.request(stream_id, bad), Request)
        peer.read(client=False)
        assert rst(peer, stream_id) == PROTOCOL_ERROR
