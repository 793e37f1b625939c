"""The programmatic API from a program of its own: ``examples/embedded.py``
runs ``tricorn.serve`` under ``asyncio.run()`` and ``trio.run()`` (not
anyio.run), with the metrics endpoint beside it, and drains on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .test_cli_serve import HELLO, REPO, STOP_TIMEOUT, Child, free_port


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_embedded_server_under_each_event_loop(tmp_path: Path, loop: str) -> None:
    port, metrics_port = free_port(), free_port()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    argv = ["--loop", loop, "--port", str(port), "--metrics-port", str(metrics_port)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "examples.embedded", *argv],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    child = Child(proc, out, err)
    try:
        child.wait_listening(port)
        child.wait_listening(metrics_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read() == HELLO
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            assert b'tricorn_requests_total{protocol="1.1",status="200"} 1\n' in r.read()
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=STOP_TIMEOUT) == 0, child.stderr()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    assert f"serving on http://127.0.0.1:{port}, http://127.0.0.1:{metrics_port}" in child.stdout()
