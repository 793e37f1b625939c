"""The shipped middlewares served by tricorn, with real clients."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tricorn.middleware import (
    DispatcherMiddleware,
    HTTPToHTTPSRedirectMiddleware,
    ProxyHeadersMiddleware,
)

from ..conftest import running_server
from .apps import HELLO, hello, scope_json
from .wsclient import HandshakeRefused, ws_connect

pytestmark = pytest.mark.anyio


async def test_dispatcher_routes_by_longest_prefix() -> None:
    app = DispatcherMiddleware({"/api": scope_json, "/api/v2": scope_json, "": hello})
    async with running_server(app) as url, httpx.AsyncClient() as client:
        api = (await client.get(url + "/api/users?x=1")).json()
        v2 = (await client.get(url + "/api/v2/x")).json()
        exact = (await client.get(url + "/api")).json()
        other = await client.get(url + "/apiary")
    assert (api["root_path"], api["path"], api["query_string"]) == ("/api", "/api/users", "x=1")
    assert v2["root_path"] == "/api/v2"
    assert exact["root_path"] == "/api"
    assert other.content == HELLO  # not under /api: the fallback


async def test_dispatcher_without_a_match_is_404() -> None:
    app = DispatcherMiddleware({"/api": hello})
    async with running_server(app) as url, httpx.AsyncClient() as client:
        response = await client.get(url + "/other")
    assert response.status_code == 404


def test_dispatcher_rejects_bad_prefixes() -> None:
    with pytest.raises(ValueError, match="trailing"):
        DispatcherMiddleware({"/api/": hello})
    with pytest.raises(ValueError, match="start with"):
        DispatcherMiddleware({"api": hello})


async def test_redirect_to_https_with_alt_svc() -> None:
    app = HTTPToHTTPSRedirectMiddleware(hello, alt_svc='h3=":443"; ma=86400')
    async with running_server(app) as url, httpx.AsyncClient() as client:
        response = await client.post(
            url + "/a%20b?q=1", headers={"host": "example.com:8080"}, content=b"x"
        )
    assert response.status_code == 308  # keeps the method and body
    assert response.headers["location"] == "https://example.com/a%20b?q=1"
    assert response.headers["alt-svc"] == 'h3=":443"; ma=86400'


async def test_redirect_passes_https_through_and_uses_a_fixed_host() -> None:
    inner: Any = ProxyHeadersMiddleware(
        HTTPToHTTPSRedirectMiddleware(hello, host="secure.example:8443")
    )
    async with running_server(inner) as url, httpx.AsyncClient() as client:
        redirected = await client.get(url + "/p")
        passed = await client.get(url + "/p", headers={"x-forwarded-proto": "https"})
    assert redirected.headers["location"] == "https://secure.example:8443/p"
    assert passed.content == HELLO  # https per the trusted proxy: served


async def test_redirect_refuses_a_cleartext_websocket_with_the_redirect() -> None:
    app = HTTPToHTTPSRedirectMiddleware(hello, host="example.com")
    async with running_server(app) as url:
        with pytest.raises(HandshakeRefused) as refused:
            async with ws_connect(url, "/chat"):
                pass
    assert refused.value.status == 308
    assert (b"location", b"wss://example.com/chat") in refused.value.headers


async def test_proxy_headers_middleware_trusts_only_listed_peers() -> None:
    trusting = ProxyHeadersMiddleware(scope_json, trusted=["127.0.0.1"])
    distrusting = ProxyHeadersMiddleware(scope_json, trusted=["10.0.0.0/8"])
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    async with running_server(trusting) as url, httpx.AsyncClient() as client:
        trusted = json.loads((await client.get(url, headers=headers)).content)
    async with running_server(distrusting) as url, httpx.AsyncClient() as client:
        untrusted = json.loads((await client.get(url, headers=headers)).content)
    assert (trusted["client"], trusted["scheme"]) == (["203.0.113.7", 0], "https")
    assert untrusted["client"][0] == "127.0.0.1"
    assert untrusted["scheme"] == "http"
