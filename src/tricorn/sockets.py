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
* With several workers, each ``quic_bind`` address gets one UDP socket per
  worker (``SO_REUSEPORT``) and a classic BPF program that picks the socket
  from the first byte of the packet's destination connection ID, modulo the
  number of workers. Every connection ID a worker issues starts with a byte
  that maps to that worker, and a client's own Initial connection ID maps
  to some worker by the same rule, so every datagram of a QUIC connection
  reaches the one worker that owns it, also after the client's address or
  connection ID changes (docs/http3.md).

Resource handling: on any failure every socket bound so far is closed before
the error propagates; :meth:`BoundSockets.close` closes them all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from .config import BindAddress, Config
from .errors import StartupFailure

__all__ = ["BoundSockets", "bind_sockets", "cid_router_program", "describe"]


@dataclass(frozen=True, slots=True)
class BoundSockets:
    """The listening sockets of the process."""

    secure: list[socket.socket]
    """TCP/UNIX sockets that serve TLS."""
    insecure: list[socket.socket]
    """TCP/UNIX sockets that serve cleartext."""
    quic: list[socket.socket]
    """UDP sockets for HTTP/3: ``quic_copies`` per ``quic_bind`` address, one
    for each worker, address by address."""
    quic_copies: int = 1
    worker_index: int = 0
    """With QUIC groups: which of the ``quic_copies`` workers serves these."""

    def for_worker(self, index: int) -> BoundSockets:
        """The sockets worker ``index`` serves: every TCP/UNIX socket and its
        own UDP socket of each QUIC group."""
        copies = self.quic_copies
        own = self.quic[index % copies :: copies]
        return BoundSockets(self.secure, self.insecure, own, copies, index % copies)

    def all(self) -> list[socket.socket]:
        """Every socket, secure first."""
        return [*self.secure, *self.insecure, *self.quic]

    def close(self) -> None:
        """Close every socket (idempotent). UNIX socket files stay; the next
        start removes them as stale."""
        for sock in self.all():
            sock.close()


def bind_sockets(config: Config, quic_copies: int = 1) -> BoundSockets:
    """Bind and listen on every address of ``config``; with ``quic_copies``
    above 1, a routed group of that many UDP sockets per QUIC address.

    :raises StartupFailure: an address cannot be bound (in use, no
        permission, no such interface, a bad inherited fd), naming it; or a
        QUIC group cannot be made (not Linux, an ``fd://`` QUIC bind).
    """
    opened: list[socket.socket] = []
    try:
        binds = [_bind(a, config, opened) for a in config.bind_addresses]
        extra = [_bind(a, config, opened) for a in config.insecure_bind_addresses]
        quic: list[socket.socket] = []
        for address in config.quic_bind_addresses:
            if quic_copies == 1:
                quic.append(_bind(address, config, opened, udp=True))
            else:
                quic += _bind_quic_group(address, config, opened, quic_copies)
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    if config.ssl_enabled:
        return BoundSockets(secure=binds, insecure=extra, quic=quic, quic_copies=quic_copies)
    return BoundSockets(secure=[], insecure=binds + extra, quic=quic, quic_copies=quic_copies)


def _bind_quic_group(
    address: BindAddress, config: Config, opened: list[socket.socket], copies: int
) -> list[socket.socket]:
    """``copies`` UDP sockets on one address, routed by connection ID."""
    if address.kind != "tcp":
        raise StartupFailure(
            f"cannot share {address.text} between {copies} workers: quic_bind needs host:port"
        )
    reuse_port = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port is None:
        raise StartupFailure("quic_bind with several workers needs SO_REUSEPORT (Linux)")
    group: list[socket.socket] = []
    port = address.port
    family = socket.AF_INET6 if address.is_ipv6 else socket.AF_INET
    try:
        for _ in range(copies):
            sock = _new_socket(family, socket.SOCK_DGRAM, opened)
            _set_inet_options(sock, udp=True)
            sock.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
            sock.bind((address.host, port))
            port = sock.getsockname()[1]  # (port 0: the others join the one chosen)
            sock.setblocking(False)
            group.append(sock)
        _attach_cid_router(group[0], copies)
    except OSError as exc:
        raise StartupFailure(f"cannot bind {address.text}: {exc.strerror or exc}") from exc
    return group


_SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>


def cid_router_program(copies: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF program (code, jt, jf, k) that returns the index of
    the socket for a QUIC datagram: the first byte of its destination
    connection ID (byte 6 of a long header, byte 1 of a short one) modulo
    ``copies``. Offsets are into the UDP payload."""
    return [
        (0x30, 0, 0, 0),  # A = payload[0]
        (0x45, 0, 2, 0x80),  # long header (0x80 set)? next : short
        (0x30, 0, 0, 6),  # long: A = payload[6] (after version and DCID length)
        (0x05, 0, 0, 1),  # jump to the modulo
        (0x30, 0, 0, 1),  # short: A = payload[1]
        (0x94, 0, 0, copies),  # A = A % copies
        (0x16, 0, 0, 0),  # return A
    ]


def _attach_cid_router(sock: socket.socket, copies: int) -> None:
    # ctypes only here, for QUIC with several workers: not in every server's memory.
    import ctypes

    class SockFilter(ctypes.Structure):  # struct sock_filter
        _fields_ = (
            ("code", ctypes.c_ushort),
            ("jt", ctypes.c_ubyte),
            ("jf", ctypes.c_ubyte),
            ("k", ctypes.c_uint32),
        )

    class SockFprog(ctypes.Structure):  # struct sock_fprog
        _fields_ = (
            ("len", ctypes.c_ushort),
            ("filter", ctypes.POINTER(SockFilter)),
        )

    program = cid_router_program(copies)
    filters = (SockFilter * len(program))(*(SockFilter(*insn) for insn in program))
    fprog = SockFprog(len(program), ctypes.cast(filters, ctypes.POINTER(SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


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


# <linux/in.h>, <linux/in6.h>: IP_MTU_DISCOVER / IPV6_MTU_DISCOVER and
# IP_PMTUDISC_PROBE (Python does not name them all).
_IP_MTU_DISCOVER = 10
_IPV6_MTU_DISCOVER = 23
_PMTUDISC_PROBE = 3


def _set_inet_options(sock: socket.socket, *, udp: bool) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if not udp:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    elif sys.platform == "linux":
        # QUIC datagrams are never fragmented (RFC 9000 §14): the DF bit is
        # set, and the kernel's own path MTU guess does not cap what we send
        # (PROBE), so the connections' MTU probes (RFC 8899) find the path's.
        level, option = (
            (socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER)
            if sock.family == socket.AF_INET6
            else (socket.IPPROTO_IP, _IP_MTU_DISCOVER)
        )
        sock.setsockopt(level, option, _PMTUDISC_PROBE)


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
