"""Shared fixtures: every async test runs under asyncio, asyncio+uvloop and
trio; ``running_server`` starts a real tricorn server on 127.0.0.1:0 in the
test's own event loop and yields its URL."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import trustme

from tricorn import Config, _backend
from tricorn.server import connection as _connection
from tricorn.server.serve import serve

# The compiled build (setup.py) compiles the event core: its classes take
# no stand-ins (a Stream needs a real Connection), and calls between their
# methods do not look the methods up, so a spy patched onto the class sees
# none of them. Tests built on either run on the pure build (CI runs both).
COMPILED_CORE = not (_connection.__file__ or "").endswith(".py")
pure_core_only = pytest.mark.skipif(
    COMPILED_CORE, reason="fakes or spies on the event core's classes (compiled here)"
)

BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclasses.dataclass
class TLSFiles:
    certfile: str
    keyfile: str
    ca_file: str
    client_context: ssl.SSLContext


@pytest.fixture(scope="session")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    ca_file = directory / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        with open(certfile, "ab") as file:
            file.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_file))
    client_context = ssl.create_default_context(cafile=str(ca_file))
    client_context.set_alpn_protocols(["http/1.1"])
    return TLSFiles(str(certfile), str(keyfile), str(ca_file), client_context)


_http1_parser = ["auto"]  # set by the both_http1_parsers fixture


@pytest.fixture(params=["h11", "httptools"])
def both_http1_parsers(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once with each HTTP/1.1 request reader (``http1_parser``);
    ``make_config`` uses it."""
    _http1_parser[0] = request.param
    yield request.param
    _http1_parser[0] = "auto"


def make_config(**settings: Any) -> Config:
    """Defaults for tests: an ephemeral port on 127.0.0.1, short timeouts."""
    settings.setdefault("bind", ["127.0.0.1:0"])
    settings.setdefault("http1_parser", _http1_parser[0])
    settings.setdefault("graceful_timeout", 5.0)
    return dataclasses.replace(Config(), **settings)


@asynccontextmanager
async def running_server(app: Any, **settings: Any) -> AsyncIterator[str]:
    """Serve ``app`` for the duration of the block; yields the first URL."""
    config = make_config(**settings)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        urls = await tg.start(
            lambda task_status: serve(
                app,
                config,
                shutdown_trigger=stop.wait,
                io=_backend,
                task_status=task_status,
            )
        )
        try:
            yield urls[0]
        finally:
            stop.set()
