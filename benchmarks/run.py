"""Benchmark tricorn beside Hypercorn, Uvicorn and Granian; write docs/performance.md.

    python benchmarks/run.py --python /tmp/peers-venv/bin/python

runs the shared side-by-side harness (``../shared/bench/bench.py``, see its
README) with tricorn's three workers added as servers (from this
checkout's ``src/``; ``--installed``: the venv's copy), interleaved and
repeated on loopback, then renders ``docs/performance.md`` and
``docs/performance.png`` from the run's ``summary.json``. The run's files
stay in ``benchmarks/results/<time>/``; ``--report-only DIR`` renders them
again without measuring. The page's Memory section comes from
``benchmarks/memory.py`` (its last result is kept in
``docs/performance-memory.json``), the Instructions section from
``benchmarks/instructions.py`` (``docs/performance-instructions.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
SRC = REPO / "src"
WORKERS = ("asyncio", "uvloop", "trio")
TRICORN_CAPS = "h1,h1-tls,h2c,h2-tls,h3,ws"
TEMPLATE = (
    "tricorn -c {{hypercorn_config}} -w 0 -k {kind} --bind {{host}}:{{port}} "
    "{{tls}} {{quic}} {{app}}"
)
COMPILED_PREFIX = "tricorn-compiled-"  # --compiled: the build setup.py compiles
PEERS = ("hypercorn-asyncio", "hypercorn-trio", "uvicorn", "granian")
DEFAULT_SERVERS = (*PEERS, *(f"tricorn-{kind}" for kind in WORKERS))
RUN_INFO = "run.json"
CHART = "performance.png"
MEMORY = "performance-memory.json"  # benchmarks/memory.py's last result, kept in docs/
MEMORY_WORKERS = "performance-memory-workers.json"  # ... and of memory.py --workers N
INSTRUCTIONS = "performance-instructions.json"  # benchmarks/instructions.py's last result
STEAL = "steal.jsonl"  # /proc/stat read during the run: the time the hypervisor took
STEAL_EVERY = 0.5  # seconds between readings


def _load_report() -> ModuleType:
    """Import benchmarks/report.py by path (benchmarks/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(
        "tricorn_bench_report", REPO / "benchmarks" / "report.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit("benchmarks/report.py: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bench_argv(args: argparse.Namespace, bench_py: Path, out: Path) -> list[str]:
    """The harness's command line: the peers plus a server per tricorn worker
    (and per worker of the compiled build, with ``--compiled``)."""
    argv = [args.python, str(bench_py), "--out", str(out), "--repeat", str(args.repeat)]
    servers = args.servers
    if args.compiled is not None and COMPILED_PREFIX not in servers:
        servers += "," + ",".join(COMPILED_PREFIX + kind for kind in WORKERS)
    argv += ["--venv", str(Path(args.python).parent.parent), "--servers", servers]
    apps = args.bench_dir.resolve().parent  # (the harness's apps, as it imports them)
    for kind in WORKERS:
        name = f"tricorn-{kind}"
        command = TEMPLATE.format(kind=kind)
        if not args.installed:
            # This checkout's source, not whatever the venv has installed
            # (a copy that goes stale with every commit).
            command = f"env PYTHONPATH={SRC}:{apps} {{python}} -m {command}"
        argv += ["--server", f"{name}={command}"]
        argv += ["--server-caps", f"{name}={TRICORN_CAPS}"]
        if args.compiled is not None:
            # The same interpreter and venv, importing tricorn from the
            # compiled tree first.
            path = f"{args.compiled.resolve()}:{apps}"
            command = f"env PYTHONPATH={path} {{python}} -m " + TEMPLATE.format(kind=kind)
            argv += ["--server", f"{COMPILED_PREFIX}{kind}={command}"]
            argv += ["--server-caps", f"{COMPILED_PREFIX}{kind}={TRICORN_CAPS}"]
    if args.scenarios:
        argv += ["--scenarios", args.scenarios]
    return argv


def _kept(name: str) -> dict[str, Any] | None:
    """Another run's result kept in docs/ (None: there is none)."""
    try:
        kept = json.loads((DOCS / name).read_text())
    except (OSError, ValueError):
        return None
    return kept if isinstance(kept, dict) else None


def _probe(python: str, code: str) -> str:
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


class StealRecorder:
    """Reads /proc/stat every :data:`STEAL_EVERY` seconds into ``path`` while
    the harness runs (a thread; nothing where there is no /proc/stat)."""

    def __init__(self, path: Path, report: ModuleType) -> None:
        self._path = path
        self._report = report
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._record, daemon=True)

    def __enter__(self) -> StealRecorder:
        if Path("/proc/stat").is_file():
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _record(self) -> None:
        with self._path.open("a") as out:
            while True:  # (one more reading once the run is over)
                stat = Path("/proc/stat").read_text()
                out.write(json.dumps(self._report.steal_sample(stat, time.time())) + "\n")
                if self._done.is_set():
                    return
                self._done.wait(STEAL_EVERY)


def _steal(report: ModuleType, run_dir: Path) -> dict[str, dict[str, list[float]]] | None:
    """The share stolen from the server core in each run, if it was recorded."""
    try:
        samples = [json.loads(line) for line in (run_dir / STEAL).read_text().splitlines()]
        records = [json.loads(line) for line in (run_dir / "raw.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return None
    return report.steal_by_run(records, samples, cpu=0)  # type: ignore[no-any-return]


def render(run_dir: Path) -> int:
    """Write docs/performance.md (and the chart, with matplotlib) from ``run_dir``."""
    report = _load_report()
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        meta = json.loads((run_dir / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"{run_dir}: not a finished run ({exc})", file=sys.stderr)
        return 1
    try:
        saved = json.loads((run_dir / RUN_INFO).read_text())
    except (OSError, ValueError):
        saved = {}
    chart: str | None = CHART
    try:
        report.write_chart(
            summary,
            report.scenarios_of(summary, meta),
            report.servers_of(summary, meta),
            DOCS / CHART,
        )
    except ImportError:
        print("docs/performance.png not drawn: the chart needs pip install 'tricorn[bench]'")
        chart = None
    info = report.RunInfo(
        command=saved.get("command", "python benchmarks/run.py"),
        date=saved.get("date", str(meta.get("started", "?"))),
        tricorn_version=saved.get("tricorn_version", ""),
        git_commit=saved.get("git_commit", ""),
        cpu_model=saved.get("cpu_model", ""),
        chart=chart,
    )
    # The sections of the other runs stay: memory.py's (one process, and
    # --workers) and instructions.py's, from the results they keep in docs/.
    memory = _kept(MEMORY)
    sections = []
    workers = _kept(MEMORY_WORKERS)
    if workers is not None:
        sections.append(report.render_memory(workers))
    instructions = _kept(INSTRUCTIONS)
    if instructions is not None:
        sections.append(report.render_instructions(instructions))
    steal = _steal(report, run_dir)
    page = report.render_markdown(summary, meta, info, memory, steal, sections)
    (DOCS / "performance.md").write_text(page)
    print(f"wrote docs/performance.md{' and docs/performance.png' if chart else ''} from {run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or only re-render a finished run)."""
    report = _load_report()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--bench-dir",
        type=Path,
        default=REPO.parent / "shared" / "bench",
        help="the shared harness (default: ../shared/bench beside the repository)",
    )
    ap.add_argument("--scenarios", default="", help="comma list (default: all of the harness's)")
    ap.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="comma list")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter of the venv with the peers and tricorn (default: this one)",
    )
    ap.add_argument(
        "--installed",
        action="store_true",
        help="run the venv's installed tricorn (default: this checkout's src/)",
    )
    report.add_compiled_option(ap)
    ap.add_argument("--out", type=Path, help="run directory (default benchmarks/results/<time>)")
    ap.add_argument(
        "--report-only",
        type=Path,
        metavar="RUN_DIR",
        help="render docs/performance.md from a finished run, without measuring",
    )
    args = ap.parse_args(argv)
    if args.report_only:
        return render(args.report_only)

    bench_py = args.bench_dir / "bench.py"
    if not bench_py.is_file():
        print(f"{bench_py}: the shared harness is missing (give --bench-dir)", file=sys.stderr)
        return 2
    now = dt.datetime.now(dt.timezone.utc)
    out: Path = args.out or REPO / "benchmarks" / "results" / now.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    given = sys.argv[1:] if argv is None else list(argv)
    info = {
        "command": shlex.join(["python", "benchmarks/run.py", *given]),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "tricorn_version": _probe(
            args.python, "import importlib.metadata as m; print(m.version('tricorn'))"
        ),
        "git_commit": report.git_commit(REPO),
        "cpu_model": report.cpu_model(),
    }
    (out / RUN_INFO).write_text(json.dumps(info, indent=1))
    command = bench_argv(args, bench_py, out)
    print("$ " + shlex.join(command), flush=True)
    with StealRecorder(out / STEAL, report):
        status = subprocess.run(command).returncode
    if status != 0:
        print(f"bench.py exited with status {status}", file=sys.stderr)
        return status
    return render(out)


if __name__ == "__main__":
    sys.exit(main())
