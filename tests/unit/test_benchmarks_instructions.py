"""benchmarks/instructions.py and the section report.py renders from it.

The pure parts run on made-up figures; one test counts a real server under
callgrind (where Valgrind and h2load are installed, as .ci/run installs them).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from .benchmark_modules import load

report = load("report")
instructions = load("instructions")
run = load("run")
NONE = "\N{EN DASH}"
SHARED_BENCH = Path(__file__).resolve().parents[3] / "shared" / "bench"

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /venv/bin/python -m tricorn
part: 2

desc: I1 cache:
positions: line
events: Ir
summary: 18446744073684193758


ob=(1) /usr/lib/libc.so.6
fn=(1) memcpy
0 3
totals: 12678930
"""


def test_the_count_is_read_from_the_totals_line():
    # The summary line of a second dump wraps around; totals holds the count.
    assert instructions.callgrind_total(DUMP) == 12_678_930
    assert instructions.callgrind_total("events: Ir\nsummary: 5\n") is None
    assert instructions.callgrind_total("") is None


def test_per_request_cancels_what_both_runs_pay():
    # 10k requests cost 1.1 G with set-up, 20k cost 2.1 G: 100k per request.
    assert instructions.per_request(1_100_000_000, 2_100_000_000, 10_000) == 100_000
    assert instructions.per_request(5, 5, 10) is None
    assert instructions.per_request(5, 4, 10) is None
    assert instructions.per_request(1, 9, 0) is None


def test_the_server_runs_under_callgrind_with_counting_off(tmp_path: Path):
    out = tmp_path / "h1.out"
    argv, env = instructions.under_callgrind(["/venv/bin/python", "-m", "tricorn", "-w", "0"], out)
    assert argv[:4] == [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
    ]
    assert argv[4:] == ["/venv/bin/python", "-m", "tricorn", "-w", "0"]
    assert env == {}
    # The compiled build's command sets PYTHONPATH through env(1), which
    # Valgrind would measure instead of Python: the variables move to the
    # environment and Valgrind runs Python itself.
    compiled = ["env", "PYTHONPATH=/c/src:/shared", "A=b=c", "/venv/bin/python", "-m", "tricorn"]
    argv, env = instructions.under_callgrind(compiled, out)
    assert argv[4:] == ["/venv/bin/python", "-m", "tricorn"]
    assert env == {"PYTHONPATH": "/c/src:/shared", "A": "b=c"}


def test_workers_are_paired_with_the_asyncio_worker_of_their_build():
    servers = [
        "tricorn-asyncio",
        "tricorn-trio",
        "tricorn-uvloop",
        "tricorn-compiled-asyncio",
        "tricorn-compiled-trio",
        "hypercorn-trio",
    ]
    assert report.instruction_pairs(servers) == [
        ("tricorn-trio", "tricorn-asyncio"),
        ("tricorn-uvloop", "tricorn-asyncio"),
        ("tricorn-compiled-trio", "tricorn-compiled-asyncio"),
    ]
    assert report.instruction_pairs(["tricorn-trio"]) == []


def _run(
    server: str, protocol: str, figure: float | None, error: str | None = None
) -> dict[str, Any]:
    return {"server": server, "protocol": protocol, "per_request": figure, "error": error}


RESULT: dict[str, Any] = {
    "command": "python benchmarks/instructions.py --python /venv/bin/python",
    "date": "2026-11-29 10:00 UTC",
    "git_commit": "abc1234",
    "cpu_model": "Some CPU",
    "valgrind": "valgrind-3.19.0",
    "versions": {"python": "3.11.7", "tricorn": "0.1.0", "trio": "0.27.0"},
    "servers": ["tricorn-asyncio", "tricorn-trio"],
    "protocols": ["h1", "h1-tls", "ws"],
    "requests": {"h1": 4000, "h1-tls": 4000, "ws": 4000},
    "clients": {"h1": "h2load --h1 -t1 -c 64 -n {n} http://127.0.0.1:PORT/"},
    "total_seconds": 300,
    "runs": [
        _run("tricorn-asyncio", "h1", 190_000.0),
        _run("tricorn-trio", "h1", 214_000.0),
        _run("tricorn-asyncio", "h1-tls", 225_000.0),
        _run("tricorn-trio", "h1-tls", 340_000.0),
        _run("tricorn-asyncio", "ws", 100_000.0),
        _run("tricorn-trio", "ws", None, "server died: boom"),
    ],
}


def test_instructions_table():
    table = report.render_instructions_table(RESULT)
    lines = table.splitlines()
    assert (
        lines[0] == "| protocol | tricorn-asyncio | tricorn-trio | tricorn-trio / tricorn-asyncio |"
    )
    assert lines[2] == "| h1 | 190.0k | 214.0k | 0.89x |"
    # Below issue 7's 0.7: in bold.
    assert lines[3] == "| h1-tls | 225.0k | 340.0k | **0.66x** |"
    assert lines[4] == f"| ws | 100.0k | {NONE} | {NONE} |"
    assert "- ws, tricorn-trio: server died: boom" in table
    assert report.instruction_ratio(RESULT, "h1", "tricorn-trio", "tricorn-asyncio") == (
        pytest.approx(190 / 214)
    )


def test_instructions_section():
    section = report.render_instructions(RESULT)
    assert section.startswith(report.INSTRUCTIONS_HEADING + "\n")
    assert RESULT["command"] in section
    assert "| h1 | 4,000 | `h2load --h1 -t1 -c 64 -n {n} http://127.0.0.1:PORT/` |" in section
    assert "(I(2n) - I(n)) / n" in section
    assert "tricorn 0.1.0 (commit abc1234), trio 0.27.0" in section
    assert "valgrind-3.19.0" in section


PAGE = "# Performance\n\n## Medians\n\nT.\n\n## Memory\n\nM.\n\n## Method\n\nHow.\n"


def test_a_section_is_spliced_in_and_replaced():
    first = report.splice_section(PAGE, "## Instructions per request\n\nOld.")
    assert first.index("## Memory") < first.index("## Instructions") < first.index("## Method")
    again = report.splice_section(first, "## Instructions per request\n\nNew.\n")
    assert "Old." not in again
    assert again.count("## Instructions per request") == 1
    assert again.index("New.") < again.index("## Method")
    after = report.splice_section(PAGE, "## X\n\nx", after="## Medians")
    assert after.index("## Medians") < after.index("## X") < after.index("## Memory")
    assert report.splice_section("# P\n", "## X\n\nx") == "# P\n\n## X\n\nx\n"


def test_a_new_throughput_page_keeps_the_other_runs_sections(tmp_path: Path, monkeypatch):
    """run.py rewrites the whole page: the memory (one process and workers)
    and instructions sections come back from the results kept in docs/."""
    docs = tmp_path / "docs"
    docs.mkdir()
    monkeypatch.setattr(run, "DOCS", docs)
    (docs / run.INSTRUCTIONS).write_text(json.dumps(RESULT))
    workers = {"workers": 2, "servers": [], "protocols": [], "runs": []}
    (docs / run.MEMORY_WORKERS).write_text(json.dumps(workers))
    done = tmp_path / "run"
    done.mkdir()
    summary = {"h1-hello|hypercorn-asyncio": {"runs": 1, "ok_runs": 1, "value": 100.0}}
    (done / "summary.json").write_text(json.dumps(summary))
    meta = {"scenarios": ["h1-hello"], "servers": ["hypercorn-asyncio"], "repeat": 1}
    (done / "meta.json").write_text(json.dumps(meta))
    assert run.render(done) == 0
    page = (docs / "performance.md").read_text()
    assert page.index(report.MEMORY_WORKERS_HEADING) < page.index(report.INSTRUCTIONS_HEADING)
    assert page.index(report.INSTRUCTIONS_HEADING) < page.index("## Method")
    assert "| h1 | 190.0k | 214.0k | 0.89x |" in page


def test_bad_options_are_refused(capsys):
    for argv, words in (
        (["--servers", "nginx"], "--servers: unknown 'nginx'"),
        (["--servers", "tricorn-compiled-trio"], "needs --compiled"),
        (["--protocols", "spdy"], "--protocols: unknown 'spdy'"),
        (["--requests", "-5"], "--requests: -5"),
    ):
        with pytest.raises(SystemExit) as exc:
            instructions.main(argv)
        assert exc.value.code == 2
        assert words in capsys.readouterr().err


@pytest.mark.skipif(
    not (shutil.which("valgrind") and shutil.which("callgrind_control") and shutil.which("h2load")),
    reason="needs valgrind and h2load (apt-get install valgrind nghttp2-client)",
)
@pytest.mark.skipif(not (SHARED_BENCH / "apps.py").is_file(), reason="no ../shared/bench")
def test_a_real_server_is_counted(tmp_path: Path):
    """tricorn's asyncio worker under callgrind, HTTP/1.1: a per-request
    count in the range a small GET costs (about 0.1-0.3 M in the pure
    build; well away from zero, and from the start-up's hundreds of
    millions, which counting off at start leaves out)."""
    out = tmp_path / "out"
    status = instructions.main(
        [
            "--python", sys.executable, "--bench-dir", str(SHARED_BENCH),
            "--servers", "tricorn-asyncio", "--protocols", "h1", "--requests", "150",
            "--no-docs", "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    result = json.loads((out / "instructions.json").read_text())
    (record,) = result["runs"]
    assert record["error"] is None, record
    first, second = record["counts"]
    assert first < second
    assert 20_000 < record["per_request"] < 2_000_000
    assert record["succeeded"] == [150, 300]
    assert (out / "callgrind" / "h1.tricorn-asyncio.out.2").is_file()
