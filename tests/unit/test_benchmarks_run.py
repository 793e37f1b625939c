"""benchmarks/run.py: the harness command line it builds (nothing is run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .benchmark_modules import load

run = load("run")


def _args(compiled: Path | None, servers: str = "uvicorn,tricorn-uvloop") -> argparse.Namespace:
    return argparse.Namespace(
        python="/venv/bin/python",
        repeat=3,
        servers=servers,
        scenarios="h1-hello",
        compiled=compiled,
        bench_dir=Path("/work/shared/bench"),
    )


def _servers(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--server")


def test_without_compiled_only_the_three_workers():
    argv = run.bench_argv(_args(None), Path("bench.py"), Path("out"))
    assert argv[argv.index("--servers") + 1] == "uvicorn,tricorn-uvloop"
    assert sorted(_servers(argv)) == ["tricorn-asyncio", "tricorn-trio", "tricorn-uvloop"]


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
