"""The edge between sockets and the event core: TLS handshake with a
deadline, connection facts from anyio's typed attributes, and the ASGI
``tls`` extension.

OSError and ssl errors are translated here, once, into anyio's names
(``BrokenResourceError``): the peer broke the connection.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

from ..protocol.events import ConnectionInfo
from ..protocol.proxy import ProxyHeader, parse_proxy_header

__all__ = ["TLSInfo", "connection_info", "read_proxy_header", "start_tls"]

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

    def extension(self, stream: TLSStream) -> dict[str, Any]:
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


async def start_tls(stream: ByteStream, context: ssl.SSLContext, timeout: float) -> TLSStream:
    """Run the server side of a TLS handshake within ``timeout`` seconds.

    :raises TimeoutError: the handshake did not finish in time.
    :raises anyio.BrokenResourceError: the handshake failed (bad client
        hello, plain HTTP on a TLS port, reset).
    """
    with anyio.fail_after(timeout):
        try:
            return await TLSStream.wrap(
                stream, server_side=True, ssl_context=context, standard_compatible=False
            )
        except (ssl.SSLError, OSError) as exc:
            raise anyio.BrokenResourceError(str(exc)) from exc


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
    if tls is None or not isinstance(stream, TLSStream):
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
