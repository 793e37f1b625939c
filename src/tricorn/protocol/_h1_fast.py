"""An HTTP/1.1 request reader with llhttp (httptools) on the common path
and h11 as the judge of everything else.

:class:`FastReader` offers the part of ``h11.Connection`` that
:class:`~tricorn.protocol.http1.H1Adapter` uses (``receive_data``,
``next_event``, ``trailing_data``, ``they_are_waiting_for_100_continue``)
for one request, as the adapter's h11 parser does (a fresh one per request).

The fast path takes a request whose head is complete, well formed by
llhttp's strict rules *and* by h11's (checked here where llhttp is laxer:
the exact request line, the Host rules, trailing whitespace of values),
HTTP/1.0 or 1.1, not CONNECT, and whose body is absent or framed by one
plain Content-Length. Everything else -- a head that is incomplete at EOF
or over the size limit, anything llhttp refuses, chunked bodies, obs-fold,
bare LF line ends, unknown methods -- is handed, bytes unchanged, to a fresh
``h11.Connection``, which then reads that request. So the answer to any
input is h11's, only faster for the requests that are fine: the smuggling
defences of the adapter and of h11 apply unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Final

import h11

try:
    import httptools
except ImportError:  # pragma: no cover - the extra [httptools] is absent
    httptools = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "FastReader", "Llhttp", "ParsedHead"]

AVAILABLE: Final = httptools is not None

_HEAD_END: Final = re.compile(rb"\n\r?\n")  # h11's end of a head (bare LF allowed)
_DIGITS: Final = re.compile(rb"[0-9]+")
_VERSIONS: Final = {b"HTTP/1.1": b"1.1", b"HTTP/1.0": b"1.0"}
_OWS: Final = b" \t"
_END_OF_MESSAGE: Final = h11.EndOfMessage()


class ParsedHead:
    """A request head read on the fast path; the attributes the adapter
    reads from an ``h11.Request``, and what it would look up in the
    fields itself (read here as they are collected).

    ``headers`` are (lowercased name, value) pairs, ``raw`` (name as sent,
    value) pairs; ``host`` is the one Host value (``None``: HTTP/1.0
    without one); ``framed``: a Content-Length came (the one framing the
    fast path takes); ``trailers``: a TE field names trailers;
    ``connection``: the Connection values, lowercased, each after a comma;
    ``upgrade``: the Upgrade values, comma-joined."""

    __slots__ = (
        "connection",
        "framed",
        "headers",
        "host",
        "http_version",
        "method",
        "raw",
        "target",
        "trailers",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: list[tuple[bytes, bytes]],
        raw: list[tuple[bytes, bytes]],
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.raw = raw
        self.host: bytes | None = None
        self.framed = False
        self.trailers = False
        self.connection = b""
        self.upgrade: bytes | None = None


# The fields the fast path looks at; every other field is only collected.
_HOST: Final = 1
_CONTENT_LENGTH: Final = 2
_TRANSFER_ENCODING: Final = 3
_EXPECT: Final = 4
_TE: Final = 5
_CONNECTION: Final = 6
_UPGRADE: Final = 7
_SPECIAL: Final = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"expect": _EXPECT,
    b"te": _TE,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
}


class _Collect:
    """httptools' callbacks for heads; ``message_complete``: llhttp has
    read a whole message (a head without a body), so the parser may read
    the connection's next head."""

    __slots__ = ("complete", "headers", "keep_raw", "message_complete", "raw", "special", "url")

    def __init__(self, keep_raw: bool) -> None:
        self.keep_raw = keep_raw
        self.reset()

    def reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.raw: list[tuple[bytes, bytes]] = []
        self.special: list[tuple[int, bytes]] = []
        self.complete = False
        self.message_complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if value and (value[-1] == 32 or value[-1] == 9):  # (a call saved on most)
            value = value.rstrip(_OWS)
        self.headers.append((lowered, value))
        if self.keep_raw:
            self.raw.append((name, value))
        kind = _SPECIAL.get(lowered)
        if kind is not None:
            self.special.append((kind, value))

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_message_complete(self) -> None:
        self.message_complete = True


class Llhttp:
    """A connection's llhttp parser between requests: a head that leaves
    it ready for the next message hands it on to the next request's
    reader (making one costs as much as reading a short head)."""

    __slots__ = ("_keep_raw", "_parser")

    def __init__(self, keep_raw: bool = True) -> None:
        self._keep_raw = keep_raw  # collect the fields as sent too (``ParsedHead.raw``)
        self._parser: tuple[_Collect, Any] | None = None

    def take(self) -> tuple[_Collect, Any]:
        parser = self._parser
        if parser is None:
            collect = _Collect(self._keep_raw)
            return collect, httptools.HttpRequestParser(collect)
        self._parser = None
        parser[0].reset()
        return parser

    def give_back(self, parser: tuple[_Collect, Any]) -> None:
        self._parser = parser


_HEAD: Final = 0  # reading the head
_BODY: Final = 1  # reading a Content-Length body
_DONE: Final = 2  # the request has been read


class FastReader:
    """One request, read as described in the module docstring."""

    __slots__ = (
        "_buffer",
        "_eof",
        "_h11",
        "_limit",
        "_llhttp",
        "_remaining",
        "_state",
        "they_are_waiting_for_100_continue",
    )

    def __init__(self, max_incomplete_size: int, llhttp: Llhttp | None = None) -> None:
        self._limit = max_incomplete_size
        self._llhttp = llhttp if llhttp is not None else Llhttp()
        self._buffer = b""
        self._eof = False
        self._h11: h11.Connection | None = None
        self._state = _HEAD
        self._remaining = 0
        self.they_are_waiting_for_100_continue = False

    def receive_data(self, data: bytes) -> None:
        if self._h11 is not None:
            self._h11.receive_data(data)
        elif data:
            self._buffer = self._buffer + data if self._buffer else data
        else:
            self._eof = True

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        if self._h11 is not None:
            return self._h11.trailing_data
        return self._buffer, self._eof

    def next_event(self) -> Any:
        if self._h11 is not None:
            event = self._h11.next_event()
            self.they_are_waiting_for_100_continue = self._h11.they_are_waiting_for_100_continue
            return event
        state = self._state
        if state is _BODY:
            return self._body()
        if state is _DONE:
            return h11.PAUSED if self._buffer else h11.NEED_DATA
        buffer = self._buffer
        end = _HEAD_END.search(buffer)
        if end is None:
            if self._eof or len(buffer) > self._limit or (buffer and buffer[0] < 0x21):
                return self._to_h11()  # h11 refuses a line starting so at once
            return h11.NEED_DATA
        head = self._parse_head(buffer[: end.end()])
        if head is None:
            return self._to_h11()
        self._buffer = buffer[end.end() :]
        return head

    def take_head(self, data: bytes) -> ParsedHead | None:
        """A fresh reader's first input, when ``data`` is exactly one
        request head that takes the fast path (the common keep-alive
        request, arriving in one piece): its head, as ``next_event`` would
        return it. ``None``, with nothing taken, for anything else."""
        if self._buffer or self._h11 is not None or self._state is not _HEAD or self._eof:
            return None
        # The head's end (h11's: a line feed, an optional CR, a line feed)
        # is the end of ``data``: none before it, nothing after it.
        if len(data) > self._limit or data[-3:] != b"\n\r\n":
            return None  # incomplete (or too long: h11 says so)
        blank = _HEAD_END.search(data)  # the first blank line, either kind
        if blank is None or blank.start() != len(data) - 3:
            return None  # more than a head (body, pipelining)
        return self._parse_head(data)

    def _parse_head(self, data: bytes) -> ParsedHead | None:
        """The head if it takes the fast path (and the body framing set
        up), else ``None``."""
        parser = self._llhttp.take()
        collect, llhttp = parser
        reusable = True
        try:
            llhttp.feed_data(data)
        except httptools.HttpParserUpgrade:
            reusable = False  # an Upgrade request: llhttp stops after the head
        except httptools.HttpParserError:
            return None
        if not collect.complete:  # pragma: no cover - a head ends with its blank line
            return None
        method = llhttp.get_method()
        target = collect.url
        # llhttp lets repeated spaces through; h11 wants the exact grammar,
        # "method SP target SP HTTP/x.y", of which these are the parts.
        spaced = len(method)
        spaced_too = spaced + 1 + len(target)
        if data.find(b"\r\n") != spaced_too + 9 or data[spaced] != 32 or data[spaced_too] != 32:
            return None
        version = _VERSIONS.get(data[spaced_too + 1 : spaced_too + 9])
        if version is None or method == b"CONNECT":
            return None
        head = ParsedHead(method, target, version, collect.headers, collect.raw)
        hosts = 0
        length = -1
        expect = False
        for kind, value in collect.special:
            if kind is _HOST:
                hosts += 1
                head.host = value
            elif kind is _CONTENT_LENGTH:
                if length >= 0 or _DIGITS.fullmatch(value) is None:
                    return None
                length = int(value)
            elif kind is _TRANSFER_ENCODING:
                return None  # chunked: h11 reads it
            elif kind is _EXPECT:
                expect = expect or b"100-continue" in (
                    token.strip() for token in value.lower().split(b",")
                )
            elif kind is _TE:
                head.trailers = value.lower().find(b"trailers") >= 0  # (see _on_request)
            elif kind is _CONNECTION:
                head.connection += b"," + value.lower()
            else:  # _UPGRADE
                upgrade = head.upgrade
                head.upgrade = value if upgrade is None else upgrade + b"," + value
        if hosts > 1 or (hosts == 0 and version == b"1.1"):
            return None  # h11 refuses these
        if length >= 0:  # (0 too: h11 reports its EndOfMessage)
            self._state = _BODY
            self._remaining = length
            head.framed = True
        else:
            self._state = _DONE
        if reusable and collect.message_complete and llhttp.should_keep_alive():
            self._llhttp.give_back(parser)  # for the next request
        self.they_are_waiting_for_100_continue = expect and version == b"1.1"
        return head

    def _body(self) -> Any:
        remaining = self._remaining
        if remaining == 0:
            self._state = _DONE
            return _END_OF_MESSAGE
        buffer = self._buffer
        if not buffer:
            if self._eof:
                raise h11.RemoteProtocolError(
                    f"peer closed connection without sending complete message body: "
                    f"{remaining} bytes missing"
                )
            return h11.NEED_DATA
        self.they_are_waiting_for_100_continue = False
        if len(buffer) <= remaining:
            self._buffer = b""
            self._remaining = remaining - len(buffer)
            chunk = buffer
        else:
            self._buffer = buffer[remaining:]
            self._remaining = 0
            chunk = buffer[:remaining]
        return h11.Data(data=chunk)

    def _to_h11(self) -> Any:
        """Hand this request to h11, with every byte received so far."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limit)
        if self._buffer:
            conn.receive_data(self._buffer)
        if self._eof:
            conn.receive_data(b"")
        self._h11 = conn
        self._buffer = b""
        return self.next_event()
