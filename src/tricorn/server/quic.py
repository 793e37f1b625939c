"""The QUIC endpoint: one UDP socket, many HTTP/3 connections.

Theory of operation
-------------------
Each UDP socket's datagrams are read with plain non-blocking ``recvfrom``
calls, as many as the socket holds: on asyncio and uvloop from a reader
callback the loop keeps registered (the backend's ``receive_datagrams``),
on trio by a task that waits for readability between batches
(:meth:`QuicEndpoint.serve`). Each datagram goes to the
:class:`~tricorn.protocol.quic.QuicDispatcher`, which routes it by
destination connection ID to a :class:`QuicConnection`, answers it
(Version Negotiation, Retry) or drops it, or admits a new client.

A :class:`QuicConnection` is the event core's
:class:`~tricorn.server.connection.Connection` with datagrams for bytes: its
read loop takes the datagrams the endpoint queued for it (bounded; beyond
the bound they are dropped, as a full socket buffer would) and feeds them
to its :class:`~tricorn.protocol.http3.H3Adapter` in one batch; each flush
sends what the adapter has with ``sendto`` (never blocks: a datagram the
kernel has no room for is lost, and QUIC's loss recovery resends it). The
control task keeps the connection's one deadline (aioquic's timer, the
WebSockets' timers) like any connection's: one cancel scope per sleep,
no task per datagram. Streams, ASGI calls, backpressure and graceful
shutdown are the core's, unchanged.

Flushes are per round, not per response: after a batch of input that
opened requests the read loop does not flush (their responses follow, and
the ACK and QPACK acknowledgements the input owes ride with them; the ACK
timer flushes if the application is slow), and a response's last send
only queues its events and wakes the read loop, which flushes once every
stream woken in the same round has queued its own: a round of small
responses is one ``datagrams_to_send`` and mostly one datagram, with no
task switch per response.

Nothing one connection does can end the endpoint: the dispatcher's
decisions are plain lookups, and an error inside a connection ends that
connection's task group only.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import deque
from typing import Any, Final

import anyio
from anyio.abc import ByteStream, TaskGroup

from ..errors import ClientDisconnected
from ..protocol.events import ConnectionInfo, EndData, Event, Request, Response, Trailers
from ..protocol.http3 import H3Adapter
from ..protocol.quic import NewConnection, QuicDispatcher, Reply, Routed
from .connection import Connection
from .context import DefaultHeaders, ServerContext
from .streams import Stream

__all__ = ["QuicConnection", "QuicEndpoint"]

log: Final = logging.getLogger("tricorn.error")

_MAX_DATAGRAM: Final = 65536
_INBOX_LIMIT: Final = 512  # datagrams queued for one connection before more are dropped
_TLS_INFO: Final[dict[str, Any]] = {  # the ``tls`` extension for HTTP/3: always TLS 1.3
    "server_cert": None,
    "client_cert_chain": [],
    "client_cert_name": None,
    "client_cert_error": None,
    "tls_version": 0x0304,
    "cipher_suite": None,
}


class QuicEndpoint:
    """One bound UDP socket and the QUIC connections it carries.

    :param ctx: the server's shared context.
    :param sock: a bound UDP socket (ownership passes to the endpoint).
    :param dispatcher: routing and admission.
    :param default_headers: response headers added to every HTTP/3 response.
    """

    def __init__(
        self,
        ctx: ServerContext,
        sock: socket.socket,
        dispatcher: QuicDispatcher,
        default_headers: DefaultHeaders,
        server_cert: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.dispatcher = dispatcher
        self.default_headers = default_headers
        self._server: tuple[str, int | None] | None = _address(sock.getsockname())
        self._tls = {**_TLS_INFO, "server_cert": server_cert}
        self._closed = False

    async def serve(self, connections: TaskGroup) -> None:
        """Receive until cancelled or closed; connections run in ``connections``."""
        sock = self.sock
        clock = self.ctx.clock
        # The backend's receiver when the process layer gave one (a reader
        # callback on asyncio); else a task waiting for readability.
        receive_datagrams = getattr(self.ctx.io, "receive_datagrams", None)
        if receive_datagrams is not None:
            datagram = self._datagram

            def on_datagram(data: bytes, addr: Any) -> None:
                datagram(data, addr, clock(), connections)

            await receive_datagrams(sock, on_datagram, _MAX_DATAGRAM)
            return
        sock.setblocking(False)
        receive = sock.recvfrom
        while not self._closed:
            try:
                data, addr = receive(_MAX_DATAGRAM)
            except BlockingIOError:
                pass  # (waited for below: no await while handling an exception)
            except OSError as exc:
                if self._closed or exc.errno == errno.EBADF:
                    return
                continue  # e.g. ECONNREFUSED from an ICMP error: per datagram
            else:
                self._datagram(data, addr, clock(), connections)
                continue
            try:
                await anyio.wait_readable(sock)
            except (anyio.ClosedResourceError, OSError):
                return

    def _datagram(self, data: bytes, addr: Any, now: float, connections: TaskGroup) -> None:
        decision = self.dispatcher.receive(data, addr, now)
        if decision is None:
            return
        kind = type(decision)
        if kind is Routed:
            assert isinstance(decision, Routed)
            decision.owner.feed(data, addr)
        elif kind is Reply:
            assert isinstance(decision, Reply)
            self.sendto(decision.data, addr)
        elif kind is NewConnection:
            assert isinstance(decision, NewConnection)
            if len(self.ctx.connections) + self.ctx.starting >= self.ctx.config.max_connections:
                return  # at capacity: the client retries (or uses TCP)
            info = ConnectionInfo(
                client=_address(addr),
                server=self._server,
                scheme="https",
                alpn="h3",
                tls=self._tls,
            )
            connection = QuicConnection(self.ctx, self, decision.adapter, info)
            connection.route(decision.original_cid)
            connection.sync_routes()
            connection.feed(data, addr)
            self.ctx.starting += 1
            connections.start_soon(connection.run)

    def sendto(self, data: bytes, addr: Any) -> None:
        """Send one datagram now, or lose it (a full buffer, a vanished route)."""
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass

    def begin_shutdown(self) -> None:
        """Admit no new connections (the open ones are drained by ``serve()``)."""
        self.dispatcher.accepting = False

    def close(self) -> None:
        """Stop receiving and close the socket."""
        self._closed = True
        self.sock.close()


class _NoStream(ByteStream):
    """A QUIC connection has no byte stream; the core's stream-only paths
    (zero-copy files, lingering) are never taken for it."""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise anyio.EndOfStream

    async def send(self, item: bytes) -> None:
        raise anyio.ClosedResourceError

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class QuicConnection(Connection):
    """One QUIC connection: the core's connection over datagrams."""

    # (See Connection.__slots__.)
    __slots__ = (
        "_arrived",
        "_endpoint",
        "_flush_due",
        "_hold",
        "_inbox",
        "_routes",
    )

    adapter: H3Adapter
    quic = True

    def __init__(
        self,
        ctx: ServerContext,
        endpoint: QuicEndpoint,
        adapter: H3Adapter,
        info: ConnectionInfo,
    ) -> None:
        super().__init__(
            ctx,
            _NoStream(),
            info,
            adapter=adapter,
            max_streams=adapter.settings.max_concurrent_streams,
        )
        self._endpoint = endpoint
        self._default_headers = endpoint.default_headers
        self._inbox: deque[tuple[bytes, Any]] = deque()
        self._arrived: anyio.Event | None = None
        self._routes: set[bytes] = set()
        self._hold = False  # the read loop's flush waits for the responses
        self._flush_due = False  # a response was queued: the read loop flushes

    def feed(self, data: bytes, addr: Any) -> None:
        """A datagram for this connection (called by the endpoint)."""
        if len(self._inbox) < _INBOX_LIMIT:
            self._inbox.append((data, addr))
            if self._arrived is not None:
                self._arrived.set()

    def route(self, cid: bytes) -> None:
        """Route datagrams for ``cid`` here until the connection ends."""
        self._routes.add(cid)
        self._endpoint.dispatcher.add(cid, self)

    def sync_routes(self) -> None:
        """Register the connection IDs the adapter issued; forget retired ones."""
        dispatcher = self._endpoint.dispatcher
        for cid, issued in self.adapter.connection_ids():
            if issued:
                self.route(cid)
            else:
                self._routes.discard(cid)
                dispatcher.remove(cid)

    async def run(self) -> None:
        self.ctx.started()
        await super().run()

    async def _read_loop(self) -> None:
        adapter = self.adapter
        inbox = self._inbox
        while not self._closed:
            now = self._clock()
            events: list[Event] = adapter.next_events(now)
            if not events:
                if not inbox:
                    if self._flush_due:
                        self._flush_due = False
                        await self._flush()
                        continue
                    self._set_deadline(adapter.next_deadline(now))
                    self._arrived = self.new_event()
                    await self._arrived.wait()
                    self._arrived = None
                    if self._is_closed():
                        return
                    continue
                now = self._clock()
                while inbox:
                    data, addr = inbox.popleft()
                    events += adapter.receive_datagram(data, addr, now)
                self.sync_routes()
                for event in events:
                    if type(event) is Request:
                        # Its response flushes soon: what this input owes
                        # (its ACK, QPACK acknowledgements, credit) goes
                        # out with it, not in a datagram of its own. (If
                        # the app is slow, the ACK timer flushes.)
                        self._hold = True
                        break
            if await self._handle(events):
                return

    async def _flush(self) -> bool:
        if self._closed:
            return False
        if self._hold:
            self._hold = False
            return True
        self._flush_due = False
        adapter = self.adapter
        now = self._clock()
        sendto = self._endpoint.sendto
        for data, addr in adapter.datagrams_to_send(now):
            sendto(data, addr)
        self._written = self._queued
        self._set_deadline(adapter.next_deadline(now))
        return True

    async def send_events(self, events: tuple[Event, ...], stream: Stream) -> None:
        """A response's last events (the whole of a small one) are queued in
        the adapter and the read loop flushes them once every stream woken
        with this one has had its turn: one flush (and mostly one datagram)
        for the responses of a round, no task switch per response. (Its
        task yields anyway when it returns. Other sends take the core's
        path: a checkpoint, then a flush.)"""
        last = events[-1]
        if type(last) is Response:  # (a small response whole: head, body and end)
            final = last.end
        else:
            final = type(last) is EndData or type(last) is Trailers
        if not final or stream.websocket:
            await super().send_events(events, stream)
            return
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        adapter = self.adapter
        try:
            for event in events:
                adapter.send(event)
        finally:
            self._wake()
            if not self._flush_due:
                self._flush_due = True
                if self._arrived is not None:
                    self._arrived.set()
        while not adapter.writable(stream.stream_id):
            await stream.wait_writable()
            if self._closed:
                raise ClientDisconnected("the connection is closed")

    async def _terminate(self) -> None:
        await super()._terminate()
        if self._arrived is not None:
            self._arrived.set()

    async def _close(self) -> None:
        if self._transport_closed:
            return
        self._transport_closed = True
        now = self._clock()
        for data, addr in self.adapter.datagrams_to_send(now):  # CONNECTION_CLOSE
            self._endpoint.sendto(data, addr)
        dispatcher = self._endpoint.dispatcher
        for cid in self._routes:
            dispatcher.remove(cid)
        self._routes.clear()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None
