"""HTTP/1.1 as a sans-IO adapter over h11.

Theory of operation
-------------------
One :class:`H1Adapter` serves one connection. h11 parses request heads and
bodies (a fresh h11 parser per request; bytes of a pipelined request carry
over). Responses are serialized here (``_serialize_fields``): h11's send
path costs as much as the rest of a request, and the framing decisions
(content-length, chunked, close-delimited for HTTP/1.0) are few. This module
also adds what h11 leaves to its user: request-smuggling checks h11 does not
make (Content-Length together with Transfer-Encoding, duplicated
Content-Length lines, the exact status for a bad Transfer-Encoding), the
414/431/505 distinctions, timers as data, ``Expect: 100-continue``,
backpressure and keep-alive decisions.

Requests are numbered 1, 3, 5, ... (``stream_id``); at most one is open.
A pipelined request that arrives while a response is in flight stays in
h11's buffer: ``wants_read`` turns false (bounded memory: the client that
never reads gets nothing more read from it) and :meth:`next_events` hands
the request out once the response before it is complete.

Timers (all lazily stamped from the ``now`` the core passes in):

* keep-alive idle -- no request in flight and no byte of the next head:
  ``keep_alive_timeout`` (closes quietly);
* header read -- from the first byte of a head until it is complete:
  ``header_read_timeout`` (408 and close: slowloris);
* body read -- while the body is incomplete and the app is taking it, no
  progress for ``body_read_timeout``: the app sees a disconnect; 408 if no
  response has started;
* ``read_timeout`` -- caps every wait for client bytes.

A timer never runs while the request is complete and the response is in
flight (the client owes us nothing then), nor while the app has not
consumed the body already delivered.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import h11

from ..errors import AppProtocolError
from ._h1_fast import FastReader, Llhttp, ParsedHead
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
    ProtocolSwitch,
    ReadyForBody,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
    WebSocketAccept,
    WebSocketClose,
    WebSocketMessage,
)

if TYPE_CHECKING:
    from .websocket import WebSocketFramer

__all__ = ["H1Adapter", "H1Settings"]


_REASONS: Final[dict[int, bytes]] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

# RFC 9110 §7.2 Host = uri-host [ ":" port ]; uri-host is an IP-literal in
# brackets, an IPv4 address or a reg-name (unreserved / pct-encoded / sub-delims).
_HOST: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?"
)
_VALID_HOSTS: Final[set[bytes]] = set()  # Host values already matched (_valid_host)
_VALID_HOSTS_MAX: Final = 256
_TRANSFER_ENCODING: Final = re.compile(rb"^transfer-encoding:[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)
# A head's end: a line feed, an optional CR, a line feed (h11's rule). Its
# literal first byte lets the search skip to each line feed; "\r?\n\r?\n"
# tried a match at every byte of the head (20k instructions a 100-byte head).
_HEAD_END: Final = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH_LIST: Final = re.compile(rb"^content-length:[^\n]*,", re.MULTILINE)
_FIRST_REQUEST_GRACE: Final = 1.0  # s a fresh connection has for its request once shutdown began
_NO_BODY_STATUS: Final = frozenset({204, 304})
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# GOAWAY(last stream 0, PROTOCOL_ERROR), for a broken HTTP/2 preface on a cleartext port.
_GOAWAY_PROTOCOL_ERROR: Final = bytes.fromhex("0000080700000000000000000000000001")
_HTTP1_LINE: Final = re.compile(rb" HTTP/1\.\d\r?$")  # a request line that claims HTTP/1.x
_BASE64URL: Final = re.compile(rb"[A-Za-z0-9_-]*={0,2}")  # token68 of RFC 7540 §3.2.1
# Handshake fields the server writes itself; the application's are dropped.
_WS_OWN_FIELDS: Final = frozenset(
    (
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"content-length",
        b"transfer-encoding",
    )
)
_HOP_BY_HOP: Final = frozenset(
    (b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"transfer-encoding", b"te")
)


def _h2c_upgrade(request: Request) -> bytes | None:
    """The decoded HTTP2-Settings if ``request`` asks for ``Upgrade: h2c``
    properly (RFC 7540 §3.2: Upgrade, Connection naming both, one
    HTTP2-Settings of valid base64url); else ``None``: serve HTTP/1.1.
    A client waiting for ``100 Continue`` is served HTTP/1.1 too: only the
    application can answer it, and the upgrade would read the body first."""
    if request.http_version != "1.1" or request.expect_continue:
        return None
    upgrade = connection = b""
    settings: list[bytes] = []
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade += b"," + value.lower()
        elif name == b"connection":
            connection += b"," + value.lower()
        elif name == b"http2-settings":
            settings.append(value)
    if len(settings) != 1 or b"h2c" not in _tokens(upgrade):
        return None
    if not {b"upgrade", b"http2-settings"} <= _tokens(connection):
        return None
    value = settings[0].strip()
    if _BASE64URL.fullmatch(value) is None:  # b64decode would skip stray bytes
        return None
    try:
        decoded = base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return None
    return decoded if len(decoded) % 6 == 0 else None


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip() for token in value.split(b",")}


# How the response body is framed on the wire (identity-compared sentinels).
_NOT_STARTED: Final = "no response head yet"
_NO_BODY: Final = "no body (HEAD, 204, 304)"
_LENGTH: Final = "content-length"
_CHUNKED: Final = "chunked"
_UNTIL_CLOSE: Final = "until the connection closes (HTTP/1.0)"

_STATUS_LINES: Final[dict[int, bytes]] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# CTLs but HTAB: no CR/LF splitting
_FIELD_VALUE_BAD: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_KNOWN_NAMES: Final[set[bytes]] = set()  # header names already validated (bounded)
_KNOWN_NAMES_MAX: Final = 1024
# Header fields already validated, as their serialized lines by name, then
# value: most responses repeat the same few (server, date, content-type).
# (Keyed by the bytes, whose hashes are cached, not by the field's tuple,
# hashed and compared anew at each lookup.) Fields that decide the framing
# are never kept here. Bounded, at most _FIELD_NAMES_MAX * _FIELD_VALUES_MAX
# lines: a name's values are forgotten when it has too many (the date
# changes every second; an app may send unique values), all of them when
# there are too many names.
_FIELD_LINES: Final[dict[bytes, dict[bytes, bytes]]] = {}
_FIELD_NAMES_MAX: Final = 64
_FIELD_VALUES_MAX: Final = 8
_FRAMING_NAMES: Final = frozenset((b"transfer-encoding", b"connection"))  # and content-length
# Content-Length values already checked: their number and line (bounded).
_LENGTHS: Final[dict[bytes, tuple[int, bytes]]] = {}
_LENGTHS_MAX: Final = 256


@dataclass(frozen=True, slots=True)
class H1Settings:
    """The adapter's limits; built from :class:`~tricorn.config.Config` by
    the server (``tricorn.server.serve.h1_settings``)."""

    max_incomplete_size: int = 16 * 1024
    keep_alive_timeout: float | None = 5.0
    header_read_timeout: float | None = 10.0
    body_read_timeout: float | None = 30.0
    read_timeout: float | None = None
    keep_alive_max_requests: int = 1000
    max_queued_body: int = 10
    pass_raw_headers: bool = False
    h2c: bool = False  # cleartext: recognise the HTTP/2 preface and Upgrade: h2c
    h2c_max_upgrade_body: int = 1024 * 1024  # larger bodies are served over HTTP/1.1
    websocket: WSSettings = WSSettings()  # noqa: RUF009 - frozen: one shared default
    parser: str = "h11"  # or "httptools": llhttp reads the common requests (see _h1_fast)


class _Reject(Exception):
    """A request head we refuse; becomes an error response and a close."""

    def __init__(self, status: int, reason: str, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class H1Adapter:
    """The HTTP/1.1 protocol adapter (see the module docstring)."""

    # Slots: past 30 attributes an instance dictionary is a whole one of its
    # own (1.6 KiB per connection; see Connection.__slots__).
    __slots__ = (
        "_body_complete",
        "_body_since",
        "_close_after",
        "_close_reason",
        "_close_sent",
        "_closing",
        "_eof",
        "_expect_100",
        "_framing",
        "_h11",
        "_head_request",
        "_head_since",
        "_idle_since",
        "_in_request",
        "_keep_alive",
        "_last_read",
        "_llhttp",
        "_out",
        "_paused",
        "_poll",
        "_queued",
        "_remaining",
        "_requests",
        "_response_started",
        "_shutdown",
        "_sniff",
        "_trailers_accepted",
        "_upgrade",
        "_upgrade_body",
        "_upgrade_size",
        "_version11",
        "_ws",
        "_ws_events",
        "_ws_headers",
        "_ws_pending",
        "settings",
        "stream_id",
    )

    def __init__(self, settings: H1Settings) -> None:
        self.settings = settings
        self._llhttp: Llhttp | None = None  # the fast reader's parser, kept between requests
        self._h11 = self._new_parser()
        self._out: list[bytes] = []
        self.stream_id = 1
        self._requests = 0
        self._in_request = False  # a request head arrived; its response is not complete
        self._body_complete = False  # the current request's body has been read whole
        self._response_started = False
        self._head_request = False
        self._version11 = True
        self._keep_alive = True
        self._expect_100 = False
        self._framing = _NOT_STARTED
        self._remaining = 0  # body bytes still owed under content-length framing
        self._close_after = False
        self._trailers_accepted = False
        self._queued = 0  # Body events delivered and not yet consumed
        self._paused = False  # h11 holds bytes of a pipelined request
        self._poll = False  # next_events has something to parse
        self._eof = False
        self._closing = False
        self._close_reason = ""
        self._close_sent = False
        self._shutdown = False
        self._idle_since: float | None = None
        self._head_since: float | None = None
        self._body_since: float | None = None
        self._last_read: float | None = None
        self._sniff: bytes | None = b"" if settings.h2c else None  # the first bytes, for h2c
        self._upgrade: tuple[Request, bytes] | None = None  # (request, HTTP2-Settings)
        self._upgrade_body: list[bytes] = []
        self._upgrade_size = 0
        self._ws_headers: Headers | None = None  # the WebSocket request awaiting accept
        self._ws: WebSocketFramer | None = None  # after the 101: the connection is a WebSocket
        self._ws_pending = b""  # bytes that followed the upgrade request
        self._ws_events: list[Event] = []  # for next_events: a close decided at accept

    def _new_parser(self) -> h11.Connection | FastReader:
        if self.settings.parser == "httptools":
            llhttp = self._llhttp
            if llhttp is None:
                llhttp = self._llhttp = Llhttp(self.settings.pass_raw_headers)
            return FastReader(self.settings.max_incomplete_size, llhttp)
        return h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.settings.max_incomplete_size
        )

    # ------------------------------------------------------------ state

    @property
    def wants_read(self) -> bool:
        if self._closing or self._eof or self._poll:
            return False
        if self._ws is not None:
            return self._queued < self.settings.max_queued_body
        if not self._in_request:
            return True  # waiting for a request head
        if not self._body_complete:
            return self._queued < self.settings.max_queued_body
        # Keep reading during the response to notice a disconnect, but not
        # past the first bytes of a pipelined request.
        return not self._paused

    @property
    def idle(self) -> bool:
        return not self._in_request and not self._poll

    # ------------------------------------------------------------ inbound

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self._closing:
            return []
        if self._ws is not None:
            return self._ws_receive(data, now)
        if self._sniff is not None:
            if not data:  # the peer closed before a whole preface or request
                self._h11.receive_data(self._sniff)
            data = self._sniff + data if data else data
            if data and PREFACE.startswith(data[: len(PREFACE)]):
                if len(data) < len(PREFACE):
                    self._sniff = data  # wait for the rest of the preface
                    return []
                self._closing = self._close_sent = True
                return [ProtocolSwitch("h2c", data)]
            self._sniff = None
            if data[:3] == b"PRI":  # a broken HTTP/2 preface: no HTTP/1.1 400
                self._out.append(_GOAWAY_PROTOCOL_ERROR)
                return self._close("invalid HTTP/2 preface")
        conn = self._h11
        if data:
            self._last_read = now
            if (
                (not self._in_request or self._body_complete)
                and self._head_since is None
                and not self._paused
                and not self._poll
            ):
                # At a message boundary with nothing buffered: skip the empty
                # lines some clients send after a body (RFC 9112 §2.2).
                data = data.lstrip(b"\r\n")
                if not data:
                    return []
            conn.receive_data(data)
            if self._body_since is not None:
                self._body_since = now
        else:
            self._eof = True
            conn.receive_data(b"")
        return self._parse(now)

    def receive_inline(
        self, data: bytes, now: float, take: Callable[[Event], bool]
    ) -> list[Event] | None:
        """:meth:`receive_data` for bytes that are whole WebSocket messages
        and nothing else, which the core may route without its read loop
        (see ``Connection._receive_inline``); ``None`` (nothing consumed) for
        anything else, or when they would stop reading (``wants_read``).
        Each message is first offered to ``take``: ``True`` means the
        application has it already (it was never queued, and no
        ``BodyConsumed`` follows); the others are returned, to be queued."""
        ws = self._ws
        if ws is None or self._closing or self._eof or self._poll:
            return None
        room = self.settings.max_queued_body - self._queued - 1
        events = ws.receive_messages(data, now, room)
        if events is None:
            return None
        queued = []
        for event in events:
            if not take(event):
                queued.append(event)
                self._queued += 1
        return queued

    def receive_request(self, data: bytes, now: float) -> list[Event] | None:
        """:meth:`receive_data` for bytes that are exactly one request head,
        arriving between requests of a kept-alive connection, which the
        core may take without its read loop (see
        ``Connection._receive_request``): the request, and its ``EndBody``
        when it has no body. ``None`` (nothing consumed) for anything else:
        a partial or pipelined head, one the fast reader or this adapter
        would refuse (the read loop then answers it), the first request of
        a connection (HTTP/2 preface, ``Upgrade: h2c``), a closing one."""
        if (
            self._in_request
            or self._poll
            or self._closing
            or self._eof
            or self._shutdown
            or self._ws is not None
            or self._sniff is not None
            or self._head_since is not None
            or not self._requests
        ):
            return None
        reader = self._h11
        if type(reader) is not FastReader:
            return None
        head = reader.take_head(data)
        if head is None:
            return None
        try:
            request = self._on_request(head, data, now)
        except _Reject:
            self._h11 = self._new_parser()  # the read loop reads it again and answers
            return None
        self._last_read = now
        if self._body_complete:  # no body framing: no body
            return [request, EndBody(self.stream_id)]
        return [request, *self._parse(now)]  # (Content-Length: 0 ends it now)

    def next_events(self, now: float) -> list[Event]:
        if self._closing:
            if self._close_sent:
                return []
            self._close_sent = True
            return [ConnectionClosed(self._close_reason)]
        if self._ws is not None:
            if not self._poll:
                return []
            self._poll = False
            events, self._ws_events = self._ws_events, []
            data, self._ws_pending = self._ws_pending, b""
            return events + self._ws_receive(data, now) if data else events
        if self._poll:
            self._poll = False
            return self._parse(now)
        return []

    def _parse(self, now: float) -> list[Event]:
        conn = self._h11
        events: list[Event] = []
        while True:
            if self._in_request and self._body_complete:
                # Nothing to parse until the response is done: later bytes
                # belong to the next request (or, after a last request, are
                # ignored, RFC 9112 §9.6) and stop the reading.
                if conn.trailing_data[0]:
                    self._paused = True
                elif self._eof:
                    return events + self._peer_gone("connection closed by the peer")
                return events
            head = b"" if self._in_request else conn.trailing_data[0]
            try:
                event = conn.next_event()
                if type(event) is ParsedHead or type(event) is h11.Request:
                    request = self._on_request(event, head, now)
                    if self._sniff is None and self.settings.h2c and self._requests == 1:
                        settings = _h2c_upgrade(request)
                        if settings is not None:
                            self._upgrade = (request, settings)
                            if self._body_complete:
                                return events + self._switch()
                            continue
                    events.append(request)
                    if self._body_complete:  # no body framing: no body (RFC 9112 §6.3)
                        events.append(EndBody(self.stream_id))
                    continue
            except _Reject as refused:
                return events + self._reject(refused.status, refused.reason, refused.headers)
            except h11.RemoteProtocolError as error:  # (a name of its own: see setup.py)
                return events + self._on_protocol_error(error, head)
            kind = type(event)
            if self._upgrade is not None and kind is not h11.ConnectionClosed:
                if kind is h11.EndOfMessage:
                    return events + self._switch()
                if kind is h11.Data:
                    assert isinstance(event, h11.Data)
                    events.extend(self._collect_upgrade_body(_body_of(event)))
                    continue
            if kind is h11.Data:
                assert isinstance(event, h11.Data)
                self._queued += 1
                self._expect_100 = False  # the client sent the body anyway
                events.append(Body(self.stream_id, _body_of(event)))
            elif kind is h11.EndOfMessage:
                self._body_since = None
                self._body_complete = True
                events.append(EndBody(self.stream_id))
            elif event is h11.NEED_DATA:
                if head and self._head_since is None and not self._in_request:
                    self._head_since = now  # the header-read timer starts
                return events
            elif event is h11.PAUSED:  # pragma: no cover - h11 pauses only after a message
                self._paused = True
                return events
            else:  # h11.ConnectionClosed: the peer is gone
                return events + self._peer_gone("connection closed by the peer")

    def _on_request(self, event: h11.Request | ParsedHead, head: bytes, now: float) -> Request:
        if len(head) > self.settings.max_incomplete_size:
            _check_head_size(head, self.settings.max_incomplete_size)
        version = event.http_version
        if version != b"1.1" and version != b"1.0":
            raise _Reject(505, "HTTP version not supported")
        raw_headers: Headers | None = None
        framing = 0
        expect_trailers = False
        keep_alive = version == b"1.1"
        upgrade: bytes | None = None
        connection = b""
        if type(event) is ParsedHead:
            # The fast reader looked the fields up as it collected them, and
            # took one Content-Length of digits at most (no smuggling to check).
            headers: Headers = event.headers
            if self.settings.pass_raw_headers:
                raw_headers = event.raw
            host = event.host
            if host is not None and not _valid_host(host):
                raise _Reject(400, "invalid Host header")
            expect_trailers = event.trailers
            connection = event.connection
            # (find, not in: ``bytes in bytes`` first tries the needle as an
            # int and makes a TypeError it drops, 1% of a small request)
            if connection and connection.find(b"close") >= 0:
                keep_alive = False
            upgrade = event.upgrade
            framed = event.framed
        else:
            assert isinstance(event, h11.Request)
            items = getattr(event.headers, "_full_items", None)  # h11 internals: a fast path
            if items is not None:
                headers = [(name, value) for _, name, value in items]
            else:  # pragma: no cover - another h11
                headers = list(event.headers)
            if self.settings.pass_raw_headers:
                raw_headers = list(event.headers.raw_items())
            for name, value in headers:
                if name == b"host":
                    if not _valid_host(value):
                        raise _Reject(400, "invalid Host header")
                elif name == b"content-length" or name == b"transfer-encoding":
                    framing += 1
                elif name == b"te":
                    expect_trailers = value.lower().find(b"trailers") >= 0
                elif name == b"connection":
                    connection += b"," + value.lower()
                    if connection.find(b"close") >= 0:
                        keep_alive = False
                elif name == b"upgrade":
                    upgrade = value if upgrade is None else upgrade + b"," + value
            if framing:
                _check_framing(head, http10=version == b"1.0")
            framed = framing > 0
        protocol = None
        if upgrade is not None and _websocket_upgrade(event.method, version, upgrade, connection):
            if framed:
                raise _Reject(400, "a WebSocket upgrade with a body")
            # The framing (and wsproto) is imported by the first handshake.
            from .websocket import handshake_problem

            problem = handshake_problem(headers, key_required=True)
            if problem is not None:
                status, extra, reason = problem
                raise _Reject(status, reason, extra)
            protocol = "websocket"
        self._ws_headers = headers if protocol else None
        self._requests += 1
        self._in_request = True
        self._response_started = False
        self._head_since = None
        self._idle_since = None
        self._queued = 0
        self._trailers_accepted = expect_trailers
        self._head_request = event.method == b"HEAD"
        self._version11 = version == b"1.1"
        self._keep_alive = keep_alive
        self._close_after = False
        self._expect_100 = self._h11.they_are_waiting_for_100_continue
        self._body_complete = not framed
        self._body_since = None if self._body_complete else now
        return Request(
            stream_id=self.stream_id,
            method=event.method,
            target=event.target,
            headers=headers,
            http_version="1.1" if version == b"1.1" else "1.0",
            expect_continue=self._expect_100,
            trailers_accepted=expect_trailers,
            raw_headers=raw_headers,
            protocol=protocol,
        )

    def _collect_upgrade_body(self, data: bytes) -> list[Event]:
        """Hold the body of an ``Upgrade: h2c`` request (RFC 7540 §3.2: it
        is read whole before the switch); past ``h2c_max_upgrade_body`` the
        request is served over HTTP/1.1 instead."""
        assert self._upgrade is not None
        self._upgrade_body.append(data)
        self._upgrade_size += len(data)
        if self._upgrade_size <= self.settings.h2c_max_upgrade_body:
            return []
        request = self._upgrade[0]
        self._upgrade = None
        body = b"".join(self._upgrade_body)
        self._upgrade_body = []
        self._queued += 1
        return [request, Body(self.stream_id, body)]

    def _switch(self) -> list[Event]:
        """Answer 101 and hand the connection to HTTP/2."""
        assert self._upgrade is not None
        request, settings = self._upgrade
        self._out.append(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
        )
        self._closing = self._close_sent = True
        headers = [(name, value) for name, value in request.headers if name not in _HOP_BY_HOP]
        upgraded = Request(
            stream_id=1,
            method=request.method,
            target=request.target,
            headers=headers,
            http_version="2",
            scheme="http",
            authority=next((value for name, value in headers if name == b"host"), None),
            trailers_accepted=request.trailers_accepted,
        )
        body = b"".join(self._upgrade_body)
        self._upgrade_body = []
        leftover = self._h11.trailing_data[0]
        return [ProtocolSwitch("h2c", leftover, upgraded, settings, body)]

    def _on_protocol_error(self, exc: h11.RemoteProtocolError, head: bytes) -> list[Event]:
        if self._in_request:  # broken body framing: abort the exchange
            return self._peer_gone(f"invalid request body: {exc}")
        if self._eof:  # the peer closed in the middle of a head
            return self._close("connection closed by the peer")
        if (
            self.settings.h2c
            and not self._requests
            and _HTTP1_LINE.search(head.split(b"\n", 1)[0]) is None
        ):
            # The first bytes are neither HTTP/1.x nor the HTTP/2 preface
            # (e.g. a broken preface): a plain close, no HTTP/1.1 answer.
            return self._close("neither HTTP/1.x nor an HTTP/2 preface")
        status = exc.error_status_hint
        reason = str(exc)
        if status == 431:
            try:
                _check_head_size(head, self.settings.max_incomplete_size)
            except _Reject as refined:
                status, reason = refined.status, refined.reason
        elif status == 501:
            end = _HEAD_END.search(head)
            try:
                _check_transfer_encoding(head[: end.start() if end else len(head)].lower())
            except _Reject as refined:
                status, reason = refined.status, refined.reason
        return self._reject(status, reason)

    def _peer_gone(self, reason: str) -> list[Event]:
        events: list[Event] = []
        if self._in_request:
            events.append(StreamClosed(self.stream_id))
            self._in_request = False
        return events + self._close(reason)

    def _reject(self, status: int, reason: str, headers: Headers | None = None) -> list[Event]:
        """Answer a request we refuse with a short text/plain response."""
        if not self._response_started:
            self._response_started = True
            self._out.append(_error_response(status, reason, headers))
        return self._close(f"{status} {reason}")

    def _close(self, reason: str) -> list[Event]:
        self._closing = True
        self._close_reason = reason
        self._close_sent = True
        return [ConnectionClosed(reason)]

    # ------------------------------------------------------------ outbound

    def send(self, event: Event) -> None:
        if self._closing:
            return
        kind = type(event)
        if kind is Data:
            assert isinstance(event, Data)
            if event.data:
                self._send_body(event.data)
        elif kind is Response:
            assert isinstance(event, Response)
            self._send_response(event)
            if event.body:
                self._send_body(event.body)
            if event.end:
                self._end_body(None)
        elif kind is EndData:
            self._end_body(None)
        elif kind is BodyConsumed:
            assert isinstance(event, BodyConsumed)
            ws = self._ws
            if ws is not None and not event.amount:  # the app saw the close
                ws.release()
                self._ws_flush(ws, later=True)
                return
            self._queued -= 1
            if self._queued == self.settings.max_queued_body - 1:
                self._body_since = None  # reading resumes; restart the timers then
                self._last_read = None
        elif kind is ReadyForBody:
            if self._expect_100:
                self._expect_100 = False
                self._out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._body_since = self._last_read = None  # the client's clock starts now
        elif kind is InformationalResponse:
            assert isinstance(event, InformationalResponse)
            if self._version11 and not self._response_started:
                head, _, _ = _serialize_head(event.status, event.headers)
                self._out.append(head + b"\r\n")
        elif kind is Trailers:
            assert isinstance(event, Trailers)
            self._end_body(event.headers)
        elif kind is ResetStream:
            self._in_request = False
            self._close_later("response aborted")
        elif kind is WebSocketMessage or kind is WebSocketClose:
            ws = self._ws
            if ws is not None:
                ws.send(event)
                self._ws_flush(ws, later=True)
        elif kind is WebSocketAccept:
            assert isinstance(event, WebSocketAccept)
            self._accept_websocket(event)

    # ------------------------------------------------------------ WebSocket

    def _accept_websocket(self, event: WebSocketAccept) -> None:
        """``101 Switching Protocols``; the connection is a WebSocket now."""
        request = self._ws_headers
        if request is None or self._response_started:
            raise AppProtocolError("websocket.accept without a WebSocket handshake to answer")
        from .websocket import WebSocketFramer, accept_fields, accept_key

        settings = self.settings.websocket
        key = next(value for name, value in request if name == b"sec-websocket-key")
        fields: Headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_key(key.strip())),
        ]
        extensions = accept_fields(request, event, settings, _WS_OWN_FIELDS, fields)
        head, _, _ = _serialize_fields(fields, [b"HTTP/1.1 101 Switching Protocols\r\n"])
        self._out.append(head + b"\r\n")
        self._response_started = True
        self._ws_headers = None
        self._ws = ws = WebSocketFramer(self.stream_id, settings, extensions)
        self._ws_pending = self._h11.trailing_data[0]  # frames sent right after the head
        if self._shutdown:  # accepted while shutting down: Close 1001 at once
            self._ws_events = ws.begin_shutdown()
            self._out.append(ws.data_to_send())
        self._poll = bool(self._ws_pending or self._ws_events)

    def _ws_receive(self, data: bytes, now: float) -> list[Event]:
        ws = self._ws
        assert ws is not None
        if data:
            events = ws.receive(data, now)
        else:
            self._eof = True
            events = ws.receive_eof()
        for event in events:
            if type(event) is WebSocketMessage:
                self._queued += 1  # BodyConsumed takes it back
        return events + self._ws_flush(ws)

    def frame_message(self, data: bytes | str) -> bytes | None:
        """The bytes to write for the application's WebSocket message
        ``data``: anything queued, then its frame; the core writes them
        without the event path. ``None``: send it as a ``WebSocketMessage``."""
        ws = self._ws
        if ws is None or self._closing:
            return None
        frame = ws.frame_message(data)
        out = self._out
        if frame is None or not out:
            return frame
        out.append(frame)
        return self.data_to_send()

    def _ws_flush(self, ws: WebSocketFramer, *, later: bool = False) -> list[Event]:
        """Take the framer's bytes; once the WebSocket is over, close (now,
        or ``later`` from ``send``: at the core's next ``next_events``)."""
        out = ws.data_to_send()
        if out:
            self._out.append(out)
        if ws.done and not self._closing:
            self._in_request = False
            if later:
                self._close_later("WebSocket closed")
                return []
            return self._close("WebSocket closed")
        return []

    def _send_response(self, event: Response) -> None:
        head, length, close = _serialize_head(event.status, event.headers)
        self._response_started = True
        self._expect_100 = False
        if (
            not self._keep_alive
            or self._shutdown
            or self._requests >= self.settings.keep_alive_max_requests
            or not self._body_complete  # the body may never be read
        ):
            if not close:
                head += b"connection: close\r\n"
            close = True
        if self._head_request or event.status in _NO_BODY_STATUS:
            framing = _NO_BODY
        elif length is not None:
            framing = _LENGTH
            self._remaining = length
        elif self._version11:
            framing = _CHUNKED
            head += b"transfer-encoding: chunked\r\n"
        else:  # an HTTP/1.0 client: the body ends when the connection does
            framing = _UNTIL_CLOSE
            if not close:
                head += b"connection: close\r\n"
            close = True
        self._framing = framing
        self._close_after = close
        self._out.append(head + b"\r\n")

    def _send_body(self, data: bytes) -> None:
        framing = self._framing
        if framing is _CHUNKED:
            self._out += (b"%x\r\n" % len(data), data, b"\r\n")
        elif framing is _LENGTH:
            self._remaining -= len(data)
            if self._remaining < 0:
                self._abort("more body than its content-length")
            self._out.append(data)
        elif framing is _UNTIL_CLOSE:
            self._out.append(data)
        elif framing is _NOT_STARTED:
            raise AppProtocolError("body before the response head")
        # _NO_BODY (HEAD, 204, 304): the bytes are dropped

    def _end_body(self, trailers: Headers | None) -> None:
        framing = self._framing
        if framing is _CHUNKED:
            if trailers and self._trailers_accepted:
                fields, _, _ = _serialize_fields(trailers, [b"0\r\n"])
                self._out.append(fields + b"\r\n")
            else:
                self._out.append(b"0\r\n\r\n")
        elif framing is _LENGTH and self._remaining:
            self._abort("less body than its content-length")
        elif framing is _NOT_STARTED:
            raise AppProtocolError("end of body before the response head")
        self._response_done()

    def _abort(self, reason: str) -> None:
        """The app broke the framing it declared: the connection cannot be
        reused (the client will notice the short or long body)."""
        self._in_request = False
        self._close_later(reason)
        raise AppProtocolError(f"invalid response: {reason}")

    def writable(self, stream_id: int) -> bool:
        return True  # the transport pushes back

    def file_framing(self, stream_id: int, length: int) -> tuple[bytes, bytes] | None:
        """Bytes to write before and after ``length`` body bytes that the
        core sends itself (``sendfile``); they count as sent. ``None``: send
        the body as ``Data`` instead."""
        if self._closing:
            return None
        framing = self._framing
        if framing is _CHUNKED:
            self._out.append(b"%x\r\n" % length)
            return self.data_to_send(), b"\r\n"
        if framing is _LENGTH:
            self._remaining -= length
            if self._remaining < 0:
                self._abort("more body than its content-length")
            return self.data_to_send(), b""
        if framing is _UNTIL_CLOSE:
            return self.data_to_send(), b""
        return None

    def _response_done(self) -> None:
        self._in_request = False
        self._framing = _NOT_STARTED
        if self._close_after:
            self._close_later("connection: close")
        elif not self._body_complete:
            self._close_later("request body not read")
        elif self._shutdown:
            self._close_later("shutting down")
        else:
            # h11 parses; we serialize. A fresh parser per request is
            # cheaper than replaying our response through h11's state
            # machine; bytes of a pipelined request carry over.
            leftover = self._h11.trailing_data[0].lstrip(b"\r\n")
            self._h11 = self._new_parser()
            if leftover:
                self._h11.receive_data(leftover)
            if self._eof:
                self._h11.receive_data(b"")
            self.stream_id += 2
            self._response_started = False  # a bad next head still gets its 400
            self._paused = False
            self._idle_since = None
            self._body_since = None
            self._last_read = None
            self._poll = bool(leftover) or self._eof

    def _close_later(self, reason: str) -> None:
        """Close once the core next polls (``next_events``)."""
        self._closing = True
        self._close_reason = reason

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    # ------------------------------------------------------------ timers

    def next_deadline(self, now: float) -> float | None:
        if self._closing:
            return None
        if self._ws is not None:
            return self._ws.next_deadline(now)
        settings = self.settings
        deadline: float | None = None
        if not self._in_request:
            if self._head_since is not None:
                deadline = _add(self._head_since, settings.header_read_timeout)
            else:
                if self._idle_since is None:
                    self._idle_since = now
                timeout = settings.keep_alive_timeout
                if self._shutdown:  # a fresh connection, kept for its first request
                    timeout = min(timeout or _FIRST_REQUEST_GRACE, _FIRST_REQUEST_GRACE)
                deadline = _add(self._idle_since, timeout)
        elif not self._body_complete:
            if self._queued >= settings.max_queued_body or self._expect_100:
                # the app holds the body, or the client waits for our 100
                # Continue: either way the client is not late
                return None
            if self._body_since is None:
                self._body_since = now
            deadline = _add(self._body_since, settings.body_read_timeout)
        else:
            return None  # the response is in flight: the client owes us nothing
        if settings.read_timeout is not None:
            if self._last_read is None:
                self._last_read = now
            read_deadline = self._last_read + settings.read_timeout
            deadline = read_deadline if deadline is None else min(deadline, read_deadline)
        return deadline

    def handle_timeout(self, now: float) -> list[Event]:
        ws = self._ws
        if ws is not None:
            return [] if self._closing else ws.handle_timeout(now) + self._ws_flush(ws)
        deadline = self.next_deadline(now)
        if deadline is None or now < deadline:
            return []
        if not self._in_request:
            if self._head_since is not None:
                return self._reject(408, "request head not received in time")
            return self._close("idle timeout")
        events: list[Event] = [StreamClosed(self.stream_id)]
        self._in_request = False
        if not self._response_started:
            return events + self._reject(408, "request body not received in time")
        return events + self._close("request body not received in time")

    # ------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> list[Event]:
        self._shutdown = True
        ws = self._ws
        if ws is not None:
            return [] if self._closing else ws.begin_shutdown() + self._ws_flush(ws)
        if self._closing or self._in_request or self._poll:
            return []
        if not self._requests and self._head_since is None:
            # Accepted just before the listener closed: its request is most
            # likely on the wire. It is served (with Connection: close) if it
            # comes within _FIRST_REQUEST_GRACE of the connection's start.
            return []
        return self._close("shutting down")


def _body_of(event: Any) -> bytes:
    """An ``h11.Data`` event's bytes. (Its annotation says bytes; it is a
    bytearray, which the compiled build, checking the annotation on the
    read, would refuse: the event comes in untyped.)"""
    return bytes(event.data)


def _add(start: float, timeout: float | None) -> float | None:
    return None if timeout is None else start + timeout


def _websocket_upgrade(method: bytes, version: bytes, upgrade: bytes, connection: bytes) -> bool:
    """A request asking for a WebSocket (RFC 6455 §4.1): GET, HTTP/1.1,
    ``Upgrade: websocket`` and ``Connection: upgrade``. Anything else is
    served as plain HTTP (an upgrade is optional for the server)."""
    return (
        method == b"GET"
        and version == b"1.1"
        and b"websocket" in _tokens(upgrade.lower())
        and b"upgrade" in _tokens(connection)
    )


def _check_head_size(head: bytes, limit: int) -> None:
    """h11 bounds only heads that arrive in pieces; a head that came whole
    in one read is measured here."""
    end = _HEAD_END.search(head)
    if end is not None and end.end() <= limit:
        return
    line_end = head.find(b"\n")
    if line_end < 0 or line_end > limit:
        raise _Reject(414, "request line too long")
    raise _Reject(431, "request header fields too large")


def _check_framing(head: bytes, *, http10: bool) -> None:
    """Smuggling defences for a request with Content-Length or
    Transfer-Encoding (RFC 9112 §6.1-6.3): h11 takes the first of several
    identical Content-Length lines and lets Transfer-Encoding override
    Content-Length; we refuse both."""
    end = _HEAD_END.search(head)
    lowered = head[: end.start() if end else len(head)].lower()
    lengths = lowered.count(b"\ncontent-length:")
    encodings = lowered.count(b"\ntransfer-encoding:")
    if lengths and encodings:
        raise _Reject(400, "both Content-Length and Transfer-Encoding")
    if lengths > 1 or _CONTENT_LENGTH_LIST.search(lowered) is not None:
        raise _Reject(400, "duplicate Content-Length")
    if encodings:
        if http10:  # Transfer-Encoding is HTTP/1.1: a 1.0 peer cannot mean it
            raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        _check_transfer_encoding(lowered)


def _check_transfer_encoding(lowered_head: bytes) -> None:
    codings = [
        coding.strip()
        for value in _TRANSFER_ENCODING.findall(lowered_head)
        for coding in value.split(b",")
        if coding.strip()
    ]
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise _Reject(400, "Transfer-Encoding must end with a single chunked")
    if len(codings) > 1:
        raise _Reject(501, "unsupported transfer coding")


def _serialize_head(status: int, headers: Headers) -> tuple[bytes, int | None, bool]:
    """The status line and header fields (without the final CRLF), the
    declared content-length and whether the app asked to close.

    :raises AppProtocolError: a header name or value that would corrupt
        the message (response splitting), or a bad content-length.
    """
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
    return _serialize_fields(headers, [line])


def _valid_host(host: bytes) -> bool:
    """Whether ``host`` is a Host field value (RFC 9110 §7.2: uri-host
    [":" port]); the values already matched are remembered (a set lookup
    instead of a regular expression on most requests), a bounded few."""
    if host in _VALID_HOSTS:
        return True
    if _HOST.fullmatch(host) is None:
        return False
    if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
        _VALID_HOSTS.clear()
    _VALID_HOSTS.add(host)
    return True


def _serialize_fields(headers: Headers, parts: list[bytes]) -> tuple[bytes, int | None, bool]:
    length: int | None = None
    close = False
    lines = _FIELD_LINES
    for field in headers:
        name, value = field
        known = lines.get(name)
        if known is not None:
            line = known.get(value)
            if line is not None:
                parts.append(line)
                continue
        if name == b"content-length":  # (framing: looked at every time, never in lines)
            seen = _LENGTHS.get(value)
            if seen is None:
                if not value.isdigit():
                    raise AppProtocolError(f"invalid content-length {value!r}")
                seen = (int(value), b"content-length: %s\r\n" % value)
                if len(_LENGTHS) >= _LENGTHS_MAX:
                    _LENGTHS.clear()
                _LENGTHS[value] = seen
            number, line = seen
            if length is not None:
                if number != length:
                    raise AppProtocolError(f"invalid content-length {value!r}")
                continue  # a repeated identical value: send it once
            length = number
            parts.append(line)
            continue
        if name not in _KNOWN_NAMES:
            if _TOKEN.fullmatch(name) is None:
                raise AppProtocolError(f"invalid header name {name!r}")
            if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
                _KNOWN_NAMES.add(name)
        if _FIELD_VALUE_BAD.search(value) is not None:
            raise AppProtocolError(f"invalid value for header {name!r}: {value!r}")
        if name in _FRAMING_NAMES:
            if name == b"transfer-encoding":
                continue  # the framing is ours to choose
            if value.lower().find(b"close") >= 0:
                close = True
            parts += (name, b": ", value, b"\r\n")
            continue
        line = b"%s: %s\r\n" % field
        if known is None:
            if len(lines) >= _FIELD_NAMES_MAX:
                lines.clear()
            lines[name] = known = {}
        elif len(known) >= _FIELD_VALUES_MAX:
            known.clear()
        known[value] = line
        parts.append(line)
    return b"".join(parts), length, close


def _error_response(status: int, reason: str, headers: Headers | None = None) -> bytes:
    body = f"{status} {_REASONS.get(status, b'').decode()}: {reason}\n".encode()
    return b"".join(
        (
            _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
            *(b"%s: %s\r\n" % item for item in headers or ()),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )
