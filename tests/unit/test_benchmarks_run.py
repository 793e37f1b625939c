"""benchmarks/run.py: the harness command line it builds (nothing is run)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from .benchmark_modules import load

run = load("run")


def _args(
    compiled: Path | None, servers: str = "uvicorn,tricorn-uvloop", installed: bool = False
) -> argparse.Namespace:
    return argparse.Namespace(
        python="/venv/bin/python",
        repeat=3,
        servers=servers,
        scenarios="h1-hello",
        compiled=compiled,
        installed=installed,
        bench_dir=Path("/work/shared/bench"),
    )


def _servers(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--server")


def test_without_compiled_only_the_three_workers():
    argv = run.bench_argv(_args(None), Path("bench.py"), Path("out"))
    assert argv[argv.index("--servers") + 1] == "uvicorn,tricorn-uvloop"
    assert sorted(_servers(argv)) == ["tricorn-asyncio", "tricorn-trio", "tricorn-uvloop"]


def test_the_workers_run_this_checkout_unless_told_to_run_the_installed_copy():
    """A venv's installed tricorn is a copy of whatever commit it was
    installed from: by default the harness imports this checkout's src/."""
    argv = run.bench_argv(_args(None), Path("bench.py"), Path("out"))
    command = _servers(argv)["tricorn-trio"]
    assert command.startswith(f"env PYTHONPATH={run.SRC}:/work/shared {{python}} -m tricorn ")
    assert " -k trio " in command
    argv = run.bench_argv(_args(None, installed=True), Path("bench.py"), Path("out"))
    assert _servers(argv)["tricorn-trio"].startswith("tricorn -c {hypercorn_config} ")


def test_compiled_adds_a_server_per_worker_importing_the_compiled_tree(tmp_path: Path):
    argv = run.bench_argv(_args(tmp_path), Path("bench.py"), Path("out"))
    listed = argv[argv.index("--servers") + 1].split(",")
    assert listed == [
        "uvicorn",
        "tricorn-uvloop",
        "tricorn-compiled-asyncio",
        "tricorn-compiled-uvloop",
        "tricorn-compiled-trio",
    ]
    command = _servers(argv)["tricorn-compiled-trio"]
    assert command.startswith(f"env PYTHONPATH={tmp_path}:/work/shared {{python}} -m tricorn ")
    assert " -k trio " in command
    # Named explicitly: not added twice.
    argv = run.bench_argv(_args(tmp_path, "tricorn-compiled-uvloop"), Path("b"), Path("o"))
    assert argv[argv.index("--servers") + 1] == "tricorn-compiled-uvloop"


def test_steal_is_recorded_while_the_harness_runs(tmp_path: Path):
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat here")
    report = run._load_report()
    path = tmp_path / run.STEAL
    before = time.time()
    with run.StealRecorder(path, report):
        time.sleep(run.STEAL_EVERY * 1.5)
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    # One at the start, one a period later, one after the end.
    assert len(samples) >= 3
    assert before <= samples[0]["t"] <= samples[-1]["t"] <= time.time()
    assert all("0" in s["cpus"] and len(s["cpus"]["0"]) == 2 for s in samples)
    assert run._steal(report, tmp_path) is None  # (no raw.jsonl: nothing to match)
    record = {"server": "s", "scenario": "x", "wall_s": 0.0}
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(samples[0]["t"] + 1))
    (tmp_path / "raw.jsonl").write_text(json.dumps(record) + "\n")
    # A sample after the run, the core's clock moved on (an idle core may not
    # tick between the recorder's samples, and a share needs time that passed;
    # the run's start, to the second, may fall after the last of them).
    stolen, total = samples[-1]["cpus"]["0"]
    samples.append({"t": samples[-1]["t"] + 5, "cpus": {"0": [stolen, total + 100]}})
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    assert list(run._steal(report, tmp_path) or {}) == ["x"]
