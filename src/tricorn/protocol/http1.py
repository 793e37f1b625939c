"""HTTP/1.1 as a sans-IO adapter over h11.

Theory of operation
-------------------
One :class:`H1Adapter` serves one connection. h11 parses request heads and
bodies and frames our responses; this module adds what h11 leaves to its
user: request-smuggling checks h11 does not make (Content-Length together
with Transfer-Encoding, duplicated Content-Length lines, the exact status
for a bad Transfer-Encoding), the 414/431/505 distinctions, timers as data,
``Expect: 100-continue``, backpressure and keep-alive decisions.

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

import re
from dataclasses import dataclass
from http import HTTPStatus

import h11

from ..errors import AppProtocolError
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
    ReadyForBody,
    Request,
    ResetStream,
    Response,
    StreamClosed,
    Trailers,
)

__all__ = ["H1Adapter", "H1Settings"]

_IDLE = h11.IDLE
_SEND_BODY = h11.SEND_BODY
_DONE = h11.DONE
_MUST_CLOSE = h11.MUST_CLOSE
_MIGHT_SWITCH = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]

_REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

# RFC 9110 §7.2 Host = uri-host [ ":" port ]; uri-host is an IP-literal in
# brackets, an IPv4 address or a reg-name (unreserved / pct-encoded / sub-delims).
_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?"
)
_TRANSFER_ENCODING = re.compile(rb"^transfer-encoding:[ \t]*(.*?)[ \t]*\r?$", re.MULTILINE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_NO_BODY_STATUS = frozenset({204, 304})


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


class _Placeholder(bytes):
    """Stands for body bytes that bypass h11 (``file_framing``): h11 only
    takes their length and passes the object through."""

    def __new__(cls, length: int) -> _Placeholder:
        return super().__new__(cls)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


class _Reject(Exception):
    """A request head we refuse; becomes an error response and a close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class H1Adapter:
    """The HTTP/1.1 protocol adapter (see the module docstring)."""

    def __init__(self, settings: H1Settings) -> None:
        self.settings = settings
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=settings.max_incomplete_size
        )
        self._out: list[bytes] = []
        self.stream_id = 1
        self._requests = 0
        self._in_request = False  # a request head arrived; its response is not complete
        self._response_started = False
        self._suppress_body = False
        self._chunked = False
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

    # ------------------------------------------------------------ state

    @property
    def wants_read(self) -> bool:
        if self._closing or self._eof or self._poll:
            return False
        state = self._h11.their_state
        if state is _IDLE:
            return True
        if state is _SEND_BODY:
            return self._queued < self.settings.max_queued_body
        if state is _DONE or state is _MIGHT_SWITCH or state is _MUST_CLOSE:
            # Keep reading during the response to notice a disconnect, but
            # not past the first bytes of a pipelined request.
            return not self._paused
        return False

    @property
    def idle(self) -> bool:
        return not self._in_request and not self._poll

    # ------------------------------------------------------------ inbound

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self._closing:
            return []
        conn = self._h11
        if data:
            self._last_read = now
            state = conn.their_state
            if state is _MUST_CLOSE:
                # The request said it was the last; later bytes are ignored
                # (RFC 9112 §9.6) and reading stops (bounded memory).
                self._paused = True
                return []
            if (
                (state is _IDLE or state is _DONE)
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

    def next_events(self, now: float) -> list[Event]:
        if self._closing:
            if self._close_sent:
                return []
            self._close_sent = True
            return [ConnectionClosed(self._close_reason)]
        if self._poll:
            self._poll = False
            return self._parse(now)
        return []

    def _parse(self, now: float) -> list[Event]:
        conn = self._h11
        events: list[Event] = []
        while True:
            state = conn.their_state
            if state is _MUST_CLOSE:  # the last request is complete
                if self._eof:
                    return events + self._peer_gone("connection closed by the peer")
                return events
            head = conn.trailing_data[0] if state is _IDLE else b""
            try:
                event = conn.next_event()
                if type(event) is h11.Request:
                    events.append(self._on_request(event, head, now))
                    continue
            except _Reject as exc:
                return events + self._reject(exc.status, exc.reason)
            except h11.RemoteProtocolError as exc:
                return events + self._on_protocol_error(exc, head)
            kind = type(event)
            if kind is h11.Data:
                assert isinstance(event, h11.Data)
                self._queued += 1
                events.append(Body(self.stream_id, bytes(event.data)))
            elif kind is h11.EndOfMessage:
                self._body_since = None
                events.append(EndBody(self.stream_id))
            elif event is h11.NEED_DATA:
                if head and self._head_since is None and not self._in_request:
                    self._head_since = now  # the header-read timer starts
                return events
            elif event is h11.PAUSED:
                self._paused = True
                return events
            else:  # h11.ConnectionClosed: the peer is gone
                return events + self._peer_gone("connection closed by the peer")

    def _on_request(self, event: h11.Request, head: bytes, now: float) -> Request:
        if len(head) > self.settings.max_incomplete_size:
            _check_head_size(head, self.settings.max_incomplete_size)
        version = event.http_version
        if version != b"1.1" and version != b"1.0":
            raise _Reject(505, "HTTP version not supported")
        headers: Headers = list(event.headers)
        framing = 0
        expect_trailers = False
        for name, value in headers:
            if name == b"host":
                if _HOST.fullmatch(value) is None:
                    raise _Reject(400, "invalid Host header")
            elif name == b"content-length" or name == b"transfer-encoding":
                framing += 1
            elif name == b"te" and b"trailers" in value.lower():
                expect_trailers = True
        if framing:
            _check_framing(head)
        self._requests += 1
        self._in_request = True
        self._response_started = False
        self._head_since = None
        self._idle_since = None
        self._queued = 0
        self._trailers_accepted = expect_trailers
        self._suppress_body = event.method == b"HEAD"
        self._body_since = now if self._h11.their_state is _SEND_BODY else None
        return Request(
            stream_id=self.stream_id,
            method=event.method,
            target=event.target,
            headers=headers,
            http_version="1.1" if version == b"1.1" else "1.0",
            expect_continue=self._h11.they_are_waiting_for_100_continue,
            trailers_accepted=expect_trailers,
            raw_headers=list(event.headers.raw_items()) if self.settings.pass_raw_headers else None,
        )

    def _on_protocol_error(self, exc: h11.RemoteProtocolError, head: bytes) -> list[Event]:
        if self._in_request:  # broken body framing: abort the exchange
            return self._peer_gone(f"invalid request body: {exc}")
        if self._eof:  # the peer closed in the middle of a head
            return self._close("connection closed by the peer")
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

    def _reject(self, status: int, reason: str) -> list[Event]:
        """Answer a request we refuse with a short text/plain response."""
        if not self._response_started:
            self._response_started = True
            self._out.append(_error_response(status, reason))
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
            if event.data and not self._suppress_body:
                self._send_h11(h11.Data(data=event.data))
        elif kind is Response:
            assert isinstance(event, Response)
            self._send_response(event)
        elif kind is EndData:
            self._send_h11(h11.EndOfMessage())
            self._response_done()
        elif kind is BodyConsumed:
            self._queued -= 1
            if self._queued == self.settings.max_queued_body - 1:
                self._body_since = None  # reading resumes; restart the timers then
                self._last_read = None
        elif kind is ReadyForBody:
            if self._h11.they_are_waiting_for_100_continue:
                self._send_h11(h11.InformationalResponse(status_code=100, headers=[]))
        elif kind is InformationalResponse:
            assert isinstance(event, InformationalResponse)
            if self._h11.their_http_version == b"1.1" and not self._response_started:
                try:
                    info = h11.InformationalResponse(
                        status_code=event.status,
                        headers=event.headers,
                        reason=_REASONS.get(event.status, b""),
                    )
                except h11.LocalProtocolError as exc:
                    raise AppProtocolError(f"invalid informational response: {exc}") from None
                self._send_h11(info)
        elif kind is Trailers:
            assert isinstance(event, Trailers)
            if self._chunked and self._trailers_accepted:
                self._send_h11(h11.EndOfMessage(headers=event.headers))
            else:
                self._send_h11(h11.EndOfMessage())
            self._response_done()
        elif kind is ResetStream:
            self._in_request = False
            self._close_later("response aborted")

    def file_framing(self, stream_id: int, length: int) -> tuple[bytes, bytes] | None:
        """Bytes to write before and after ``length`` body bytes that the
        core sends itself (``sendfile``); the adapter's framing state counts
        them as sent. ``None``: send the body as ``Data`` instead."""
        if self._closing or self._suppress_body or not self._response_started:
            return None
        placeholder = _Placeholder(length)
        try:
            parts = self._h11.send_with_data_passthrough(h11.Data(data=placeholder)) or []
        except h11.LocalProtocolError as exc:
            self._in_request = False
            self._close_later("response framing error")
            raise AppProtocolError(f"invalid response: {exc}") from None
        at = next(i for i, part in enumerate(parts) if part is placeholder)
        self._out.extend(parts[:at])
        return self.data_to_send(), b"".join(parts[at + 1 :])

    def _send_response(self, event: Response) -> None:
        headers = event.headers
        if (
            self._shutdown
            or self._requests >= self.settings.keep_alive_max_requests
            or self._h11.their_state is _SEND_BODY  # the body may never be read
        ):
            headers = [*headers, (b"connection", b"close")]
        try:
            response = h11.Response(
                status_code=event.status, headers=headers, reason=_REASONS.get(event.status, b"")
            )
        except h11.LocalProtocolError as exc:
            raise AppProtocolError(f"invalid response head: {exc}") from None
        self._response_started = True
        status = event.status
        if status in _NO_BODY_STATUS:
            self._suppress_body = True
        self._send_h11(response)
        self._chunked = (
            not self._suppress_body
            and self._h11.their_http_version == b"1.1"
            and not any(name == b"content-length" for name, _ in event.headers)
        )

    def _send_h11(self, event: h11.Event) -> None:
        try:
            self._out.extend(self._h11.send_with_data_passthrough(event) or ())
        except h11.LocalProtocolError as exc:
            self._in_request = False
            self._close_later("response framing error")
            raise AppProtocolError(f"invalid response: {exc}") from None

    def _response_done(self) -> None:
        conn = self._h11
        self._in_request = False
        if conn.our_state is _MUST_CLOSE:
            self._close_later("connection: close")
        elif conn.their_state is not _DONE:
            self._close_later("request body not read")
        elif self._shutdown:
            self._close_later("shutting down")
        else:
            conn.start_next_cycle()
            self.stream_id += 2
            self._paused = False
            self._suppress_body = False
            self._idle_since = None
            self._body_since = None
            self._last_read = None
            self._poll = bool(conn.trailing_data[0]) or self._eof

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
        settings = self.settings
        deadline: float | None = None
        if not self._in_request:
            if self._head_since is not None:
                deadline = _add(self._head_since, settings.header_read_timeout)
            else:
                if self._idle_since is None:
                    self._idle_since = now
                deadline = _add(self._idle_since, settings.keep_alive_timeout)
        elif self._h11.their_state is _SEND_BODY:
            if self._queued >= settings.max_queued_body:
                return None  # the app holds the body: the client is not late
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
        if self._closing or self._in_request or self._poll:
            return []
        return self._close("shutting down")


def _add(start: float, timeout: float | None) -> float | None:
    return None if timeout is None else start + timeout


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


def _check_framing(head: bytes) -> None:
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
    if lengths > 1:
        raise _Reject(400, "duplicate Content-Length")
    if encodings:
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


def _error_response(status: int, reason: str) -> bytes:
    body = f"{status} {_REASONS.get(status, b'').decode()}: {reason}\n".encode()
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
    )
