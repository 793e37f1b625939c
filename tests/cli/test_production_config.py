"""config/production.toml starts and serves as documented, with 127.0.0.1
ports, the test certificate and a temporary pid file substituted."""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ..conftest import TLSFiles
from ..integration.apps import HELLO
from ..integration.h3client import h3_connect
from .test_cli_serve import REPO, free_port, tricorn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

PRODUCTION = REPO / "config" / "production.toml"


def local_copy(tmp_path: Path, tls: TLSFiles) -> tuple[Path, int, int, Path]:
    settings: dict[str, Any] = tomllib.loads(PRODUCTION.read_text())
    tls_port, plain_port = free_port(), free_port()
    assert settings["metrics_bind"] == "127.0.0.1:9090"
    pid_path = tmp_path / "tricorn.pid"
    settings.update(
        bind=[f"127.0.0.1:{tls_port}"],
        insecure_bind=[f"127.0.0.1:{plain_port}"],
        quic_bind=[f"127.0.0.1:{tls_port}"],
        certfile=tls.certfile,
        keyfile=tls.keyfile,
        pid_path=str(pid_path),
        workers=2,
        metrics_bind=f"127.0.0.1:{free_port()}",
    )
    path = tmp_path / "production.toml"
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))
    return path, tls_port, plain_port, pid_path


def metrics_address(config: Path) -> str:
    return str(tomllib.loads(config.read_text())["metrics_bind"])


@pytest.mark.anyio
async def test_production_config_serves_https_http3_and_redirects(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    config, tls_port, plain_port, pid_path = local_copy(tmp_path, tls_files)
    with tricorn(tmp_path, "-c", str(config)) as child:
        child.wait_listening(tls_port)
        context = ssl.create_default_context(cafile=tls_files.ca_file)
        async with httpx.AsyncClient(verify=context, http2=True) as client:
            secure = await client.get(f"https://localhost:{tls_port}/")
            plain = await client.get(f"http://127.0.0.1:{plain_port}/a?b=1")
        assert (secure.status_code, secure.content) == (200, HELLO)
        assert secure.http_version == "HTTP/2"
        assert secure.headers["alt-svc"] == f'h3=":{tls_port}"; ma=86400'
        assert plain.status_code == 308
        assert plain.headers["location"] == "https://127.0.0.1/a?b=1"
        with anyio.fail_after(20):
            async with h3_connect("127.0.0.1", tls_port) as h3:
                response = await h3.request("GET", "/")
        assert bytes(response.body) == HELLO
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://{metrics_address(config)}/metrics")).text
        assert 'tricorn_requests_total{protocol="2",status="200"} 1\n' in metrics
        assert "tricorn_workers 2\n" in metrics
        assert pid_path.read_text().strip() == str(child.proc.pid)
        assert child.terminate() == 0, child.stderr()
    assert not pid_path.exists()
    log = child.stdout()  # accesslog = "-"
    assert '"GET / 2" 200' in log
    assert '"GET /a 1.1" 308' in log  # (%(r)s has no query string, as in Hypercorn)
    assert '"GET / 3" 200' in log
