"""TLS: ALPN http/1.1, the ``tls`` scope extension, handshake limits."""

from __future__ import annotations

import ssl

import anyio
import httpx
import pytest

from ..conftest import TLSFiles, running_server
from .apps import HELLO, hello, scope_json
from .client import address

pytestmark = pytest.mark.anyio


async def test_https_with_httpx(tls_files: TLSFiles) -> None:
    async with (
        running_server(scope_json, certfile=tls_files.certfile, keyfile=tls_files.keyfile) as url,
        httpx.AsyncClient(verify=tls_files.client_context) as client,
    ):
        assert url.startswith("https://")
        response = await client.get(url.replace("127.0.0.1", "localhost") + "/x")
    scope = response.json()
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int)
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None


async def test_alpn_prefers_h2_by_default(tls_files: TLSFiles) -> None:
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols(["http/1.1", "h2"])
    async with running_server(hello, certfile=tls_files.certfile, keyfile=tls_files.keyfile) as url:
        host, port = address(url)
        stream = await anyio.connect_tcp(
            host, port, ssl_context=context, tls_standard_compatible=False
        )
        async with stream:
            from anyio.streams.tls import TLSAttribute

            assert stream.extra(TLSAttribute.alpn_protocol) == "h2"


async def test_alpn_protocols_without_h2_offers_http11_only(tls_files: TLSFiles) -> None:
    context = ssl.create_default_context(cafile=tls_files.ca_file)
    context.set_alpn_protocols(["h2", "http/1.1"])
    async with running_server(
        hello,
        certfile=tls_files.certfile,
        keyfile=tls_files.keyfile,
        alpn_protocols=["http/1.1"],
    ) as url:
        host, port = address(url)
        stream = await anyio.connect_tcp(
            host, port, ssl_context=context, tls_standard_compatible=False
        )
        async with stream:
            from anyio.streams.tls import TLSAttribute

            assert stream.extra(TLSAttribute.alpn_protocol) == "http/1.1"
            await stream.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            with anyio.fail_after(5):
                while not data.endswith(HELLO):
                    data += await stream.receive()


async def test_insecure_bind_beside_tls(tls_files: TLSFiles) -> None:
    async with (
        running_server(
            hello,
            certfile=tls_files.certfile,
            keyfile=tls_files.keyfile,
            insecure_bind=["127.0.0.1:0"],
        ) as url,
        httpx.AsyncClient(verify=tls_files.client_context) as client,
    ):
        assert (await client.get(url.replace("127.0.0.1", "localhost"))).content == HELLO


async def test_half_open_handshakes_are_dropped(tls_files: TLSFiles) -> None:
    async with (
        running_server(
            hello, certfile=tls_files.certfile, keyfile=tls_files.keyfile, ssl_handshake_timeout=0.3
        ) as url,
        httpx.AsyncClient(verify=tls_files.client_context) as client,
    ):
        host, port = address(url)
        idle = [await anyio.connect_tcp(host, port) for _ in range(5)]
        with anyio.fail_after(3):
            for stream in idle:  # the server closes each after the timeout
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
                await stream.aclose()
        assert (await client.get(url.replace("127.0.0.1", "localhost"))).content == HELLO


async def test_tls_garbage_is_dropped(tls_files: TLSFiles) -> None:
    async with (
        running_server(hello, certfile=tls_files.certfile, keyfile=tls_files.keyfile) as url,
        httpx.AsyncClient(verify=tls_files.client_context) as client,
    ):
        host, port = address(url)
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
            with anyio.fail_after(3):
                try:
                    while await stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
        assert (await client.get(url.replace("127.0.0.1", "localhost"))).content == HELLO
