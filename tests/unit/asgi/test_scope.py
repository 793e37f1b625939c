from __future__ import annotations

import pytest

from tricorn.asgi.app import as_asgi3, is_asgi2
from tricorn.asgi.scope import ScopeFactory, decode_path, split_target
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
