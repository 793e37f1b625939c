"""Process-level socket binding: every listening socket is made here, once,
before any event loop exists, so worker processes can share them.

Which binds serve what (as Hypercorn, plus ``insecure_bind`` always counting):

* ``bind`` -- TLS when ``certfile`` and ``keyfile`` are set, else cleartext;
* ``insecure_bind`` -- cleartext, beside the others;
* ``quic_bind`` -- UDP for HTTP/3 (only with TLS; ``Config`` enforces that).

Socket options, and why:

* ``SO_REUSEADDR`` on TCP, so a restart does not wait out TIME_WAIT. Not on
  UDP, where it would let two servers share a port, and not on UNIX sockets,
  where it means nothing.
* ``IPV6_V6ONLY`` on IPv6, so ``[::]:80`` and ``0.0.0.0:80`` can both be bound
  and each means what it says.
* ``TCP_NODELAY``: responses are written whole; Nagle would only add latency.
  Linux copies it to accepted sockets.
* Non-blocking, listening with ``backlog``; not inheritable (the worker
  manager decides how sockets reach child processes).

Resource handling: on any failure every socket bound so far is closed before
the error propagates; :meth:`BoundSockets.close` closes them all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from .config import BindAddress, Config
from .errors import StartupFailure

__all__ = ["BoundSockets", "bind_sockets", "describe"]


@dataclass(frozen=True, slots=True)
class BoundSockets:
    """The listening sockets of the process."""

    secure: list[socket.socket]
    """TCP/UNIX sockets that serve TLS."""
    insecure: list[socket.socket]
    """TCP/UNIX sockets that serve cleartext."""
    quic: list[socket.socket]
    """UDP sockets for HTTP/3."""

    def all(self) -> list[socket.socket]:
        """Every socket, secure first."""
        return [*self.secure, *self.insecure, *self.quic]

    def close(self) -> None:
        """Close every socket (idempotent). UNIX socket files stay; the next
        start removes them as stale."""
        for sock in self.all():
            sock.close()


def bind_sockets(config: Config) -> BoundSockets:
    """Bind and listen on every address of ``config``.

    :raises StartupFailure: an address cannot be bound (in use, no
        permission, no such interface, a bad inherited fd), naming it.
    """
    opened: list[socket.socket] = []
    try:
        binds = [_bind(a, config, opened) for a in config.bind_addresses]
        extra = [_bind(a, config, opened) for a in config.insecure_bind_addresses]
        quic = [_bind(a, config, opened, udp=True) for a in config.quic_bind_addresses]
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    if config.ssl_enabled:
        return BoundSockets(secure=binds, insecure=extra, quic=quic)
    return BoundSockets(secure=[], insecure=binds + extra, quic=quic)


def describe(sock: socket.socket, *, secure: bool, quic: bool = False) -> str:
    """A URL-like text for logs: ``http://127.0.0.1:8000``,
    ``https://[::1]:8443``, ``http://unix:/run/app.sock``,
    ``https://127.0.0.1:8443 (QUIC)``."""
    scheme = "https" if secure else "http"
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name if isinstance(name, str) else repr(name)  # bytes: abstract namespace
        return f"{scheme}://unix:{path}"
    host, port = name[0], name[1]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" + (" (QUIC)" if quic else "")


def _bind(
    address: BindAddress, config: Config, opened: list[socket.socket], *, udp: bool = False
) -> socket.socket:
    """Make one listening socket, recorded in ``opened`` as soon as it exists."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    try:
        if address.kind == "fd":
            sock = _adopt_fd(address, kind, opened)
        elif address.kind == "unix":
            sock = _new_socket(socket.AF_UNIX, kind, opened)
            _bind_unix(sock, address.path, config)
        else:
            family = socket.AF_INET6 if address.is_ipv6 else socket.AF_INET
            sock = _new_socket(family, kind, opened)
            _set_inet_options(sock, udp=udp)
            sock.bind((address.host, address.port))
        sock.setblocking(False)
        if not udp:
            sock.listen(config.backlog)
    except OSError as exc:
        raise StartupFailure(f"cannot bind {address.text}: {exc.strerror or exc}") from exc
    return sock


def _new_socket(family: int, kind: int, opened: list[socket.socket]) -> socket.socket:
    sock = socket.socket(family, kind)
    opened.append(sock)
    return sock


def _adopt_fd(address: BindAddress, kind: int, opened: list[socket.socket]) -> socket.socket:
    sock = socket.socket(fileno=address.fd)
    opened.append(sock)
    actual = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    if actual != kind:
        wanted = "UDP" if kind == socket.SOCK_DGRAM else "stream"
        raise StartupFailure(f"cannot use {address.text}: it is not a {wanted} socket")
    return sock


def _set_inet_options(sock: socket.socket, *, udp: bool) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if not udp:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _bind_unix(sock: socket.socket, path: str, config: Config) -> None:
    """Bind at ``path`` with the configured umask and owner."""
    _remove_stale(path)
    with _umask(config.umask):
        sock.bind(path)
    if config.user is not None or config.group is not None:
        uid = -1 if config.user is None else config.user
        gid = -1 if config.group is None else config.group
        os.chown(path, uid, gid)


def _remove_stale(path: str) -> None:
    """Remove a socket file left by a server that is gone; refuse to touch a
    live one or a file that is not a socket."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupFailure(f"cannot bind unix:{path}: the file exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: stale
            return
    raise StartupFailure(f"cannot bind unix:{path}: another server is listening on it")


@contextlib.contextmanager
def _umask(mask: int | None) -> Iterator[None]:
    # os.umask is process-wide; binding happens before any thread or worker exists.
    if mask is None:
        yield
        return
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)
