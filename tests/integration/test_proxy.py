"""PROXY protocol v1/v2 on the binds (``proxy_protocol``): the client address
a load balancer reports becomes the scope's; a connection without a valid
header is closed without a response."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.tls import TLSStream

from tricorn.protocol.proxy import V2_SIGNATURE

from ..cli.test_cli_serve import free_port, tricorn
from ..conftest import TLSFiles, running_server
from .apps import scope_json
from .client import RawClient, address
from .test_h2_clients import worker_class, write_toml

pytestmark = pytest.mark.anyio

IPV6_CLIENT = b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x09"  # 2001:db8::9
GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


def v2(client: tuple[bytes, int], server: tuple[bytes, int], *, family: int = 0x11) -> bytes:
    """A PROXY v2 header: PROXY command, TCP over IPv4 (or IPv6), a TLV."""
    addresses = client[0] + server[0] + client[1].to_bytes(2, "big") + server[1].to_bytes(2, "big")
    tlv = b"\x04\x00\x03abc"  # PP2_TYPE_NOOP with 3 bytes: skipped
    body = addresses + tlv
    return V2_SIGNATURE + bytes((0x21, family)) + len(body).to_bytes(2, "big") + body


async def scope_over(url: str, prefix: bytes) -> dict[str, object]:
    async with await RawClient.connect(url) as client:
        await client.send(prefix + GET)
        reply = await client.response()
    assert reply.status == 200
    result: dict[str, object] = json.loads(reply.body)
    return result


@pytest.mark.parametrize(
    ("prefix", "client", "server"),
    [
        (b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n", ["203.0.113.7", 51234], None),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n", ["2001:db8::7", 51234], None),
        (
            v2((bytes((203, 0, 113, 9)), 40000), (bytes((198, 51, 100, 1)), 8443)),
            ["203.0.113.9", 40000],
            ["198.51.100.1", 8443],
        ),
        (
            v2(
                (b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x09", 40001),
                (b"\x00" * 15 + b"\x01", 443),
                family=0x21,
            ),
            ["2001:db8::9", 40001],
            ["::1", 443],
        ),
    ],
)
async def test_the_proxy_names_the_client(
    prefix: bytes, client: list[object], server: list[object] | None
) -> None:
    async with running_server(scope_json, proxy_protocol=True) as url:
        scope = await scope_over(url, prefix)
    assert scope["client"] == client
    if server is not None:
        assert scope["server"] == server


@pytest.mark.parametrize(
    "prefix",
    [b"PROXY UNKNOWN\r\n", V2_SIGNATURE + b"\x20\x00\x00\x00"],  # a health check: LOCAL
)
async def test_the_proxy_speaking_for_itself_keeps_the_real_peer(prefix: bytes) -> None:
    async with running_server(scope_json, proxy_protocol=True) as url:
        scope = await scope_over(url, prefix)
    assert scope["client"][0] == "127.0.0.1"  # type: ignore[index]


@pytest.mark.parametrize(
    "prefix",
    [
        b"",  # missing: a plain request
        b"PROXY TCP4 203.0.113.7 198.51.100.1 99999 443\r\n",  # port out of range
        b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",  # family mismatch
        b"PROXY TCP4 1.2.3.4\r\n",  # fields missing
        b"PROXY " + b"A" * 120,  # no CRLF within 107 bytes
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,  # version 3
        V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,  # IPv4 addresses truncated
    ],
)
async def test_a_missing_or_malformed_header_closes_the_connection(prefix: bytes) -> None:
    async with running_server(scope_json, proxy_protocol=True) as url:
        async with await RawClient.connect(url) as client:
            await client.send(prefix + GET)
            assert await client.read_all() == b""  # closed, no response
        # ... and the server goes on serving good clients.
        scope = await scope_over(url, b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\n")
    assert scope["client"] == ["192.0.2.1", 1000]


async def test_a_header_that_never_completes_is_cut_off() -> None:
    async with (
        running_server(scope_json, proxy_protocol=True, ssl_handshake_timeout=0.5) as url,
        await RawClient.connect(url) as client,
    ):
        await client.send(b"PROXY TCP4 1.2.3.4")
        with anyio.fail_after(3):
            assert await client.read_all(timeout=3) == b""


async def test_without_the_setting_a_proxy_header_is_not_trusted() -> None:
    """A client cannot claim another address: without ``proxy_protocol`` the
    header is just a malformed request line."""
    async with running_server(scope_json) as url, await RawClient.connect(url) as client:
        await client.send(b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n" + GET)
        data = await client.read_all()
    assert not data.startswith(b"HTTP/1.1 200")
    assert b"203.0.113.7" not in data


async def test_proxy_header_before_tls(tls_files: TLSFiles) -> None:
    async with running_server(
        scope_json, certfile=tls_files.certfile, keyfile=tls_files.keyfile, proxy_protocol=True
    ) as url:
        host, port = address(url)
        stream = await anyio.connect_tcp(host, port)
        await stream.send(b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n")
        context = ssl.create_default_context(cafile=tls_files.ca_file)
        context.set_alpn_protocols(["http/1.1"])
        tls = await TLSStream.wrap(
            stream, hostname="localhost", ssl_context=context, standard_compatible=False
        )
        async with tls:
            await tls.send(GET)
            data = b""
            with anyio.fail_after(5):
                while True:
                    try:
                        data += await tls.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    scope = json.loads(body[body.index(b"{") : body.rindex(b"}") + 1])  # (chunked)
    assert scope["client"] == ["203.0.113.7", 51234]
    assert scope["scheme"] == "https"


# ---------------------------------------------------------------- forwarded headers

FORWARDED_GET = (
    b"GET /x HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n"
    b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: example.com\r\nX-Forwarded-Prefix: /api\r\n\r\n"
)


async def forwarded_scope(url: str, request: bytes = FORWARDED_GET) -> dict[str, object]:
    async with await RawClient.connect(url) as client:
        await client.send(request)
        reply = await client.response()
    result: dict[str, object] = json.loads(reply.body)
    return result


async def test_forwarded_headers_from_a_trusted_peer() -> None:
    async with running_server(scope_json, forwarded_allow_ips=["127.0.0.1"]) as url:
        scope = await forwarded_scope(url)
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert scope["root_path"] == "/api"
    assert ["host", "example.com"] in scope["headers"]  # type: ignore[operator]


async def test_forwarded_headers_from_anyone_else_are_ignored() -> None:
    async with running_server(scope_json, forwarded_allow_ips=["10.0.0.0/8"]) as url:
        scope = await forwarded_scope(url)
    assert scope["client"][0] == "127.0.0.1"  # type: ignore[index]
    assert scope["scheme"] == "http"
    assert scope["root_path"] == ""


# A proxy that sets X-Forwarded-For passes the client's own Forwarded through.
BOTH_FAMILIES_GET = (
    b"GET /x HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n"
    b"Forwarded: for=198.51.100.66;proto=https\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
)


@pytest.mark.parametrize(
    ("family", "client", "scheme"),
    [("x-forwarded", "203.0.113.7", "http"), ("forwarded", "198.51.100.66", "https")],
)
async def test_only_the_configured_header_family_is_read(
    family: str, client: str, scheme: str
) -> None:
    settings = {"forwarded_allow_ips": ["127.0.0.1"], "forwarded_headers": family}
    async with running_server(scope_json, **settings) as url:
        scope = await forwarded_scope(url, BOTH_FAMILIES_GET)
    assert scope["client"] == [client, 0]
    assert scope["scheme"] == scheme


# Two proxies in front: the client sent "6.6.6.6" and "http" itself; the first
# proxy appended what it saw, the second what the first proxy was. Only one
# X-Forwarded-Host value: fewer than two, so it is not believed.
COUNTED_GET = (
    b"GET /x HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n"
    b"X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.0.0.1\r\n"
    b"X-Forwarded-Proto: http, https, http\r\nX-Forwarded-Host: example.com\r\n\r\n"
)


async def test_forwarded_headers_by_hop_count() -> None:
    async with running_server(scope_json, forwarded_trusted_hops=2) as url:
        scope = await forwarded_scope(url, COUNTED_GET)
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"
    assert ["host", "internal"] in scope["headers"]  # type: ignore[operator]


async def test_a_hop_count_and_an_allow_list_both_apply() -> None:
    settings = {"forwarded_trusted_hops": 2, "forwarded_allow_ips": ["10.0.0.0/8"]}
    async with running_server(scope_json, **settings) as url:
        scope = await forwarded_scope(url, COUNTED_GET)
    assert scope["client"][0] == "127.0.0.1"  # type: ignore[index]
    assert scope["scheme"] == "http"
    settings["forwarded_allow_ips"] = ["127.0.0.1"]
    async with running_server(scope_json, **settings) as url:
        scope = await forwarded_scope(url, COUNTED_GET)
    assert scope["client"] == ["203.0.113.7", 0]


async def test_proxy_protocol_and_forwarded_headers_from_the_toml(
    tmp_path: Path, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    """From a config file through the CLI: the PROXY header names the peer
    (a trusted proxy), whose X-Forwarded-For then names the client."""
    port = free_port()
    config = write_toml(
        tmp_path / "proxy.toml",
        app="tests.integration.apps:scope_json",
        bind=[f"127.0.0.1:{port}"],
        proxy_protocol=True,
        forwarded_allow_ips=["198.51.100.0/24"],
        worker_class=worker_class(anyio_backend),
    )
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(port)
        url = f"http://127.0.0.1:{port}"
        scope = await scope_over(url, b"PROXY TCP4 198.51.100.4 192.0.2.1 40000 80\r\n")
        assert scope["client"] == ["198.51.100.4", 40000]
        async with await RawClient.connect(url) as client:
            await client.send(b"PROXY TCP4 198.51.100.4 192.0.2.1 40000 80\r\n" + FORWARDED_GET)
            reply = await client.response()
        assert json.loads(reply.body)["client"] == ["203.0.113.7", 0]
        assert child.terminate() == 0, child.stderr()


async def test_forwarded_trusted_hops_from_the_toml(
    tmp_path: Path, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    port = free_port()
    config = write_toml(
        tmp_path / "hops.toml",
        app="tests.integration.apps:scope_json",
        bind=[f"127.0.0.1:{port}"],
        forwarded_trusted_hops=2,
        worker_class=worker_class(anyio_backend),
    )
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(port)
        scope = await forwarded_scope(f"http://127.0.0.1:{port}", COUNTED_GET)
        assert scope["client"] == ["203.0.113.7", 0]
        assert child.terminate() == 0, child.stderr()
