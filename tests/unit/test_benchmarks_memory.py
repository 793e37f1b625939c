"""benchmarks/memory.py's pure parts, and the Memory section report.py renders.

The result dicts have the shape memory.py writes to memory.json; the
figures are made up. No server, no load tool; the process-tree readings
run on a tree of sleeping Python processes this test starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .benchmark_modules import load

report = load("report")
memory = load("memory")
NONE = "\N{EN DASH}"
MIB = 1024


# --- memory.py ---------------------------------------------------------------------------


def test_checkpoints_parse_and_must_increase():
    assert memory.parse_checkpoints("10000,100000") == (10_000, 100_000)
    assert memory.parse_checkpoints("10_000, 50_000, 100_000") == (10_000, 50_000, 100_000)
    for bad in ("10000", "100000,10000", "0,10", "ten,20", "5,5"):
        with pytest.raises(ValueError, match=r"count"):
            memory.parse_checkpoints(bad)


def test_rounds_land_on_every_checkpoint():
    plan = memory.plan_rounds((10_000, 100_000), 1_000)
    assert len(plan) == 100
    assert {size for size, _ in plan} == {1_000}
    assert [i for i, (_, mark) in enumerate(plan) if mark] == [9, 99]
    assert plan[9] == (1_000, 10_000)
    assert plan[99] == (1_000, 100_000)

    uneven = memory.plan_rounds((2_500, 6_000), 2_000)
    assert uneven == [(2_000, None), (500, 2_500), (2_000, None), (1_500, 6_000)]
    assert sum(size for size, _ in uneven) == 6_000
    with pytest.raises(ValueError, match="positive"):
        memory.plan_rounds((10, 20), 0)


STATUS = """Name:\tpython
VmPeak:\t  120000 kB
VmHWM:\t   40120 kB
VmRSS:\t   27736 kB
RssAnon:\t   16788 kB
Threads:\t1
"""


def test_proc_fields():
    assert memory.status_kib(STATUS, "VmRSS") == 27_736
    assert memory.status_kib(STATUS, "VmHWM") == 40_120
    assert memory.status_kib(STATUS, "VmSwap") is None
    rollup = "00400000-7ffd [rollup]\nRss:               27736 kB\nPss:               18337 kB\n"
    assert memory.pss_kib(rollup) == 18_337
    assert memory.pss_kib("") is None


H2LOAD = """finished in 1.12s, 8917.41 req/s, 1.02MB/s
requests: 10000 total, 10000 started, 10000 done, 9990 succeeded, 10 failed, 0 errored, 0 timeout
status codes: 9990 2xx, 0 3xx, 0 4xx, 10 5xx
"""
# h11's empty reason phrase: h2load reads no status code, counts every response failed.
H2LOAD_H11 = """finished in 2.30s, 4346.20 req/s, 500.00KB/s
requests: 10000 total, 10000 started, 10000 done, 0 succeeded, 10000 failed, 0 errored, 2 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
"""


def test_h2load_counts():
    assert memory.parse_h2load(H2LOAD) == (9_990, 10)
    assert memory.parse_h2load(H2LOAD_H11) == (9_998, 2)
    assert memory.parse_h2load("connect: Connection refused") == (0, 0)


def test_json_client_counts():
    line = '{"tool": "wsload", "succeeded": 995, "failed": 5, "errored": 1, "fatal": []}'
    assert memory.parse_json_client("noise\n" + line + "\n") == (995, 6, "")
    fatal = '{"succeeded": 0, "failed": 0, "fatal": ["worker 12 died"]}'
    assert memory.parse_json_client(fatal) == (0, 0, "worker 12 died")
    ok, failed, error = memory.parse_json_client("Traceback ...\nImportError: aioquic")
    assert (ok, failed) == (0, 0)
    assert "ImportError" in error


def test_regenerate_command_drops_local_options():
    argv = [
        "--python", "/venv/bin/python", "--ports", "18750-18799", "--out=/tmp/x", "--no-docs",
        "--servers", "tricorn-trio", "--bench-dir", "/b", "--no-prime", "--protocols=h1",
    ]  # fmt: skip
    assert memory.regenerate_args(argv) == [
        "--python", "/venv/bin/python", "--servers", "tricorn-trio", "--protocols=h1",
    ]  # fmt: skip


def test_server_command_lines():
    h1 = memory.PROTOCOLS["h1"]
    argv = memory.server_argv(
        "hypercorn-trio", h1, python="/venv/bin/python", port=18001, toml="/t.toml",
        installed=False,
    )  # fmt: skip
    assert argv == [
        "/venv/bin/hypercorn", "-c", "/t.toml", "-w", "0", "-k", "trio",
        "--bind", "127.0.0.1:18001", "bench.apps:hello",
    ]  # fmt: skip
    h3 = memory.PROTOCOLS["h3"]
    argv = memory.server_argv(
        "tricorn-uvloop", h3, python="/venv/bin/python", port=18002, toml="/t.toml",
        installed=False,
    )  # fmt: skip
    assert argv[:3] == ["/venv/bin/python", "-m", "tricorn"]
    assert argv[argv.index("-k") + 1] == "uvloop"
    assert argv[argv.index("--quic-bind") + 1] == "127.0.0.1:18002"
    assert "--certfile" in argv
    assert "--keyfile" in argv
    ws = memory.server_argv(
        "tricorn-asyncio", memory.PROTOCOLS["ws"], python="/v/bin/python", port=1,
        toml="/t", installed=True,
    )  # fmt: skip
    assert ws[0] == "/v/bin/tricorn"
    assert ws[-1] == "bench.apps:ws"
    with pytest.raises(ValueError, match="unknown server"):
        memory.server_argv("uvicorn", h1, python="p", port=1, toml="t", installed=False)


def test_compiled_build_command_lines():
    h1 = memory.PROTOCOLS["h1"]
    argv = memory.server_argv(
        "tricorn-compiled-trio", h1, python="/v/bin/python", port=18003, toml="/t.toml",
        installed=True, compiled_path="/c/src:/shared",
    )  # fmt: skip
    # The same interpreter, importing tricorn from the compiled tree first
    # (installed or not: the compiled tree is what runs).
    assert argv[:5] == ["env", "PYTHONPATH=/c/src:/shared", "/v/bin/python", "-m", "tricorn"]
    assert argv[argv.index("-k") + 1] == "trio"
    assert argv[-1] == "bench.apps:hello"
    with pytest.raises(ValueError, match="needs the compiled build"):
        memory.server_argv(
            "tricorn-compiled-asyncio", h1, python="p", port=1, toml="t", installed=False
        )


def test_worker_command_line():
    argv = memory.server_argv(
        "tricorn-asyncio", memory.PROTOCOLS["h1"], python="/v/bin/python", port=1,
        toml="/t", installed=True, workers=2,
    )  # fmt: skip
    assert argv[argv.index("-w") + 1] == "2"


TREE = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
kids = [subprocess.Popen(sleep) for _ in range(2)]
helper = subprocess.Popen([*sleep[:2], "import time; time.sleep(60)  # resource_tracker"])
print("ready", flush=True)
time.sleep(60)
"""


def test_the_workers_of_a_process_tree_are_found_and_read():
    # A supervisor with two workers and a helper (as multiprocessing's
    # resource tracker beside Hypercorn's spawned workers).
    tree = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    below: list[int] = []
    try:
        assert tree.stdout is not None
        assert tree.stdout.readline().strip() == "ready"
        below = memory.descendants(tree.pid)
        assert len(below) == 3
        assert memory.children(tree.pid) == below
        workers = memory.wait_workers(tree.pid, 2, timeout=10)
        assert workers is not None
        assert len(workers) == 2
        assert set(workers) < set(below)
        assert memory.wait_workers(tree.pid, 3, timeout=0.3) is None
        one = memory.reading(tree.pid, 0)
        assert set(one) == {"rss", "hwm", "pss"}
        assert one["rss"] > 0
        assert one["pss"] > 0
        each = memory.reading(tree.pid, 2)
        assert each["worker_pids"] == workers
        assert len(each["worker_rss"]) == 2
        assert each["rss"] == max(each["worker_rss"])
        # The tree's PSS: four interpreters (one counted in full would be
        # about an RSS; shared pages split among them).
        assert each["pss"] > max(each["worker_rss"])
    finally:
        tree.kill()
        tree.wait()
        assert tree.stdout is not None
        tree.stdout.close()
    for pid in below:  # (the sleepers outlive their parent; end them too)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def test_workers_are_bounded(tmp_path, capsys):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "apps.py").write_text("")
    args = ["--bench-dir", str(bench), "--out", str(tmp_path / "out"), "--no-docs"]
    for bad in ("-1", "17"):
        with pytest.raises(SystemExit) as exc:
            memory.main([*args, "--workers", bad])
        assert exc.value.code == 2
        assert f"--workers: {bad} (allowed: 0 to 16)" in capsys.readouterr().err


def test_compiled_servers_need_the_compiled_tree(tmp_path, capsys):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "apps.py").write_text("")
    args = ["--bench-dir", str(bench), "--out", str(tmp_path / "out"), "--no-docs"]
    with pytest.raises(SystemExit) as exc:
        memory.main([*args, "--servers", "tricorn-compiled-asyncio"])
    assert exc.value.code == 2
    assert "tricorn-compiled-asyncio needs --compiled SRC" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        memory.main([*args, "--compiled", str(tmp_path)])
    assert exc.value.code == 2
    assert "holds no tricorn package" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("h1", "h2load --h1 -t1 -c 16 -n {n} http://127.0.0.1:PORT/"),
        ("h1-tls", "h2load --h1 -t1 -c 16 -n {n} https://127.0.0.1:PORT/"),
        ("h2c", "h2load -t1 -c 16 -m 8 -n {n} http://127.0.0.1:PORT/"),
        ("h2-tls", "h2load -t1 -c 16 -m 8 -n {n} https://127.0.0.1:PORT/"),
        ("h3", "python h3load.py https://127.0.0.1:PORT/ -P 1 -c 16 -m 8 -n {n} --json"),
        ("ws", "python wsload.py ws://127.0.0.1:PORT/ -P 1 -c 16 -m 1 -s 64 -n {n} --json"),
    ],
)
def test_client_per_protocol(protocol: str, expected: str):
    assert memory.client_text(memory.PROTOCOLS[protocol], 16, 8) == expected
    argv = memory.client_argv(
        memory.PROTOCOLS[protocol], 1_000, python="/v/bin/python", bench_dir=Path("/b"),
        port=18003, connections=16, streams=8,
    )  # fmt: skip
    assert argv[argv.index("-n") + 1] == "1000"
    assert any(":18003/" in arg for arg in argv)


# --- report.py: the Memory section -------------------------------------------------------


def run(server: str, protocol: str, idle: float, *points: float, **extra: Any) -> dict[str, Any]:
    """A memory.json run; ``idle`` and ``points`` in MiB, points at 10k, 100k (h3: 10k, 30k)."""
    counts = (10_000, 30_000) if protocol == "h3" else (10_000, 100_000)
    return {
        "server": server,
        "protocol": protocol,
        "idle_kib": int(idle * MIB),
        "points": [
            {"requests": c, "rss_kib": int(p * MIB), "failed": 0}
            for c, p in zip(counts, points, strict=False)
        ],
        "error": None,
    } | extra


RESULT: dict[str, Any] = {
    "command": "python benchmarks/memory.py --python /tmp/peers-venv/bin/python",
    "date": "2026-11-27 06:00 UTC",
    "git_commit": "abc1234",
    "cpus": 2,
    "cpu_model": "Some CPU",
    "kernel": "6.1.0",
    "versions": {"python": "3.11.7", "tricorn": "0.1.0", "hypercorn": "0.18.0"},
    "servers": ["hypercorn-asyncio", "hypercorn-trio", "tricorn-asyncio", "tricorn-trio"],
    "protocols": ["h1", "h3"],
    "checkpoints": {"h1": [10_000, 100_000], "h3": [10_000, 30_000]},
    "rounds": {"h1": 1_000, "h3": 5_000},
    "connections": {"h1": 16, "h3": 4},
    "streams": 8,
    "settle_s": 0.5,
    "pinned": True,
    "clients": {"h1": "h2load --h1 -t1 -c 16 -n {n} http://127.0.0.1:PORT/"},
    "total_seconds": 420,
    "runs": [
        run("hypercorn-asyncio", "h1", 27.1, 29.0, 30.0),
        run("hypercorn-trio", "h1", 29.9, 31.0, 31.5),
        run("tricorn-asyncio", "h1", 26.5, 28.0, 28.7),
        run("tricorn-trio", "h1", 30.2, 31.0, 37.0),  # idle over hypercorn-trio; a leak
        run("hypercorn-asyncio", "h3", 43.5, 50.0),
        run("hypercorn-trio", "h3", 44.9, 51.0, 52.0),
        run("tricorn-asyncio", "h3", 43.4, 48.0, 49.0),
        run("tricorn-trio", "h3", 44.0, error="stopped after 10,000 requests: over --budget 150s"),
    ],
}


def test_reference_is_the_same_worker_class_when_measured():
    servers = RESULT["servers"]
    assert report.memory_reference("tricorn-trio", servers) == "hypercorn-trio"
    assert report.memory_reference("tricorn-uvloop", servers) == "hypercorn-asyncio"
    assert report.memory_reference("hypercorn-trio", servers) is None
    assert report.memory_reference("tricorn-trio", ["tricorn-trio"]) is None
    # The compiled build's workers: against the same event loop's Hypercorn.
    assert report.memory_reference("tricorn-compiled-trio", servers) == "hypercorn-trio"
    assert report.memory_reference("tricorn-compiled-uvloop", servers) == "hypercorn-asyncio"


def test_verdicts():
    verdicts = report.memory_verdicts(RESULT)
    ok = verdicts[("h1", "tricorn-asyncio")]
    assert ok.reference == "hypercorn-asyncio"
    assert ok.idle_ok is True
    assert ok.growth_mib == pytest.approx(0.7, abs=0.01)
    assert ok.growth_ok is True
    leak = verdicts[("h1", "tricorn-trio")]
    assert leak.reference == "hypercorn-trio"
    assert leak.idle_ok is False  # 30.2 > 29.9
    assert leak.growth_ok is False  # +6 MiB
    h3 = verdicts[("h3", "tricorn-asyncio")]
    assert h3.growth_mib == pytest.approx(1.0, abs=0.01)
    assert h3.growth_ok is True  # over its own, shorter span
    stopped = verdicts[("h3", "tricorn-trio")]
    assert stopped.idle_ok is True
    assert stopped.growth_mib is None
    assert stopped.growth_ok is None
    reference = verdicts[("h1", "hypercorn-asyncio")]
    assert reference.idle_ok is None  # nothing to hold it against
    assert reference.growth_ok is True


def table_rows(table: str) -> dict[tuple[str, str], list[str]]:
    out = {}
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| protocol"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[(cells[0], cells[2])] = cells
    return out


def test_memory_table():
    table = report.render_memory_table(RESULT)
    rows = table_rows(table)
    assert list(rows)[:4] == [("h1", s) for s in RESULT["servers"]]  # the run's order
    assert rows[("h1", "tricorn-asyncio")] == [
        "h1", "10k / 100k", "tricorn-asyncio", "26.5", "28.0", "28.7", "+0.7", "yes", "yes",
    ]  # fmt: skip
    assert rows[("h1", "tricorn-trio")][7:] == ["**no** (vs hypercorn-trio)", "**no**"]
    assert rows[("h3", "tricorn-asyncio")][1] == "10k / 30k"
    assert rows[("h3", "tricorn-asyncio")][6] == "+1.0"
    assert rows[("h3", "tricorn-trio")][4:9] == [NONE, NONE, NONE, "yes (vs hypercorn-trio)", NONE]
    assert rows[("h3", "hypercorn-asyncio")][5] == NONE  # no second reading
    assert "- h3, tricorn-trio: stopped after 10,000 requests" in table


def test_memory_section():
    section = report.render_memory(RESULT)
    assert section.startswith("## Memory\n")
    assert RESULT["command"] in section
    assert "idle RSS no higher than Hypercorn's: 3 of 4 tricorn runs pass" in section
    assert "(fails: tricorn-trio on h1)" in section
    assert "RSS growth at most 5 MiB: 2 of 4 tricorn runs pass" in section
    assert "about a thousand requests a second" in section
    assert "1 without a figure" in section
    assert "| h1 | 10,000 and 100,000 | 1,000 | `h2load --h1 -t1 -c 16 -n {n}" in section
    assert "| h3 | 10,000 and 30,000 | 5,000 |" in section
    assert "tricorn 0.1.0 (commit abc1234), hypercorn 0.18.0" in section
    assert "server on CPU 0, clients on CPU 1" in section
    assert "Hypercorn, the reference, is" not in section  # (loaded like tricorn)
    assert "tricorn-compiled-*" not in section
    compiled = report.render_memory(RESULT | {"compiled_source": "/c/src"})
    assert "the `tricorn-compiled-*` rows from the compiled build" in compiled
    first = report.render_memory(RESULT | {"reference_load": "first"})
    assert "Hypercorn, the reference, is loaded to the first count only" in first
    idle = report.render_memory(RESULT | {"reference_load": "none"})
    assert "Hypercorn, the reference, is measured idle only" in idle


PAGE = """# Performance

Intro.

## Per scenario

Tables.

## Method

How.
"""


def test_memory_section_spliced_into_the_page():
    first = report.splice_memory_section(PAGE, "## Memory\n\nOld figures.\n")
    assert first.index("## Per scenario") < first.index("## Memory") < first.index("## Method")
    again = report.splice_memory_section(first, "## Memory\n\nNew figures.")
    assert "Old figures." not in again
    assert again.count("## Memory") == 1
    assert again.index("New figures.") < again.index("## Method")
    assert again.endswith("How.\n" + report.MEMORY_METHOD + "\n")
    assert again.count(report.MEMORY_METHOD) == 1
    assert report.splice_memory_section("# P\n", "## Memory\n\nX") == "# P\n\n## Memory\n\nX\n"
    last = report.splice_memory_section("# P\n\n## Memory\n\nOld", "## Memory\n\nNew")
    assert last == "# P\n\n## Memory\n\nNew\n"
    method_first = report.splice_memory_section("# P\n\n## Method\n\nHow.\n\n## Z\n", "## Memory")
    assert (
        method_first == f"# P\n\n## Memory\n\n## Method\n\nHow.\n{report.MEMORY_METHOD}\n\n## Z\n"
    )


def test_performance_page_carries_the_memory_section():
    summary = {"h1-hello|hypercorn-asyncio": {"runs": 1, "ok_runs": 1, "value": 100.0}}
    meta = {"scenarios": ["h1-hello"], "servers": ["hypercorn-asyncio"], "repeat": 1}
    info = report.RunInfo(command="python benchmarks/run.py", date="today", chart=None)
    without = report.render_markdown(summary, meta, info)
    assert "## Memory" not in without
    page = report.render_markdown(summary, meta, info, memory=RESULT)
    assert page.index("## Per scenario") < page.index("## Memory") < page.index("## Method")


WORKERS_RESULT = RESULT | {
    "workers": 2,
    "runs": [
        run("hypercorn-asyncio", "h1", 27.8, idle_pss_kib=61 * MIB),
        run("tricorn-asyncio", "h1", 24.6, 25.0, 25.2, idle_pss_kib=46 * MIB),
    ],
    "servers": ["hypercorn-asyncio", "tricorn-asyncio"],
    "protocols": ["h1"],
}


def test_worker_section():
    section = report.render_memory(WORKERS_RESULT)
    assert section.startswith(report.MEMORY_WORKERS_HEADING + "\n")
    assert "the worker processes of a server started with `-w 2`" in section
    assert "the largest of the server's workers" in section
    assert "tricorn's supervisor forks them, Hypercorn's spawns them" in section
    rows = table_rows(report.render_memory_table(WORKERS_RESULT))
    assert rows[("h1", "tricorn-asyncio")] == [
        "h1", "10k / 100k", "tricorn-asyncio", "24.6", "25.0", "25.2", "+0.2", "46.0", "yes",
        "yes",
    ]  # fmt: skip
    assert rows[("h1", "hypercorn-asyncio")][7] == "61.0"
    assert "| all processes, idle PSS MiB |" in report.render_memory_table(WORKERS_RESULT)
    assert "PSS" not in report.render_memory_table(RESULT)
    assert "Workers:" not in report.render_memory(RESULT)


def test_worker_section_spliced_after_the_memory_section():
    page = report.splice_memory_section(PAGE, "## Memory\n\nOne process.\n")
    workers = report.MEMORY_WORKERS_HEADING + "\n\nWorkers."
    both = report.splice_memory_section(page, workers)
    assert both.index("One process.") < both.index("Workers.") < both.index("## Method")
    again = report.splice_memory_section(both, report.MEMORY_WORKERS_HEADING + "\n\nNew.")
    assert "Workers." not in again
    assert again.index("One process.") < again.index("New.") < again.index("## Method")
    # The one-process section is replaced alone.
    last = report.splice_memory_section(again, "## Memory\n\nOne again.")
    assert "One process." not in last
    assert last.index("One again.") < last.index("New.")
    assert last.count(report.MEMORY_METHOD) == 1
    # An older wording of the Method point is replaced, not repeated.
    stale = PAGE.replace("How.", "How.\n- **Memory:** the Memory section has its own command, old.")
    fresh = report.splice_memory_section(stale, "## Memory\n\nX")
    assert "old." not in fresh
    assert fresh.count(report.MEMORY_METHOD) == 1
