from __future__ import annotations

from typing import Literal

import pytest

from tricorn.asgi.app import as_asgi3, is_asgi2
from tricorn.asgi.scope import ScopeFactory, decode_path, split_target, subprotocols
from tricorn.protocol.events import ConnectionInfo, Request


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/", (b"/", b"")),
        (b"/a/b?x=1&y", (b"/a/b", b"x=1&y")),
        (b"/?", (b"/", b"")),
        (b"http://example.com/p?q=1", (b"/p", b"q=1")),
        (b"https://example.com", (b"/", b"")),
        (b"http://example.com?q", (b"/", b"q")),
        (b"*", (b"*", b"")),
    ],
)
def test_split_target(target: bytes, expected: tuple[bytes, bytes]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/plain", "/plain"),
        (b"/a%20b", "/a b"),
        (b"/caf%C3%A9", "/café"),
        (b"/bad%FF", "/bad\ufffd"),
        (b"/%2F", "//"),
    ],
)
def test_decode_path(raw: bytes, path: str) -> None:
    assert decode_path(raw) == path


def test_http_scope_fields_and_state_copy() -> None:
    info = ConnectionInfo(client=("1.2.3.4", 5), server=("127.0.0.1", 80), scheme="http")
    state = {"k": "v"}
    factory = ScopeFactory(info, "/root", state)
    request = Request(1, b"POST", b"/x%20y?z=1", [(b"host", b"h")], "1.1")
    scope = factory.http(request)
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/x y",
        "raw_path": b"/x%20y",
        "query_string": b"z=1",
        "root_path": "/root",
        "headers": [(b"host", b"h")],
        "client": ("1.2.3.4", 5),
        "server": ("127.0.0.1", 80),
        "extensions": {
            "http.response.trailers": {},
            "http.response.early_hint": {},
            "http.response.pathsend": {},
        },
        "state": {"k": "v"},
    }
    scope["state"]["k"] = "changed"
    assert state == {"k": "v"}
    assert factory.http(request)["state"] == {"k": "v"}


def test_tls_extension_only_on_tls() -> None:
    tls = {"tls_version": 0x0304}
    info = ConnectionInfo(client=None, server=None, scheme="https", tls=tls)
    scope = ScopeFactory(info, "", {}).http(Request(1, b"GET", b"/", [], "1.1"))
    assert scope["extensions"]["tls"] is tls
    assert scope["scheme"] == "https"


def test_asgi2_detection() -> None:
    class Asgi2:
        def __init__(self, scope: object) -> None:
            pass

    async def asgi3(scope: object, receive: object, send: object) -> None:
        pass

    class Asgi3Object:
        async def __call__(self, scope: object, receive: object, send: object) -> None:
            pass

    def asgi2_function(scope: object) -> object:
        return asgi3

    assert is_asgi2(Asgi2)
    assert is_asgi2(asgi2_function)
    assert not is_asgi2(asgi3)
    assert not is_asgi2(Asgi3Object())
    assert as_asgi3(asgi3) is asgi3
    assert as_asgi3(Asgi2) is not Asgi2  # type: ignore[comparison-overlap]


# ---------------------------------------------------------------- websocket


def ws_request(
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    http_version: str = "1.1",
    scheme: str | None = None,
) -> Request:
    return Request(
        1,
        b"GET" if http_version.startswith("1") else b"CONNECT",
        target,
        headers or [],
        http_version,
        scheme=scheme,
        protocol="websocket",
    )


def test_websocket_scope_fields_and_state_copy() -> None:
    info = ConnectionInfo(client=("1.2.3.4", 5), server=("127.0.0.1", 80), scheme="http")
    state = {"k": "v"}
    factory = ScopeFactory(info, "/root", state)
    headers = [(b"host", b"h"), (b"sec-websocket-protocol", b"chat, superchat")]
    request = ws_request(b"/chat%20room/caf%C3%A9?a=1&b=%20", headers)
    scope = factory.websocket(request)
    assert scope == {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/chat room/café",
        "raw_path": b"/chat%20room/caf%C3%A9",
        "query_string": b"a=1&b=%20",
        "root_path": "/root",
        "headers": headers,
        "client": ("1.2.3.4", 5),
        "server": ("127.0.0.1", 80),
        "subprotocols": ["chat", "superchat"],
        "extensions": {"websocket.http.response": {}},
        "state": {"k": "v"},
    }
    scope["state"]["k"] = "changed"
    scope["extensions"]["added"] = {}
    assert state == {"k": "v"}
    again = factory.websocket(request)
    assert again["state"] == {"k": "v"}
    assert again["extensions"] == {"websocket.http.response": {}}


@pytest.mark.parametrize(
    ("connection_scheme", "request_scheme", "http_version", "expected"),
    [
        ("http", None, "1.1", "ws"),
        ("https", None, "1.1", "wss"),
        ("http", "https", "2", "wss"),
        ("https", "https", "2", "wss"),
        ("https", "http", "2", "ws"),
        ("http", "http", "2", "ws"),
    ],
)
def test_websocket_scheme(
    connection_scheme: Literal["http", "https"],
    request_scheme: str | None,
    http_version: str,
    expected: str,
) -> None:
    info = ConnectionInfo(client=None, server=None, scheme=connection_scheme)
    request = ws_request(http_version=http_version, scheme=request_scheme)
    scope = ScopeFactory(info, "", {}).websocket(request)
    assert scope["scheme"] == expected
    assert scope["http_version"] == http_version


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], []),
        ([(b"sec-websocket-protocol", b"chat")], ["chat"]),
        ([(b"sec-websocket-protocol", b"  b , a  ,c")], ["b", "a", "c"]),
        (
            [
                (b"sec-websocket-protocol", b"one, two"),
                (b"host", b"h"),
                (b"sec-websocket-protocol", b" three"),
            ],
            ["one", "two", "three"],
        ),
        ([(b"sec-websocket-protocol", b"a,, ,b")], ["a", "b"]),
        ([(b"sec-websocket-protocol", b"")], []),
        ([(b"sec-websocket-extensions", b"permessage-deflate")], []),
    ],
)
def test_websocket_subprotocols(headers: list[tuple[bytes, bytes]], expected: list[str]) -> None:
    assert subprotocols(headers) == expected
    info = ConnectionInfo(client=None, server=None)
    scope = ScopeFactory(info, "", {}).websocket(ws_request(headers=headers))
    assert scope["subprotocols"] == expected
    assert scope["headers"] == headers


def test_websocket_tls_extension_only_on_tls() -> None:
    tls = {"tls_version": 0x0304}
    info = ConnectionInfo(client=None, server=None, scheme="https", tls=tls)
    scope = ScopeFactory(info, "", {}).websocket(ws_request())
    assert scope["extensions"] == {"websocket.http.response": {}, "tls": tls}
    assert scope["extensions"]["tls"] is tls
    assert scope["scheme"] == "wss"
    plain = ConnectionInfo(client=None, server=None, scheme="http")
    assert "tls" not in ScopeFactory(plain, "", {}).websocket(ws_request())["extensions"]


def test_websocket_scope_over_http2_and_unix_socket() -> None:
    info = ConnectionInfo(client=None, server=("/tmp/sock", None), scheme="http")
    scope = ScopeFactory(info, "/api", {}).websocket(
        ws_request(b"/ws?token=x", http_version="2", scheme="https")
    )
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/ws"
    assert scope["query_string"] == b"token=x"
    assert scope["client"] is None
    assert scope["server"] == ("/tmp/sock", None)
    assert scope["root_path"] == "/api"
    assert scope["asgi"]["spec_version"] == "2.4"
    assert "method" not in scope
