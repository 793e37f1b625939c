"""The sans-IO half of a QUIC endpoint: what to do with each datagram that
arrives on a UDP socket shared by many connections (RFC 9000 §5.2, §6,
§8.1, §10.3).

:class:`QuicDispatcher` keeps the routing table (every connection ID a
connection issued, until it is retired) and decides, per datagram:

* it belongs to a known connection: :class:`Routed` (the server feeds it to
  that connection's adapter);
* it is a long-header packet of a QUIC version we do not speak: a Version
  Negotiation packet goes back (:class:`Reply`), never in answer to a
  Version Negotiation packet (two servers could be made to bounce them
  forever);
* it is a client Initial of at least 1200 bytes (RFC 9000 §14.1: smaller
  ones are dropped, which also caps what a spoofed address can make us
  send): with ``retry`` on and no token, a Retry (:class:`Reply`) that
  makes the client prove its address; otherwise a new connection
  (:class:`NewConnection` with its :class:`~tricorn.protocol.http3.H3Adapter`);
* anything else (short-header packets for unknown connections, garbage,
  truncated packets, Initials with an invalid token, new connections
  while shutting down): ``None``, dropped. A client whose connection is
  gone times out or starts a new one.

The server owns the sockets and the connections; this module never does
I/O and is driven with bytes in unit tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aioquic._buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler

from ..errors import ConfigError
from .http3 import BASE_DATAGRAM_SIZE, H3Adapter, H3Settings

__all__ = [
    "CID_LENGTH",
    "NewConnection",
    "QuicDispatcher",
    "QuicSettings",
    "Reply",
    "Routed",
    "cid_factory",
    "server_configuration",
]

CID_LENGTH = 8  # bytes of every connection ID we issue
_MIN_INITIAL = 1200  # RFC 9000 §14.1: a client's Initial datagram is at least this


@dataclass(frozen=True, slots=True)
class QuicSettings:
    """The QUIC transport's settings (``quic_*`` keys).

    :param idle_timeout: seconds without packets before a connection is
        dropped (the max_idle_timeout transport parameter).
    :param max_datagram_size: the largest UDP payload we send: connections
        start at 1200 bytes and probe the path up to this (RFC 8899).
    :param congestion_control: aioquic's algorithm (``reno`` or ``cubic``).
    :param retry: answer new clients with a Retry first (address validation).
    :param worker: ``(index, count)`` of this worker among the processes
        sharing the UDP port: every connection ID issued here starts with a
        byte equal to ``index`` modulo ``count``, which is how the kernel's
        routing program (``tricorn.sockets``) finds this worker.
    """

    idle_timeout: float = 30.0
    max_datagram_size: int = 16384
    congestion_control: str = "reno"
    retry: bool = False
    worker: tuple[int, int] = (0, 1)


def cid_factory(index: int, count: int) -> Callable[[], bytes]:
    """New connection IDs whose first byte modulo ``count`` is ``index``."""
    if count == 1:
        return lambda: os.urandom(CID_LENGTH)
    choices = range(index % count, 256, count)

    def new_cid() -> bytes:
        return bytes((secrets.choice(choices),)) + os.urandom(CID_LENGTH - 1)

    return new_cid


def server_configuration(
    settings: QuicSettings,
    h3: H3Settings,
    certfile: str,
    keyfile: str,
    password: str | None,
) -> QuicConfiguration:
    """aioquic's configuration for our HTTP/3 server side.

    :raises ConfigError: the certificate or key cannot be loaded (naming
        ``certfile`` or ``keyfile``).
    """
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=["h3"],
        connection_id_length=CID_LENGTH,
        idle_timeout=settings.idle_timeout,
        # Every connection starts at the QUIC minimum; larger datagrams, up
        # to settings.max_datagram_size, only once a probe got through.
        max_datagram_size=BASE_DATAGRAM_SIZE,
        congestion_control_algorithm=settings.congestion_control,
        max_data=h3.connection_window,
        max_stream_data=h3.stream_window,
    )
    try:
        configuration.load_cert_chain(certfile, keyfile, password)
    except OSError as exc:
        key = "keyfile" if exc.filename == keyfile else "certfile"
        value = keyfile if key == "keyfile" else certfile
        raise ConfigError(key, value, "a readable PEM file", exc.strerror or str(exc)) from None
    except (ValueError, TypeError) as exc:  # cryptography: not a key, bad password
        raise ConfigError(
            "keyfile",
            keyfile,
            "a PEM private key matching certfile (and keyfile_password)",
            " ".join(str(exc).split()),
        ) from None
    return configuration


@dataclass(frozen=True, slots=True)
class Routed:
    """The datagram belongs to the connection registered as ``owner``."""

    owner: Any


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``data`` back to the sender (Version Negotiation, Retry)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NewConnection:
    """A new client: serve ``adapter``; register its connection IDs."""

    adapter: H3Adapter
    original_cid: bytes


class QuicDispatcher:
    """Routing and admission for one UDP endpoint (see the module docstring).

    :param configuration: from :func:`server_configuration`.
    :param quic: the transport settings.
    :param h3: the HTTP/3 adapter's settings.
    """

    def __init__(
        self, configuration: QuicConfiguration, quic: QuicSettings, h3: H3Settings
    ) -> None:
        self.configuration = configuration
        self.settings = h3
        self._routes: dict[bytes, Routed] = {}
        self._versions = frozenset(configuration.supported_versions)
        self._retry = QuicRetryTokenHandler() if quic.retry else None
        self._new_cid = cid_factory(*quic.worker)
        self._max_datagram_size = quic.max_datagram_size
        self.accepting = True  # False while shutting down: no new connections

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, cid: bytes, owner: Any) -> None:
        """Route datagrams for ``cid`` to ``owner``."""
        self._routes[cid] = Routed(owner)

    def remove(self, cid: bytes) -> None:
        """Forget ``cid`` (retired, or its connection ended)."""
        self._routes.pop(cid, None)

    def receive(self, data: bytes, addr: Any, now: float) -> Routed | Reply | NewConnection | None:
        """Decide what to do with one datagram from ``addr``."""
        if not data:
            return None
        if not data[0] & 0x80:
            # A short header (nearly every datagram): its connection or
            # nothing; the connection checks the rest of the header.
            return self._routes.get(data[1 : 1 + CID_LENGTH])
        if len(data) >= 7:  # a long header
            version = int.from_bytes(data[1:5], "big")
            if version not in self._versions:
                return self._negotiate(data, version)
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            return None  # not QUIC, or truncated
        routed = self._routes.get(header.destination_cid)
        if routed is not None:
            return routed
        if (
            header.packet_type != QuicPacketType.INITIAL
            or len(data) < _MIN_INITIAL
            or not self.accepting
            or header.version is None
        ):
            return None
        original_cid = header.destination_cid
        retry_cid: bytes | None = None
        if self._retry is not None:
            if not header.token:
                source_cid = self._new_cid()  # (the client's next Initial comes here)
                token = self._retry.create_token(
                    address=addr,
                    original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=source_cid,
                    now=now,
                )
                return Reply(
                    encode_quic_retry(
                        version=header.version,
                        source_cid=source_cid,
                        destination_cid=header.source_cid,
                        original_destination_cid=header.destination_cid,
                        retry_token=token,
                    )
                )
            try:
                original_cid = self._retry.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=now,
                )
            except ValueError:
                return None  # forged, expired or from another address
            retry_cid = header.destination_cid
        adapter = H3Adapter(
            self.settings,
            self.configuration,
            now,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_cid,
            new_cid=self._new_cid,
            max_datagram_size=self._max_datagram_size,
        )
        return NewConnection(adapter, header.destination_cid)

    def _negotiate(self, data: bytes, version: int) -> Reply | None:
        """A long-header packet of a version we do not speak: Version
        Negotiation, built from the fields every version shares (RFC 8999
        §5.1: version, then each connection ID after its length byte)."""
        if version == 0 or len(data) < _MIN_INITIAL:
            return None  # a VN packet itself, or too small to answer (§6.1)
        dcid_end = 6 + data[5]
        if dcid_end >= len(data):
            return None
        scid_end = dcid_end + 1 + data[dcid_end]
        if scid_end > len(data) or data[5] > 255 or data[dcid_end] > 255:
            return None
        return Reply(
            encode_quic_version_negotiation(
                source_cid=data[6:dcid_end],
                destination_cid=data[dcid_end + 1 : scid_end],
                supported_versions=list(self.configuration.supported_versions),
            )
        )
