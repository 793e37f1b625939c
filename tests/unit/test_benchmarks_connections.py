"""benchmarks/connections.py: memory per idle connection.

The pure parts run on made-up figures; one test measures a real server (the
checkout's tricorn, with this interpreter) on a few hundred connections.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .benchmark_modules import load

connections = load("connections")
report = load("report")
NONE = "\N{EN DASH}"
SHARED_BENCH = Path(__file__).resolve().parents[3] / "shared" / "bench"


def test_per_connection_is_the_slope_between_the_readings() -> None:
    assert connections.per_connection_kib(20_000, 40_000, 1000) == 20.0
    assert connections.per_connection_kib(None, 40_000, 1000) is None
    assert connections.per_connection_kib(20_000, 40_000, 0) is None


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", False),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n", True),
    ],
)
def test_a_response_is_complete_once_its_body_is_in(data: bytes, complete: bool) -> None:
    assert connections.response_complete(data) is complete


def _result(**runs: float | None) -> dict[str, Any]:
    return {
        "command": "python benchmarks/connections.py --python /venv/bin/python",
        "date": "2026-11-29 23:00 UTC",
        "servers": list(runs),
        "protocols": ["h1"],
        "low": 500,
        "high": 1500,
        "runs": [
            {
                "server": server,
                "protocol": "h1",
                "per_connection_kib": value,
                "error": None if value is not None else "server exited with 1",
            }
            for server, value in runs.items()
        ],
    }


def test_the_section_holds_each_server_against_hypercorn_on_its_loop() -> None:
    section = connections.render(
        _result(**{"hypercorn-asyncio": 13.0, "hypercorn-trio": 20.0,
                   "tricorn-asyncio": 19.5, "tricorn-trio": 10.0, "tricorn-uvloop": 16.0})
    )  # fmt: skip
    assert section.startswith(connections.HEADING + "\n")
    assert "python benchmarks/connections.py --python /venv/bin/python" in section
    assert "| h1 | tricorn-asyncio | 19.5 | 1.50x |" in section
    assert "| h1 | tricorn-trio | 10.0 | 0.50x |" in section
    # no hypercorn-uvloop measured: nothing to hold it against
    assert f"| h1 | tricorn-uvloop | 16.0 | {NONE} |" in section
    assert f"| h1 | hypercorn-asyncio | 13.0 | {NONE} |" in section


def test_a_failed_run_shows_why() -> None:
    section = connections.render(_result(**{"tricorn-asyncio": None}))
    assert f"| h1 | tricorn-asyncio | server exited with 1 | {NONE} |" in section


def test_the_section_replaces_itself_in_the_page() -> None:
    page = "# Performance\n\n## Memory of worker processes\n\nold\n\n## Method\n\nm\n"
    first = report.splice_section(page, connections.render(_result(**{"tricorn-trio": 9.0})),
                                  after=connections.AFTER)  # fmt: skip
    assert first.index(connections.HEADING) > first.index("## Memory of worker processes")
    assert first.index(connections.HEADING) < first.index("## Method")
    again = report.splice_section(first, connections.render(_result(**{"tricorn-trio": 8.0})),
                                  after=connections.AFTER)  # fmt: skip
    assert again.count(connections.HEADING) == 1
    assert "| h1 | tricorn-trio | 8.0 |" in again


@pytest.mark.skipif(not (SHARED_BENCH / "apps.py").is_file(), reason="the shared harness is absent")
def test_a_real_run_measures_a_slope(tmp_path: Path) -> None:
    """The checkout's tricorn, asyncio, 50 then 150 idle HTTP/1.1 connections."""
    out = tmp_path / "run"
    status = connections.main(
        ["--python", sys.executable, "--bench-dir", str(SHARED_BENCH),
         "--servers", "tricorn-asyncio", "--protocols", "h1",
         "--low", "50", "--high", "150", "--no-docs", "--out", str(out)]
    )  # fmt: skip
    assert status == 0
    result = json.loads((out / "connections.json").read_text())
    (run,) = result["runs"]
    assert run["error"] is None
    assert run["rss_high_kib"] > run["rss_low_kib"]
    assert 1.0 < run["per_connection_kib"] < 200.0
    assert "--out" not in result["command"]
    assert "--no-docs" not in result["command"]
