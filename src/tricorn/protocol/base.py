"""The contract every sans-IO protocol adapter fulfils.

An adapter is a plain object driven by the event core
(``tricorn.server.connection``):

* ``receive_data(data, now)`` -- feed bytes read from the transport (``b""``
  means the peer closed its side); returns the inbound events they complete.
* ``send(event)`` -- queue an outbound event (response head, body, ...).
  Never blocks and never does I/O; the bytes accumulate.
* ``data_to_send()`` -- take the queued bytes (``b""`` if none).
* ``next_events(now)`` -- events the adapter can produce without new input:
  a pipelined request it already holds once the response before it is
  complete, or ``ConnectionClosed`` once an exchange ended in a way that
  forbids reusing the connection (``Connection: close``, an aborted
  response). The core calls it before every read.
* ``wants_read`` -- ``False`` while the adapter refuses more input (e.g. a
  pipelined request waits for the response before it, or the application
  has not consumed the body already delivered; reading now would buffer
  without bound), and while ``next_events`` has something to hand out. The
  core stops reading until it turns ``True``; it re-checks after every
  ``send``.
* ``next_deadline(now)`` / ``handle_timeout(now)`` -- the adapter's timers as
  data. The core calls ``next_deadline(now)`` just before it waits for
  input at time ``now`` (so a timer that starts "when we begin waiting",
  like the keep-alive idle timer after a response, can be stamped lazily)
  and waits no longer than the returned deadline (it may ask again while
  waiting, e.g. when a response completes); if it passes, the core
  calls ``handle_timeout(now)``; the returned events (typically a
  ``ConnectionClosed``, perhaps after a queued error response) are handled
  like any other.
* ``begin_shutdown()`` -- graceful shutdown: finish what is in flight, accept
  nothing new (HTTP/1.1: ``Connection: close`` on the current response, or
  close at once when idle; HTTP/2: GOAWAY).
* ``file_framing(stream_id, length)`` -- for zero-copy file bodies: the
  bytes to write before and after ``length`` raw body bytes the core sends
  itself (``sendfile``), the adapter counting them as sent; ``None`` when
  the body must go through ``send(Data)`` (HTTP/2 and HTTP/3 frame every
  byte; HEAD sends none).
* ``writable(stream_id)`` -- ``False`` while the stream has response data
  the adapter holds back (HTTP/2 and HTTP/3 flow-control windows closed);
  the core makes the application's ``send()`` wait until the adapter
  reports ``Writable(stream_id)``, so held-back data is bounded by one
  application chunk per stream. HTTP/1.1 is always writable (the transport
  pushes back instead).
* ``idle`` -- ``True`` when no stream is open: the connection can be closed
  without losing anything.

Time is always passed in (seconds on the core's clock); adapters never read
a clock, never await and never import anyio.
"""

from __future__ import annotations

from typing import Protocol

from .events import Event

__all__ = ["ProtocolAdapter"]


class ProtocolAdapter(Protocol):
    """Structural type of every adapter (see the module docstring)."""

    @property
    def wants_read(self) -> bool: ...

    @property
    def idle(self) -> bool: ...

    def receive_data(self, data: bytes, now: float) -> list[Event]: ...

    def next_events(self, now: float) -> list[Event]: ...

    def send(self, event: Event) -> None: ...

    def data_to_send(self) -> bytes: ...

    def next_deadline(self, now: float) -> float | None: ...

    def handle_timeout(self, now: float) -> list[Event]: ...

    def begin_shutdown(self) -> list[Event]: ...

    def file_framing(self, stream_id: int, length: int) -> tuple[bytes, bytes] | None: ...

    def writable(self, stream_id: int) -> bool: ...
