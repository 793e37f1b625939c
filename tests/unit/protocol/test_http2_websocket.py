"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT), driven by a real h2
client connection whose stream DATA carries the frames of a wsproto
client connection."""

from __future__ import annotations

from collections.abc import Sequence

import h2.events
import pytest
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.events import Event as WSEvent
from wsproto.extensions import PerMessageDeflate

from tricorn.errors import AppProtocolError
from tricorn.protocol.events import (
    BodyConsumed,
    ConnectionClosed,
    Data,
    EndBody,
    EndData,
    Event,
    Headers,
    Request,
    Response,
    StreamClosed,
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
)
from tricorn.protocol.http2 import H2Adapter, H2Settings
from tricorn.protocol.websocket import WSSettings

from .test_http2 import Peer, get, goaway, is_idle, only, reads, request_headers, rst

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
CANCEL = 0x8
ENABLE_CONNECT_PROTOCOL = 0x8
DEFLATE_OFFER = (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")


# ------------------------------------------------------------------ helpers


def connect_headers(*extra: tuple[bytes, bytes], path: bytes = b"/chat") -> Headers:
    """An extended CONNECT for a WebSocket (RFC 8441 §4)."""
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", path),
        (b":authority", b"example.com"),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]


def ws_request(stream_id: int = 1, *extra: tuple[bytes, bytes], path: bytes = b"/chat") -> Request:
    """The Request event for ``connect_headers(*extra)``."""
    return Request(
        stream_id,
        b"CONNECT",
        path,
        [(b"host", b"example.com"), (b"sec-websocket-version", b"13"), *extra],
        "2",
        scheme="https",
        authority=b"example.com",
        protocol="websocket",
    )


def deadline(adapter: H2Adapter, now: float) -> float | None:
    return adapter.next_deadline(now)


def open_websocket(
    peer: Peer,
    stream_id: int = 1,
    *extra: tuple[bytes, bytes],
    subprotocol: str | None = None,
    now: float = 0.0,
) -> Connection:
    """Extended CONNECT and accept; the wsproto client of the stream."""
    assert peer.request(stream_id, connect_headers(*extra), end=False, now=now) == [
        ws_request(stream_id, *extra)
    ]
    peer.adapter.send(WebSocketAccept(stream_id, subprotocol))
    assert peer.adapter.next_events(now) == []
    (response,) = only(peer.read(), h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", b"200")
    return Connection(ConnectionType.CLIENT)


def send_ws(
    peer: Peer,
    client: Connection,
    event: WSEvent,
    stream_id: int = 1,
    *,
    end: bool = False,
    now: float = 0.0,
) -> list[Event]:
    """One wsproto frame as the stream's DATA; the adapter's events."""
    peer.client.send_data(stream_id, client.send(event), end_stream=end)
    return peer.flush(now)


def ws_data(peer: Peer, stream_id: int = 1) -> bytes:
    """The payload of the DATA frames of the last read on ``stream_id``."""
    return b"".join(bytes(frame.data) for frame in peer.of(DataFrame, stream_id))


def ended(peer: Peer, stream_id: int = 1) -> bool:
    """The adapter sent END_STREAM on ``stream_id`` in the last read."""
    return any(
        "END_STREAM" in frame.flags
        for frame in peer.frames
        if isinstance(frame, DataFrame | HeadersFrame) and frame.stream_id == stream_id
    )


def client_events(client: Connection, data: bytes) -> list[WSEvent]:
    client.receive_data(data)
    return list(client.events())


def messages(events: Sequence[WSEvent]) -> list[bytes | str]:
    return [
        bytes(e.data) if isinstance(e.data, bytearray) else e.data
        for e in events
        if isinstance(e, Message)
    ]


def stream_updates(peer: Peer, stream_id: int = 1) -> int:
    """The WINDOW_UPDATE increments for ``stream_id`` in the last read."""
    return sum(frame.window_increment for frame in peer.of(WindowUpdateFrame, stream_id))


# ------------------------------------------------------------------ requests


def test_settings_enable_connect_protocol() -> None:
    peer = Peer(handshake=False)
    peer.flush()
    peer.read()
    settings = peer.frames[0]
    assert isinstance(settings, SettingsFrame)
    assert "ACK" not in settings.flags
    assert settings.settings[ENABLE_CONNECT_PROTOCOL] == 1
    assert peer.client.remote_settings.enable_connect_protocol == 1


def test_extended_connect_is_a_websocket_request() -> None:
    peer = Peer()
    events = peer.request(1, connect_headers(path=b"/chat?room=1"), end=False)
    assert events == [ws_request(path=b"/chat?room=1")]
    (request,) = events
    assert isinstance(request, Request)
    assert request.protocol == "websocket"
    assert request.target == b"/chat?room=1"
    assert request.headers[0] == (b"host", b"example.com")
    peer.read()
    assert peer.of(HeadersFrame) == []  # the application decides
    assert peer.of(RstStreamFrame) == []
    assert not is_idle(peer.adapter)


def test_extended_connect_with_http_scheme() -> None:
    peer = Peer(scheme="http")
    headers = [(n, b"http" if n == b":scheme" else v) for n, v in connect_headers()]
    (request,) = peer.request(1, headers, end=False)
    assert isinstance(request, Request)
    assert (request.scheme, request.protocol) == ("http", "websocket")


def with_pseudo(pseudo: list[tuple[bytes, bytes]]) -> Headers:
    return [*pseudo, (b"sec-websocket-version", b"13")]


MALFORMED = {
    ":protocol on GET": with_pseudo(
        [
            (b":method", b"GET"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", b"/"),
            (b":authority", b"example.com"),
        ]
    ),
    "without :path": with_pseudo(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
        ]
    ),
    "without :scheme": with_pseudo(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":path", b"/chat"),
            (b":authority", b"example.com"),
        ]
    ),
    "without :authority": with_pseudo(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", b"/chat"),
        ]
    ),
    "duplicate :protocol": [(b":protocol", b"websocket"), *connect_headers()],
    "empty :path": connect_headers(path=b""),
    "relative :path": connect_headers(path=b"chat"),
    ":protocol with CR": [
        (b":protocol", b"web\rsocket") if name == b":protocol" else (name, value)
        for name, value in connect_headers()
    ],
}


@pytest.mark.parametrize("headers", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_extended_connect_resets_the_stream(headers: Headers) -> None:
    peer = Peer(validate=False)
    assert peer.request(1, headers, end=False) == []
    peer.read(client=False)
    assert rst(peer, 1) == PROTOCOL_ERROR
    assert peer.of(GoAwayFrame) == []
    assert is_idle(peer.adapter)
    # A stream error: the connection goes on.
    assert peer.request(3) == [get(3), EndBody(3)]


NOT_IMPLEMENTED = {
    "plain CONNECT": [(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
    "other protocol": [
        (b":protocol", b"connect-udp") if name == b":protocol" else (name, value)
        for name, value in connect_headers()
    ],
    "upper-case websocket": [
        (b":protocol", b"WebSocket") if name == b":protocol" else (name, value)
        for name, value in connect_headers()
    ],
}


@pytest.mark.parametrize("headers", list(NOT_IMPLEMENTED.values()), ids=list(NOT_IMPLEMENTED))
def test_other_connect_is_501(headers: Headers) -> None:
    peer = Peer(validate=False)
    assert peer.request(1, headers, end=False) == []
    (response,) = only(peer.read(), h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", b"501")
    assert ended(peer)
    assert is_idle(peer.adapter)
    # The stream is over: a late accept sends nothing.
    peer.adapter.send(WebSocketAccept(1))
    assert peer.adapter.data_to_send() == b""
    assert peer.request(3) == [get(3), EndBody(3)]


BAD_VERSIONS = {
    "missing": [],
    "8": [(b"sec-websocket-version", b"8")],
    "list": [(b"sec-websocket-version", b"13, 8")],
    "twice": [(b"sec-websocket-version", b"13"), (b"sec-websocket-version", b"13")],
}


@pytest.mark.parametrize("versions", list(BAD_VERSIONS.values()), ids=list(BAD_VERSIONS))
def test_bad_version_is_426(versions: Headers) -> None:
    peer = Peer()
    headers = [item for item in connect_headers() if item[0] != b"sec-websocket-version"]
    assert peer.request(1, [*headers, *versions], end=False) == []
    (response,) = only(peer.read(), h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", b"426")
    assert (b"sec-websocket-version", b"13") in response.headers
    assert ended(peer)
    assert is_idle(peer.adapter)


def test_no_key_needed_over_http2() -> None:
    peer = Peer()
    # RFC 8441 §5: no Sec-WebSocket-Key (and no Sec-WebSocket-Accept).
    open_websocket(peer)
    headers = peer.of(HeadersFrame, 1)
    assert len(headers) == 1
    assert "END_STREAM" not in headers[0].flags


# ------------------------------------------------------------------ accept


def test_accept_answers_200() -> None:
    peer = Peer()
    peer.request(1, connect_headers(), end=False)
    peer.adapter.send(
        WebSocketAccept(
            1,
            "chat",
            [
                (b"x-extra", b"1"),
                (b"sec-websocket-protocol", b"forged"),
                (b"sec-websocket-extensions", b"forged"),
                (b"content-length", b"0"),
                (b"upgrade", b"websocket"),
            ],
        )
    )
    client_events_ = peer.read()
    (response,) = only(client_events_, h2.events.ResponseReceived)
    assert response.headers == [
        (b":status", b"200"),
        (b"sec-websocket-protocol", b"chat"),
        (b"x-extra", b"1"),
    ]
    (frame,) = peer.of(HeadersFrame, 1)
    assert "END_STREAM" not in frame.flags
    assert only(client_events_, h2.events.StreamEnded) == []
    assert not is_idle(peer.adapter)
    assert reads(peer.adapter)


def test_accept_negotiates_permessage_deflate() -> None:
    peer = Peer()
    peer.request(1, connect_headers(DEFLATE_OFFER), end=False)
    peer.adapter.send(WebSocketAccept(1))
    (response,) = only(peer.read(), h2.events.ResponseReceived)
    accepted = dict(response.headers)[b"sec-websocket-extensions"]
    assert accepted.split(b";")[0] == b"permessage-deflate"
    assert b"sec-websocket-protocol" not in dict(response.headers)
    extension = PerMessageDeflate()
    extension.finalize(accepted.decode())
    client = Connection(ConnectionType.CLIENT, [extension])
    text = "compress me " * 100
    assert send_ws(peer, client, TextMessage(text)) == [WebSocketMessage(1, text)]
    peer.adapter.send(WebSocketMessage(1, "z" * 4000))
    peer.read()
    payload = ws_data(peer)
    assert len(payload) < 500
    assert messages(client_events(client, payload)) == ["z" * 4000]


def test_deflate_disabled() -> None:
    settings = H2Settings(websocket=WSSettings(permessage_deflate=False))
    peer = Peer(settings)
    peer.request(1, connect_headers(DEFLATE_OFFER), end=False)
    peer.adapter.send(WebSocketAccept(1))
    (response,) = only(peer.read(), h2.events.ResponseReceived)
    assert b"sec-websocket-extensions" not in dict(response.headers)
    peer.adapter.send(WebSocketMessage(1, b"raw"))
    peer.read()
    assert ws_data(peer) == b"\x82\x03raw"


def test_accept_without_websocket_request_raises() -> None:
    peer = Peer()
    peer.request(1, request_headers(), end=False)
    with pytest.raises(AppProtocolError):
        peer.adapter.send(WebSocketAccept(1))
    peer.read()
    assert peer.of(HeadersFrame) == []


def test_accept_twice_raises() -> None:
    peer = Peer()
    open_websocket(peer)
    with pytest.raises(AppProtocolError):
        peer.adapter.send(WebSocketAccept(1))
    peer.read()
    assert peer.of(HeadersFrame) == []


def test_accept_with_invalid_header_raises() -> None:
    peer = Peer()
    peer.request(1, connect_headers(), end=False)
    with pytest.raises(AppProtocolError):
        peer.adapter.send(WebSocketAccept(1, None, [(b"x-a", b"a\r\nb")]))
    peer.read()
    assert peer.of(HeadersFrame) == []


def test_denial_is_an_ordinary_response() -> None:
    peer = Peer()
    peer.request(1, connect_headers(), end=False)
    events = peer.respond(1, b"forbidden", 403)
    (response,) = only(events, h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", b"403")
    assert b"".join(e.data for e in only(events, h2.events.DataReceived)) == b"forbidden"
    assert only(events, h2.events.StreamEnded)
    assert is_idle(peer.adapter)
    assert peer.request(3) == [get(3), EndBody(3)]


# ------------------------------------------------------------------ messages


def test_messages_both_ways() -> None:
    peer = Peer()
    client = open_websocket(peer)
    assert send_ws(peer, client, TextMessage("héllo")) == [WebSocketMessage(1, "héllo")]
    assert send_ws(peer, client, BytesMessage(b"\x00\x01")) == [WebSocketMessage(1, b"\x00\x01")]
    # Two messages in one DATA frame, a message split over two.
    frames = client.send(TextMessage("a")) + client.send(BytesMessage(b"b" * 300))
    peer.client.send_data(1, frames[:150])
    assert peer.flush() == [WebSocketMessage(1, "a")]
    peer.client.send_data(1, frames[150:])
    assert peer.flush() == [WebSocketMessage(1, b"b" * 300)]
    # Outbound.
    big = bytes(range(256)) * 100
    peer.adapter.send(WebSocketMessage(1, "ünï"))
    peer.adapter.send(WebSocketMessage(1, big))
    events = peer.read()
    assert only(events, h2.events.StreamEnded) == []
    assert messages(client_events(client, ws_data(peer))) == ["ünï", big]


def test_two_websockets_on_one_connection() -> None:
    peer = Peer()
    one = open_websocket(peer, 1)
    three = open_websocket(peer, 3)
    assert send_ws(peer, three, TextMessage("to 3"), 3) == [WebSocketMessage(3, "to 3")]
    assert send_ws(peer, one, TextMessage("to 1"), 1) == [WebSocketMessage(1, "to 1")]
    peer.adapter.send(WebSocketMessage(3, "from 3"))
    peer.read()
    assert ws_data(peer, 1) == b""
    assert messages(client_events(three, ws_data(peer, 3))) == ["from 3"]


def test_ping_is_answered() -> None:
    peer = Peer()
    client = open_websocket(peer)
    assert send_ws(peer, client, Ping(b"hey")) == []
    peer.read()
    (pong,) = client_events(client, ws_data(peer))
    assert isinstance(pong, Pong)
    assert bytes(pong.payload) == b"hey"


def test_data_before_accept_is_held() -> None:
    peer = Peer(H2Settings(initial_window_size=1000))
    assert peer.request(1, connect_headers(), end=False) == [ws_request()]
    client = Connection(ConnectionType.CLIENT)
    assert send_ws(peer, client, TextMessage("early")) == []
    assert send_ws(peer, client, BytesMessage(b"x" * 600)) == []
    peer.read()
    assert stream_updates(peer) == 0  # held, not credited
    peer.adapter.send(WebSocketAccept(1))
    assert not reads(peer.adapter)  # next_events has the messages
    assert peer.adapter.next_events(0.0) == [
        WebSocketMessage(1, "early"),
        WebSocketMessage(1, b"x" * 600),
    ]
    assert peer.adapter.next_events(0.0) == []
    assert reads(peer.adapter)
    assert only(peer.read(), h2.events.StreamEnded) == []
    assert stream_updates(peer) > 0  # credited once delivered


def test_data_and_end_before_accept() -> None:
    peer = Peer()
    peer.request(1, connect_headers(), end=False)
    client = Connection(ConnectionType.CLIENT)
    assert send_ws(peer, client, TextMessage("last words"), end=True) == []
    peer.adapter.send(WebSocketAccept(1))
    assert peer.adapter.next_events(0.0) == [
        WebSocketMessage(1, "last words"),
        WebSocketClose(1, 1006, ""),
    ]
    events = peer.read()
    assert only(events, h2.events.ResponseReceived)
    assert only(events, h2.events.StreamEnded)
    assert is_idle(peer.adapter)


# ------------------------------------------------------------------ flow control


def test_credit_follows_message_consumption() -> None:
    peer = Peer(H2Settings(initial_window_size=1200, max_queued_messages=2))
    client = open_websocket(peer)
    # 608 bytes: past half the window, so h2 sends each credit at once.
    assert send_ws(peer, client, BytesMessage(b"1" * 600)) == [WebSocketMessage(1, b"1" * 600)]
    peer.read()
    assert stream_updates(peer) == 608
    assert peer.client.local_flow_control_window(1) == 1200
    # A second unconsumed message: no more credit.
    assert send_ws(peer, client, BytesMessage(b"2" * 600)) == [WebSocketMessage(1, b"2" * 600)]
    peer.read()
    assert stream_updates(peer) == 0
    assert send_ws(peer, client, BytesMessage(b"3" * 200)) == [WebSocketMessage(1, b"3" * 200)]
    peer.read()
    assert stream_updates(peer) == 0
    assert peer.client.local_flow_control_window(1) == 1200 - 608 - 208
    peer.adapter.send(BodyConsumed(1, 1))  # still two waiting
    peer.read()
    assert stream_updates(peer) == 0
    peer.adapter.send(BodyConsumed(1, 1))
    peer.read()
    assert stream_updates(peer) == 608 + 208
    assert peer.client.local_flow_control_window(1) == 1200
    assert reads(peer.adapter)


def test_one_consumption_releases_held_credit() -> None:
    peer = Peer(H2Settings(initial_window_size=1200, max_queued_messages=2))
    client = open_websocket(peer)
    send_ws(peer, client, BytesMessage(b"1" * 600))
    peer.read()
    assert stream_updates(peer) == 608
    send_ws(peer, client, BytesMessage(b"2" * 600))
    peer.read()
    assert stream_updates(peer) == 0
    peer.adapter.send(BodyConsumed(1, 1))
    peer.read()
    assert stream_updates(peer) == 608
    assert peer.client.local_flow_control_window(1) == 1200


def test_unread_output_holds_credit() -> None:
    """A peer that does not read what we send gets no more window."""
    peer = Peer(H2Settings(initial_window_size=1200))
    client = open_websocket(peer)
    peer.adapter.send(WebSocketMessage(1, b"x" * 200_000))
    peer.read()  # the client's 65535-byte window takes part of it
    assert not peer.adapter.writable(1)
    assert send_ws(peer, client, BytesMessage(b"y" * 600)) == [WebSocketMessage(1, b"y" * 600)]
    peer.adapter.send(BodyConsumed(1, 1))
    peer.read()
    assert stream_updates(peer) == 0
    # The client reads: the backlog drains and the credit follows.
    for _ in range(4):
        peer.client.acknowledge_received_data(65535, 1)
        peer.flush()
        peer.read()
        if stream_updates(peer):
            break
    assert stream_updates(peer) == 608


# ------------------------------------------------------------------ closing


def test_peer_close() -> None:
    peer = Peer()
    client = open_websocket(peer)
    assert send_ws(peer, client, CloseConnection(1000, "bye")) == [WebSocketClose(1, 1000, "bye")]
    events = peer.read()
    (reply,) = client_events(client, ws_data(peer))
    assert isinstance(reply, CloseConnection)
    assert (reply.code, reply.reason) == (1000, "bye")
    assert ended(peer)
    assert only(events, h2.events.StreamEnded)
    assert is_idle(peer.adapter)
    # Later sends of the application go nowhere.
    peer.adapter.send(WebSocketMessage(1, "late"))
    peer.read()
    assert peer.frames == []
    assert peer.adapter.next_events(0.0) == []
    assert peer.request(3) == [get(3), EndBody(3)]  # the connection lives


def test_peer_close_with_end_stream() -> None:
    peer = Peer()
    client = open_websocket(peer)
    events = send_ws(peer, client, CloseConnection(1001), end=True)
    assert events == [WebSocketClose(1, 1001, "")]
    peer.read()
    assert ended(peer)
    assert peer.of(RstStreamFrame) == []  # both sides ended cleanly
    assert is_idle(peer.adapter)


def test_peer_end_stream_without_close_is_1006() -> None:
    peer = Peer()
    open_websocket(peer)
    peer.client.end_stream(1)
    assert peer.flush() == [WebSocketClose(1, 1006, "")]
    events = peer.read()
    assert ws_data(peer) == b""  # 1006 is never sent
    assert ended(peer)
    assert only(events, h2.events.StreamEnded)
    assert is_idle(peer.adapter)


def test_peer_reset() -> None:
    peer = Peer(H2Settings(websocket=WSSettings(ping_interval=10.0), keep_alive_timeout=None))
    open_websocket(peer)
    assert deadline(peer.adapter, 0.0) == 10.0
    peer.client.reset_stream(1, CANCEL)
    assert peer.flush() == [StreamClosed(1, CANCEL)]
    assert is_idle(peer.adapter)
    assert deadline(peer.adapter, 0.0) is None  # its timers are gone
    peer.adapter.send(WebSocketMessage(1, "late"))
    peer.read()
    assert peer.frames == []


def test_app_close_then_peer_reply() -> None:
    peer = Peer()
    client = open_websocket(peer)
    peer.adapter.send(WebSocketClose(1, 4000, "done"))
    peer.read()
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (4000, "done")
    assert not ended(peer)  # waiting for the reply
    assert not is_idle(peer.adapter)
    assert send_ws(peer, client, close.response()) == []  # the application knows
    peer.read()
    assert ended(peer)
    assert is_idle(peer.adapter)


def released(peer: Peer, client: Connection, code: int, stream_id: int = 1) -> None:
    """The application takes the WebSocketClose of a failure (the core
    sends ``BodyConsumed(stream_id, 0)``): the Close held back till then
    goes out as the stream's last DATA, with END_STREAM."""
    peer.read()
    assert ws_data(peer, stream_id) == b""  # held until now
    assert not ended(peer, stream_id)
    peer.adapter.send(BodyConsumed(stream_id, 0))
    events = peer.read()
    (close,) = client_events(client, ws_data(peer, stream_id))
    assert isinstance(close, CloseConnection)
    assert close.code == code
    assert ended(peer, stream_id)
    assert [e.stream_id for e in only(events, h2.events.StreamEnded)] == [stream_id]
    assert peer.of(GoAwayFrame) == []  # only the stream fails
    # Once: a second BodyConsumed, late sends: nothing.
    peer.adapter.send(BodyConsumed(stream_id, 0))
    peer.adapter.send(WebSocketMessage(stream_id, "late"))
    peer.adapter.send(WebSocketClose(stream_id))
    peer.read()
    assert ws_data(peer, stream_id) == b""


def test_protocol_error_fails_the_websocket() -> None:
    peer = Peer()
    client = open_websocket(peer)
    peer.client.send_data(1, b"\x81\x02hi")  # unmasked: RFC 6455 §5.1
    (close,) = peer.flush()
    assert isinstance(close, WebSocketClose)
    assert close.code == 1002
    assert not is_idle(peer.adapter)
    # What comes meanwhile is dropped.
    assert send_ws(peer, client, TextMessage("dropped")) == []
    assert send_ws(peer, client, Ping(b"no pong")) == []
    released(peer, client, 1002)
    assert is_idle(peer.adapter)
    assert peer.request(3) == [get(3), EndBody(3)]  # the connection lives


def test_too_big_message_closes_1009() -> None:
    peer = Peer(H2Settings(websocket=WSSettings(max_message_size=10)))
    client = open_websocket(peer)
    assert send_ws(peer, client, BytesMessage(b"x" * 11)) == [
        WebSocketClose(1, 1009, "message too big")
    ]
    released(peer, client, 1009)
    assert is_idle(peer.adapter)


def test_echo_goes_out_before_the_failure_close() -> None:
    peer = Peer()
    client = open_websocket(peer)
    # A message and an unmasked frame in one DATA frame.
    peer.client.send_data(1, client.send(TextMessage("echo me")) + b"\x81\x02hi")
    events = peer.flush()
    assert len(events) == 2
    message, close = events
    assert message == WebSocketMessage(1, "echo me")
    assert isinstance(close, WebSocketClose)
    assert close.code == 1002
    peer.read()
    assert ws_data(peer) == b""  # no Close yet
    assert not ended(peer)
    # The application echoes what came before the error.
    peer.adapter.send(WebSocketMessage(1, "echo me"))
    peer.adapter.send(BodyConsumed(1, 1))  # it took the message
    peer.read()
    assert ws_data(peer) == b"\x81\x07echo me"
    assert not ended(peer)
    assert messages(client_events(client, b"\x81\x07echo me")) == ["echo me"]
    # Then it takes the close.
    released(peer, client, 1002)
    assert is_idle(peer.adapter)


def test_echo_and_release_before_one_read() -> None:
    """The echo's DATA comes before the Close's; END_STREAM on the last."""
    peer = Peer()
    client = open_websocket(peer)
    peer.client.send_data(1, client.send(BytesMessage(b"\x00\x01")) + b"\x81\x02hi")
    assert [type(e) for e in peer.flush()] == [WebSocketMessage, WebSocketClose]
    peer.adapter.send(WebSocketMessage(1, b"\x00\x01"))
    peer.adapter.send(BodyConsumed(1, 0))
    peer.read()
    frames = peer.of(DataFrame, 1)
    assert "END_STREAM" in frames[-1].flags
    assert not any("END_STREAM" in frame.flags for frame in frames[:-1])
    payload = ws_data(peer)
    assert payload.startswith(b"\x82\x02\x00\x01\x88")
    replies = client_events(client, payload)
    assert messages(replies) == [b"\x00\x01"]
    assert isinstance(replies[-1], CloseConnection)
    assert replies[-1].code == 1002
    assert is_idle(peer.adapter)


def test_app_close_during_the_hold_sends_the_failure_code() -> None:
    peer = Peer()
    client = open_websocket(peer)
    peer.client.send_data(1, b"\x81\x02hi")
    assert [type(e) for e in peer.flush()] == [WebSocketClose]
    peer.adapter.send(WebSocketClose(1, 1000, "bye"))  # before it has looked
    peer.read()
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert close.code == 1002  # the failure's, not the application's
    assert ended(peer)
    assert is_idle(peer.adapter)


def test_failure_on_one_websocket_holds_only_its_close() -> None:
    peer = Peer()
    one = open_websocket(peer, 1)
    three = open_websocket(peer, 3)
    peer.client.send_data(3, b"\x81\x02hi")
    (close,) = peer.flush()
    assert isinstance(close, WebSocketClose)
    assert (close.stream_id, close.code) == (3, 1002)
    assert send_ws(peer, one, TextMessage("fine"), 1) == [WebSocketMessage(1, "fine")]
    released(peer, three, 1002, 3)
    assert not ended(peer, 1)
    peer.adapter.send(WebSocketMessage(1, "still here"))
    peer.read()
    assert messages(client_events(one, ws_data(peer, 1))) == ["still here"]


def test_close_timeout_releases_the_failure_close() -> None:
    settings = H2Settings(websocket=WSSettings(close_timeout=3.0), keep_alive_timeout=None)
    peer = Peer(settings)
    client = open_websocket(peer)
    peer.client.send_data(1, b"\x81\x02hi")
    assert [type(e) for e in peer.flush()] == [WebSocketClose]
    assert deadline(peer.adapter, 1.0) == 4.0
    assert peer.adapter.handle_timeout(3.9) == []
    peer.read()
    assert ws_data(peer) == b""
    # The application never looked.
    assert peer.adapter.handle_timeout(4.0) == []  # told already
    peer.read()
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert close.code == 1002
    assert ended(peer)
    assert is_idle(peer.adapter)
    assert deadline(peer.adapter, 4.0) is None


# ------------------------------------------------------------------ shutdown


def test_begin_shutdown_closes_websockets_1001() -> None:
    peer = Peer()
    client = open_websocket(peer)
    assert peer.adapter.begin_shutdown() == [WebSocketClose(1, 1001, "")]
    peer.read(client=False)  # (h2's client would stop at the GOAWAY)
    assert goaway(peer) == (NO_ERROR, 1)
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert close.code == 1001
    assert not ended(peer)
    # The WebSocket is still being closed: the connection stays.
    assert peer.adapter.next_events(0.0) == []
    assert reads(peer.adapter)
    assert peer.adapter.begin_shutdown() == []
    peer.read(client=False)
    assert peer.of(GoAwayFrame) == []  # one GOAWAY
    # The peer's reply ends the stream, and then the connection.
    assert send_ws(peer, client, close.response()) == []
    peer.read(client=False)
    assert ended(peer)
    assert is_idle(peer.adapter)
    assert not reads(peer.adapter)
    assert peer.adapter.next_events(0.0) == [ConnectionClosed("done after GOAWAY")]
    assert peer.adapter.next_events(0.0) == []


def test_accepted_during_shutdown_closes_1001_at_once() -> None:
    peer = Peer()
    assert peer.request(1, connect_headers(), end=False) == [ws_request(1)]
    assert peer.adapter.begin_shutdown() == []  # nothing accepted yet
    peer.adapter.send(WebSocketAccept(1))
    assert peer.adapter.next_events(0.0) == [WebSocketClose(1, 1001, "")]
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 1)
    client = Connection(ConnectionType.CLIENT)
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert close.code == 1001


def test_begin_shutdown_with_plain_stream_and_websocket() -> None:
    peer = Peer()
    client = open_websocket(peer, 1)
    peer.request(3)
    assert peer.adapter.begin_shutdown() == [WebSocketClose(1, 1001, "")]
    peer.read(client=False)
    assert goaway(peer) == (NO_ERROR, 3)
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert send_ws(peer, client, close.response()) == []
    peer.read(client=False)
    assert ended(peer)
    assert peer.adapter.next_events(0.0) == []  # stream 3 is in flight
    peer.adapter.send(Response(3, 200, []))
    peer.adapter.send(Data(3, b"ok"))
    peer.adapter.send(EndData(3))
    peer.read(client=False)
    assert is_idle(peer.adapter)
    assert peer.adapter.next_events(0.0) == [ConnectionClosed("done after GOAWAY")]


# ------------------------------------------------------------------ timers


def test_ping_interval() -> None:
    settings = H2Settings(
        websocket=WSSettings(ping_interval=10.0, ping_timeout=4.0), ping_interval=30.0
    )
    peer = Peer(settings)
    client = open_websocket(peer, now=1.0)
    assert deadline(peer.adapter, 1.0) == 11.0  # before the connection's 31.0
    assert peer.adapter.handle_timeout(10.0) == []
    peer.read()
    assert peer.frames == []
    assert peer.adapter.handle_timeout(11.0) == []
    peer.read()
    (ping,) = client_events(client, ws_data(peer))
    assert isinstance(ping, Ping)
    assert peer.of(PingFrame) == []  # not the connection's PING
    assert not ended(peer)
    assert deadline(peer.adapter, 11.0) == 15.0  # the pong is due
    send_ws(peer, client, ping.response(), now=12.0)
    assert deadline(peer.adapter, 12.0) == 22.0


def test_ping_timeout() -> None:
    settings = H2Settings(websocket=WSSettings(ping_interval=10.0, ping_timeout=4.0))
    peer = Peer(settings)
    client = open_websocket(peer)
    peer.adapter.handle_timeout(10.0)
    peer.read()
    (ping,) = client_events(client, ws_data(peer))
    assert isinstance(ping, Ping)
    assert peer.adapter.handle_timeout(14.0) == [WebSocketClose(1, 1006, "ping timeout")]
    peer.read()
    (close,) = client_events(client, ws_data(peer))
    assert isinstance(close, CloseConnection)
    assert close.code == 1011
    assert ended(peer)
    assert is_idle(peer.adapter)


def test_close_timeout() -> None:
    settings = H2Settings(websocket=WSSettings(close_timeout=3.0), keep_alive_timeout=None)
    peer = Peer(settings)
    open_websocket(peer)
    assert deadline(peer.adapter, 0.0) is None
    peer.adapter.send(WebSocketClose(1))
    peer.read()
    assert deadline(peer.adapter, 1.0) == 4.0
    assert peer.adapter.handle_timeout(4.0) == []
    peer.read()
    assert ended(peer)
    assert is_idle(peer.adapter)
    assert deadline(peer.adapter, 4.0) is None


def test_keep_alive_timer_waits_for_websockets() -> None:
    peer = Peer(H2Settings(keep_alive_timeout=5.0))
    client = open_websocket(peer)
    assert deadline(peer.adapter, 0.0) is None
    assert peer.adapter.handle_timeout(100.0) == []
    peer.read()
    assert peer.of(GoAwayFrame) == []
    send_ws(peer, client, CloseConnection(1000), now=100.0)
    peer.read()
    assert is_idle(peer.adapter)
    assert deadline(peer.adapter, 100.0) == 105.0
