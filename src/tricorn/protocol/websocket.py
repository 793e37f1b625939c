"""WebSocket framing (RFC 6455) as one sans-IO piece every transport shares.

Theory of operation
-------------------
The HTTP adapters own a WebSocket's HTTP side: HTTP/1.1 recognises
``Upgrade: websocket`` and answers ``101``; HTTP/2 (RFC 8441) recognises an
extended CONNECT with ``:protocol = websocket`` and answers ``200`` on the
stream; HTTP/3 (RFC 9220) will do the same on a QUIC stream. Both use
:func:`handshake_problem` to refuse a request that cannot become a
WebSocket and :func:`negotiate` to choose extensions when the application
accepts.

From then on a :class:`WebSocketFramer` turns the stream's bytes (the
connection's bytes after the ``101``; the DATA of the CONNECT stream) into
``WebSocketMessage`` / ``WebSocketClose`` events, and the application's
events into frames. wsproto parses frames, checks UTF-8 and does
permessage-deflate; this module adds what wsproto leaves to its user:

* messages assembled from fragments, bounded by ``max_message_size``
  (close ``1009``); compressed messages are inflated with the same bound,
  chunk by chunk, so a compression bomb costs at most that much memory;
* pings answered; server pings every ``ping_interval`` of silence, and a
  peer that leaves one unanswered for ``ping_timeout`` is dropped (``1011``);
* the closing handshake: the peer's Close is answered; after our Close the
  peer has ``close_timeout`` to answer; a protocol error fails the
  connection with its code (``1002``, ``1007``, ...);
* graceful shutdown: Close ``1001`` (going away).

The application hears of the end once, as one inbound ``WebSocketClose``:
the peer's code, ``1006`` when the connection ended without a Close, or
the code we failed with. Unmasked server frames of an uncompressed
WebSocket are written here directly (a header and the payload); wsproto
frames the rest.

Time is passed in; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import zlib
from typing import Any

from wsproto.connection import Connection as _WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from ._ws_settings import WSSettings
from .events import Event, Headers, WebSocketAccept, WebSocketClose, WebSocketMessage

__all__ = [
    "WSSettings",
    "WebSocketFramer",
    "accept_fields",
    "accept_key",
    "handshake_problem",
    "negotiate",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT = 0x1
_BINARY = 0x2
_ABNORMAL = 1006  # closed without a Close frame (never sent on the wire)
_GOING_AWAY = 1001
_INTERNAL_ERROR = 1011
_TOO_BIG = 1009


# ---------------------------------------------------------------- handshake


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``Sec-WebSocket-Key`` ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def handshake_problem(headers: Headers, *, key_required: bool) -> tuple[int, Headers, str] | None:
    """Why a WebSocket request cannot be accepted, as ``(status, extra
    headers, reason)``; ``None`` if it can. HTTP/1.1 requests need a
    ``Sec-WebSocket-Key`` (``key_required``); every transport needs
    ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.2: else ``426`` naming it)."""
    versions = [value for name, value in headers if name == b"sec-websocket-version"]
    if len(versions) != 1 or versions[0].strip() != b"13":
        return 426, [(b"sec-websocket-version", b"13")], "unsupported Sec-WebSocket-Version"
    if key_required:
        keys = [value for name, value in headers if name == b"sec-websocket-key"]
        if len(keys) != 1 or not _valid_key(keys[0].strip()):
            return 400, [], "invalid Sec-WebSocket-Key"
    return None


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (ValueError, binascii.Error):
        return False


def accept_fields(
    request: Headers,
    event: WebSocketAccept,
    settings: WSSettings,
    own: frozenset[bytes],
    fields: Headers,
) -> list[Extension]:
    """Append the handshake answer's WebSocket fields to ``fields``: the
    chosen subprotocol, the accepted extensions, and the application's own
    headers minus the ``own`` ones the server writes itself. Returns the
    extensions the framer uses."""
    extensions, accepted = negotiate(request, settings)
    if event.subprotocol:
        fields.append((b"sec-websocket-protocol", event.subprotocol.encode("latin-1")))
    if accepted is not None:
        fields.append((b"sec-websocket-extensions", accepted))
    fields += [item for item in event.headers if item[0] not in own]
    return extensions


def negotiate(headers: Headers, settings: WSSettings) -> tuple[list[Extension], bytes | None]:
    """The extensions to use for the client's offers in ``headers``, and
    the ``Sec-WebSocket-Extensions`` value that accepts them (``None``: no
    extension). Only permessage-deflate exists; the first acceptable offer
    wins."""
    if not settings.permessage_deflate:
        return [], None
    for name, value in headers:
        if name != b"sec-websocket-extensions":
            continue
        for offer in value.decode("latin-1").split(","):
            if offer.split(";", 1)[0].strip() != "permessage-deflate":
                continue
            if not _valid_deflate_offer(offer):
                continue
            extension = _BoundedDeflate(settings.max_message_size)
            try:
                accepted = extension.accept(offer.strip())
            except ValueError:  # a parameter that is not a number
                continue
            if accepted is None or accepted is False:
                continue
            response = "permessage-deflate"
            if isinstance(accepted, str) and accepted:
                response += "; " + accepted
            return [extension], response.encode("latin-1")
    return [], None


_DEFLATE_PARAMS = {
    "client_no_context_takeover": False,  # name: takes a value
    "server_no_context_takeover": False,
    "client_max_window_bits": None,  # a value is optional
    "server_max_window_bits": True,
}


def _valid_deflate_offer(offer: str) -> bool:
    """RFC 7692 §7.1: an offer with an unknown or repeated parameter, or a
    value where none belongs (or none where one must be), is declined."""
    seen: set[str] = set()
    for param in offer.split(";")[1:]:
        name, equals, _ = param.partition("=")
        name = name.strip()
        if name not in _DEFLATE_PARAMS or name in seen:
            return False
        seen.add(name)
        needs_value = _DEFLATE_PARAMS[name]
        if needs_value is not None and needs_value != bool(equals):
            return False
    return True


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflation stops at the message size limit
    (wsproto inflates a whole chunk at once: a few KiB could become GiB)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit
        self._inflated = 0  # bytes of the current message inflated so far

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            out = decompressor.decompress(data, self._limit - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._limit or decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if not fin:
            return None
        if not self._inbound_is_compressible:  # a control frame
            if not self._inbound_compressed:
                # Alone, its header set the flag (to False): clear it, or the
                # next message's RSV1 would be ignored. (Inside an uncompressed
                # message, the next fragment's header sets it again.)
                self._inbound_compressed = None
            return None  # between a compressed message's fragments: it goes on
        compressed = self._inbound_compressed
        self._inbound_compressed = None
        if not compressed:
            return None
        # The message's end: the sync-flush tail the sender stripped (RFC 7692 §7.2.2).
        out = self._inflate(b"\x00\x00\xff\xff")
        self._inflated = 0
        if isinstance(out, CloseReason):
            return out
        # We are the server: the client's context. A message that ended its
        # DEFLATE stream (a BFINAL block, RFC 7692 §7.2.3.4) leaves a spent
        # decompressor: the next message starts a new one.
        if self.client_no_context_takeover or (
            self._decompressor is not None and self._decompressor.eof
        ):
            self._decompressor = None
        return out


# ---------------------------------------------------------------- framing


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask`` (RFC 6455 §5.3)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def _frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, size) + payload


class WebSocketFramer:
    """One accepted WebSocket's frames (see the module docstring).

    :param stream_id: the stream the WebSocket rides (for the events).
    :param settings: the limits.
    :param extensions: from :func:`negotiate`.
    :param now: when the WebSocket opened (for the ping timer); by
        default the first :meth:`next_deadline` stamps it.
    """

    __slots__ = (
        "_closing_since",
        "_compressed",
        "_failure",
        "_last_input",
        "_out",
        "_parts",
        "_ping_sent",
        "_simple",
        "_size",
        "_small",
        "_told",
        "_ws",
        "closing",
        "done",
        "settings",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: int,
        settings: WSSettings,
        extensions: list[Extension],
        now: float | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.settings = settings
        self._ws = _WSConnection(ConnectionType.SERVER, extensions)
        self._compressed = bool(extensions)
        self._simple = not extensions  # the fast path may parse (see _receive_simple)
        # The largest one-frame input receive_messages parses unrolled: a
        # 7-bit length (<= 125) within the limit, plus a 6-byte header.
        self._small = 6 + min(125, settings.max_message_size)
        self._out: list[bytes] = []
        self._parts: list[Any] = []  # the fragments of the message being received
        self._size = 0
        self.closing = False  # we sent Close (or gave up): messages are dropped
        self._failure: tuple[int, str] | None = None  # a Close held for release()
        self.done = False  # the WebSocket is over: the transport or stream may end
        self._told = False  # the application got its WebSocketClose
        self._closing_since: float | None = None
        self._last_input: float | None = now
        self._ping_sent: float | None = None

    # ------------------------------------------------------------ inbound

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; the messages and close they complete."""
        if self.done or self._failure is not None:
            return []  # (after a protocol error the input is dropped)
        self._last_input = now
        events: list[Event] = []
        if self._simple and not self.closing:
            message = self._small_message(data)
            if message is not None:
                return [message]
            data = self._receive_simple(data, events)
            if not data:
                return events
        try:
            self._ws.receive_data(data)
        except LocalProtocolError:  # pragma: no cover - closed: done is set first
            return events
        events += self._wsproto_events()
        if not self._compressed and not self.done:
            # Back to the fast path once wsproto holds nothing half-parsed.
            proto = self._ws._proto
            decoder = proto._frame_decoder
            self._simple = (
                not decoder.buffer.buffer
                and decoder.header is None
                and proto._message_decoder.opcode is None
            )
        return events

    def receive_messages(self, data: bytes, now: float, room: int) -> list[Event] | None:
        """Feed bytes that are nothing but whole data messages (the fast
        path's frames, see :meth:`_receive_simple`), at most ``room`` of them:
        their events; else ``None`` and nothing happened (:meth:`receive`
        takes the bytes instead)."""
        if not self._simple or self.closing or self.done or room < 1:
            return None
        message = self._small_message(data)
        if message is not None:
            self._last_input = now
            return [message]
        events: list[Event] = []
        if self._receive_simple(data, events) or len(events) > room:
            return None
        self._last_input = now
        return events

    def _small_message(self, data: bytes) -> WebSocketMessage | None:
        """``data`` as the message it is if it is exactly one small frame
        of the fast path's kind (7-bit length), the common case: parsed
        unrolled; else ``None`` (:meth:`_receive_simple` decides)."""
        size = len(data)
        if size < 6 or size > self._small or data[1] != size + 122:  # 0x80 (MASK) | size - 6
            return None
        first = data[0]
        if first != 0x81 and first != 0x82:
            return None
        length = size - 6
        if length:  # (_unmask, inlined)
            key = (data[2:6] * 32)[:length]
            payload = (int.from_bytes(data[6:], "little") ^ int.from_bytes(key, "little")).to_bytes(
                length, "little"
            )
        else:
            payload = b""
        if first == 0x82:
            return WebSocketMessage(self.stream_id, payload)
        try:
            return WebSocketMessage(self.stream_id, payload.decode())
        except UnicodeDecodeError:
            return None

    def _receive_simple(self, data: bytes, events: list[Event]) -> bytes:
        """The fast path for the frames nearly every client sends: whole,
        unfragmented, masked text or binary frames without RSV bits or
        extensions. Parses them in place and returns what is left from the
        first frame that is anything else (control, fragment, incomplete,
        too big, invalid UTF-8), which wsproto then takes, errors included."""
        size = len(data)
        limit = self.settings.max_message_size
        stream_id = self.stream_id
        at = 0
        while size - at >= 6:
            first = data[at]
            length = data[at + 1]
            if (first != 0x81 and first != 0x82) or length < 0x80:
                break  # not FIN + text/binary without RSV, or not masked
            length &= 0x7F
            start = at + 2
            if length == 126:
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
                if length < 126:
                    break  # not the shortest encoding: wsproto fails it
            elif length == 127:
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
                if length < 65536:
                    break  # (ditto; and a 64-bit length with its top bit set)
            end = start + 4 + length
            if end > size or length > limit:
                break
            payload = _unmask(data[start + 4 : end], data[start : start + 4])
            if first == 0x81:
                try:
                    events.append(WebSocketMessage(stream_id, payload.decode("utf-8")))
                except UnicodeDecodeError:
                    break
            else:
                events.append(WebSocketMessage(stream_id, payload))
            at = end
        return data[at:] if at else data

    def _wsproto_events(self) -> list[Event]:
        events: list[Event] = []
        for event in self._ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                if self.closing:
                    continue  # after our Close: nobody listens
                problem = self._on_data(event, events)
                if problem:
                    return events + self._fail(_TOO_BIG, problem, hold=True)
            elif isinstance(event, Ping):
                if self._ws.state is ConnectionState.OPEN:
                    self._out.append(self._ws.send(event.response()))
            elif isinstance(event, Pong):
                self._ping_sent = None
            elif isinstance(event, CloseConnection):
                return events + self._on_close(event)
        return events

    def _on_data(self, event: TextMessage | BytesMessage, events: list[Event]) -> str:
        """Assemble a message; a reason string if it grew past the limit."""
        data: Any = event.data
        if isinstance(data, str):
            size = len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            size = len(data)
        self._size += size
        if self._size > self.settings.max_message_size:
            return "message too big"
        if not event.message_finished:
            if data:
                self._parts.append(data)
            return ""
        parts = self._parts
        if parts:
            parts.append(data)
            data = "".join(parts) if type(data) is str else b"".join(parts)
            self._parts = []
        elif type(data) is bytearray:
            data = bytes(data)
        self._size = 0
        events.append(WebSocketMessage(self.stream_id, data))
        return ""

    def _on_close(self, event: CloseConnection) -> list[Event]:
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:  # the peer closes: answer
            self._out.append(self._ws.send(event.response()))
        elif state is not ConnectionState.CLOSED:  # wsproto found a protocol error
            return self._fail(int(event.code), event.reason or "", hold=True)
        self.closing = self.done = True  # (CLOSED: the answer to our Close)
        return self._tell(int(event.code), event.reason or "")

    def receive_eof(self) -> list[Event]:
        """The transport or stream ended: ``1006`` if no Close came."""
        if self.done:
            return []
        self._failure = None  # a held Close has nowhere to go
        self.closing = self.done = True
        return self._tell(_ABNORMAL, "")

    def _fail(
        self, code: int, reason: str, *, told: int | None = None, hold: bool = False
    ) -> list[Event]:
        """Fail the WebSocket (RFC 6455 §7.1.7): Close ``code``, and done.

        With ``hold`` (the peer broke the protocol) the Close waits until
        the application has seen the close (:meth:`release`), or
        ``close_timeout``: the answers it is still sending to the messages
        before the error (an echo, say) go out first. Input is dropped
        meanwhile."""
        if hold and not self.closing and self._ws.state is ConnectionState.OPEN:
            self._failure = (code, reason)
            self.closing = True
            return self._tell(code, reason)
        if not self.closing and self._ws.state is ConnectionState.OPEN:
            self._out.append(self._ws.send(CloseConnection(code, reason)))
        self.closing = self.done = True
        return self._tell(code if told is None else told, reason)

    def release(self) -> None:
        """The application has seen the close: a Close held back by
        :meth:`_fail` goes out now, and the WebSocket is done."""
        failure = self._failure
        if failure is not None:
            self._failure = None
            self._out.append(self._ws.send(CloseConnection(*failure)))
            self.done = True

    def _tell(self, code: int, reason: str) -> list[Event]:
        if self._told:
            return []
        self._told = True
        return [WebSocketClose(self.stream_id, code, reason)]

    # ------------------------------------------------------------ outbound

    def send(self, event: Event) -> None:
        """Frame an application's ``WebSocketMessage`` or ``WebSocketClose``;
        both are dropped once the WebSocket is closing (the stream refuses
        sends once the application has seen the close), except while a
        failure's Close is held back for them."""
        if self.closing:
            if self._failure is not None and isinstance(event, WebSocketClose):
                self.release()  # the app is done answering: our Close now
            if self._failure is None:
                return
        if type(event) is WebSocketMessage:
            data = event.data
            if self._compressed:
                message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
                self._out.append(self._ws.send(message))
            elif type(data) is str:
                self._out.append(_frame(_TEXT, data.encode()))
            else:
                self._out.append(_frame(_BINARY, data))  # type: ignore[arg-type]
        elif isinstance(event, WebSocketClose):
            self._out.append(self._ws.send(CloseConnection(event.code, event.reason or None)))
            self.closing = True
            self._told = True  # the application knows: it closed

    def frame_message(self, data: bytes | str) -> bytes | None:
        """:meth:`send` of an application's message and :meth:`data_to_send`
        in one, for a caller that writes the bytes at once. ``None`` while
        closing (:meth:`send` decides what becomes of the message)."""
        if self.closing:
            return None
        if self._compressed:
            message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
            frame = self._ws.send(message)
        elif type(data) is str:
            payload = data.encode()
            if len(payload) < 126:  # (_frame's first case, inlined)
                frame = bytes((0x81, len(payload))) + payload
            else:
                frame = _frame(_TEXT, payload)
        else:
            frame = _frame(_BINARY, data)  # type: ignore[arg-type]
        if self._out:  # (bytes queued before go first)
            self._out.append(frame)
            return self.data_to_send()
        return frame

    def data_to_send(self) -> bytes:
        """The frames queued so far (``b""`` if none)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)  # (wsproto's send gives bytes too)
        out.clear()
        return data

    def begin_shutdown(self) -> list[Event]:
        """Close ``1001`` (going away); the application hears of it now."""
        if self.closing:
            return []
        self._out.append(self._ws.send(CloseConnection(_GOING_AWAY, "server shutting down")))
        self.closing = True
        return self._tell(_GOING_AWAY, "")

    # ------------------------------------------------------------ timers

    def next_deadline(self, now: float) -> float | None:
        """When :meth:`handle_timeout` has something to do, if ever."""
        if self.done:
            return None
        settings = self.settings
        if self.closing:
            if settings.close_timeout is None:
                return None
            if self._closing_since is None:
                self._closing_since = now
            return self._closing_since + settings.close_timeout
        if settings.ping_interval is None:
            return None
        if self._ping_sent is not None:
            if settings.ping_timeout is None:
                return None
            return self._ping_sent + settings.ping_timeout
        if self._last_input is None:
            self._last_input = now
        return self._last_input + settings.ping_interval

    def handle_timeout(self, now: float) -> list[Event]:
        """Send a ping, or give up on a peer that does not answer."""
        deadline = self.next_deadline(now)
        if deadline is None or now < deadline:
            return []
        if self.closing:  # our Close went unanswered, or the app never looked
            self.release()
            self.done = True
            return self._tell(_ABNORMAL, "")
        if self._ping_sent is not None:
            return self._fail(_INTERNAL_ERROR, "ping timeout", told=_ABNORMAL)
        self._ping_sent = now
        self._out.append(self._ws.send(Ping(b"tricorn")))
        return []
