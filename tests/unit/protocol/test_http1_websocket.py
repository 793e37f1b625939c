"""The WebSocket side of the HTTP/1.1 adapter: the upgrade handshake, the
``101`` answer, and the frames after it. The peer is a wsproto client
connection (in the OPEN state, as after a handshake)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest
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
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
)
from tricorn.protocol.http1 import H1Adapter
from tricorn.protocol.websocket import WSSettings

from .test_http1 import NEXT, NOW, http1_parser, parse_one, reads  # noqa: F401 - autouse fixture
from .test_http1 import adapter as h1_adapter

# The example of RFC 6455 §1.3.
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
DEFLATE_OFFER = b"permessage-deflate; client_max_window_bits"


# ------------------------------------------------------------------ helpers


def upgrade(
    *,
    method: bytes = b"GET",
    version: bytes = b"1.1",
    upgrade: bytes | None = b"websocket",
    connection: bytes | None = b"keep-alive, Upgrade",
    key: bytes | None = KEY,
    ws_version: bytes | None = b"13",
    extra: bytes = b"",
) -> bytes:
    """A WebSocket upgrade request; ``None`` leaves a field out."""
    head = method + b" /chat HTTP/" + version + b"\r\nHost: example.com\r\n"
    if upgrade is not None:
        head += b"Upgrade: " + upgrade + b"\r\n"
    if connection is not None:
        head += b"Connection: " + connection + b"\r\n"
    if key is not None:
        head += b"Sec-WebSocket-Key: " + key + b"\r\n"
    if ws_version is not None:
        head += b"Sec-WebSocket-Version: " + ws_version + b"\r\n"
    return head + extra + b"\r\n"


def make_adapter(**settings: object) -> H1Adapter:
    return h1_adapter(**settings)


def is_idle(a: H1Adapter) -> bool:
    """``a.idle``, through a call so that mypy does not narrow it."""
    return a.idle


def split_head(raw: bytes) -> tuple[bytes, Headers, bytes]:
    """The status line, the header fields (names lower-cased) and the rest."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {raw!r}"
    line, *fields = head.split(b"\r\n")
    headers: Headers = []
    for item in fields:
        name, _, value = item.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return line, headers, rest


def values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def client_events(client: Connection, data: bytes) -> list[WSEvent]:
    client.receive_data(data)
    return list(client.events())


def messages(events: Sequence[WSEvent]) -> list[bytes | str]:
    return [
        bytes(e.data) if isinstance(e.data, bytearray) else e.data
        for e in events
        if isinstance(e, Message)
    ]


def open_websocket(
    a: H1Adapter,
    *,
    extra: bytes = b"",
    subprotocol: str | None = None,
    client: Connection | None = None,
) -> tuple[Connection, Headers]:
    """Upgrade and accept; the wsproto client and the 101's header fields."""
    events = a.receive_data(upgrade(extra=extra), NOW)
    assert [type(e) for e in events] == [Request, EndBody]
    assert isinstance(events[0], Request)
    assert events[0].protocol == "websocket"
    a.send(WebSocketAccept(1, subprotocol))
    line, headers, rest = split_head(a.data_to_send())
    assert line == b"HTTP/1.1 101 Switching Protocols"
    assert rest == b""
    return client or Connection(ConnectionType.CLIENT), headers


# ------------------------------------------------------------------ handshake


UPGRADES = {
    "plain": upgrade(connection=b"Upgrade"),
    "token lists": upgrade(upgrade=b"foo/1, websocket", connection=b"keep-alive, Upgrade"),
    "any case": upgrade(upgrade=b"WebSocket", connection=b"KEEP-ALIVE, UPGRADE"),
    "split connection": upgrade(connection=b"keep-alive", extra=b"Connection: upgrade\r\n"),
    "split upgrade": upgrade(upgrade=b"h2c", extra=b"Upgrade: websocket\r\n"),
    "spaces around the version": upgrade(ws_version=b" 13 "),
}


@pytest.mark.parametrize("raw", list(UPGRADES.values()), ids=list(UPGRADES))
def test_upgrade_is_a_websocket_request(raw: bytes) -> None:
    a = make_adapter()
    events = a.receive_data(raw, NOW)
    assert len(events) == 2
    request, end = events
    assert isinstance(request, Request)
    assert request.protocol == "websocket"
    assert request.method == b"GET"
    assert request.target == b"/chat"
    assert request.http_version == "1.1"
    assert (b"sec-websocket-key", KEY) in request.headers
    assert end == EndBody(1)
    assert a.data_to_send() == b""  # the application decides
    assert not is_idle(a)


NOT_WEBSOCKET = {
    "POST": upgrade(method=b"POST"),
    "HTTP/1.0": upgrade(version=b"1.0"),
    "connection without upgrade": upgrade(connection=b"keep-alive"),
    "no connection": upgrade(connection=None),
    "upgrade h2c only": upgrade(upgrade=b"h2c"),
    "no upgrade": upgrade(upgrade=None),
}


@pytest.mark.parametrize("raw", list(NOT_WEBSOCKET.values()), ids=list(NOT_WEBSOCKET))
def test_not_a_websocket_is_plain_http(raw: bytes) -> None:
    a = make_adapter()
    events = a.receive_data(raw, NOW)
    assert [type(e) for e in events] == [Request, EndBody]
    assert isinstance(events[0], Request)
    assert events[0].protocol is None
    # Accepting a plain request is the application's mistake.
    with pytest.raises(AppProtocolError):
        a.send(WebSocketAccept(1))
    assert a.data_to_send() == b""
    # It is served as HTTP.
    a.send(Response(1, 200, [(b"content-length", b"2")]))
    a.send(Data(1, b"ok"))
    a.send(EndData(1))
    response = parse_one(a.data_to_send())
    assert (response.status, response.body) == (200, b"ok")


def assert_refused(a: H1Adapter, events: Sequence[Event], status: int) -> Headers:
    """The adapter answered ``status`` itself and closes; no Request."""
    assert len(events) == 1
    assert isinstance(events[0], ConnectionClosed)
    line, headers, _ = split_head(a.data_to_send())
    assert line.split(b" ")[:2] == [b"HTTP/1.1", str(status).encode()]
    assert values(headers, b"connection") == [b"close"]
    assert not reads(a)
    assert a.next_events(NOW) == []
    return headers


@pytest.mark.parametrize(
    "ws_version",
    [None, b"8", b"12", b"13, 8", b""],
    ids=["missing", "8", "12", "list", "empty"],
)
def test_bad_version_is_426(ws_version: bytes | None) -> None:
    a = make_adapter()
    headers = assert_refused(a, a.receive_data(upgrade(ws_version=ws_version), NOW), 426)
    assert values(headers, b"sec-websocket-version") == [b"13"]


def test_duplicate_version_is_426() -> None:
    a = make_adapter()
    raw = upgrade(extra=b"Sec-WebSocket-Version: 13\r\n")
    headers = assert_refused(a, a.receive_data(raw, NOW), 426)
    assert values(headers, b"sec-websocket-version") == [b"13"]


BAD_KEYS = {
    "missing": upgrade(key=None),
    "not base64": upgrade(key=b"not a key!"),
    "15 bytes": upgrade(key=base64.b64encode(b"x" * 15)),
    "17 bytes": upgrade(key=base64.b64encode(b"x" * 17)),
    "duplicate": upgrade(extra=b"Sec-WebSocket-Key: " + KEY + b"\r\n"),
}


@pytest.mark.parametrize("raw", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_key_is_400(raw: bytes) -> None:
    a = make_adapter()
    headers = assert_refused(a, a.receive_data(raw, NOW), 400)
    assert values(headers, b"sec-websocket-version") == []


@pytest.mark.parametrize(
    "extra",
    [b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"],
    ids=["content-length", "chunked"],
)
def test_upgrade_with_a_body_is_400(extra: bytes) -> None:
    a = make_adapter()
    assert_refused(a, a.receive_data(upgrade(extra=extra) + b"hello", NOW), 400)


# ------------------------------------------------------------------ accept


def test_accept_answers_101() -> None:
    a = make_adapter()
    a.receive_data(upgrade(), NOW)
    a.send(WebSocketAccept(1, "chat", [(b"x-extra", b"1"), (b"upgrade", b"evil")]))
    raw = a.data_to_send()
    assert raw.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    _, headers, rest = split_head(raw)
    assert rest == b""
    assert values(headers, b"upgrade") == [b"websocket"]  # the app's is dropped
    assert [v.lower() for v in values(headers, b"connection")] == [b"upgrade"]
    assert values(headers, b"sec-websocket-accept") == [ACCEPT]
    assert values(headers, b"sec-websocket-protocol") == [b"chat"]
    assert values(headers, b"x-extra") == [b"1"]
    assert values(headers, b"sec-websocket-extensions") == []  # none offered
    assert values(headers, b"content-length") == []
    assert values(headers, b"transfer-encoding") == []
    assert not is_idle(a)
    assert reads(a)


def test_accept_key_follows_the_request() -> None:
    key = base64.b64encode(bytes(range(16)))
    expected = base64.b64encode(
        hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    a = make_adapter()
    a.receive_data(upgrade(key=key), NOW)
    a.send(WebSocketAccept(1))
    _, headers, _ = split_head(a.data_to_send())
    assert values(headers, b"sec-websocket-accept") == [expected]
    assert values(headers, b"sec-websocket-protocol") == []


def test_app_cannot_override_handshake_fields() -> None:
    a = make_adapter()
    a.receive_data(upgrade(), NOW)
    own: Headers = [
        (b"connection", b"close"),
        (b"sec-websocket-accept", b"forged"),
        (b"sec-websocket-protocol", b"other"),
        (b"sec-websocket-extensions", b"x-ext"),
        (b"content-length", b"0"),
        (b"transfer-encoding", b"chunked"),
    ]
    a.send(WebSocketAccept(1, "chat", own))
    _, headers, _ = split_head(a.data_to_send())
    assert values(headers, b"sec-websocket-accept") == [ACCEPT]
    assert values(headers, b"sec-websocket-protocol") == [b"chat"]
    assert values(headers, b"sec-websocket-extensions") == []
    assert [v.lower() for v in values(headers, b"connection")] == [b"upgrade"]
    assert values(headers, b"content-length") == []
    assert values(headers, b"transfer-encoding") == []


def deflate_client(headers: Headers) -> Connection:
    """A wsproto client using the permessage-deflate the 101 accepted."""
    (accepted,) = values(headers, b"sec-websocket-extensions")
    extension = PerMessageDeflate()
    extension.finalize(accepted.decode())
    return Connection(ConnectionType.CLIENT, [extension])


def test_permessage_deflate_is_negotiated() -> None:
    a = make_adapter()
    offer = b"Sec-WebSocket-Extensions: " + DEFLATE_OFFER + b"\r\n"
    _, headers = open_websocket(a, extra=offer)
    (accepted,) = values(headers, b"sec-websocket-extensions")
    assert accepted.split(b";")[0] == b"permessage-deflate"
    client = deflate_client(headers)
    text = "compress me " * 100
    frame = client.send(TextMessage(text))
    assert len(frame) < len(text) // 4  # it really is compressed
    assert a.receive_data(frame, NOW) == [WebSocketMessage(1, text)]
    a.send(WebSocketMessage(1, b"\x00" * 5000))
    out = a.data_to_send()
    assert len(out) < 1000
    assert messages(client_events(client, out)) == [b"\x00" * 5000]


def test_permessage_deflate_can_be_disabled() -> None:
    a = make_adapter(websocket=WSSettings(permessage_deflate=False))
    offer = b"Sec-WebSocket-Extensions: " + DEFLATE_OFFER + b"\r\n"
    client, headers = open_websocket(a, extra=offer)
    assert values(headers, b"sec-websocket-extensions") == []
    # Uncompressed frames both ways.
    assert a.receive_data(client.send(TextMessage("plain")), NOW) == [WebSocketMessage(1, "plain")]
    a.send(WebSocketMessage(1, "back"))
    assert a.data_to_send() == b"\x81\x04back"


def test_unknown_extension_is_not_accepted() -> None:
    a = make_adapter()
    _, headers = open_websocket(a, extra=b"Sec-WebSocket-Extensions: x-webkit-foo\r\n")
    assert values(headers, b"sec-websocket-extensions") == []


def test_accept_without_websocket_request_raises() -> None:
    a = make_adapter()
    a.receive_data(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", NOW)
    with pytest.raises(AppProtocolError):
        a.send(WebSocketAccept(1))
    assert a.data_to_send() == b""


def test_accept_twice_raises() -> None:
    a = make_adapter()
    open_websocket(a)
    with pytest.raises(AppProtocolError):
        a.send(WebSocketAccept(1))
    assert a.data_to_send() == b""


def test_accept_after_a_response_head_raises() -> None:
    a = make_adapter()
    a.receive_data(upgrade(), NOW)
    a.send(Response(1, 403, [(b"content-length", b"0")]))
    a.data_to_send()
    with pytest.raises(AppProtocolError):
        a.send(WebSocketAccept(1))
    assert a.data_to_send() == b""


@pytest.mark.parametrize(
    "header",
    [(b"x-a", b"a\r\nx-injected: 1"), (b"x-a", b"a\nb"), (b"x\r\ny", b"1"), (b"x a", b"1")],
    ids=["CRLF in value", "LF in value", "CRLF in name", "space in name"],
)
def test_accept_with_invalid_header_raises(header: tuple[bytes, bytes]) -> None:
    a = make_adapter()
    a.receive_data(upgrade(), NOW)
    with pytest.raises(AppProtocolError):
        a.send(WebSocketAccept(1, None, [header]))
    assert b"x-injected" not in a.data_to_send()


# ------------------------------------------------------------------ messages


def test_messages_both_ways() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    assert a.receive_data(client.send(TextMessage("héllo")), NOW) == [WebSocketMessage(1, "héllo")]
    assert a.receive_data(client.send(BytesMessage(b"\x00\xff")), NOW) == [
        WebSocketMessage(1, b"\x00\xff")
    ]
    # A fragmented message is assembled; two in one read are two events.
    parts = client.send(TextMessage("ab", message_finished=False))
    parts += client.send(TextMessage("cd"))
    parts += client.send(BytesMessage(b"xyz"))
    assert a.receive_data(parts, NOW) == [WebSocketMessage(1, "abcd"), WebSocketMessage(1, b"xyz")]
    # Byte by byte.
    frame = client.send(BytesMessage(b"slow"))
    events: list[Event] = []
    for i in range(len(frame)):
        events += a.receive_data(frame[i : i + 1], NOW)
    assert events == [WebSocketMessage(1, b"slow")]
    # Outbound: text, binary, and a payload needing the 64-bit length.
    big = bytes(range(256)) * 300
    a.send(WebSocketMessage(1, "ünïcode"))
    a.send(WebSocketMessage(1, b"bin"))
    a.send(WebSocketMessage(1, big))
    assert messages(client_events(client, a.data_to_send())) == ["ünïcode", b"bin", big]


def test_ping_is_answered() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    assert a.receive_data(client.send(Ping(b"p1")), NOW) == []
    events = client_events(client, a.data_to_send())
    assert [(type(e), bytes(e.payload)) for e in events if isinstance(e, Pong)] == [(Pong, b"p1")]


def test_frames_pipelined_after_the_head() -> None:
    a = make_adapter()
    client = Connection(ConnectionType.CLIENT)
    frames = client.send(TextMessage("early")) + client.send(BytesMessage(b"bird"))
    events = a.receive_data(upgrade() + frames, NOW)
    assert [type(e) for e in events] == [Request, EndBody]
    assert not reads(a)  # the frames wait for the accept
    assert a.next_events(NOW) == []
    a.send(WebSocketAccept(1))
    line, _, rest = split_head(a.data_to_send())
    assert line == b"HTTP/1.1 101 Switching Protocols"
    assert rest == b""
    assert not reads(a)  # next_events has them
    assert a.next_events(NOW) == [WebSocketMessage(1, "early"), WebSocketMessage(1, b"bird")]
    assert a.next_events(NOW) == []
    assert reads(a)


def test_frames_after_the_head_in_a_later_read() -> None:
    a = make_adapter()
    client = Connection(ConnectionType.CLIENT)
    assert [type(e) for e in a.receive_data(upgrade(), NOW)] == [Request, EndBody]
    # An impatient client: frames before the 101.
    assert a.receive_data(client.send(TextMessage("eager")), NOW) == []
    a.send(WebSocketAccept(1))
    a.data_to_send()
    assert a.next_events(NOW) == [WebSocketMessage(1, "eager")]


def test_backpressure() -> None:
    a = make_adapter(max_queued_body=2)
    client, _ = open_websocket(a)
    assert reads(a)
    assert a.receive_data(client.send(TextMessage("1")), NOW) == [WebSocketMessage(1, "1")]
    assert reads(a)
    assert a.receive_data(client.send(TextMessage("2")), NOW) == [WebSocketMessage(1, "2")]
    assert not reads(a)
    a.send(BodyConsumed(1, 1))
    assert reads(a)
    assert a.receive_data(client.send(TextMessage("3")), NOW) == [WebSocketMessage(1, "3")]
    assert not reads(a)
    a.send(BodyConsumed(1, 1))
    a.send(BodyConsumed(1, 1))
    assert reads(a)
    # Control frames are no messages: they do not count.
    a.receive_data(client.send(Ping(b"x")), NOW)
    a.receive_data(client.send(Ping(b"y")), NOW)
    assert reads(a)


def released(a: H1Adapter, client: Connection, code: int) -> None:
    """The application takes the WebSocketClose of a failure (the core
    sends ``BodyConsumed(1, 0)``): the Close held back till then goes out,
    and the connection closes at the next ``next_events`` (``send`` cannot
    return events)."""
    assert a.data_to_send() == b""  # held until now
    assert a.next_events(NOW) == []
    a.send(BodyConsumed(1, 0))
    (close,) = client_events(client, a.data_to_send())
    assert isinstance(close, CloseConnection)
    assert close.code == code
    assert not reads(a)
    assert a.next_events(NOW) == [ConnectionClosed("WebSocket closed")]
    assert a.next_events(NOW) == []
    assert a.next_deadline(NOW) is None
    # Once: a second BodyConsumed, late sends: nothing.
    a.send(BodyConsumed(1, 0))
    a.send(WebSocketMessage(1, "late"))
    a.send(WebSocketClose(1))
    assert a.data_to_send() == b""
    assert a.receive_data(b"more", NOW) == []


def test_too_big_message_closes_1009() -> None:
    a = make_adapter(websocket=WSSettings(max_message_size=10))
    client, _ = open_websocket(a)
    assert a.receive_data(client.send(BytesMessage(b"x" * 10)), NOW) == [
        WebSocketMessage(1, b"x" * 10)
    ]
    events = a.receive_data(client.send(BytesMessage(b"x" * 11)), NOW)
    assert events == [WebSocketClose(1, 1009, "message too big")]
    released(a, client, 1009)


def test_protocol_error_fails_the_websocket() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    # An unmasked client frame (RFC 6455 §5.1: the server must fail).
    events = a.receive_data(b"\x81\x02hi", NOW)
    assert len(events) == 1
    (close,) = events
    assert isinstance(close, WebSocketClose)
    assert close.code == 1002
    assert reads(a)  # (what comes meanwhile is dropped)
    assert a.receive_data(client.send(TextMessage("dropped")), NOW) == []
    assert a.receive_data(client.send(Ping(b"no pong")), NOW) == []
    released(a, client, 1002)


def test_echo_goes_out_before_the_failure_close() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    # A message and an unmasked frame in one read.
    events = a.receive_data(client.send(TextMessage("echo me")) + b"\x81\x02hi", NOW)
    assert len(events) == 2
    message, close = events
    assert message == WebSocketMessage(1, "echo me")
    assert isinstance(close, WebSocketClose)
    assert close.code == 1002
    assert a.data_to_send() == b""  # no Close yet
    # The application echoes what came before the error.
    a.send(WebSocketMessage(1, "echo me"))
    assert a.data_to_send() == b"\x81\x07echo me"
    assert a.next_events(NOW) == []  # still open
    a.send(BodyConsumed(1, 1))  # it took the message
    assert a.data_to_send() == b""
    assert a.next_events(NOW) == []
    # Then it takes the close.
    a.send(BodyConsumed(1, 0))
    assert a.data_to_send() == b"\x88" + bytes([len(close.reason) + 2]) + b"\x03\xea" + (
        close.reason.encode()
    )
    assert a.next_events(NOW) == [ConnectionClosed("WebSocket closed")]
    assert not reads(a)


def test_app_close_during_the_hold_sends_the_failure_code() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    events = a.receive_data(client.send(BytesMessage(b"echo")) + b"\x81\x02hi", NOW)
    assert [type(e) for e in events] == [WebSocketMessage, WebSocketClose]
    a.send(WebSocketMessage(1, b"echo"))
    a.send(WebSocketClose(1, 1000, "bye"))  # before it has looked
    replies = client_events(client, a.data_to_send())
    assert messages(replies) == [b"echo"]
    (close,) = [e for e in replies if isinstance(e, CloseConnection)]
    assert close.code == 1002  # the failure's, not the application's
    assert a.next_events(NOW) == [ConnectionClosed("WebSocket closed")]
    a.send(BodyConsumed(1, 0))  # and then it looks: nothing more
    assert a.data_to_send() == b""
    assert a.next_events(NOW) == []


def test_close_timeout_releases_the_failure_close() -> None:
    a = make_adapter(websocket=WSSettings(close_timeout=3.0))
    client, _ = open_websocket(a)
    (close,) = a.receive_data(b"\x81\x02hi", NOW)
    assert isinstance(close, WebSocketClose)
    assert a.next_deadline(NOW + 1.0) == NOW + 4.0
    assert a.handle_timeout(NOW + 3.9) == []
    assert a.data_to_send() == b""
    # The application never looked.
    assert a.handle_timeout(NOW + 4.0) == [ConnectionClosed("WebSocket closed")]
    (reply,) = client_events(client, a.data_to_send())
    assert isinstance(reply, CloseConnection)
    assert reply.code == 1002
    assert not reads(a)
    assert a.next_deadline(NOW + 4.0) is None
    a.send(BodyConsumed(1, 0))
    assert a.data_to_send() == b""


# ------------------------------------------------------------------ closing


def test_peer_close() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    events = a.receive_data(client.send(CloseConnection(1000, "bye")), NOW)
    assert events == [WebSocketClose(1, 1000, "bye"), ConnectionClosed("WebSocket closed")]
    (reply,) = client_events(client, a.data_to_send())
    assert isinstance(reply, CloseConnection)
    assert reply.code == 1000
    assert not reads(a)
    assert a.next_events(NOW) == []
    assert a.receive_data(b"more", NOW) == []
    # The application's late sends go nowhere.
    a.send(WebSocketMessage(1, "late"))
    a.send(WebSocketClose(1))
    assert a.data_to_send() == b""


def test_app_close_then_peer_reply() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    a.send(WebSocketClose(1, 4000, "done"))
    (close,) = client_events(client, a.data_to_send())
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (4000, "done")
    assert reads(a)  # waiting for the reply
    # Messages after our Close are dropped both ways.
    a.send(WebSocketMessage(1, "dropped"))
    assert a.data_to_send() == b""
    reply = client.send(close.response())
    assert a.receive_data(reply, NOW) == [ConnectionClosed("WebSocket closed")]
    assert a.data_to_send() == b""
    assert not reads(a)


def test_messages_after_our_close_are_not_delivered() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    a.send(WebSocketClose(1))
    client_events(client, a.data_to_send())
    # The client's message crossed our Close; then its reply.
    frames = Connection(ConnectionType.CLIENT).send(TextMessage("crossed"))
    assert a.receive_data(frames, NOW) == []


def test_eof_is_1006() -> None:
    a = make_adapter()
    open_websocket(a)
    assert a.receive_data(b"", NOW) == [
        WebSocketClose(1, 1006, ""),
        ConnectionClosed("WebSocket closed"),
    ]
    assert a.data_to_send() == b""  # 1006 is never sent
    assert not reads(a)
    assert a.next_events(NOW) == []


def test_eof_before_accept() -> None:
    a = make_adapter()
    a.receive_data(upgrade(), NOW)
    events = a.receive_data(b"", NOW)
    assert isinstance(events[-1], ConnectionClosed)
    assert not any(isinstance(e, WebSocketClose) for e in events)


# ------------------------------------------------------------------ timers


def test_idle_and_timers_after_the_upgrade() -> None:
    a = make_adapter(keep_alive_timeout=5.0, header_read_timeout=10.0, read_timeout=7.0)
    a.receive_data(upgrade(), NOW)
    assert a.next_deadline(NOW) is None  # the application decides
    a.send(WebSocketAccept(1))
    a.data_to_send()
    assert not is_idle(a)
    assert a.next_deadline(NOW) is None  # no ping interval: no timer
    assert a.handle_timeout(NOW + 3600) == []
    assert a.data_to_send() == b""
    assert not is_idle(a)
    assert reads(a)


def test_ping_interval() -> None:
    a = make_adapter(websocket=WSSettings(ping_interval=10.0, ping_timeout=4.0))
    client, _ = open_websocket(a)
    assert a.next_deadline(NOW) == NOW + 10.0
    assert a.handle_timeout(NOW + 9.0) == []
    assert a.data_to_send() == b""
    # Input postpones the ping.
    a.receive_data(client.send(TextMessage("hi")), NOW + 5.0)
    assert a.next_deadline(NOW + 5.0) == NOW + 15.0
    assert a.handle_timeout(NOW + 15.0) == []
    (ping,) = client_events(client, a.data_to_send())
    assert isinstance(ping, Ping)
    # Now the pong is due.
    assert a.next_deadline(NOW + 15.0) == NOW + 19.0
    a.receive_data(client.send(ping.response()), NOW + 16.0)
    assert a.next_deadline(NOW + 16.0) == NOW + 26.0


def test_ping_timeout() -> None:
    a = make_adapter(websocket=WSSettings(ping_interval=10.0, ping_timeout=4.0))
    client, _ = open_websocket(a)
    a.next_deadline(NOW)
    a.handle_timeout(NOW + 10.0)
    (ping,) = client_events(client, a.data_to_send())
    assert isinstance(ping, Ping)
    assert a.handle_timeout(NOW + 13.0) == []
    events = a.handle_timeout(NOW + 14.0)
    assert events == [WebSocketClose(1, 1006, "ping timeout"), ConnectionClosed("WebSocket closed")]
    (close,) = client_events(client, a.data_to_send())
    assert isinstance(close, CloseConnection)
    assert close.code == 1011
    assert a.next_deadline(NOW + 14.0) is None


def test_close_timeout() -> None:
    a = make_adapter(websocket=WSSettings(close_timeout=3.0))
    open_websocket(a)
    assert a.next_deadline(NOW) is None
    a.send(WebSocketClose(1))
    a.data_to_send()
    assert a.next_deadline(NOW + 1.0) == NOW + 4.0
    assert a.handle_timeout(NOW + 3.0) == []
    assert a.handle_timeout(NOW + 4.0) == [ConnectionClosed("WebSocket closed")]
    assert not reads(a)
    assert a.next_deadline(NOW + 4.0) is None


def test_no_close_timeout() -> None:
    a = make_adapter(websocket=WSSettings(close_timeout=None))
    open_websocket(a)
    a.send(WebSocketClose(1))
    assert a.next_deadline(NOW) is None
    assert a.handle_timeout(NOW + 3600) == []


# ------------------------------------------------------------------ shutdown


def test_begin_shutdown_closes_1001() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    assert a.begin_shutdown() == [WebSocketClose(1, 1001, "")]
    (close,) = client_events(client, a.data_to_send())
    assert isinstance(close, CloseConnection)
    assert close.code == 1001
    assert a.begin_shutdown() == []  # once
    assert reads(a)  # for the reply
    assert a.receive_data(client.send(close.response()), NOW) == [
        ConnectionClosed("WebSocket closed")
    ]
    assert not reads(a)


def test_accepted_during_shutdown_closes_1001_at_once() -> None:
    # Shutdown began while the app was deciding: the WebSocket it accepts
    # is told to go away right after the 101, and so is the app.
    a = make_adapter()
    events = a.receive_data(upgrade(), NOW)
    assert isinstance(events[0], Request)
    assert a.begin_shutdown() == []
    a.send(WebSocketAccept(1))
    line, _, rest = split_head(a.data_to_send())
    assert line == b"HTTP/1.1 101 Switching Protocols"
    client = Connection(ConnectionType.CLIENT)
    (close,) = client_events(client, rest)
    assert isinstance(close, CloseConnection)
    assert close.code == 1001
    assert a.next_events(NOW) == [WebSocketClose(1, 1001, "")]
    assert a.receive_data(client.send(close.response()), NOW) == [
        ConnectionClosed("WebSocket closed")
    ]


def test_begin_shutdown_after_app_close_sends_nothing_more() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    a.send(WebSocketClose(1))
    client_events(client, a.data_to_send())
    assert a.begin_shutdown() == []
    assert a.data_to_send() == b""


# ------------------------------------------------------------------ denial


def test_denial_is_an_ordinary_response() -> None:
    a = make_adapter()
    events = a.receive_data(upgrade(), NOW)
    assert isinstance(events[0], Request)
    assert events[0].protocol == "websocket"
    a.send(Response(1, 403, [(b"content-length", b"9")]))
    a.send(Data(1, b"forbidden"))
    a.send(EndData(1))
    raw = a.data_to_send()
    assert raw.startswith(b"HTTP/1.1 403 ")
    response = parse_one(raw)
    assert (response.status, response.body) == (403, b"forbidden")
    assert response.header(b"connection") == []
    assert is_idle(a)
    assert reads(a)
    # Keep-alive: the next request comes on the same connection.
    assert a.receive_data(NEXT, NOW) == [
        Request(3, b"GET", b"/next", [(b"host", b"example.com")], "1.1"),
        EndBody(3),
    ]
    with pytest.raises(AppProtocolError):  # not a WebSocket this time
        a.send(WebSocketAccept(3))


def test_denial_with_pipelined_request() -> None:
    a = make_adapter()
    a.receive_data(upgrade() + NEXT, NOW)
    assert not reads(a)
    a.send(Response(1, 403, [(b"content-length", b"0")]))
    a.send(EndData(1))
    assert parse_one(a.data_to_send()).status == 403
    assert a.next_events(NOW) == [
        Request(3, b"GET", b"/next", [(b"host", b"example.com")], "1.1"),
        EndBody(3),
    ]


# ------------------------------------------------------------------ the core's shortcuts


def never(event: Event) -> bool:
    return False


def test_receive_inline_before_the_upgrade_is_none() -> None:
    a = make_adapter()
    assert a.receive_inline(b"\x81\x80abcd", NOW, never) is None  # plain HTTP/1.1
    a.receive_data(upgrade(), NOW)
    assert a.receive_inline(b"\x81\x80abcd", NOW, never) is None  # not accepted yet


def test_receive_inline_takes_whole_messages() -> None:
    a = make_adapter(max_queued_body=3)
    client, _ = open_websocket(a)
    taken: list[Event] = []

    def take(event: Event) -> bool:  # the application waits for one message
        if taken:
            return False
        taken.append(event)
        return True

    wire = client.send(TextMessage("a")) + client.send(BytesMessage(b"b"))
    assert a.receive_inline(wire, NOW, take) == [WebSocketMessage(1, b"b")]
    assert taken == [WebSocketMessage(1, "a")]
    # Only the queued message counts: one BodyConsumed gives the room back.
    assert reads(a)
    assert a.receive_inline(client.send(TextMessage("c")), NOW, never) == [WebSocketMessage(1, "c")]
    assert a.receive_inline(client.send(TextMessage("d")), NOW, never) is None  # would stop reading
    a.send(BodyConsumed(1, 1))
    a.send(BodyConsumed(1, 1))
    assert a.receive_inline(client.send(TextMessage("e")), NOW, never) == [WebSocketMessage(1, "e")]
    assert a.data_to_send() == b""


def test_receive_inline_leaves_the_rest_to_receive_data() -> None:
    a = make_adapter()
    client, _ = open_websocket(a)
    ping = client.send(Ping(b"p"))
    assert a.receive_inline(ping, NOW, never) is None
    assert a.receive_data(ping, NOW) == []
    assert [type(e) for e in client_events(client, a.data_to_send())] == [Pong]
    close = client.send(CloseConnection(1000))
    assert a.receive_inline(close, NOW, never) is None
    events = a.receive_data(close, NOW)
    assert events[0] == WebSocketClose(1, 1000, "")
    # Closed: nothing more is taken.
    assert a.receive_inline(b"\x81\x80abcd", NOW, never) is None


def test_receive_inline_waits_for_bytes_held_at_the_accept() -> None:
    a = make_adapter()
    client = Connection(ConnectionType.CLIENT)
    a.receive_data(upgrade() + client.send(TextMessage("early")), NOW)
    a.send(WebSocketAccept(1))
    a.data_to_send()
    later = client.send(TextMessage("later"))
    assert a.receive_inline(later, NOW, never) is None  # next_events has "early" first
    assert a.next_events(NOW) == [WebSocketMessage(1, "early")]
    assert a.receive_inline(later, NOW, never) == [WebSocketMessage(1, "later")]


def test_frame_message() -> None:
    a = make_adapter()
    assert a.frame_message("x") is None  # not a WebSocket
    client, _ = open_websocket(a)
    frame = a.frame_message("héllo")
    assert frame is not None
    assert messages(client_events(client, frame)) == ["héllo"]
    # Bytes queued before (a pong) go first.
    a.receive_data(client.send(Ping(b"p")), NOW)
    frame = a.frame_message(b"\x01")
    assert frame is not None
    events = client_events(client, frame)
    assert [type(e) for e in events] == [Pong, BytesMessage]
    assert a.data_to_send() == b""
    # Closing: the event path decides (the message is dropped).
    a.send(WebSocketClose(1))
    assert a.frame_message("late") is None
