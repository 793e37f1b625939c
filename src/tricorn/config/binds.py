"""Bind addresses, as Hypercorn writes them, parsed into :class:`BindAddress`.

Forms (``bind``, ``insecure_bind``, ``quic_bind``, ``metrics_bind``):

* ``host:port`` -- a host name or IPv4 address; ``host`` alone means port 8000
  and an empty host (``:8000``) means every IPv4 interface, both as Hypercorn.
* ``[v6]:port`` -- an IPv6 address in brackets (``[::]:443``, ``[::1]``).
* ``unix:PATH`` -- a UNIX domain socket.
* ``fd://N`` -- an already open socket inherited as file descriptor N
  (systemd socket activation).

Pure: nothing here touches a socket (see :mod:`tricorn.sockets`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

__all__ = ["DEFAULT_PORT", "BindAddress", "parse_bind"]

DEFAULT_PORT = 8000
ALLOWED = "host:port, [ipv6]:port, unix:PATH or fd://N"

# RFC 1123 host names: letters, digits, hyphens and dots (no ports, no spaces).
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class BindAddress:
    """One parsed bind. Only the attributes of its ``kind`` are meaningful."""

    kind: Literal["tcp", "unix", "fd"]
    text: str
    """The bind as written, for messages."""
    host: str = ""
    """tcp: host name or address, without brackets ("" = every IPv4 interface)."""
    port: int = 0
    """tcp: port number (0 = any free port)."""
    path: str = ""
    """unix: file system path of the socket."""
    fd: int = -1
    """fd: the inherited file descriptor."""

    @property
    def is_ipv6(self) -> bool:
        """True for a tcp bind on an IPv6 address (the socket family to use)."""
        return self.kind == "tcp" and ":" in self.host


def parse_bind(text: str, *, key: str = "bind") -> BindAddress:
    """Parse one bind.

    :param key: the setting it came from, named in the error.
    :raises ConfigError: ``text`` is none of the forms above.
    """
    if not isinstance(text, str):
        raise ConfigError(key, text, ALLOWED)
    if text.startswith("unix:"):
        return _parse_unix(text, key)
    if text.startswith("fd://"):
        return _parse_fd(text, key)
    host, port = _split_host_port(text, key)
    return BindAddress(kind="tcp", text=text, host=host, port=port)


def _parse_unix(text: str, key: str) -> BindAddress:
    path = text[len("unix:") :]
    if not path or "\0" in path:
        raise ConfigError(key, text, ALLOWED, "unix: needs a path")
    return BindAddress(kind="unix", text=text, path=path)


def _parse_fd(text: str, key: str) -> BindAddress:
    number = text[len("fd://") :]
    if not (number.isascii() and number.isdigit()):
        raise ConfigError(key, text, ALLOWED, "fd:// needs a file descriptor number")
    return BindAddress(kind="fd", text=text, fd=int(number))


def _split_host_port(text: str, key: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(key, text, ALLOWED, "an IPv6 address needs a closing ']'")
        _check_ipv6(host, text, key)
        return host, _port(rest[1:], text, key) if rest else DEFAULT_PORT
    if text.count(":") > 1:
        raise ConfigError(key, text, ALLOWED, "write IPv6 addresses in brackets: [::1]:8000")
    host, colon, port = text.partition(":")
    if host and not _HOSTNAME.match(host):
        raise ConfigError(key, text, ALLOWED, f"{host!r} is not a host name or IPv4 address")
    return host, _port(port, text, key) if colon else DEFAULT_PORT


def _check_ipv6(host: str, text: str, key: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ConfigError(key, text, ALLOWED, f"{host!r} is not an IPv6 address") from None


def _port(port: str, text: str, key: str) -> int:
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ConfigError(key, text, ALLOWED, "the port must be a number from 0 to 65535")
    return int(port)
