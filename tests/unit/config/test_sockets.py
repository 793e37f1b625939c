"""Binding listening sockets: real sockets on 127.0.0.1 and in tmp_path."""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tricorn.config import Config
from tricorn.errors import StartupFailure
from tricorn.sockets import BoundSockets, bind_sockets, describe

HAS_IPV6 = socket.has_ipv6


@contextmanager
def bound(config: Config) -> Iterator[BoundSockets]:
    sockets = bind_sockets(config)
    try:
        yield sockets
    finally:
        sockets.close()


def test_tcp_port_zero_listens_non_blocking():
    with bound(Config(bind=("127.0.0.1:0",))) as sockets:
        assert (sockets.secure, sockets.quic) == ([], [])
        (sock,) = sockets.insecure
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        port = sock.getsockname()[1]
        assert port != 0
        assert describe(sock, secure=False) == f"http://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_tls_binds_are_secure_and_insecure_bind_is_beside_them():
    config = Config(
        bind=("127.0.0.1:0",),
        insecure_bind=("127.0.0.1:0",),
        quic_bind=("127.0.0.1:0",),
        certfile="c.pem",  # never read: binding does not build a TLS context
        keyfile="k.pem",
    )
    with bound(config) as sockets:
        assert len(sockets.secure) == len(sockets.insecure) == len(sockets.quic) == 1
        assert describe(sockets.secure[0], secure=True).startswith("https://127.0.0.1:")
        assert sockets.quic[0].type == socket.SOCK_DGRAM
        assert sockets.quic[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        assert len(sockets.all()) == 3
    assert all(sock.fileno() == -1 for sock in sockets.all())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux socket option")
def test_quic_sockets_never_fragment():
    """DF set and the kernel's path MTU guess not applied (IP_PMTUDISC_PROBE):
    the connections' own MTU probes find the path (RFC 9000 §14)."""
    config = Config(quic_bind=("127.0.0.1:0",), certfile="c.pem", keyfile="k.pem")
    with bound(config) as sockets:
        (sock,) = sockets.quic
        ip_mtu_discover, pmtudisc_probe = 10, 3  # <linux/in.h>
        assert sock.getsockopt(socket.IPPROTO_IP, ip_mtu_discover) == pmtudisc_probe


def test_insecure_bind_without_tls_adds_to_bind():
    with bound(Config(bind=("127.0.0.1:0",), insecure_bind=("127.0.0.1:0",))) as sockets:
        assert len(sockets.insecure) == 2


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6")
def test_ipv6_is_v6_only():
    try:
        sockets = bind_sockets(Config(bind=("[::1]:0",)))
    except StartupFailure:
        pytest.skip("::1 not configured")
    try:
        (sock,) = sockets.insecure
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert describe(sock, secure=False).startswith("http://[::1]:")
    finally:
        sockets.close()


def test_address_in_use_is_a_startup_failure_naming_it():
    with bound(Config(bind=("127.0.0.1:0",))) as first:
        port = first.insecure[0].getsockname()[1]
        with pytest.raises(StartupFailure, match=f"127.0.0.1:{port}.*in use"):
            bind_sockets(Config(bind=("127.0.0.1:0", f"127.0.0.1:{port}")))


def test_unix_socket_with_umask(tmp_path: Path):
    path = tmp_path / "app.sock"
    with bound(Config(bind=(f"unix:{path}",), umask=0o077)) as sockets:
        (sock,) = sockets.insecure
        assert sock.family == socket.AF_UNIX
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert describe(sock, secure=False) == f"http://unix:{path}"
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))


def test_unix_socket_owner(tmp_path: Path):
    path = tmp_path / "own.sock"
    gid = os.getgid()
    with bound(Config(bind=(f"unix:{path}",), group=gid)):
        assert path.stat().st_gid == gid


def test_stale_unix_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path):
    path = tmp_path / "app.sock"
    config = Config(bind=(f"unix:{path}",))
    with bound(config), pytest.raises(StartupFailure, match="another server is listening"):
        bind_sockets(config)
    assert path.exists()  # left behind by the closed server: stale
    with bound(config) as sockets:
        assert len(sockets.insecure) == 1


def test_a_regular_file_is_never_removed(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_text("keep me")
    with pytest.raises(StartupFailure, match="not a socket"):
        bind_sockets(Config(bind=(f"unix:{path}",)))
    assert path.read_text() == "keep me"


def test_inherited_fd():
    listener = socket.create_server(("127.0.0.1", 0))
    fd = os.dup(listener.fileno())
    listener.close()
    with bound(Config(bind=(f"fd://{fd}",))) as sockets:
        (sock,) = sockets.insecure
        assert sock.fileno() == fd
        assert sock.getblocking() is False


def test_inherited_fd_of_the_wrong_type():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        fd = os.dup(udp.fileno())
    with pytest.raises(StartupFailure, match="not a stream socket"):
        bind_sockets(Config(bind=(f"fd://{fd}",)))


def test_a_bad_fd_is_a_startup_failure():
    with pytest.raises(StartupFailure, match="fd://999"):
        bind_sockets(Config(bind=("fd://999",)))


def test_sockets_bound_before_a_failure_are_closed(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    before = set(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else None
    with pytest.raises(StartupFailure):
        bind_sockets(Config(bind=("127.0.0.1:0", f"unix:{blocker}")))
    if before is not None:
        assert set(os.listdir("/proc/self/fd")) <= before


def test_quic_group_routes_by_the_first_byte_of_the_connection_id() -> None:
    """One UDP socket per worker on the same port; the kernel runs the BPF
    program: short and long headers go to socket ``dcid[0] % copies``."""
    config = Config(
        bind=("127.0.0.1:0",), quic_bind=("127.0.0.1:0",), certfile="c.pem", keyfile="k.pem"
    )
    with bound_copies(config, 3) as sockets:
        ports = {sock.getsockname()[1] for sock in sockets.quic}
        assert len(sockets.quic) == 3
        assert len(ports) == 1
        port = ports.pop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for first in range(12):
                client.sendto(bytes((0x40, first)) + b"s" * 30, ("127.0.0.1", port))
                long_header = bytes((0xC0, 0, 0, 0, 1, 8, first)) + b"l" * 30
                client.sendto(long_header, ("127.0.0.1", port))
        for index, sock in enumerate(sockets.quic):
            got: list[int] = []
            sock.settimeout(1)
            while len(got) < 8:
                data = sock.recv(100)
                got.append(data[1] if data[0] < 0x80 else data[6])
            assert sorted(got) == sorted(2 * [b for b in range(12) if b % 3 == index])
        worker = sockets.for_worker(2)
        assert worker.quic == [sockets.quic[2]]
        assert (worker.worker_index, worker.quic_copies) == (2, 3)
        assert worker.secure == sockets.secure


@contextmanager
def bound_copies(config: Config, copies: int) -> Iterator[BoundSockets]:
    sockets = bind_sockets(config, quic_copies=copies)
    try:
        yield sockets
    finally:
        sockets.close()
