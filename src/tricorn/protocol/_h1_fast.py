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
from typing import Any

import h11

try:
    import httptools
except ImportError:  # pragma: no cover - the extra [httptools] is absent
    httptools = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "FastReader", "ParsedHead"]

AVAILABLE = httptools is not None

_HEAD_END = re.compile(rb"\n\r?\n")  # h11's end of a head (bare LF allowed)
_DIGITS = re.compile(rb"[0-9]+")
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
_OWS = b" \t"
_END_OF_MESSAGE = h11.EndOfMessage()


class ParsedHead:
    """A request head read on the fast path; the attributes the adapter
    reads from an ``h11.Request``. ``headers`` are (lowercased name,
    value) pairs, ``raw`` (name as sent, value) pairs."""

    __slots__ = ("headers", "http_version", "method", "raw", "target")

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


class _Collect:
    """httptools' callbacks for one head."""

    __slots__ = ("complete", "fields", "url")

    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


_HEAD = 0  # reading the head
_BODY = 1  # reading a Content-Length body
_DONE = 2  # the request has been read


class FastReader:
    """One request, read as described in the module docstring."""

    __slots__ = (
        "_buffer",
        "_eof",
        "_h11",
        "_limit",
        "_remaining",
        "_state",
        "they_are_waiting_for_100_continue",
    )

    def __init__(self, max_incomplete_size: int) -> None:
        self._limit = max_incomplete_size
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

    def _parse_head(self, data: bytes) -> ParsedHead | None:
        """The head if it takes the fast path (and the body framing set
        up), else ``None``."""
        collect = _Collect()
        parser = httptools.HttpRequestParser(collect)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # an Upgrade request: llhttp stops after the head
        except httptools.HttpParserError:
            return None
        if not collect.complete:  # pragma: no cover - a head ends with its blank line
            return None
        version = _VERSIONS.get(parser.get_http_version())
        method = parser.get_method()
        target = collect.url
        if version is None or method == b"CONNECT":
            return None
        # llhttp lets repeated spaces through; h11 wants the exact grammar.
        line_end = data.find(b"\r\n")
        if data[:line_end] != b"%s %s HTTP/%s" % (method, target, version):
            return None
        headers: list[tuple[bytes, bytes]] = []
        raw: list[tuple[bytes, bytes]] = []
        hosts = 0
        length = -1
        expect = False
        for name, value in collect.fields:
            value = value.rstrip(_OWS)
            lowered = name.lower()
            headers.append((lowered, value))
            raw.append((name, value))
            if lowered == b"host":
                hosts += 1
            elif lowered == b"content-length":
                if length >= 0 or _DIGITS.fullmatch(value) is None:
                    return None
                length = int(value)
            elif lowered == b"transfer-encoding":
                return None  # chunked: h11 reads it
            elif lowered == b"expect":
                expect = expect or b"100-continue" in (
                    token.strip() for token in value.lower().split(b",")
                )
        if hosts > 1 or (hosts == 0 and version == b"1.1"):
            return None  # h11 refuses these
        if length >= 0:  # (0 too: h11 reports its EndOfMessage)
            self._state = _BODY
            self._remaining = length
        else:
            self._state = _DONE
        self.they_are_waiting_for_100_continue = expect and version == b"1.1"
        return ParsedHead(method, target, version, headers, raw)

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
