"""PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer
(HAProxy ``send-proxy``, nginx ``proxy_protocol``, AWS NLB, many Kubernetes
ingresses) writes at the start of each TCP connection, naming the client it
accepted the connection from.

:func:`parse_proxy_header` is sans-IO: give it the bytes read so far; it
answers with the header (and how many bytes it took), asks for more, or
refuses. Limits come from the specification: a v1 line is at most 107 bytes
with its CRLF; a v2 header is 16 bytes plus its length field (at most
65535), its TLVs skipped.

A ``LOCAL`` command (v2) or ``UNKNOWN`` protocol (v1) is the proxy speaking
for itself (health checks): the connection's own addresses stand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["V1_MAX", "V2_SIGNATURE", "ProxyHeader", "ProxyHeaderError", "parse_proxy_header"]

V1_PREFIX = b"PROXY "
V1_MAX = 107  # bytes, CRLF included (spec §2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_HEAD = 16


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol header, or a malformed one."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy said. ``client``/``server`` are ``None`` when the proxy
    speaks for itself (LOCAL, UNKNOWN, or an address family without ports)."""

    client: tuple[str, int] | None
    server: tuple[str, int] | None
    length: int  # bytes of the stream the header took


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """Parse the PROXY header at the start of ``data``.

    :returns: the header, or ``None`` if ``data`` is a correct beginning
        that needs more bytes.
    :raises ProxyHeaderError: ``data`` does not start with a valid header.
    """
    if not data:
        return None
    if data[:1] == b"P":
        if not V1_PREFIX.startswith(data[:6]):
            raise ProxyHeaderError("not a PROXY protocol header")
        return _parse_v1(data) if len(data) >= len(V1_PREFIX) else None
    if not V2_SIGNATURE.startswith(data[:12]):
        raise ProxyHeaderError("not a PROXY protocol header")
    return _parse_v2(data)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise ProxyHeaderError("PROXY v1 line too long or not CRLF-terminated")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    parts = line.split(" ")
    if len(parts) < 2 or parts[0] != "PROXY":
        raise ProxyHeaderError("malformed PROXY v1 line")
    family = parts[1]
    if family == "UNKNOWN":  # the rest of the line is to be ignored
        return ProxyHeader(None, None, end + 2)
    if family not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ProxyHeaderError(f"malformed PROXY v1 line: {line!r}")
    version = 4 if family == "TCP4" else 6
    client = _address(parts[2], parts[4], version)
    server = _address(parts[3], parts[5], version)
    return ProxyHeader(client, server, end + 2)


def _address(host: str, port: str, version: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ProxyHeaderError(f"bad address {host!r} in PROXY header") from None
    if address.version != version:
        raise ProxyHeaderError(f"{host!r} is not an IPv{version} address")
    # Ports: decimal, 0..65535, no sign or leading zero (spec §2.1).
    if not port.isdigit() or (len(port) > 1 and port[0] == "0") or int(port) > 65535:
        raise ProxyHeaderError(f"bad port {port!r} in PROXY header")
    return str(address), int(port)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < _V2_HEAD:
        return None
    version_command = data[12]
    if version_command >> 4 != 2:
        raise ProxyHeaderError("unsupported PROXY protocol version")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyHeaderError("unknown PROXY v2 command")
    family_protocol = data[13]
    length = int.from_bytes(data[14:16], "big")
    total = _V2_HEAD + length
    if len(data) < total:
        return None
    if command == 0:  # LOCAL: the proxy's own connection
        return ProxyHeader(None, None, total)
    body = data[_V2_HEAD:total]
    family, protocol = family_protocol >> 4, family_protocol & 0x0F
    if protocol not in (1, 2):  # STREAM, DGRAM; UNSPEC: keep our addresses
        return ProxyHeader(None, None, total)
    if family == 1:  # AF_INET
        if len(body) < 12:
            raise ProxyHeaderError("PROXY v2 IPv4 addresses truncated")
        client = (str(ipaddress.IPv4Address(body[0:4])), int.from_bytes(body[8:10], "big"))
        server = (str(ipaddress.IPv4Address(body[4:8])), int.from_bytes(body[10:12], "big"))
        return ProxyHeader(client, server, total)
    if family == 2:  # AF_INET6
        if len(body) < 36:
            raise ProxyHeaderError("PROXY v2 IPv6 addresses truncated")
        client = (str(ipaddress.IPv6Address(body[0:16])), int.from_bytes(body[32:34], "big"))
        server = (str(ipaddress.IPv6Address(body[16:32])), int.from_bytes(body[34:36], "big"))
        return ProxyHeader(client, server, total)
    return ProxyHeader(None, None, total)  # AF_UNIX or UNSPEC: no ports to report
