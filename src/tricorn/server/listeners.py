"""Accept loops: from bound sockets to connections.

Each listening socket gets one accept loop in the server's task group. A
loop waits for a free slot (``max_connections``) before accepting, sleeps
briefly and retries when the process is out of file descriptors or memory
(EMFILE, ENFILE, ENOBUFS, ENOMEM: the server must not crash), performs the
TLS handshake (bounded by ``ssl_handshake_timeout``) inside the
connection's own task, and hands the stream to a :class:`Connection`.

The loop calls ``accept()`` on the non-blocking socket itself and waits
only in ``wait_readable``, so a cancellation (shutdown, a worker retiring)
never lands between the kernel handing over a connection and the server
taking it: an accept cancelled inside the event loop would drop a client
the kernel had already given us, and with it the request it sent. What
is not accepted stays in the backlog for the other workers.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import socket
import ssl

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, SocketStream, TaskGroup, UNIXSocketStream

from ..protocol.proxy import ProxyHeader, ProxyHeaderError
from .connection import Connection
from .context import ServerContext
from .transport import TLSInfo, connection_info, read_proxy_header, start_tls

__all__ = ["ACCEPT_CAPACITY_ERRNOS", "Listener"]

log = logging.getLogger("tricorn.error")

ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_CAPACITY_BACKOFF = 0.1  # seconds to wait for a descriptor to be freed


class Listener:
    """One listening socket and its accept loop.

    :param ctx: the server's shared context.
    :param sock: a bound, listening socket (ownership passes to the listener).
    :param ssl_context: TLS settings for this socket, or ``None`` for cleartext.
    """

    def __init__(
        self, ctx: ServerContext, sock: socket.socket, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.ctx = ctx
        self.sock = sock
        self.ssl_context = ssl_context
        self._tls_info = TLSInfo(ssl_context, ctx.config.certfile) if ssl_context else None

    async def serve(self, connections: TaskGroup) -> None:
        """Accept until cancelled or closed; connections run in ``connections``."""
        sock = self.sock
        sock.setblocking(False)
        unix = sock.family == socket.AF_UNIX
        while True:
            await self.ctx.wait_for_slot(self._pending)
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                try:
                    await anyio.wait_readable(sock)  # cancellable: nothing taken yet
                except (anyio.ClosedResourceError, OSError):
                    return
                continue
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    if sock.fileno() == -1:
                        return  # closed
                    raise
                log.warning("accept() failed (%s); retrying", errno.errorcode[exc.errno])
                await anyio.sleep(_CAPACITY_BACKOFF)
                continue
            self.ctx.starting += 1
            connections.start_soon(self._adopt, client, unix)

    async def _pending(self) -> None:
        """Return once a client waits to be accepted."""
        await anyio.wait_readable(self.sock)

    async def aclose(self) -> None:
        """Stop accepting: new connections are refused from now on (unless
        another worker still listens on the same socket)."""
        anyio.notify_closing(self.sock)  # a wait_readable on it ends first
        self.sock.close()
        await anyio.lowlevel.checkpoint()

    async def _adopt(self, client: socket.socket, unix: bool) -> None:
        try:
            kind = UNIXSocketStream if unix else SocketStream
            stream: ByteStream = await kind.from_socket(client)
        except Exception as exc:
            # The peer reset the connection since accept(): anyio asks the
            # socket for its peer (ENOTCONN) and refuses it. Raised on, it
            # ended the worker (a health checker that connects and resets did).
            log.debug("dropping a connection gone before it was adopted: %r", exc)
            client.close()
            self.ctx.started()
            return
        except BaseException:
            client.close()
            self.ctx.started()
            raise
        if self.ctx.io is not None:
            # (Here: this frame holds the stream it passes on for the
            # connection's life, and anyio's stream is garbage once wrapped.)
            stream = self.ctx.io.wrap(stream)
        await self._handle(stream)

    async def _handle(self, stream: ByteStream) -> None:
        config = self.ctx.config
        transport: ByteStream = stream
        proxied: ProxyHeader | None = None
        try:
            if config.proxy_protocol:
                # Before TLS: the load balancer writes it in the clear.
                stream, proxied = await read_proxy_header(stream, config.ssl_handshake_timeout)
                transport = stream
            if self.ssl_context is not None:
                transport = await start_tls(stream, self.ssl_context, config.ssl_handshake_timeout)
        except ProxyHeaderError as exc:
            log.info("closing a connection without a valid PROXY header: %s", exc)
            await anyio.aclose_forcefully(stream)
            return
        except (TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            log.debug("connection setup failed (PROXY header or TLS handshake): %r", exc)
            await anyio.aclose_forcefully(stream)
            return
        finally:
            self.ctx.started()
        # No await between started() and run() registering the connection:
        # the accept loop never sees a gap in the count.
        try:
            info = connection_info(transport, self._tls_info)
        except OSError as exc:  # (getpeername: the peer reset it meanwhile)
            log.debug("dropping a connection gone before it was served: %r", exc)
            await anyio.aclose_forcefully(transport)
            return
        if proxied is not None and proxied.client is not None:
            info = dataclasses.replace(info, client=proxied.client, server=proxied.server)
        await Connection(self.ctx, transport, info).run()
