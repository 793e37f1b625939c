"""The HTTP/2 adapter: h2's frame and HPACK machinery behind the adapter
contract of :mod:`tricorn.protocol.base`.

Theory of operation
-------------------
h2 parses frames, keeps stream states and flow-control windows and encodes
HPACK; this module decides everything h2 leaves to its user:

* **Requests** are validated here (RFC 9113 §8.2-8.3), not by h2, so that a
  malformed request is a *stream* error (RST_STREAM PROTOCOL_ERROR) and the
  connection goes on; h2's own checks would turn it into a connection error.
  Content-Length is checked here for the same reason.
* **Concurrency**: h2 is told never to refuse a stream (it would kill the
  connection); the adapter refuses streams past ``max_concurrent_streams``
  with RST_STREAM(REFUSED_STREAM), and the core refuses streams while that
  many ASGI calls still run (a reset call may take a moment to unwind).
* **Inbound flow control**: DATA is credited (WINDOW_UPDATE) when the
  application consumes it (``BodyConsumed``), not when it arrives, so the
  request data buffered per connection is bounded by the windows we
  advertise. Data left unread when a response completes is credited to the
  connection then, and the stream is reset with NO_ERROR (RFC 9113 §8.1).
* **Outbound data** waits in per-stream queues until the peer's windows
  allow it; :meth:`H2Adapter.writable` is false while a stream has queued
  data, and the core makes the application's ``send()`` wait on it, so a
  peer that never opens its window costs one application chunk per stream.
  Frames are scheduled by RFC 9218 priorities (``priority`` header and
  PRIORITY_UPDATE): lower urgency first; within an urgency, non-incremental
  streams one after another in stream order, incremental ones round-robin a
  frame at a time.
* **Floods**: frames that carry no request progress (PING, SETTINGS,
  PRIORITY, RST_STREAM, PRIORITY_UPDATE, empty DATA, refused or malformed
  streams, any frame h2 drops on a closed stream) are counted per second;
  past ``max_control_frames`` the peer gets GOAWAY(ENHANCE_YOUR_CALM).
  HPACK bombs and CONTINUATION floods are bounded by h2 (header list size,
  64 CONTINUATION frames).
* **Hot paths** around h2: a new request's HEADERS frame (END_HEADERS, no
  padding or priority: nearly every request) is read without hyperframe
  and h2's stream handling, making the same state changes directly; every
  other frame, and any state out of the ordinary, goes through h2.
  Responses are framed here (HEADERS from a cached stateless HPACK
  encoding, DATA as views of the application's chunks) into a list of
  parts joined once per write.
* **Shutdown** sends GOAWAY(NO_ERROR) as a raw frame (h2's
  ``close_connection`` would stop it from processing the streams still in
  flight); the connection closes once they are done. Open WebSockets get
  Close 1001 then.
* **WebSockets** (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is 1; an
  extended CONNECT with ``:protocol = websocket`` is a WebSocket request
  (any other CONNECT gets 501). Once the application accepts (``200``), a
  :class:`~tricorn.protocol.websocket.WebSocketFramer` turns the stream's
  DATA into messages and back. Its DATA is credited while fewer than
  ``max_queued_messages`` messages wait for the application and its
  outbound queue is short, so a peer that floods (pings, messages) and
  never reads is held by its stream window.
"""

from __future__ import annotations

import base64
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
from hpack import HPACKError
from hyperframe.frame import ExtensionFrame, Frame, GoAwayFrame, HeadersFrame

from ._fields import (
    NAME,
    VALUE_BAD,
    parse_priority,
    parse_request,
    push_fields,
    queue_response,
    response_head,
    trailer_fields,
)
from ._hpack import CachingDecoder, StatelessEncoder
from ._stream_ws import StreamWebSockets
from .events import (
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
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
    Writable,
)
from .websocket import WebSocketFramer, WSSettings

__all__ = ["PREFACE", "H2Adapter", "H2Settings"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
ENHANCE_YOUR_CALM = 0xB

_PRIORITY_UPDATE = 0x10  # RFC 9218 §7.1
_SERVER_OPEN = h2.connection.ConnectionState.SERVER_OPEN
_CLOSED_STREAMS = h2.connection.H2Connection.MAX_CLOSED_STREAMS
_ordered_set = OrderedDict.__setitem__
_OPEN = h2.stream.StreamState.OPEN
_HALF_CLOSED_REMOTE = h2.stream.StreamState.HALF_CLOSED_REMOTE
_CLOSED = h2.stream.StreamState.CLOSED
_HALF_CLOSED_LOCAL = h2.stream.StreamState.HALF_CLOSED_LOCAL
_CLOSED_BY_END_STREAM = h2.stream.StreamClosedBy.SEND_END_STREAM
_SEND_HEADERS = h2.stream.StreamInputs.SEND_HEADERS
_SEND_DATA = h2.stream.StreamInputs.SEND_DATA
_SEND_END_STREAM = h2.stream.StreamInputs.SEND_END_STREAM
_ENCODER = StatelessEncoder()  # shared: it keeps no per-connection state
_PRUNE_AT = 32  # h2 drops closed streams when a connection holds more than this
_SETTINGS_NO_RFC7540_PRIORITIES = 0x9  # RFC 9218 §2.1
_WS_BACKLOG = 65536  # a WebSocket's unsent output past which its input is not credited


@dataclass(frozen=True, slots=True)
class H2Settings:
    """What the HTTP/2 adapter needs from the configuration.

    :param max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS; streams
        past it are refused with RST_STREAM(REFUSED_STREAM).
    :param max_header_list_size: SETTINGS_MAX_HEADER_LIST_SIZE; a header
        block decoding past it (an HPACK bomb) ends the connection with
        GOAWAY(ENHANCE_YOUR_CALM).
    :param max_inbound_frame_size: SETTINGS_MAX_FRAME_SIZE.
    :param initial_window_size: the per-stream receive window we advertise.
    :param connection_window_size: the connection receive window.
    :param keep_alive_timeout: close a connection without open streams after
        this long (``None``: never).
    :param keep_alive_max_requests: streams per connection; then GOAWAY.
    :param ping_interval: send a PING after this long without input, and
        close the connection if it is not answered within as long again.
    :param max_control_frames: frames without request progress accepted per
        second before GOAWAY(ENHANCE_YOUR_CALM).
    :param max_queued_messages: WebSocket messages waiting for the
        application before the stream's DATA is no longer credited.
    :param websocket: the WebSocket framing's limits.
    """

    max_concurrent_streams: int = 100
    max_header_list_size: int = 65536
    max_inbound_frame_size: int = 16384
    initial_window_size: int = 1024 * 1024
    connection_window_size: int = 2 * 1024 * 1024
    keep_alive_timeout: float | None = 5.0
    keep_alive_max_requests: int = 1000
    ping_interval: float | None = None
    max_control_frames: int = 1000
    max_queued_messages: int = 10
    websocket: WSSettings = WSSettings()  # noqa: RUF009 - frozen: one shared default


class _Connection(h2.connection.H2Connection):
    """h2, minus the two checks that would turn stream errors into
    connection errors: the concurrent-stream limit (the adapter refuses
    excess streams itself) and Content-Length (checked by the adapter).
    It also counts the frames it drops without an event (RST_STREAM,
    WINDOW_UPDATE, DATA or HEADERS on closed streams): the adapter's flood
    counter takes them, or a peer could send them for free (some make h2
    answer with RST_STREAM).
    A header block that does not decode is a COMPRESSION_ERROR (RFC 9113
    §4.3), not the PROTOCOL_ERROR h2 makes of it."""

    dropped_frames = 0
    inbound_window_size = 65535  # the local INITIAL_WINDOW_SIZE (set by the adapter)

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.incoming_buffer = _FrameBuffer(server=True)
        # Frames framed here, joined once by data_to_send (DATA payloads are
        # not copied into h2's buffer first); h2's own frames queued before
        # them are moved in ahead of them (_queue), so the order holds.
        self._parts: list[bytes | memoryview] = []

    def _receive_frame(self, frame: Frame | _RequestHeaders) -> list[Any]:
        try:
            if type(frame) is _RequestHeaders:
                if (
                    frame.stream_id > self.highest_inbound_stream_id
                    and frame.stream_id & 1
                    and self.state_machine.state is _SERVER_OPEN
                ):
                    return self._receive_request(frame)
                frame = frame.frame()  # trailers, or an error h2 reports
            if type(frame) is HeadersFrame and frame.stream_id > self.highest_inbound_stream_id:
                # A new request (nothing for h2's closed-stream handling to
                # do): its handler directly, skipping the eager repr() of
                # every frame that h2's dispatcher logs.
                frames, events = self._receive_headers_frame(frame)
                self._prepare_for_sending(frames)
            else:
                events = super()._receive_frame(frame)  # type: ignore[arg-type]
        except h2.exceptions.ProtocolError as exc:
            # h2 wraps HPACK errors in a plain ProtocolError; an oversized
            # header list (an HPACK bomb) is a DenialOfServiceError instead.
            if type(exc) is h2.exceptions.ProtocolError and isinstance(exc.__cause__, HPACKError):
                raise _CompressionError(str(exc)) from exc.__cause__
            raise
        if not events:
            self.dropped_frames += 1
        return events

    def _receive_request(self, frame: _RequestHeaders) -> list[Any]:
        """A new request's HEADERS (one frame, no padding or priority): the
        state changes of h2's ``_receive_headers_frame`` and
        ``H2Stream.receive_headers``, made directly, and one event."""
        self.open_inbound_streams  # noqa: B018 -- it prunes closed streams
        headers: list[tuple[bytes, bytes]] = h2.connection._decode_headers(  # type: ignore[assignment]
            self.decoder, frame.block
        )  # (CachingDecoder: a list of plain tuples)
        stream_id = frame.stream_id
        # h2's _begin_new_stream, for an id the caller checked (odd, new).
        stream = h2.stream.H2Stream(
            stream_id,
            config=self.config,
            inbound_window_size=self.inbound_window_size,
            outbound_window_size=self.remote_settings.initial_window_size,
        )
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        stream._initialize_content_length = _ignore  # type: ignore[method-assign,assignment]
        stream._track_content_length = _ignore  # type: ignore[method-assign,assignment]
        self.streams[stream_id] = stream
        self.highest_inbound_stream_id = stream_id
        machine = stream.state_machine
        for name, value in headers:
            if name[:1] != b":":
                break
            if name == b":status" and value[:1] == b"1":
                # An informational response from a client: what h2 makes of it.
                machine.state = _CLOSED
                raise h2.exceptions.ProtocolError("informational headers from a client")
        machine.client = False
        machine.headers_received = True
        if frame.end_stream:
            machine.state = _HALF_CLOSED_REMOTE
        else:
            machine.state = _OPEN
        return [_NewRequest(stream_id, headers, frame.end_stream)]

    @property
    def open_inbound_streams(self) -> int:
        if len(self.streams) > _PRUNE_AT:
            super().open_inbound_streams  # noqa: B018 -- it prunes closed streams
        return 0

    # The sends of every response, without h2's frame objects, header
    # re-encoding and per-frame checks (the adapter has done them): the same
    # state changes, windows and bytes as h2's send_headers, send_data and
    # end_stream. The state-machine inputs that change nothing in the usual
    # states (a response on an open stream) are skipped; any other state
    # goes through h2's state machines, which raise as h2 would.

    def send_response_headers(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        """HEADERS carrying an HPACK ``block`` that fits in one frame."""
        stream = self.streams.get(stream_id) or self._get_stream_by_id(stream_id)
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(h2.connection.ConnectionInputs.SEND_HEADERS)
        machine = stream.state_machine
        state = machine.state
        if (state is _HALF_CLOSED_REMOTE or state is _OPEN) and machine.client is False:
            if machine.headers_sent:
                machine.trailers_sent = True
            else:
                machine.headers_sent = True
        else:
            machine.process_input(_SEND_HEADERS)
        flags = 0x4  # END_HEADERS
        if end_stream:
            _send_end(machine)
            flags |= 0x1
        parts = self._queue()
        parts.append(_frame_head(len(block), 0x1, flags, stream_id))
        parts.append(block)

    def frame_data(
        self, stream_id: int, data: bytes, start: int, size: int, end_stream: bool
    ) -> None:
        """``data[start:start + size]`` as DATA frames of at most the peer's
        frame size; ``size`` is within the windows. ``size`` 0 with
        ``end_stream``: an empty DATA frame that ends the stream."""
        stream = self.streams.get(stream_id) or self._get_stream_by_id(stream_id)
        if self.state_machine.state is not _SERVER_OPEN:
            self.state_machine.process_input(h2.connection.ConnectionInputs.SEND_DATA)
        machine = stream.state_machine
        state = machine.state
        if state is not _HALF_CLOSED_REMOTE and state is not _OPEN:
            machine.process_input(_SEND_DATA)
        if end_stream:
            _send_end(machine)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        parts = self._queue()
        frame_size = self.max_outbound_frame_size
        if size <= frame_size and (start == 0 and size == len(data)):
            parts.append(_frame_head(size, 0x0, 0x1 if end_stream else 0, stream_id))
            parts.append(data)
            return
        view = memoryview(data)  # the frames' payloads: no copy
        stop = start + size
        full = stop - frame_size  # frames that start before it are full-size
        if start < full:
            head = _frame_head(frame_size, 0x0, 0, stream_id)  # the same for each
            while start < full:
                parts += (head, view[start : start + frame_size])
                start += frame_size
        # The last frame (size 0 only for an empty frame that ends the stream)
        flags = 0x1 if end_stream else 0
        parts += (_frame_head(stop - start, 0x0, flags, stream_id), view[start:stop])

    def _queue(self) -> list[bytes | memoryview]:
        """Where frames framed here go: behind what h2 queued so far."""
        if self._data_to_send:
            self._parts.append(bytes(self._data_to_send))
            self._data_to_send = bytearray()
        return self._parts

    def data_to_send(self, amount: int | None = None) -> bytes:
        parts = self._parts
        if not parts:
            return super().data_to_send(amount)
        self._queue()
        data = b"".join(parts)
        parts.clear()
        if amount is None:
            return data
        self._data_to_send = bytearray(data)
        return super().data_to_send(amount)

    def take_parts(self) -> list[bytes | memoryview]:
        """What ``data_to_send`` would join, as the buffers it was framed
        in (DATA payloads are views of the application's bytes)."""
        parts = self._parts
        if not parts:
            if not self._data_to_send:
                return []
            return [super().data_to_send()]
        self._queue()  # (h2's own bytes go behind the frames before them)
        self._parts = []
        return parts

    def clear_outbound_data_buffer(self) -> None:
        self._parts.clear()
        super().clear_outbound_data_buffer()

    def forget_stream(self, stream_id: int) -> None:
        """Drop a closed stream now, as h2 would on its next count of open
        streams (which then has fewer to look at)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            closed = self._closed_streams  # h2's SizeLimitDict, without its per-item check
            _ordered_set(closed, stream_id, stream.closed_by)
            if len(closed) > _CLOSED_STREAMS:
                closed._check_size_limit()  # type: ignore[attr-defined]

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream._initialize_content_length = _ignore  # type: ignore[method-assign,assignment]
        stream._track_content_length = _ignore  # type: ignore[method-assign,assignment]
        return stream

    def _receive_goaway_frame(self, frame: Any) -> Any:
        # h2 closes for good on a GOAWAY (h2 issue #1181) and drops what is
        # queued; RFC 9113 §6.8 lets the streams in flight finish (the
        # adapter refuses new ones and closes once they are done).
        state = self.state_machine.state
        queued, parts = self._data_to_send, self._parts[:]
        result = super()._receive_goaway_frame(frame)
        if state is _SERVER_OPEN:
            self.state_machine.state = state
            self._data_to_send = queued
            self._parts[:] = parts
        return result


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame parser, except that a SETTINGS ack with a payload is a
    FRAME_SIZE_ERROR (RFC 9113 §6.5), not a PROTOCOL_ERROR."""

    def __next__(self) -> Frame | _RequestHeaders:  # type: ignore[override]
        data = self._data
        if len(data) < 9:
            raise StopIteration
        kind = data[3]
        if kind == 0x1 and data[4] & 0x2C == 0x4 and not self._headers_buffer:
            # HEADERS with END_HEADERS, without PADDED and PRIORITY: every
            # request of most clients. Not made a hyperframe frame.
            length = data[0] << 16 | data[1] << 8 | data[2]
            stream_id = (data[5] & 0x7F) << 24 | data[6] << 16 | data[7] << 8 | data[8]
            if length <= self.max_frame_size and stream_id:
                end = 9 + length
                if len(data) < end:
                    raise StopIteration
                frame = _RequestHeaders(stream_id, bytes(data[9:end]), bool(data[4] & 0x1))
                del data[:end]
                return frame
        elif kind == 0x4 and data[4] & 0x1 and data[:3] != b"\0\0\0" and not self._headers_buffer:
            raise h2.exceptions.FrameTooLargeError("SETTINGS ack with a payload")
        return super().__next__()


class _RequestHeaders:
    """A HEADERS frame as :class:`_FrameBuffer` leaves it (see there)."""

    __slots__ = ("block", "end_stream", "stream_id")

    def __init__(self, stream_id: int, block: bytes, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.block = block
        self.end_stream = end_stream

    def frame(self) -> HeadersFrame:
        """The hyperframe frame, for h2's own handling."""
        frame = HeadersFrame(self.stream_id, self.block)
        frame.flags.add("END_HEADERS")
        if self.end_stream:
            frame.flags.add("END_STREAM")
        return frame


class _NewRequest:
    """What :meth:`_Connection._receive_request` reports (for h2's
    ``RequestReceived`` and ``StreamEnded``)."""

    __slots__ = ("end_stream", "headers", "stream_id")

    def __init__(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream


class _CompressionError(h2.exceptions.ProtocolError):
    """h2 sends GOAWAY with the ``error_code`` of the error it catches."""

    error_code = h2.errors.ErrorCodes.COMPRESSION_ERROR


def _ignore(*args: object) -> None:
    return None


def _send_end(machine: h2.stream.H2StreamStateMachine) -> None:
    """h2's SEND_END_STREAM input, directly in the usual states."""
    state = machine.state
    if state is _HALF_CLOSED_REMOTE:
        machine.state = _CLOSED
        machine.stream_closed_by = _CLOSED_BY_END_STREAM
    elif state is _OPEN:
        machine.state = _HALF_CLOSED_LOCAL
    else:
        machine.process_input(_SEND_END_STREAM)


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte frame header (RFC 9113 §4.1)."""
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


class _Stream:
    """The adapter's state of one stream."""

    __slots__ = (
        "authority",
        "body_length",
        "credit",
        "ended_in",
        "ended_out",
        "expected_length",
        "head",
        "head_request",
        "incremental",
        "no_body",
        "offset",
        "pending",
        "pushable",
        "scheme",
        "trailers",
        "urgency",
        "waiting",
        "want_end",
        "ws",
        "ws_early",
        "ws_headers",
        "ws_queued",
    )

    def __init__(self, scheme: str, authority: bytes | None, head_request: bool) -> None:
        self.scheme = scheme
        self.authority = authority
        self.head_request = head_request
        self.pushable = True
        self.expected_length: int | None = None
        self.body_length = 0
        self.credit = 0  # flow-controlled bytes delivered, not yet credited back
        self.ended_in = False  # the request is complete (END_STREAM received)
        self.ended_out = False  # END_STREAM (or RST_STREAM) sent
        self.head: Headers | None = None  # the response head, not yet sent
        self.no_body = False
        self.pending: deque[bytes] = deque()
        self.offset = 0  # bytes of pending[0] already sent
        self.want_end = False
        self.trailers: Headers | None = None
        self.urgency = 3
        self.incremental = False
        self.waiting = False  # the core waits for writable()
        self.ws: WebSocketFramer | None = None  # an accepted WebSocket's framing
        self.ws_early: list[bytes] | None = None  # a WebSocket request's DATA before accept
        self.ws_headers: Headers = []  # a WebSocket request's headers, until the accept
        self.ws_queued = 0  # WebSocket messages delivered, not yet consumed


class H2Adapter(StreamWebSockets):
    """One HTTP/2 connection (see the module docstring).

    :param settings: the limits.
    :param now: the time the connection starts (for the idle timer).
    :param scheme: ``"http"`` or ``"https"``: what ``:scheme`` must say.
    :param upgrade: the ``h2c`` upgrade that started this connection; its
        request is answered on stream 1.
    """

    def __init__(
        self,
        settings: H2Settings,
        now: float,
        scheme: str = "https",
        upgrade: ProtocolSwitch | None = None,
    ) -> None:
        self.settings = settings
        self._scheme = scheme
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        conn = _Connection(config=config)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: settings.max_inbound_frame_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                _SETTINGS_NO_RFC7540_PRIORITIES: 1,  # type: ignore[dict-item]
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441
            },
        )
        # Settings built with initial values count as acknowledged already,
        # so h2 never applies them to its frame parser and HPACK decoder.
        conn.max_inbound_frame_size = settings.max_inbound_frame_size
        conn.inbound_window_size = settings.initial_window_size
        conn.decoder.max_header_list_size = settings.max_header_list_size
        conn.encoder = _ENCODER  # type: ignore[assignment]
        conn.decoder = CachingDecoder(conn.decoder)  # type: ignore[assignment]
        self._conn = conn
        self._streams: dict[int, _Stream] = {}
        self._sending: dict[int, _Stream] = {}  # streams with queued output
        self._websockets: dict[int, _Stream] = {}  # accepted WebSockets, for their timers
        self._shutdown = False
        self._events: list[Event] = []  # for next_events (pushed requests)
        self._out = bytearray()
        self._requests = 0
        self._goaway_last: int | None = None  # set once we sent GOAWAY
        self._peer_goaway = False
        self._closing = False  # ConnectionClosed decided
        self._close_reported = False
        self._idle_since: float | None = now
        self._last_input = now
        self._ping_sent: float | None = None
        self._flood_window = now
        self._flood_count = 0
        if upgrade is not None:
            self._start_upgrade(upgrade)
        else:
            conn.initiate_connection()
        window_delta = settings.connection_window_size - 65535
        if window_delta > 0 and not self._closing:
            conn.increment_flow_control_window(window_delta)

    # ------------------------------------------------------------ contract

    @property
    def wants_read(self) -> bool:
        if self._events or self._closing:
            return False
        # (_close_due(), inlined for the usual case: no GOAWAY either way)
        return (self._goaway_last is None and not self._peer_goaway) or not self._close_due()

    @property
    def idle(self) -> bool:
        return not self._streams

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self._closing:
            return []
        if not data:
            return self._close_all("the client closed the connection")
        self._last_input = now
        self._ping_sent = None
        try:
            h2_events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 queued GOAWAY with the error's code.
            return self._close_all(f"HTTP/2 protocol error: {exc}")
        except Exception as exc:  # h2 on a frame it did not expect
            return self._fail(INTERNAL_ERROR, f"HTTP/2 frame handling failed: {exc!r}")
        if now - self._flood_window >= 1.0:
            self._flood_window = now
            self._flood_count = 0
        conn = self._conn
        if conn.dropped_frames:
            self._flood_count += conn.dropped_frames
            conn.dropped_frames = 0
        events: list[Event] = []
        for h2_event in h2_events:
            self._dispatch(h2_event, events, now)
        if self._flood_count > self.settings.max_control_frames and not self._close_reported:
            events.extend(self._fail(ENHANCE_YOUR_CALM, "too many HTTP/2 control frames"))
        return events

    def next_events(self, now: float) -> list[Event]:
        events = self._events
        if events:
            self._events = []
            return events
        if self._close_due():
            self._closing = True
            return self._close_report("done after GOAWAY")
        return []

    def data_to_send(self) -> bytes:
        if self._sending:
            self._pump()
        data = self._conn.data_to_send()
        if self._out:
            data = bytes(self._out) + data
            self._out.clear()
        return data

    def data_parts(self) -> list[bytes | memoryview]:
        """``data_to_send`` unjoined: the frames as buffers, for a writer
        that gathers them in one system call (a streamed body is then
        copied once, by the kernel, instead of twice)."""
        if self._sending:
            self._pump()
        parts = self._conn.take_parts()
        if self._out:
            parts.insert(0, bytes(self._out))
            self._out.clear()
        return parts

    def writable(self, stream_id: int) -> bool:
        """``False`` while ``stream_id`` has data the peer's windows hold back."""
        stream = self._sending.get(stream_id)
        if stream is None or not stream.pending:
            return True
        stream.waiting = True
        return False

    def next_deadline(self, now: float) -> float | None:
        deadline: float | None = None
        for stream in self._websockets.values():
            assert stream.ws is not None
            due = stream.ws.next_deadline(now)
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        timeout = self.settings.keep_alive_timeout
        if not self._streams and timeout is not None:
            if self._idle_since is None:
                self._idle_since = now
            deadline = self._idle_since + timeout
        interval = self.settings.ping_interval
        if interval is not None:
            due = (self._ping_sent if self._ping_sent is not None else self._last_input) + interval
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    def handle_timeout(self, now: float) -> list[Event]:
        if self._closing:
            return []
        events: list[Event] = []
        for stream_id, stream in list(self._websockets.items()):
            assert stream.ws is not None
            events += stream.ws.handle_timeout(now)
            self._ws_out(stream_id, stream)
        return events + self._handle_timeout(now)

    def _handle_timeout(self, now: float) -> list[Event]:
        timeout = self.settings.keep_alive_timeout
        if (
            not self._streams
            and timeout is not None
            and self._idle_since is not None
            and now >= self._idle_since + timeout
        ):
            self._send_goaway(NO_ERROR)
            self._closing = True
            return self._close_report("idle timeout")
        interval = self.settings.ping_interval
        if interval is not None:
            if self._ping_sent is not None:
                if now >= self._ping_sent + interval:
                    return self._fail(NO_ERROR, "PING not answered")
            elif now >= self._last_input + interval:
                self._ping_sent = now
                self._conn.ping(b"tricorn\x00")
        return []

    def begin_shutdown(self) -> list[Event]:
        self._shutdown = True
        events: list[Event] = []
        for stream_id, stream in list(self._websockets.items()):
            assert stream.ws is not None
            events += stream.ws.begin_shutdown()  # Close 1001
            self._ws_out(stream_id, stream)
        if self._goaway_last is None and not self._closing:
            self._send_goaway(NO_ERROR)
        if events:
            return events
        if self._close_due():
            self._closing = True
            return self._close_report("shutdown")
        return []

    def file_framing(self, stream_id: int, length: int) -> tuple[bytes, bytes] | None:
        return None  # every byte is framed

    # ------------------------------------------------------------ outbound

    def send(self, event: Event) -> None:
        stream_id: int = getattr(event, "stream_id", 0)
        stream = self._streams.get(stream_id)
        if stream is None or self._closing:
            return  # the stream was reset, or the connection is over
        kind = type(event)
        if kind is Data:
            assert isinstance(event, Data)
            if event.data and not stream.no_body and not stream.ended_out:
                stream.pending.append(event.data)
                self._sending[event.stream_id] = stream
        elif kind is Response:
            assert isinstance(event, Response)
            queue_response(stream, event)
            self._sending[stream_id] = stream
        elif kind is EndData:
            stream.want_end = True
            self._sending[stream_id] = stream
        elif kind is Trailers:
            assert isinstance(event, Trailers)
            stream.trailers = trailer_fields(event.headers)
            stream.want_end = True
            self._sending[event.stream_id] = stream
        elif kind is BodyConsumed:
            assert isinstance(event, BodyConsumed)
            if stream.ws is not None:
                if not event.amount:  # the app saw the close: a held Close goes out
                    stream.ws.release()
                    self._ws_out(stream_id, stream)
                    return
                stream.ws_queued -= 1
                self._ws_credit(stream_id, stream)
            else:
                self._credit(event.stream_id, stream, event.amount)
        elif kind is WebSocketMessage or kind is WebSocketClose:
            if stream.ws is not None:
                stream.ws.send(event)
                self._ws_out(stream_id, stream)
        elif kind is WebSocketAccept:
            assert isinstance(event, WebSocketAccept)
            self._accept_websocket(stream_id, stream, event)
        elif kind is InformationalResponse:
            assert isinstance(event, InformationalResponse)
            if stream.head is None and not stream.ended_out:
                head = response_head(event.status, event.headers)
                self._guard(event.stream_id, lambda: self._conn.send_headers(event.stream_id, head))
        elif kind is PushPromise:
            assert isinstance(event, PushPromise)
            self._push(event, stream)
        elif kind is ResetStream:
            assert isinstance(event, ResetStream)
            self._reset(event.stream_id, event.error_code)
        elif kind is ReadyForBody:
            pass  # no 100-continue in HTTP/2: the client sends when it likes

    def _pump(self) -> None:
        """Frame queued output as far as the peer's windows allow."""
        sending = self._sending
        order = [*sending.items()]
        if len(order) > 1:
            order.sort(key=_priority_key)
        progress = True
        while progress:
            progress = False
            for stream_id, stream in order:
                if stream_id in self._sending:
                    try:
                        progress |= self._pump_stream(stream_id, stream)
                    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                        stream.ended_out = True
                        self._forget(stream_id, stream)

    def _pump_stream(self, stream_id: int, stream: _Stream) -> bool:
        """Send what ``stream`` may send now; ``True`` if it sent a frame
        and may send more (an incremental stream yields after one frame)."""
        conn = self._conn
        sent = False
        if stream.head is not None:
            head, stream.head = stream.head, None
            end = stream.want_end and not stream.pending and stream.trailers is None
            block = _ENCODER.encode(head)
            if len(block) <= conn.max_outbound_frame_size:
                conn.send_response_headers(stream_id, block, end)
            else:  # CONTINUATION frames: h2 splits the block
                conn.send_headers(stream_id, head, end)
            if end:
                self._finish_out(stream_id, stream)
                return False
            sent = True
        pending = stream.pending
        while pending:
            window = conn.local_flow_control_window(stream_id)
            if window <= 0:
                return sent
            if stream.incremental:
                window = min(window, conn.max_outbound_frame_size)  # a frame per turn
            chunk = pending[0]
            offset = stream.offset
            size = len(chunk) - offset
            if size > window:
                stream.offset = offset + window
                size = window
            else:
                pending.popleft()
                stream.offset = 0
            end = not pending and stream.want_end and stream.trailers is None
            conn.frame_data(stream_id, chunk, offset, size, end)
            if end:
                self._finish_out(stream_id, stream)
                return False
            if stream.incremental and pending:
                return True  # round-robin: one frame per turn
        if stream.want_end:
            if stream.trailers is not None:
                conn.send_headers(stream_id, stream.trailers, True)
            else:
                conn.frame_data(stream_id, b"", 0, 0, True)
            self._finish_out(stream_id, stream)
            return False
        del self._sending[stream_id]
        if stream.waiting:
            stream.waiting = False
            self._events.append(Writable(stream_id))
        if stream.ws is not None and stream.credit:
            self._ws_credit(stream_id, stream)  # its backlog went out
        return False

    def _finish_out(self, stream_id: int, stream: _Stream) -> None:
        """The response is complete on the wire."""
        stream.ended_out = True
        self._sending.pop(stream_id, None)
        if not stream.ended_in:
            # RFC 9113 §8.1: a complete response may end the request early.
            self._guard(stream_id, lambda: self._conn.reset_stream(stream_id, NO_ERROR))
        self._forget(stream_id, stream)

    def _forget(self, stream_id: int, stream: _Stream) -> None:
        """Drop the stream; credit what the application never read."""
        if self._streams.pop(stream_id, None) is None:
            return
        self._sending.pop(stream_id, None)
        self._websockets.pop(stream_id, None)
        if stream.credit:
            # The stream is closed for h2: this credits the connection only.
            self._conn.acknowledge_received_data(stream.credit, stream_id)
            stream.credit = 0
        self._conn.forget_stream(stream_id)
        if stream.waiting:
            stream.waiting = False
            self._events.append(Writable(stream_id))
        if not self._streams:
            self._idle_since = None  # stamped by next_deadline

    def _reset(self, stream_id: int, code: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.ended_out = True
        self._guard(stream_id, lambda: self._conn.reset_stream(stream_id, code))
        self._forget(stream_id, stream)

    def _credit(self, stream_id: int, stream: _Stream, amount: int) -> None:
        amount = min(amount, stream.credit)
        if amount > 0:
            stream.credit -= amount
            self._guard(stream_id, lambda: self._conn.acknowledge_received_data(amount, stream_id))

    def _push(self, event: PushPromise, parent: _Stream) -> None:
        """PUSH_PROMISE, and the pushed request for the core; quietly nothing
        when the client refuses pushes or the parent cannot push."""
        conn = self._conn
        if (
            not parent.pushable
            or parent.ended_out
            or self._goaway_last is not None
            or self._peer_goaway
            or not conn.remote_settings.enable_push
            # RFC 9113 §5.1.2, §8.4: the client's MAX_CONCURRENT_STREAMS bounds
            # the pushed responses in flight (counting reserved ones too).
            or sum(1 for sid in self._streams if not sid % 2)
            >= conn.remote_settings.max_concurrent_streams
            # Our own limit holds for all streams: the core runs no more
            # calls than that and would refuse the pushed request anyway.
            or len(self._streams) >= self.settings.max_concurrent_streams
        ):
            return
        authority = parent.authority
        fields = push_fields(event.path, event.headers, parent.scheme, authority)
        if fields is None:
            return
        promise, extra = fields
        try:
            promised = conn.get_next_available_stream_id()
            conn.push_stream(event.stream_id, promised, promise)
        except (h2.exceptions.H2Error, ValueError):
            return
        stream = _Stream(parent.scheme, authority, head_request=False)
        stream.pushable = False
        stream.ended_in = True
        self._streams[promised] = stream
        self._events.append(
            Request(
                promised, b"GET", event.path, extra, "2", scheme=parent.scheme, authority=authority
            )
        )
        self._events.append(EndBody(promised))

    def _guard(self, stream_id: int, action: Any) -> bool:
        """Run an h2 call that fails only if the peer closed the stream
        meanwhile; ``False`` then (the stream is forgotten)."""
        try:
            action()
            return True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            stream = self._streams.get(stream_id)
            if stream is not None:
                stream.ended_out = True
                self._forget(stream_id, stream)
            return False

    # ------------------------------------------------------------ inbound

    def _dispatch(self, event: Any, events: list[Event], now: float) -> None:
        if self._close_reported:
            return  # a connection error earlier in this batch
        kind = type(event)
        if kind is _NewRequest:
            assert isinstance(event, _NewRequest)
            self._on_request(event.stream_id, event.headers, event.end_stream, events)
        elif kind is h2.events.RequestReceived:
            assert isinstance(event, h2.events.RequestReceived)
            ended = event.stream_ended is not None
            self._on_request(event.stream_id, event.headers or [], ended, events)
        elif kind is h2.events.DataReceived:
            assert isinstance(event, h2.events.DataReceived)
            self._on_data(event, events)
        elif kind is h2.events.StreamEnded:
            assert isinstance(event, h2.events.StreamEnded)
            self._on_end(event.stream_id, events)
        elif kind is h2.events.WindowUpdated or kind is h2.events.RemoteSettingsChanged:
            if kind is h2.events.RemoteSettingsChanged:
                self._flood_count += 1
            self._pump()
        elif kind is h2.events.StreamReset:
            assert isinstance(event, h2.events.StreamReset)
            self._flood_count += 1
            stream = self._streams.get(event.stream_id)
            # Not remote_reset: h2 reset the stream for a peer's stream error
            # (a window overflow, a frame on a half-closed stream). Either way
            # the stream is over and the application is told.
            if stream is not None:
                stream.ended_out = True
                self._forget(event.stream_id, stream)
                events.append(StreamClosed(event.stream_id, event.error_code))
        elif kind is h2.events.TrailersReceived:
            assert isinstance(event, h2.events.TrailersReceived)
            self._on_trailers(event, events)
        elif kind is h2.events.ConnectionTerminated:
            self._peer_goaway = True
            if self._goaway_last is None:
                self._goaway_last = self._conn.highest_inbound_stream_id
        elif kind is h2.events.UnknownFrameReceived:
            assert isinstance(event, h2.events.UnknownFrameReceived)
            self._flood_count += 1
            frame = event.frame
            if isinstance(frame, ExtensionFrame) and frame.type == _PRIORITY_UPDATE:
                self._on_priority_update(frame.body)
        elif kind in _COUNTED:
            self._flood_count += 1

    def _on_request(
        self, stream_id: int, raw: list[tuple[bytes, bytes]], ended: bool, events: list[Event]
    ) -> None:
        self._idle_since = None
        if self._goaway_last is not None and stream_id > self._goaway_last:
            self._refuse(stream_id, REFUSED_STREAM)
            return
        if len(self._streams) >= self.settings.max_concurrent_streams:
            self._refuse(stream_id, REFUSED_STREAM)
            return
        parsed = parse_request(raw)
        if isinstance(parsed, str):
            self._refuse(stream_id, PROTOCOL_ERROR)
            return
        method, scheme, authority, path, headers, length, urgency, incremental, te, protocol = (
            parsed
        )
        stream = _Stream(scheme, authority, method == b"HEAD")
        stream.expected_length = length
        stream.urgency = urgency
        stream.incremental = incremental
        self._streams[stream_id] = stream
        if method == b"CONNECT" and not self._connect(stream_id, stream, protocol, headers):
            return
        self._requests += 1
        events.append(
            Request(
                stream_id,
                method,
                path,
                headers,
                "2",
                scheme=scheme,
                authority=authority,
                trailers_accepted=te,
                protocol="websocket" if stream.ws_early is not None else None,
            )
        )
        if self._requests >= self.settings.keep_alive_max_requests and self._goaway_last is None:
            self._send_goaway(NO_ERROR)
        if ended:
            self._on_end(stream_id, events)

    def _on_data(self, event: h2.events.DataReceived, events: list[Event]) -> None:
        stream_id = event.stream_id
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended_out:
            # Reset or answered already: credit the connection at once.
            if flow:
                self._conn.acknowledge_received_data(flow, stream_id)
            return
        padding = flow - len(data)
        if padding:
            self._guard(stream_id, lambda: self._conn.acknowledge_received_data(padding, stream_id))
        if not data:
            if event.stream_ended is None:
                self._flood_count += 1
            return
        if stream.ws_early is not None:  # a WebSocket's frames
            stream.credit += len(data)
            if stream.ws is None:
                stream.ws_early.append(data)  # before the accept: held (uncredited)
            else:
                self._ws_receive(stream_id, stream, data, events)
            return
        stream.body_length += len(data)
        if stream.expected_length is not None and stream.body_length > stream.expected_length:
            self._malformed(stream_id, stream, events)
            return
        stream.credit += len(data)
        events.append(Body(stream_id, data))

    def _on_end(self, stream_id: int, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended_in:
            return
        stream.ended_in = True
        if stream.ws_early is not None:  # a WebSocket: its end without Close is 1006
            if stream.ws is not None:
                events += stream.ws.receive_eof()
                self._ws_out(stream_id, stream)
            return
        if stream.expected_length is not None and stream.body_length != stream.expected_length:
            self._malformed(stream_id, stream, events)
            return
        if not stream.ended_out:
            events.append(EndBody(stream_id))

    def _on_trailers(self, event: h2.events.TrailersReceived, events: list[Event]) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        headers: Headers = []
        for name, value in event.headers or []:
            if name[:1] == b":" or NAME.fullmatch(name) is None or VALUE_BAD.search(value):
                self._malformed(event.stream_id, stream, events)
                return
            headers.append((name, value))
        events.append(Trailers(event.stream_id, headers))

    def _on_priority_update(self, body: bytes) -> None:
        if len(body) < 4:
            return
        stream_id = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.urgency, stream.incremental = parse_priority(
                body[4:], stream.urgency, stream.incremental
            )

    def _malformed(self, stream_id: int, stream: _Stream, events: list[Event]) -> None:
        """A stream error: RST_STREAM(PROTOCOL_ERROR); the app is told."""
        self._flood_count += 1
        stream.ended_out = True
        self._guard(stream_id, lambda: self._conn.reset_stream(stream_id, PROTOCOL_ERROR))
        self._forget(stream_id, stream)
        events.append(StreamClosed(stream_id, PROTOCOL_ERROR))

    def _refuse(self, stream_id: int, code: int) -> None:
        self._flood_count += 1
        try:
            self._conn.reset_stream(stream_id, code)
        except h2.exceptions.H2Error:
            pass

    # ------------------------------------------------------------ WebSocket

    def _ws_settings(self) -> WSSettings:
        return self.settings.websocket

    def _ws_clock(self) -> float:
        return self._last_input

    def _ws_credit(self, stream_id: int, stream: _Stream) -> None:
        """Credit a WebSocket's DATA while the application keeps up and the
        peer reads what we send (answers to its pings included)."""
        if not stream.credit or stream.ws_queued >= self.settings.max_queued_messages:
            return
        if sum(len(chunk) for chunk in stream.pending) - stream.offset > _WS_BACKLOG:
            return
        self._credit(stream_id, stream, stream.credit)

    # ------------------------------------------------------------ closing

    def _close_due(self) -> bool:
        return (
            not self._close_reported
            and (self._goaway_last is not None or self._peer_goaway)
            and not self._streams
        )

    def _send_goaway(self, code: int) -> None:
        """GOAWAY as a raw frame: h2 keeps processing the open streams."""
        self._goaway_last = self._conn.highest_inbound_stream_id
        frame = GoAwayFrame(0, last_stream_id=self._goaway_last, error_code=code)
        self._out += self._conn.data_to_send()
        self._out += frame.serialize()

    def _fail(self, code: int, reason: str) -> list[Event]:
        """A connection error: GOAWAY(code) and close."""
        try:
            self._conn.close_connection(code)
        except h2.exceptions.H2Error:
            pass
        return self._close_all(reason)

    def _close_all(self, reason: str) -> list[Event]:
        self._closing = True
        events: list[Event] = [StreamClosed(stream_id) for stream_id in self._streams]
        self._streams.clear()
        self._sending.clear()
        self._events.clear()
        return events + self._close_report(reason)

    def _close_report(self, reason: str) -> list[Event]:
        if self._close_reported:
            return []
        self._close_reported = True
        return [ConnectionClosed(reason)]

    # ------------------------------------------------------------ upgrade

    def _start_upgrade(self, upgrade: ProtocolSwitch) -> None:
        """``Upgrade: h2c``: stream 1 carries the HTTP/1.1 request."""
        settings = base64.urlsafe_b64encode(upgrade.settings or b"")
        try:
            self._conn.initiate_upgrade_connection(settings)
        except h2.exceptions.ProtocolError:  # HTTP2-Settings with invalid values
            self._events = self._fail(PROTOCOL_ERROR, "invalid HTTP2-Settings")
            return
        request = upgrade.request
        if request is None:
            return
        stream = _Stream("http", request.authority, request.method == b"HEAD")
        stream.ended_in = True
        self._streams[1] = stream
        self._requests = 1
        self._idle_since = None
        self._events.append(request)
        if upgrade.body:
            self._events.append(Body(1, upgrade.body))
        self._events.append(EndBody(1))


_COUNTED = (
    h2.events.PingReceived,
    h2.events.PriorityUpdated,
    h2.events.SettingsAcknowledged,
    h2.events.PingAckReceived,
)


def _priority_key(item: tuple[int, _Stream]) -> tuple[int, bool, int]:
    stream_id, stream = item
    return (stream.urgency, stream.incremental, stream_id)
