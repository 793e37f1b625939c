"""The edge between sockets and the event core: TLS handshake with a
deadline, connection facts from anyio's typed attributes, and the ASGI
``tls`` extension.

OSError and ssl errors are translated here, once, into anyio's names
(``BrokenResourceError``): the peer broke the connection.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute

from ..protocol.events import ConnectionInfo
from ..protocol.proxy import ProxyHeader, parse_proxy_header

__all__ = ["TLSByteStream", "TLSInfo", "connection_info", "read_proxy_header", "start_tls"]

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TLSInfo:
    """Per-SSL-context facts for the ``tls`` extension, computed once: the
    server certificate (PEM) and the IANA ids of the cipher suites."""

    __slots__ = ("cipher_ids", "server_cert")

    def __init__(self, context: ssl.SSLContext, certfile: str | None) -> None:
        self.cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
        self.server_cert = self.server_certificate(certfile)

    @staticmethod
    def server_certificate(certfile: str | None) -> str | None:
        """The first certificate of ``certfile`` (PEM), for the extension."""
        if not certfile:
            return None
        with open(certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
        end = text.find("-----END CERTIFICATE-----")
        start = text.find("-----BEGIN CERTIFICATE-----")
        if start == -1 or end == -1:
            return None
        return text[start : end + len("-----END CERTIFICATE-----")] + "\n"

    def extension(self, stream: ByteStream) -> dict[str, Any]:
        """The ASGI ``tls`` extension dictionary for one TLS connection."""
        ssl_object: ssl.SSLObject = stream.extra(TLSAttribute.ssl_object)
        cipher = ssl_object.cipher()
        der = ssl_object.getpeercert(binary_form=True)
        chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
        name = None
        if der:
            peer = ssl_object.getpeercert() or {}
            subject: Any = peer.get("subject", ())
            name = ",".join(f"{k}={v}" for rdn in reversed(subject) for k, v in rdn) or None
        return {
            "server_cert": self.server_cert,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": self.cipher_ids.get(cipher[0]) if cipher else None,
        }


async def start_tls(stream: ByteStream, context: ssl.SSLContext, timeout: float) -> TLSByteStream:
    """Run the server side of a TLS handshake within ``timeout`` seconds.

    :raises TimeoutError: the handshake did not finish in time.
    :raises anyio.BrokenResourceError: the handshake failed (bad client
        hello, plain HTTP on a TLS port, reset).
    """
    incoming = ssl.MemoryBIO()
    outgoing = ssl.MemoryBIO()
    kind = _CallbackTLSByteStream if hasattr(stream, "set_receiver") else TLSByteStream
    tls = kind(stream, context.wrap_bio(incoming, outgoing, server_side=True))
    with anyio.fail_after(timeout):
        try:
            await tls.handshake(incoming, outgoing)
        except (ssl.SSLError, OSError, anyio.EndOfStream) as exc:
            raise anyio.BrokenResourceError(str(exc) or "closed during the handshake") from exc
    return tls


class TLSByteStream(ByteStream):
    """TLS over a byte stream through memory BIOs: anyio's ``TLSStream``
    with ``standard_compatible=False`` (no close_notify either way), less
    its generic machinery, which cost a tenth of a small HTTPS request:
    a receive goes to the transport when nothing is buffered instead of
    trying a read that raises first, and a send is one write and one flush.
    The typed attributes are ``TLSStream``'s (``TLSAttribute``).

    The TLS connection is already set up when the streams's methods are
    used: :meth:`handshake` first (``start_tls``)."""

    def __init__(self, transport_stream: ByteStream, ssl_object: ssl.SSLObject) -> None:
        self.transport_stream = transport_stream
        self._ssl = ssl_object
        self._incoming: ssl.MemoryBIO
        self._outgoing: ssl.MemoryBIO
        self._broken = False  # a record was lost on its way out: nothing more goes
        # Decrypted in the transport's callback (set_receiver) and not
        # taken there: receive() returns these first, and skips the first
        # ``_fed`` bytes the transport returns (their records were read).
        self._receiver: Callable[[bytes], bool] | None = None
        self._plain = b""
        self._fed = 0
        self._error: BaseException | None = None  # met in the callback, raised by receive()

    def _records(self, data: bytes) -> bool:
        """Ciphertext from the transport's callback while :meth:`receive`
        waits for it (nothing is buffered). ``True``: taken (the plaintext
        went to the receiver, or was only part of a record)."""
        receiver = self._receiver
        if receiver is None or self._broken or self._plain or self._fed or self._error:
            return False
        incoming = self._incoming
        incoming.write(data)
        ssl_object = self._ssl
        plain = b""
        try:
            # Read while a record (or its decrypted rest) is left: a read
            # past the last one would only raise SSLWantReadError, whose
            # formatted message and unwinding cost more than the record.
            while True:
                chunk = ssl_object.read(65536)
                if not chunk:
                    break
                plain += chunk
                if not (incoming.pending or ssl_object.pending()):
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._error = exc
        if self._outgoing.pending or self._error is not None:
            pass  # bytes to write back (KeyUpdate), or an error: receive() sees to it
        elif not plain or receiver(plain):
            return True
        # The waiting receive() takes it from here; the transport hands it
        # these bytes too, which the BIO has had.
        self._plain = plain
        self._fed = len(data)
        return False

    async def handshake(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        """The server side of the handshake, over the BIOs of ``ssl_object``.

        :raises ssl.SSLError: the client broke it off or sent nonsense.
        :raises anyio.EndOfStream: the client closed first.
        """
        self._incoming = incoming
        self._outgoing = outgoing
        ssl_object = self._ssl
        while True:
            try:
                ssl_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._fill()
        await self._flush()  # the last flight (and TLS 1.3 session tickets)

    async def _flush(self) -> None:
        """Write what TLS has queued for the peer."""
        if self._outgoing.pending:
            data = self._outgoing.read()
            try:
                await self.transport_stream.send(data)
            except BaseException:
                # The record's sequence number is spent: the peer could not
                # decrypt anything after it (as anyio and trio: broken).
                self._broken = True
                raise

    async def _fill(self) -> None:
        """Flush, then wait for the next bytes from the peer.

        :raises anyio.EndOfStream: the peer closed the TCP stream (no
            close_notify needed: ``standard_compatible`` is off).
        """
        await self._flush()
        try:
            data = await self.transport_stream.receive()
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        fed = self._fed
        if fed:  # (see _records)
            self._fed = max(fed - len(data), 0)
            data = data[fed:]
        if data:
            self._incoming.write(data)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        ssl_object = self._ssl
        while True:
            if self._fed:  # (records read in the callback: the transport's copy goes)
                await self._fill()
                continue
            plain = self._plain
            if plain:  # decrypted in the callback and not taken there
                self._plain = plain[max_bytes:]
                if self._outgoing.pending:
                    await self._flush()
                return plain[:max_bytes]
            if self._error is not None:
                raise self._read_error(self._error)
            # With nothing buffered a read would only raise SSLWantReadError.
            if self._incoming.pending or ssl_object.pending():
                try:
                    data = ssl_object.read(max_bytes)
                except ssl.SSLWantReadError:
                    pass  # a record in pieces
                except ssl.SSLError as exc:
                    raise self._read_error(exc) from None
                else:
                    if not data:
                        raise anyio.EndOfStream
                    if self._outgoing.pending:  # e.g. the answer to a TLS 1.3 KeyUpdate
                        await self._flush()
                    return data
            await self._fill()

    @staticmethod
    def _read_error(exc: BaseException) -> Exception:
        """What a failed read raises: the end of the stream for a
        close_notify or a TCP close (no close_notify needed), else broken."""
        if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError) or (
            isinstance(exc, ssl.SSLError) and "UNEXPECTED_EOF" in (exc.strerror or "")
        ):
            return anyio.EndOfStream()
        broken = anyio.BrokenResourceError()
        broken.__cause__ = exc
        return broken

    async def send(self, item: bytes) -> None:
        if self._broken:
            raise anyio.BrokenResourceError
        ssl_object = self._ssl
        while True:
            try:
                ssl_object.write(item)
                break
            except ssl.SSLWantReadError:  # (TLS 1.2 renegotiation: not with ours)
                await self._fill()
            except ssl.SSLError as exc:
                raise anyio.BrokenResourceError from exc
        await self._flush()

    async def send_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close here (no close_notify is sent)")

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        ssl_object = self._ssl
        return {
            **self.transport_stream.extra_attributes,
            TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
            TLSAttribute.channel_binding_tls_unique: ssl_object.get_channel_binding,
            TLSAttribute.cipher: ssl_object.cipher,
            TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
            TLSAttribute.server_side: lambda: True,
            TLSAttribute.shared_ciphers: ssl_object.shared_ciphers,
            TLSAttribute.standard_compatible: lambda: False,
            TLSAttribute.ssl_object: lambda: ssl_object,
            TLSAttribute.tls_version: ssl_object.version,
        }


class _CallbackTLSByteStream(TLSByteStream):
    """A :class:`TLSByteStream` over a transport that hands over bytes in
    its callback (asyncio's, ``set_receiver``): it offers the same hook,
    with plaintext (see ``_records``)."""

    def set_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        """As ``_AsyncioStream.set_receiver``, with plaintext: while a
        :meth:`receive` waits, the records that arrive are decrypted in
        the transport's callback and offered to ``receiver``."""
        self._receiver = receiver
        self.transport_stream.set_receiver(  # type: ignore[attr-defined]
            None if receiver is None else self._records
        )


def _address(value: Any) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address. An IPv4 peer of a dual-stack
    IPv6 socket (``::ffff:192.0.2.1``) is given as plain IPv4, as an IPv4
    socket would give it, so the scope and ``forwarded_allow_ips`` see one
    form of each address."""
    if isinstance(value, tuple) and len(value) >= 2:
        host = str(value[0])
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return host, int(value[1])
    return None


def connection_info(stream: ByteStream, tls: TLSInfo | None) -> ConnectionInfo:
    """Facts about an accepted connection, from typed attributes."""
    family = stream.extra(SocketAttribute.family, None)
    local = stream.extra(SocketAttribute.local_address, None)
    server: tuple[str, int | None] | None
    if family == socket.AF_UNIX:
        client = None
        server = (str(local), None) if local else None
    else:
        client = _address(stream.extra(SocketAttribute.remote_address, None))
        server = _address(local)
    if tls is None or not isinstance(stream, TLSByteStream):
        return ConnectionInfo(client=client, server=server, scheme="http")
    return ConnectionInfo(
        client=client,
        server=server,
        scheme="https",
        alpn=stream.extra(TLSAttribute.alpn_protocol, None),
        tls=tls.extension(stream),
    )


async def read_proxy_header(stream: ByteStream, timeout: float) -> tuple[ByteStream, ProxyHeader]:
    """Read the PROXY protocol header at the start of ``stream`` (within
    ``timeout`` seconds). Returns the stream to go on with (the bytes read
    past the header come first) and the header.

    :raises ProxyHeaderError: no valid header (missing or malformed).
    :raises TimeoutError: the header did not arrive in time.
    :raises anyio.EndOfStream: the peer closed first.
    """
    buffer = b""
    with anyio.fail_after(timeout):
        while (header := parse_proxy_header(buffer)) is None:
            try:
                buffer += await stream.receive()
            except OSError as exc:
                raise anyio.BrokenResourceError(str(exc)) from exc
    rest = buffer[header.length :]
    return (_Prefixed(stream, rest) if rest else stream), header


class _Prefixed(ByteStream):
    """``stream`` with ``prefix`` returned first by ``receive``."""

    def __init__(self, stream: ByteStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    @property
    def extra_attributes(self) -> Any:
        return self._stream.extra_attributes

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()
