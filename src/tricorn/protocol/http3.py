"""The HTTP/3 adapter: aioquic's QUIC and HTTP/3 machinery behind the adapter
contract of :mod:`tricorn.protocol.base`, one adapter per QUIC connection.

Theory of operation
-------------------
aioquic does QUIC (packets, TLS 1.3, loss recovery, congestion control) and
HTTP/3 framing and QPACK; this module decides what aioquic leaves to its
user, and covers the places where its defaults do not suit a server:

* **Datagrams, not bytes.** The transport is a UDP endpoint shared by many
  connections (``tricorn.server.quic``), so input comes as
  :meth:`H3Adapter.receive_datagram` (payload and sender address) and
  output as :meth:`H3Adapter.datagrams_to_send`; ``receive_data`` and
  ``data_to_send`` of the byte-stream contract do nothing here. The
  connection IDs aioquic issues and retires are reported through
  :meth:`H3Adapter.connection_ids`, so the endpoint routes by them.
* **Time** comes in as ``now`` on every call; aioquic's one timer (loss
  detection, pacing, idle, draining) is the adapter's ``next_deadline``.
* **Streams that are over stay over.** Once a request stream is answered
  and closed, reset, or refused, what the peer still sends on it is dropped
  before it reaches the HTTP/3 layer (where it would look like a DATA frame
  without HEADERS: a connection error). A malformed request is a *stream*
  error (H3_MESSAGE_ERROR, RFC 9114 §4.1.2), not a connection error as
  aioquic makes it.
* **Inbound flow control** is credited as the application consumes the
  body (``BodyConsumed``), not as it arrives: aioquic doubles a stream's
  window whenever half of it is used, which lets a client push any amount
  into a server whose application does not read. Here a stream's limit is
  what the application has consumed plus ``stream_window``, and the
  connection's limit what all have consumed plus ``connection_window``,
  raised once the peer has used half of its credit (one MAX_STREAM_DATA
  or MAX_DATA per half window, not one per packet).
* **Outbound**: the response head, body and end wait in the adapter until
  the core asks for datagrams, so a small response becomes one HEADERS
  frame with FIN, and trailers end the stream without an empty DATA frame.
  Each stream's frames go to aioquic in one write; a pending ACK rides in
  the first packet instead of leaving alone when its delay is up. The
  QPACK encoder keeps to the static table: a head that refers to the
  dynamic table costs the client a decoder-stream acknowledgement (a
  packet, and an ACK of ours) for nearly every response.
  :meth:`H3Adapter.writable` is ``False`` while a stream holds more than
  ``send_buffer`` bytes not yet acknowledged by the peer; the core makes
  the application's ``send()`` wait for the ``Writable`` that follows.
* **Shutdown**: GOAWAY on the control stream, new requests refused with
  H3_REQUEST_REJECTED, and CONNECTION_CLOSE(H3_NO_ERROR) once the streams
  in flight are done.
* **Path MTU** (DPLPMTUD, RFC 8899 and RFC 9000 §14.3): a connection starts
  with 1200-byte datagrams, the size every QUIC path must carry. Once it
  has a bulk transfer to make (a flight of several full datagrams), it
  sends one probe, a PING padded to the next size of a short ladder (1452:
  1500-byte Ethernet; 8952: jumbo frames; 16384; capped by the setting and
  by the peer's ``max_udp_payload_size``). A probe the peer acknowledges
  raises the datagram size; a lost one ends the search. Probes are not in
  flight for congestion control, so their loss is no congestion signal.
  The sockets set the DF bit, so a probe too large for the path is dropped
  rather than fragmented. Should the larger datagrams stop getting through
  later (three probe timeouts in a row), the connection falls back to 1200
  bytes. On loopback this makes bulk transfers several times faster:
  aioquic's cost is per packet.
* **WebSockets** (RFC 9220): an extended CONNECT with ``:protocol =
  websocket`` becomes a WebSocket once accepted (``200``); its DATA carry
  the frames, through the same :class:`~tricorn.protocol.websocket.
  WebSocketFramer` as HTTP/1.1 and HTTP/2.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aioquic._buffer import Buffer
from aioquic.buffer import encode_uint_var
from aioquic.h3 import connection as h3_connection
from aioquic.h3.connection import (
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    MessageError,
    QpackDecompressionFailed,
    encode_frame,
)
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import NoAvailablePushIDError
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import (
    CONNECTION_LIMIT_FRAME_CAPACITY,
    MAX_STREAM_DATA_FRAME_CAPACITY,
    QuicConnection,
    QuicConnectionState,
)
from aioquic.quic.packet import QuicFrameType, QuicPacketType, pull_quic_transport_parameters
from aioquic.quic.packet_builder import QuicDeliveryState, QuicPacketBuilder
from aioquic.tls import Epoch

from ._fields import (
    NAME,
    VALUE_BAD,
    parse_request,
    push_fields,
    queue_response,
    response_head,
    trailer_fields,
)
from ._stream_ws import StreamWebSockets
from ._ws_settings import WSSettings
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

if TYPE_CHECKING:  # (the framing and wsproto: imported by the first WebSocket)
    from .websocket import WebSocketFramer

__all__ = [
    "H3_INTERNAL_ERROR",
    "H3_MESSAGE_ERROR",
    "H3_NO_ERROR",
    "H3_REQUEST_CANCELLED",
    "H3_REQUEST_REJECTED",
    "H3Adapter",
    "H3Settings",
]

# RFC 9114 §8.1
H3_NO_ERROR = 0x100
H3_GENERAL_PROTOCOL_ERROR = 0x101
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_MESSAGE_ERROR = 0x10E
H3_EXCESSIVE_LOAD = 0x107

# The core speaks HTTP/2's stream error codes (ResetStream); their HTTP/3 twins.
_FROM_H2 = {
    0x0: H3_NO_ERROR,
    0x1: H3_MESSAGE_ERROR,
    0x2: H3_INTERNAL_ERROR,
    0x7: H3_REQUEST_REJECTED,
    0x8: H3_REQUEST_CANCELLED,
}
_PRUNE_OVER_AT = 64  # finished stream ids kept before asking aioquic which it forgot
_WS_BACKLOG = 65536  # a WebSocket's unsent output past which its input is not credited
_END_STATES = frozenset(
    (QuicConnectionState.CLOSING, QuicConnectionState.DRAINING, QuicConnectionState.TERMINATED)
)


@dataclass(frozen=True, slots=True)
class H3Settings:
    """What the HTTP/3 adapter needs from the configuration.

    :param max_concurrent_streams: request streams a client may open at once
        (QUIC's initial MAX_STREAMS for bidirectional streams).
    :param stream_window: request body bytes a client may send beyond what
        the application consumed, per stream (also the initial
        MAX_STREAM_DATA).
    :param connection_window: the same for the whole connection (MAX_DATA).
    :param send_buffer: response bytes per stream not yet acknowledged by the
        peer before the application's ``send()`` waits.
    :param max_header_list_size: the decoded size of a request's header
        section (RFC 9114 §4.2.2: name + value + 32 per field); past it the
        request is answered 431.
    :param keep_alive_max_requests: requests per connection; then GOAWAY.
    :param max_queued_messages: WebSocket messages waiting for the
        application before the stream's DATA is no longer credited.
    :param max_aborted_streams: streams per second the peer may reset, or
        have refused or reset as malformed, before the connection is closed
        with H3_EXCESSIVE_LOAD (rapid reset).
    :param websocket: the WebSocket framing's limits.
    """

    max_concurrent_streams: int = 100
    max_aborted_streams: int = 1000
    stream_window: int = 1024 * 1024
    connection_window: int = 4 * 1024 * 1024
    send_buffer: int = 256 * 1024
    max_header_list_size: int = 65536
    keep_alive_max_requests: int = 1000
    max_queued_messages: int = 10
    websocket: WSSettings = WSSettings()  # noqa: RUF009 - frozen: one shared default


# QPACK's decoding error, from aioquic's own pylsqpack (the layer names aioquic only).
_DECOMPRESSION_FAILED: type[Exception] = h3_connection.pylsqpack.DecompressionFailed  # type: ignore[attr-defined]


def _ignore(*args: Any, **kwargs: Any) -> None:
    pass


_DATA = encode_uint_var(FrameType.DATA)  # a DATA frame's type, ahead of its length
# Enum members used per request, as constants: on Python 3.11 every
# EnumClass.MEMBER goes through EnumType.__getattr__ (about 900 instructions).
_HEADERS = FrameType.HEADERS
_HEADERS_INITIAL = HeadersState.INITIAL
_AFTER_HEADERS = HeadersState.AFTER_HEADERS

BASE_DATAGRAM_SIZE = 1200
"""The datagram size every QUIC path carries (RFC 9000 §14): where each
connection starts, and where it falls back to."""
PROBE_SIZES = (1452, 8952, 16384)
"""The path MTU probes, smallest first: a 1500-byte Ethernet path (IPv6 and
UDP headers taken off), a 9000-byte jumbo-frame path, then 16 KiB."""
_PROBE_AFTER = 4  # full datagrams in one flight before a connection probes
_BLACK_HOLE_PTOS = 3  # probe timeouts in a row: larger datagrams are lost


class _Quic(QuicConnection):
    """aioquic's connection with consumption-based receive credit (see the
    module docstring): its own rule doubles a window whenever half of it is
    used; here the adapter names the limit. Connection IDs come from
    ``new_cid`` (several workers: the first byte names the worker). Path
    MTU discovery up to ``mtu_ceiling``."""

    adapter: H3Adapter
    new_cid: Callable[[], bytes] | None = None
    mtu_ceiling = BASE_DATAGRAM_SIZE  # (the peer's max_udp_payload_size caps it too)
    _probes: list[int] | None = None  # sizes still to try; None: not yet set up
    _probing = False  # a probe is in flight

    # ------------------------------------------------------------ path MTU

    def _parse_transport_parameters(self, data: bytes, from_session_ticket: bool = False) -> None:
        super()._parse_transport_parameters(data, from_session_ticket)
        params = pull_quic_transport_parameters(Buffer(data=data))
        if params.max_udp_payload_size is not None:
            self.mtu_ceiling = min(self.mtu_ceiling, params.max_udp_payload_size)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        datagrams = super().datagrams_to_send(now)
        if (
            not self._probing
            and self._probes != []
            and len(datagrams) >= _PROBE_AFTER
            and self._handshake_confirmed
            and self._state == QuicConnectionState.CONNECTED
        ):
            if self._probes is None:
                sizes = {*PROBE_SIZES, self.mtu_ceiling}
                self._probes = sorted(
                    size for size in sizes if self._max_datagram_size < size <= self.mtu_ceiling
                )
            if self._probes:
                datagrams.append(self._probe(self._probes[0], now))
        return datagrams

    def _probe(self, size: int, now: float) -> tuple[bytes, Any]:
        """A 1-RTT packet of exactly ``size`` bytes: PING and PADDING."""
        assert self._version is not None  # (connected)
        builder = QuicPacketBuilder(
            host_cid=self.host_cid,
            is_client=self._is_client,
            max_datagram_size=size,
            packet_number=self._packet_number,
            peer_cid=self._peer_cid.cid,
            peer_token=self._peer_token,
            quic_logger=self._quic_logger,
            spin_bit=self._spin_bit,
            version=self._version,
        )
        builder.max_flight_bytes = size
        builder.start_packet(QuicPacketType.ONE_RTT, self._cryptos[Epoch.ONE_RTT])
        builder.start_frame(QuicFrameType.PING, handler=self._probed, handler_args=(size,))
        builder._datagram_needs_padding = True  # pad the packet to the datagram size
        (datagram,), (packet,) = builder.flush()
        self._packet_number = builder.packet_number
        packet.sent_time = now
        packet.in_flight = False  # its loss says nothing about congestion (RFC 9000 §14.4)
        self._loss.on_packet_sent(packet=packet, space=self._spaces[Epoch.ONE_RTT])
        self._probing = True
        return datagram, self._network_paths[0].addr

    def _probed(self, state: QuicDeliveryState, size: int) -> None:
        self._probing = False
        if self._probes is None or not self._probes or self._probes[0] != size:
            return
        if state == QuicDeliveryState.ACKED:
            self._probes.pop(0)
            self._use_datagram_size(size)
        else:
            self._probes = []  # the path carries no more: the search is over

    def _use_datagram_size(self, size: int) -> None:
        """Build datagrams of ``size`` bytes from now on (the congestion
        window stays in bytes: RFC 8899 §3)."""
        self._max_datagram_size = size
        loss = self._loss
        loss._pacer._max_datagram_size = size
        cc: Any = loss._cc
        cc._max_datagram_size = size
        if hasattr(cc, "additive_increase_factor"):  # cubic
            cc.additive_increase_factor = size

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        if (
            self._max_datagram_size > BASE_DATAGRAM_SIZE
            and self._loss._pto_count >= _BLACK_HOLE_PTOS
        ):
            # Nothing gets through any more: a route with a smaller MTU.
            self._use_datagram_size(BASE_DATAGRAM_SIZE)
            self._probes = []

    # ------------------------------------------------------------ identities

    def use_cid_factory(self, new_cid: Callable[[], bytes]) -> None:
        """Issue every connection ID with ``new_cid`` (before any packet)."""
        self.new_cid = new_cid
        first = self._host_cids[0]
        first.cid = self.host_cid = self._local_initial_source_connection_id = new_cid()

    def _replenish_connection_ids(self) -> None:
        issued = len(self._host_cids)
        super()._replenish_connection_ids()
        if self.new_cid is not None:
            for connection_id in self._host_cids[issued:]:
                connection_id.cid = self.new_cid()

    # ------------------------------------------------------------ receive credit
    # Both run for every packet built (the stream one for every stream):
    # they only write what the adapter decided (H3Adapter._credit_stream,
    # _credit_connection), never aioquic's rule, which doubles a limit
    # whenever half of it is used.

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        limit = stream.max_stream_data_local
        if stream.stream_id & 2:  # unidirectional: ours only send (no limit)
            if not limit:
                return
            # The peer's control and QPACK streams: aioquic's rule (inlined).
            if stream.receiver.highest_offset * 2 > limit:
                limit = stream.max_stream_data_local = limit * 2
        if stream.max_stream_data_local_sent != limit:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(limit)
            stream.max_stream_data_local_sent = limit

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        max_data = self._local_max_data
        for limit in (max_data, self._local_max_streams_bidi, self._local_max_streams_uni):
            if limit.value == limit.sent:
                continue
            if limit is not max_data and limit.sent - limit.used >= limit.value - limit.sent:
                continue  # aioquic's batching of MAX_STREAMS: the peer has plenty left
            buf = builder.start_frame(
                limit.frame_type,
                capacity=CONNECTION_LIMIT_FRAME_CAPACITY,
                handler=self._on_connection_limit_delivery,
                handler_args=(limit,),
            )
            buf.push_uint_var(limit.value)
            limit.sent = limit.value


class _H3(H3Connection):
    """aioquic's HTTP/3 connection; a malformed request is a stream error
    (RFC 9114 §4.1.2) instead of closing the connection."""

    malformed: list[int]

    def _handle_control_frame(self, frame_type: int, frame_data: bytes) -> None:
        if frame_type != FrameType.SETTINGS:
            super()._handle_control_frame(frame_type, frame_data)
            return
        # Our QPACK encoder keeps to the static table (RFC 9204 allows any
        # dynamic table capacity up to the peer's maximum, 0 included): a
        # response head that refers to the dynamic table must be
        # acknowledged on the client's decoder stream, a packet of its own
        # (and one more ACK of ours) for nearly every response.
        encoder = self._encoder
        self._encoder = _StaticTableOnly(encoder)  # type: ignore[assignment]
        try:
            super()._handle_control_frame(frame_type, frame_data)
        finally:
            self._encoder = encoder

    def _encode_headers(self, stream_id: int, headers: Headers) -> bytes:
        encoder, frame_data = self._encoder.encode(stream_id, headers)
        if encoder:  # (never: the static table only, see above)
            assert self._local_encoder_stream_id is not None
            self._encoder_bytes_sent += len(encoder)
            self._quic.send_stream_data(self._local_encoder_stream_id, encoder)
        frame: bytes = frame_data
        return frame

    def _decode_headers(self, stream_id: int, frame_data: bytes | None) -> Headers:
        # aioquic's, without writing nothing to the decoder stream when the
        # header block needs no acknowledgement.
        try:
            if frame_data is None:
                decoder, headers = self._decoder.resume_header(stream_id)
            else:
                decoder, headers = self._decoder.feed_header(stream_id, frame_data)
        except _DECOMPRESSION_FAILED as exc:
            raise QpackDecompressionFailed() from exc
        if decoder:
            assert self._local_decoder_stream_id is not None
            self._decoder_bytes_sent += len(decoder)
            self._quic.send_stream_data(self._local_decoder_stream_id, decoder)
        result: Headers = headers
        return result

    def _receive_stream_data(self, event: quic_events.StreamDataReceived) -> list[H3Event]:
        # aioquic's, for request streams without its context manager (three
        # calls and a generator per packet); the others take aioquic's path.
        stream_id = event.stream_id
        if stream_id & 3:
            return super()._receive_stream_data(event)
        streams = self._stream
        stream = streams.get(stream_id)
        if stream is None:
            stream = streams[stream_id] = H3Stream(stream_id)
        try:
            return self._receive_request_or_push_data(stream, event.data, event.end_stream)
        finally:
            if stream.is_ended():
                streams.pop(stream_id, None)

    def _handle_request_or_push_frame(
        self, frame_type: int, frame_data: bytes | None, stream: Any, stream_ended: bool
    ) -> list[H3Event]:
        if stream.stream_id in self.malformed:
            return []  # the rest of a packet that carried a malformed request
        try:
            if (
                frame_type == _HEADERS
                and stream.headers_recv_state is _HEADERS_INITIAL
                and self._quic_logger is None
            ):
                return self._request_head(frame_data, stream, stream_ended)
            return super()._handle_request_or_push_frame(
                frame_type, frame_data, stream, stream_ended
            )
        except MessageError:
            return self._stream_error(stream)

    def _request_head(
        self, frame_data: bytes | None, stream: Any, stream_ended: bool
    ) -> list[H3Event]:
        """aioquic's handling of a request's HEADERS frame, but of its
        checks (a loop over every byte of every field in Python) only those
        the adapter's ``parse_request`` does not make: that makes RFC 9114
        §4.2's (field names and values, pseudo-headers, connection-specific
        fields, TE) for every protocol. Here: aioquic's non-empty
        ``:authority``, and the content-length the body is checked against."""
        headers = self._decode_headers(stream.stream_id, frame_data)
        authority: bytes | None = None
        for name, value in headers:
            if name == b":authority":
                authority = value
            elif name == b"content-length":
                if not value.isdigit():
                    raise MessageError("content-length is not a non-negative integer")
                stream.expected_content_length = int(value)
        if not authority:
            raise MessageError("no :authority, or an empty one")
        if stream_ended:
            self._check_content_length(stream)
        stream.headers_recv_state = _AFTER_HEADERS
        return [
            HeadersReceived(
                headers=headers,
                push_id=None,
                stream_id=stream.stream_id,
                stream_ended=stream_ended,
            )
        ]

    def _handle_request_or_push_end(self, stream: Any) -> list[H3Event]:
        if stream.stream_id in self.malformed:
            return []
        try:
            return super()._handle_request_or_push_end(stream)
        except MessageError:  # e.g. content-length short of the body at FIN
            return self._stream_error(stream)

    def _stream_error(self, stream: Any) -> list[H3Event]:
        if self._is_client or stream.push_id is not None:
            raise
        self.malformed.append(stream.stream_id)
        stream.buffer = b""
        return []


class _StaticTableOnly:
    """Stands in for the QPACK encoder while the peer's SETTINGS are applied."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder

    def apply_settings(self, max_table_capacity: int, blocked_streams: int) -> bytes:
        result: bytes = self._encoder.apply_settings(0, 0)
        return result


class _Stream:
    """One request stream (or pushed response) as the adapter sees it."""

    __slots__ = (
        "authority",
        "ended_in",
        "ended_out",
        "head",
        "head_request",
        "held",
        "informational",
        "no_body",
        "pending",
        "pushed",
        "scheme",
        "started",
        "trailers",
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
        self.head: Headers | None = None  # the response head, not yet framed
        self.informational: list[Headers] = []
        self.started = False  # the response head went to aioquic
        self.no_body = False
        self.pending: list[bytes] = []  # body chunks not yet framed
        self.trailers: Headers | None = None
        self.want_end = False
        self.ended_out = False  # our side is complete (or reset)
        self.ended_in = False  # the request side is complete
        self.held = 0  # body bytes the application has not consumed yet
        self.waiting = False  # a send() waits for Writable
        self.pushed = False
        self.ws: WebSocketFramer | None = None
        self.ws_early: list[bytes] | None = None  # a WebSocket request: DATA before accept
        self.ws_headers: Headers = []
        self.ws_queued = 0


@dataclass(slots=True)
class _Peer:
    """What the handshake told us about the client."""

    alpn: str | None = None
    handshake_done: bool = False
    addresses: list[Any] = field(default_factory=list)


class H3Adapter(StreamWebSockets):
    """One HTTP/3 connection (see the module docstring).

    :param settings: the limits.
    :param configuration: aioquic's server configuration (certificate, ALPN,
        idle timeout, datagram size, congestion control).
    :param now: the time the connection starts.
    :param original_destination_connection_id: the client's first DCID.
    :param retry_source_connection_id: the SCID of our Retry, if one was sent.
    :param new_cid: makes the connection IDs we issue (default: random).
    :param max_datagram_size: the largest datagram path MTU discovery may
        reach (it starts at 1200 bytes).
    """

    def __init__(
        self,
        settings: H3Settings,
        configuration: QuicConfiguration,
        now: float,
        *,
        original_destination_connection_id: bytes,
        retry_source_connection_id: bytes | None = None,
        new_cid: Callable[[], bytes] | None = None,
        max_datagram_size: int = BASE_DATAGRAM_SIZE,
    ) -> None:
        self.settings = settings
        quic = _Quic(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        quic.adapter = self
        quic.mtu_ceiling = max_datagram_size
        if not quic._logger.isEnabledFor(logging.DEBUG):
            # aioquic logs each stream's creation and discard at debug level:
            # two calls through a LoggerAdapter per request, for nothing.
            quic._logger.debug = _ignore  # type: ignore[method-assign]
        if new_cid is not None:
            quic.use_cid_factory(new_cid)
        limit = quic._local_max_streams_bidi
        limit.value = limit.sent = settings.max_concurrent_streams
        quic._local_max_data.value = quic._local_max_data.sent = settings.connection_window
        quic._local_max_stream_data_bidi_remote = settings.stream_window
        self._quic = quic
        h3 = _H3(quic)
        h3.malformed = []
        self._h3 = h3
        self.peer = _Peer()
        self._streams: dict[int, _Stream] = {}
        self._sending: dict[int, _Stream] = {}  # streams with output not yet framed
        self._websockets: dict[int, _Stream] = {}
        self._over: set[int] = set()  # request streams done with: input dropped
        self._events: list[Event] = []  # for next_events (pushed requests)
        self._cids: list[tuple[bytes, bool]] = [(quic.host_cid, True)]
        self._held = 0  # body bytes delivered to applications, not consumed
        self._requests = 0
        self._highest_request = -4  # the highest request stream id seen
        self._goaway_sent = False
        self._shutdown = False
        self._closing = False
        self._close_reported = False
        self._now = now
        self._aborted = 0  # streams aborted in the current second (rapid reset)
        self._aborted_since = now
        self._timer: float | None = None  # aioquic's, as last asked
        self._timer_stale = True  # ... and something happened since
        self._app_space: Any = None  # the 1-RTT packet space, once the handshake is done

    # ------------------------------------------------------------ contract

    @property
    def wants_read(self) -> bool:
        return not self._events and not self._closing

    @property
    def idle(self) -> bool:
        return not self._streams

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Byte-stream input does not exist here (see ``receive_datagram``)."""
        return []

    def data_to_send(self) -> bytes:
        """Byte-stream output does not exist here (see ``datagrams_to_send``)."""
        return b""

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> list[Event]:
        """One UDP payload from ``addr``; the events it completes."""
        if self._close_reported:
            return []
        self._now = now
        self._timer_stale = True
        self._quic.receive_datagram(data, addr, now)
        return self._process()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        """The UDP payloads to send now, each with its destination."""
        if self._sending:
            self._pump()
            space = self._app_space
            if space is not None and space.ack_at is not None:
                # A response goes out: the ACK it owes rides along now
                # instead of leaving on its own when its delay is up.
                space.ack_at = now
        self._timer_stale = True
        return self._quic.datagrams_to_send(now)

    def connection_ids(self) -> list[tuple[bytes, bool]]:
        """Connection IDs issued (``True``) or retired (``False``) since the
        last call, for the endpoint's routing table."""
        changes, self._cids = self._cids, []
        return changes

    def next_events(self, now: float) -> list[Event]:
        events = self._events
        if events:
            self._events = []
            return events
        if self._close_due():
            return self._close(H3_NO_ERROR, "done after GOAWAY")
        return []

    def writable(self, stream_id: int) -> bool:
        """``False`` while the stream holds more than ``send_buffer`` bytes
        the peer has not acknowledged."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended_out:
            return True
        if self._unacked(stream_id, stream) <= self.settings.send_buffer:
            return True
        stream.waiting = True
        return False

    def next_deadline(self, now: float) -> float | None:
        # aioquic's timer moves only when datagrams come in or go out or
        # when it fires: asked far more often than that (every wait and
        # every stream's end), it is computed once per change.
        if self._timer_stale:
            self._timer = self._quic.get_timer()
            self._timer_stale = False
        deadline = self._timer
        for stream in self._websockets.values():
            assert stream.ws is not None
            due = stream.ws.next_deadline(now)
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        return deadline

    def handle_timeout(self, now: float) -> list[Event]:
        if self._close_reported:
            return []
        self._now = now
        events: list[Event] = []
        for stream_id, stream in list(self._websockets.items()):
            assert stream.ws is not None
            events += stream.ws.handle_timeout(now)
            self._ws_out(stream_id, stream)
        timer = self._quic.get_timer()
        if timer is not None and now >= timer:
            self._quic.handle_timer(now)
        self._timer_stale = True
        return events + self._process()

    def begin_shutdown(self) -> list[Event]:
        self._shutdown = True
        events: list[Event] = []
        for stream_id, stream in list(self._websockets.items()):
            assert stream.ws is not None
            events += stream.ws.begin_shutdown()  # Close 1001
            self._ws_out(stream_id, stream)
        if self._closing:
            return events
        if not self.peer.handshake_done:
            return events + self._close(H3_NO_ERROR, "shutdown")
        self._send_goaway()
        if self._close_due():
            return events + self._close(H3_NO_ERROR, "shutdown")
        return events

    def file_framing(self, stream_id: int, length: int) -> tuple[bytes, bytes] | None:
        return None  # every byte is framed and encrypted

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
                self._sending[stream_id] = stream
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
            self._sending[stream_id] = stream
        elif kind is BodyConsumed:
            assert isinstance(event, BodyConsumed)
            self._consumed(stream_id, stream, event.amount)
        elif kind is WebSocketMessage or kind is WebSocketClose:
            if stream.ws is not None:
                stream.ws.send(event)
                self._ws_out(stream_id, stream)
        elif kind is WebSocketAccept:
            assert isinstance(event, WebSocketAccept)
            self._accept_websocket(stream_id, stream, event)
        elif kind is InformationalResponse:
            assert isinstance(event, InformationalResponse)
            if stream.head is None and not stream.started and not stream.ended_out:
                stream.informational.append(response_head(event.status, event.headers))
                self._sending[stream_id] = stream
        elif kind is PushPromise:
            assert isinstance(event, PushPromise)
            self._push(event, stream)
        elif kind is ResetStream:
            assert isinstance(event, ResetStream)
            if not stream.ended_out:
                self._reset(stream_id, stream, _FROM_H2.get(event.error_code, H3_INTERNAL_ERROR))

    def _pump(self) -> None:
        """Frame what the streams queued: heads, body, trailers, ends; each
        stream's frames go to aioquic in one write (a small response is one
        STREAM frame with FIN)."""
        sending, self._sending = self._sending, {}
        for stream_id, stream in sending.items():
            if stream.ended_out:
                continue
            for head in stream.informational:
                self._send_informational(stream_id, head)
            stream.informational.clear()
            parts: list[bytes] = []
            if stream.head is not None:
                head, stream.head = stream.head, None
                stream.started = True
                parts.append(self._headers_frame(stream_id, head))
                if stream.no_body:
                    stream.pending.clear()
            elif not stream.started:
                continue  # body before the head: held until it comes
            if stream.pending:
                chunks, stream.pending = stream.pending, []
                for chunk in chunks:
                    parts.append(_DATA + encode_uint_var(len(chunk)))
                    parts.append(chunk)
            end = stream.want_end
            if end and stream.trailers is not None:
                parts.append(self._headers_frame(stream_id, stream.trailers))
            if parts or end:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                self._quic.send_stream_data(stream_id, data, end)
            if end:
                self._finish_out(stream_id, stream)

    def _headers_frame(self, stream_id: int, head: Headers) -> bytes:
        return encode_frame(_HEADERS, self._h3._encode_headers(stream_id, head))

    def _send_informational(self, stream_id: int, head: Headers) -> None:
        """A 1xx head: a HEADERS frame that leaves the stream's state alone."""
        self._quic.send_stream_data(stream_id, self._headers_frame(stream_id, head))

    def _finish_out(self, stream_id: int, stream: _Stream) -> None:
        stream.ended_out = True
        # The frames went to aioquic past its HTTP/3 layer: its stream state
        # learns of the end here (and is dropped once both sides are over).
        h3_streams = self._h3._stream
        h3_stream = h3_streams.get(stream_id)
        if h3_stream is not None:
            h3_stream.sending_ended = True
            if h3_stream.is_ended():
                del h3_streams[stream_id]
        if stream.ended_in or stream.pushed:
            self._forget(stream_id, stream)
        else:
            # Answered before the request ended (RFC 9114 §4.1): the rest of
            # the request is not needed; the client sees no error.
            self._stop_reading(stream_id, H3_NO_ERROR)
            self._forget(stream_id, stream)

    def _forget(self, stream_id: int, stream: _Stream) -> None:
        self._streams.pop(stream_id, None)
        self._websockets.pop(stream_id, None)
        self._sending.pop(stream_id, None)
        if stream.held:
            self._held -= stream.held
            stream.held = 0
            self._credit_connection()
        if not stream.pushed:
            self._mark_over(stream_id)

    def _mark_over(self, stream_id: int) -> None:
        """Drop the stream's later input; the set stays small: once aioquic
        has discarded a stream's state, it drops the stream's frames itself."""
        over = self._over
        over.add(stream_id)
        if len(over) >= _PRUNE_OVER_AT:
            discarded = self._quic._stream_is_discarded
            self._over = {sid for sid in over if not discarded(sid)}

    def _reset(self, stream_id: int, stream: _Stream, code: int) -> None:
        """Abort a stream both ways with ``code``."""
        stream.ended_out = True
        try:
            self._quic.reset_stream(stream_id, code)
        except Exception:  # aioquic: the stream is gone already
            pass
        if not stream.ended_in and not stream.pushed:
            self._stop_reading(stream_id, code)
        self._forget(stream_id, stream)

    def _stop_reading(self, stream_id: int, code: int) -> None:
        try:
            self._quic.stop_stream(stream_id, code)
        except ValueError:  # the stream's state is discarded: nothing to stop
            pass

    def _unacked(self, stream_id: int, stream: _Stream) -> int:
        queued = sum(len(chunk) for chunk in stream.pending)
        quic_stream = self._quic._streams.get(stream_id)
        if quic_stream is None:
            return queued
        sender = quic_stream.sender
        return queued + sender._buffer_stop - sender._buffer_start

    def _push(self, event: PushPromise, parent: _Stream) -> None:
        """PUSH_PROMISE, and the pushed request for the core; quietly nothing
        when the client allows no (more) pushes or the parent cannot push."""
        if (
            parent.pushed
            or parent.started
            or parent.ended_out
            or self._goaway_sent
            or len(self._streams) >= self.settings.max_concurrent_streams
        ):
            return
        authority = parent.authority
        fields = push_fields(event.path, event.headers, parent.scheme, authority)
        if fields is None:
            return
        promise, extra = fields
        try:
            promised = self._h3.send_push_promise(event.stream_id, promise)
        except NoAvailablePushIDError:
            return  # the client sent no MAX_PUSH_ID (or used them up)
        stream = _Stream(parent.scheme, authority, head_request=False)
        stream.pushed = True
        stream.ended_in = True
        self._streams[promised] = stream
        self._events.append(
            Request(
                promised, b"GET", event.path, extra, "3", scheme=parent.scheme, authority=authority
            )
        )
        self._events.append(EndBody(promised))

    # ------------------------------------------------------------ inbound

    def _process(self) -> list[Event]:
        """Turn aioquic's events into ours."""
        events: list[Event] = []
        quic = self._quic
        h3 = self._h3
        over = self._over
        touched: list[int] = []  # request streams that got data
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is quic_events.StreamDataReceived:
                assert isinstance(event, quic_events.StreamDataReceived)
                stream_id = event.stream_id
                if stream_id in over:
                    continue  # a stream we are done with: dropped, not an error
                for h3_event in h3.handle_event(event):
                    self._dispatch(h3_event, events)
                if h3.malformed:
                    self._on_malformed(events)
                if not stream_id & 2:
                    touched.append(stream_id)
            elif kind is quic_events.StreamReset or kind is quic_events.StopSendingReceived:
                assert isinstance(event, (quic_events.StreamReset, quic_events.StopSendingReceived))
                self._on_reset(event.stream_id, event.error_code, events)
                h3.handle_event(event)
            elif kind is quic_events.ConnectionIdIssued:
                assert isinstance(event, quic_events.ConnectionIdIssued)
                self._cids.append((event.connection_id, True))
            elif kind is quic_events.ConnectionIdRetired:
                assert isinstance(event, quic_events.ConnectionIdRetired)
                self._cids.append((event.connection_id, False))
            elif kind is quic_events.HandshakeCompleted:
                assert isinstance(event, quic_events.HandshakeCompleted)
                self.peer.alpn = event.alpn_protocol
                self.peer.handshake_done = True
                self._app_space = quic._spaces[Epoch.ONE_RTT]
                if self._shutdown and not self._goaway_sent:
                    self._send_goaway()
            elif kind is quic_events.ConnectionTerminated:
                assert isinstance(event, quic_events.ConnectionTerminated)
                events += self._close_all(f"QUIC connection closed: {event.reason_phrase!r}")
        if not self._close_reported and (quic._state in _END_STATES or quic._close_pending):
            # aioquic decided to close (idle timeout, a protocol error of the
            # peer's, ours): CONNECTION_CLOSE goes out with the next flush.
            self._closing = True
            events += self._close_all("QUIC connection closing")
        if touched:
            streams = self._streams
            for stream_id in touched:
                stream = streams.get(stream_id)
                if stream is not None:
                    self._credit_stream(stream_id, stream)
        self._credit_connection()
        self._check_writable(events)
        return events

    def _check_writable(self, events: list[Event]) -> None:
        limit = self.settings.send_buffer
        for stream_id, stream in self._streams.items():
            if stream.waiting and self._unacked(stream_id, stream) <= limit:
                stream.waiting = False
                events.append(Writable(stream_id))
        for stream_id, stream in self._websockets.items():
            self._credit_stream(stream_id, stream)  # its backlog may have been acknowledged

    def _dispatch(self, event: H3Event, events: list[Event]) -> None:
        kind = type(event)
        if kind is HeadersReceived:
            assert isinstance(event, HeadersReceived)
            stream = self._streams.get(event.stream_id)
            if stream is None:
                self._on_request(event, events)
            else:
                self._on_trailers(event, stream, events)
        elif kind is DataReceived:
            assert isinstance(event, DataReceived)
            self._on_data(event, events)

    def _on_request(self, event: HeadersReceived, events: list[Event]) -> None:
        stream_id = event.stream_id
        if stream_id % 4 != 0:
            return  # not a client request stream (aioquic rejects those itself)
        if stream_id > self._highest_request:
            self._highest_request = stream_id
        if self._goaway_sent or len(self._streams) >= self.settings.max_concurrent_streams:
            self._refuse(stream_id, H3_REQUEST_REJECTED)
            return
        raw = event.headers
        size = 32 * len(raw)
        for name, value in raw:
            size += len(name) + len(value)
        parsed = parse_request(raw)
        if isinstance(parsed, str):
            self._refuse(stream_id, H3_MESSAGE_ERROR)
            return
        method, scheme, authority, path, headers, _, _, _, te, protocol = parsed
        stream = _Stream(scheme, authority, method == b"HEAD")
        self._streams[stream_id] = stream
        if size > self.settings.max_header_list_size:
            self._answer(stream_id, stream, 431)
            return
        if method == b"CONNECT" and not self._connect(stream_id, stream, protocol, headers):
            return
        self._requests += 1
        events.append(
            Request(
                stream_id,
                method,
                path,
                headers,
                "3",
                scheme=scheme,
                authority=authority,
                trailers_accepted=te,
                protocol="websocket" if stream.ws_early is not None else None,
            )
        )
        if self._requests >= self.settings.keep_alive_max_requests and not self._goaway_sent:
            self._send_goaway()
        if event.stream_ended:
            self._on_end(stream_id, stream, events)

    def _on_data(self, event: DataReceived, events: list[Event]) -> None:
        stream_id = event.stream_id
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        data = event.data
        if data:
            if stream.ws_early is not None:
                if stream.ws is None:
                    stream.ws_early.append(data)  # before the accept: held
                    stream.held += len(data)
                    self._held += len(data)
                else:
                    self._ws_receive(stream_id, stream, data, events)
            elif not stream.ended_out:
                stream.held += len(data)
                self._held += len(data)
                events.append(Body(stream_id, data))
        if event.stream_ended:
            self._on_end(stream_id, stream, events)

    def _on_end(self, stream_id: int, stream: _Stream, events: list[Event]) -> None:
        if stream.ended_in:
            return
        stream.ended_in = True
        if stream.ws_early is not None:  # a WebSocket: its end without Close is 1006
            if stream.ws is not None:
                events += stream.ws.receive_eof()
                self._ws_out(stream_id, stream)
            return
        if stream.ended_out:
            self._forget(stream_id, stream)
        else:
            events.append(EndBody(stream_id))

    def _on_trailers(self, event: HeadersReceived, stream: _Stream, events: list[Event]) -> None:
        headers: Headers = []
        for name, value in event.headers:
            if name[:1] == b":" or NAME.fullmatch(name) is None or VALUE_BAD.search(value):
                self._malformed(event.stream_id, stream, events)
                return
            headers.append((name, value))
        if not stream.ended_out and stream.ws_early is None:
            events.append(Trailers(event.stream_id, headers))
        if event.stream_ended:
            self._on_end(event.stream_id, stream, events)

    def _count_abort(self) -> None:
        """One more aborted stream; past ``max_aborted_streams`` in a second
        the connection is closed (the app tasks cost more than a reset)."""
        if self._now - self._aborted_since >= 1.0:
            self._aborted_since = self._now
            self._aborted = 0
        self._aborted += 1
        if self._aborted > self.settings.max_aborted_streams and not self._closing:
            self._quic.close(error_code=H3_EXCESSIVE_LOAD, reason_phrase="too many aborted streams")

    def _on_reset(self, stream_id: int, code: int, events: list[Event]) -> None:
        """The peer reset the request (RESET_STREAM) or asked us to stop
        sending (STOP_SENDING): the stream is over for the application."""
        self._count_abort()
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._reset(stream_id, stream, H3_REQUEST_CANCELLED)
        events.append(StreamClosed(stream_id, code))

    def _on_malformed(self, events: list[Event]) -> None:
        for stream_id in self._h3.malformed:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._malformed(stream_id, stream, events)
            else:
                self._refuse(stream_id, H3_MESSAGE_ERROR)
        self._h3.malformed.clear()

    def _malformed(self, stream_id: int, stream: _Stream, events: list[Event]) -> None:
        """A stream error: H3_MESSAGE_ERROR both ways; the app is told."""
        self._count_abort()
        self._reset(stream_id, stream, H3_MESSAGE_ERROR)
        events.append(StreamClosed(stream_id, H3_MESSAGE_ERROR))

    def _refuse(self, stream_id: int, code: int) -> None:
        self._count_abort()
        self._mark_over(stream_id)
        try:
            self._quic.reset_stream(stream_id, code)
        except Exception:  # aioquic: the stream is gone already
            pass
        self._stop_reading(stream_id, code)

    def _consumed(self, stream_id: int, stream: _Stream, amount: int) -> None:
        if stream.ws is not None:
            if not amount:  # the app saw the close: a held Close goes out
                stream.ws.release()
                self._ws_out(stream_id, stream)
                return
            stream.ws_queued -= 1
            self._credit_stream(stream_id, stream)
            return
        amount = min(amount, stream.held)
        stream.held -= amount
        self._held -= amount
        self._credit_stream(stream_id, stream)
        self._credit_connection()

    def _credit_stream(self, stream_id: int, stream: _Stream) -> None:
        """Raise a request stream's MAX_STREAM_DATA to what the application
        consumed plus ``stream_window`` (a WebSocket's: what arrived plus the
        window, unless its application lags behind), once the peer has used
        half of its credit: one update per half window, not one per packet.
        A stream not (or no longer) in ``_streams`` keeps the initial window:
        a request whose head is still arriving cannot grow it."""
        quic_stream = self._quic._streams.get(stream_id)
        if quic_stream is None or stream.pushed:
            return
        window = self.settings.stream_window
        limit = quic_stream.max_stream_data_local
        receiver = quic_stream.receiver
        if 2 * (limit - receiver.highest_offset) > window:
            return  # the peer has more than half a window left
        received = receiver._buffer_start  # handed to the HTTP/3 layer
        if stream.ws is not None:
            if (
                stream.ws_queued >= self.settings.max_queued_messages
                or self._unacked(stream_id, stream) > _WS_BACKLOG
            ):
                return  # hold the peer: no more credit for now
            target = received + window
        else:
            h3_stream = self._h3._stream.get(stream_id)
            buffered = len(h3_stream.buffer) if h3_stream is not None else 0
            target = received - stream.held - buffered + window
        if target > limit:
            quic_stream.max_stream_data_local = target

    def _credit_connection(self) -> None:
        """The same for MAX_DATA: what all streams' applications consumed
        plus ``connection_window``, once the peer has used half its credit."""
        limit = self._quic._local_max_data
        window = self.settings.connection_window
        if 2 * (limit.value - limit.used) > window:
            return
        target = limit.used - self._held + window
        if target > limit.value:
            limit.value = target

    # ------------------------------------------------------------ WebSocket

    def _ws_settings(self) -> WSSettings:
        return self.settings.websocket

    def _ws_clock(self) -> float:
        return self._now

    def _ws_accepted(self, stream: _Stream) -> None:
        # Its early DATA was held as body; from now on messages are counted.
        self._held -= stream.held
        stream.held = 0
        self._credit_connection()

    def _ws_credit(self, stream_id: int, stream: _Stream) -> None:
        self._credit_stream(stream_id, stream)

    # ------------------------------------------------------------ closing

    def _close_due(self) -> bool:
        return self._goaway_sent and not self._streams and not self._closing

    def _send_goaway(self) -> None:
        """GOAWAY with the first request stream we will not serve."""
        self._goaway_sent = True
        control = self._h3._local_control_stream_id
        if control is None:
            return
        frame = encode_frame(FrameType.GOAWAY, encode_uint_var(self._highest_request + 4))
        self._quic.send_stream_data(control, frame)

    def _close(self, code: int, reason: str) -> list[Event]:
        """CONNECTION_CLOSE with ``code``; the streams are told."""
        self._quic.close(error_code=code, reason_phrase=reason)
        self._closing = True
        return self._close_all(reason)

    def _close_all(self, reason: str) -> list[Event]:
        self._closing = True
        events: list[Event] = [StreamClosed(stream_id) for stream_id in self._streams]
        self._streams.clear()
        self._sending.clear()
        self._websockets.clear()
        self._events.clear()
        if self._close_reported:
            return events
        self._close_reported = True
        return [*events, ConnectionClosed(reason)]
