"""Count the CPU instructions each tricorn worker spends per request, per protocol.

    python benchmarks/instructions.py --python /tmp/peers-venv/bin/python

Requests per second on a shared virtual machine move by 10-30% between runs
minutes apart (other tenants, frequency, the hypervisor); the instructions a
server executes per request move much less: within 3% for HTTP. This
counts them with Valgrind's callgrind, so that a change of several percent,
or the trio worker against the asyncio one (issue 7), can be judged on one
figure.

For each server (``-w 0``) and protocol it starts the server under
``valgrind --tool=callgrind --instr-atstart=no`` (start-up is not counted),
waits until ``GET /`` answers, warms it up with a client run, then switches
counting on and makes two more client runs with the same connections and
streams: ``n`` requests, a dump, ``2n`` requests, a dump. Each run pays the
same connection set-up (TCP, TLS or QUIC handshakes, WebSocket upgrades),
so the difference of the two counts over ``n`` is what one more request
costs on connections that are already open, as in the throughput scenarios
of the shared harness: ``(I(2n) - I(n)) / n``. The clients are the
harness's (h2load for HTTP/1.1 and HTTP/2, ``h3load.py``, ``wsload.py``)
with the connection counts of its scenarios.

It writes ``instructions.json`` into the run directory
(``benchmarks/results/instructions-<time>/``), copies it to
``docs/performance-instructions.json`` and rewrites the "Instructions per
request" section of ``docs/performance.md``; ``--report-only DIR`` does the
last two again without measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DOCS_JSON = "performance-instructions.json"
DEFAULT_SERVERS = ("tricorn-asyncio", "tricorn-trio")
DEFAULT_PROTOCOLS = ("h1", "h1-tls", "h2c", "h2-tls", "h3", "ws")
# As the shared harness's scenarios: h1-hello, h2c-hello, h3-hello, ws-echo.
CONNECTIONS = {"h1": 64, "h1-tls": 64, "h2c": 8, "h2-tls": 8, "h3": 4, "ws": 32}
STREAMS = {"h2c": 16, "h2-tls": 16, "h3": 8}
# n per protocol: the counted runs are n and 2n requests (after n to warm up).
# Under callgrind a server runs some 50 times slower; these keep a run of the
# pure-Python build under a minute or two.
DEFAULT_REQUESTS = {"h1": 4000, "h1-tls": 4000, "h2c": 4000, "h2-tls": 4000, "h3": 800, "ws": 4000}
START_TIMEOUT = 180.0  # seconds for a server under callgrind to answer
STOP_GRACE = 60.0  # seconds for it to shut down and write its counts


def _load(stem: str) -> ModuleType:
    """Import benchmarks/<stem>.py by path (benchmarks/ is not an installed package)."""
    name = f"tricorn_bench_{stem}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{stem}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"benchmarks/{stem}.py: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- pure parts

_TOTALS = re.compile(r"^totals:\s+(\d+)", re.M)


def callgrind_total(text: str) -> int | None:
    """The instructions (``Ir``, the first event) a callgrind dump counted.

    Read from its ``totals:`` line: the ``summary:`` line of a dump made by
    ``callgrind_control --dump`` after the first is not to be trusted
    (Valgrind 3.19 writes it as a wrapped-around negative number)."""
    match = _TOTALS.search(text)
    return int(match.group(1)) if match else None


def per_request(first: int, second: int, requests: int) -> float | None:
    """``(I(2n) - I(n)) / n``: instructions per request with connection set-up
    cancelled out, ``requests`` being the second run's requests less the
    first's (None if the counts make no sense)."""
    if requests <= 0 or second <= first:
        return None
    return (second - first) / requests


def under_callgrind(argv: Sequence[str], out_file: Path) -> tuple[list[str], dict[str, str]]:
    """``argv`` run under callgrind, counting off until switched on; and the
    environment its leading ``env NAME=VALUE ...`` set (the compiled build's
    command line starts so), since Valgrind does not follow ``env``'s exec."""
    rest = list(argv)
    env: dict[str, str] = {}
    if rest and rest[0] == "env":
        rest.pop(0)
        while rest and "=" in rest[0] and not rest[0].startswith("-"):
            name, _, value = rest.pop(0).partition("=")
            env[name] = value
    tool = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_file}",
    ]
    return [*tool, *rest], env


# --------------------------------------------------------------------------- measuring


@dataclass
class Settings:
    """What measuring one server on one protocol needs."""

    python: str
    bench_dir: Path
    out: Path
    env: dict[str, str]
    toml: str
    compiled_path: str | None
    ports: tuple[int, int]
    requests: dict[str, int]


def _control(pid: int, *args: str) -> str | None:
    """Run ``callgrind_control ARGS PID``; None, or why it failed."""
    try:
        done = subprocess.run(
            ["callgrind_control", *args, str(pid)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"callgrind_control {' '.join(args)}: {exc}"
    if done.returncode != 0 or "OK" not in done.stdout:
        return f"callgrind_control {' '.join(args)}: {(done.stdout + done.stderr).strip()[:200]}"
    return None


def _wait_dump(path: Path, timeout: float = 60.0) -> int | None:
    """The count in dump file ``path`` once callgrind has written it whole."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            total = callgrind_total(path.read_text(errors="replace"))
            if total is not None:
                return total
        time.sleep(0.2)
    return None


def measure(server: str, protocol_name: str, s: Settings) -> dict[str, Any]:
    """One server under callgrind: instructions per request on ``protocol_name``."""
    memory = _load("memory")
    protocol = memory.PROTOCOLS[protocol_name]
    n = s.requests[protocol_name]
    port = memory.free_port(*s.ports)
    plain = memory.server_argv(
        server, protocol, python=s.python, port=port, toml=s.toml, installed=False,
        compiled_path=s.compiled_path,
    )  # fmt: skip
    dumps = s.out / "callgrind"
    dumps.mkdir(parents=True, exist_ok=True)
    out_file = dumps / f"{protocol_name}.{server}.out"
    for stale in dumps.glob(f"{out_file.name}*"):
        stale.unlink()
    argv, extra_env = under_callgrind(plain, out_file)
    record: dict[str, Any] = {
        "server": server,
        "protocol": protocol_name,
        "server_cmd": shlex.join(plain),
        "requests": n,
        "error": None,
    }
    logs = s.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    proc = memory.Server(argv, s.env | extra_env, logs / f"{protocol_name}.{server}.log", None)
    started = time.monotonic()

    def client(count: int) -> tuple[int, str | None]:
        """One client run of ``count`` requests: what succeeded, and what went wrong."""
        client_argv = memory.client_argv(
            protocol, count, python=s.python, bench_dir=s.bench_dir, port=port,
            connections=CONNECTIONS[protocol_name], streams=STREAMS.get(protocol_name, 1),
        )  # fmt: skip
        output = memory.run_client(client_argv, s.env, None, timeout=1800)
        ok, failed, error = memory.count(protocol, output)
        # wsload keeps a message in flight per connection to the end: one more
        # may come back, and those still out when it closes count as failed.
        allowed = CONNECTIONS[protocol_name] if protocol_name == "ws" else 0
        if ok < count or failed > allowed:
            return ok, f"{ok} of {count} succeeded, {failed} failed: {error}"[:300]
        if not proc.alive():
            return ok, f"server died: {proc.tail()}"
        return ok, None

    try:
        error = proc.wait_ready(protocol.transport != "tcp", port, timeout=START_TIMEOUT)
        if error is None and protocol.transport == "quic":
            time.sleep(1.0)
        error = error or client(n)[1]  # warm-up, not counted
        error = error or _control(proc.pid, "--instr=on")
        counts: list[int] = []
        done: list[int] = []
        for size, dump in ((n, 1), (2 * n, 2)):
            if error is None:
                ok, error = client(size)
                done.append(ok)
            error = error or _control(proc.pid, "--dump")
            if error is None:
                total = _wait_dump(out_file.with_name(f"{out_file.name}.{dump}"))
                if total is None:
                    error = f"callgrind wrote no dump {dump}"
                else:
                    counts.append(total)
        if error is None:
            record["counts"] = counts
            record["succeeded"] = done
            record["per_request"] = per_request(counts[0], counts[1], done[1] - done[0])
            if record["per_request"] is None:
                error = f"counts do not grow with requests: {counts}, {done}"
        record["error"] = error
        return record
    finally:
        record["seconds"] = round(time.monotonic() - started, 1)
        proc.stop(grace=STOP_GRACE)


# --------------------------------------------------------------------------- the command


def render_docs(result: dict[str, Any]) -> None:
    """Copy the result into docs/ and rewrite its section of docs/performance.md."""
    report = _load("report")
    (DOCS / DOCS_JSON).write_text(json.dumps(result, indent=1) + "\n")
    page = DOCS / "performance.md"
    text = page.read_text() if page.exists() else "# Performance\n"
    page.write_text(report.splice_section(text, report.render_instructions(result)))
    print(f"wrote docs/{DOCS_JSON} and the section {report.INSTRUCTIONS_HEADING!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure (or only re-render a finished run)."""
    report = _load("report")
    memory = _load("memory")
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    memory.add_common_options(
        ap, DEFAULT_SERVERS, DEFAULT_PROTOCOLS,
        "interpreter of the venv with the protocol libraries (and Hypercorn, if measured)",
    )  # fmt: skip
    ap.add_argument(
        "--requests",
        type=int,
        default=0,
        help="n for every protocol (counted runs: n and 2n requests); default per protocol: "
        + ", ".join(f"{p} {n:,}" for p, n in DEFAULT_REQUESTS.items()),
    )
    ap.add_argument("--ports", default="18000-18999", help="port range to bind in")
    memory.add_output_options(ap, "instructions.json")
    args = ap.parse_args(argv)
    if args.report_only:
        render_docs(json.loads((args.report_only / "instructions.json").read_text()))
        return 0

    servers, protocols, compiled_path = memory.chosen_servers(ap, args, DEFAULT_PROTOCOLS)
    if args.requests < 0:
        ap.error(f"--requests: {args.requests} (allowed: 1 or more; 0: the defaults)")
    try:
        low, high = (int(x) for x in args.ports.split("-"))
    except ValueError:
        ap.error(f"--ports: {args.ports!r} (want LOW-HIGH)")
    for tool in ("valgrind", "callgrind_control"):
        if not any((Path(d) / tool).is_file() for d in os.get_exec_path()):
            print(f"{tool}: not found (apt-get install valgrind)", file=sys.stderr)
            return 2
    if not (args.bench_dir / "apps.py").is_file():
        print(f"{args.bench_dir}: the shared harness is missing (--bench-dir)", file=sys.stderr)
        return 2

    now = dt.datetime.now(dt.timezone.utc)
    out: Path = args.out or (
        REPO / "benchmarks" / "results" / now.strftime("instructions-%Y%m%d-%H%M%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    toml = out / "bench.toml"
    toml.write_text(memory.HYPERCORN_TOML)
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(args.bench_dir.resolve().parent), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = f"{Path(args.python).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = "/tmp/bench-pycache"
    env["PYTHONUNBUFFERED"] = "1"
    requests = {p: args.requests or DEFAULT_REQUESTS[p] for p in DEFAULT_PROTOCOLS}
    settings = Settings(
        python=args.python,
        bench_dir=args.bench_dir.resolve(),
        out=out,
        env=env,
        toml=str(toml),
        compiled_path=compiled_path,
        ports=(low, high),
        requests=requests,
    )
    given = sys.argv[1:] if argv is None else list(argv)
    versions = memory._probe_python(args.python, memory.VERSIONS_CODE)
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    result: dict[str, Any] = {
        "command": shlex.join(
            ["python", "benchmarks/instructions.py", *memory.regenerate_args(given)]
        ),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": report.git_commit(REPO),
        "cpu_model": report.cpu_model(),
        "valgrind": valgrind.stdout.strip(),
        "versions": json.loads(versions) if versions else {},
        "servers": servers,
        "protocols": protocols,
        "requests": {p: requests[p] for p in protocols},
        "clients": {
            p: memory.client_text(memory.PROTOCOLS[p], CONNECTIONS[p], STREAMS.get(p, 1))
            for p in protocols
        },
        "runs": [],
    }
    signal.signal(signal.SIGTERM, memory._exit_on_signal)  # a terminated run stops its server
    t0 = time.monotonic()
    for protocol in protocols:
        for server in servers:
            record = measure(server, protocol, settings)
            figure = record.get("per_request")
            shown = f"{figure:,.0f} instructions per request" if figure else record["error"]
            print(f"  {protocol:7} {server:24} {shown} ({record['seconds']} s)", flush=True)
            result["runs"].append(record)
            (out / "instructions.json").write_text(json.dumps(result, indent=1) + "\n")
    result["total_seconds"] = round(time.monotonic() - t0)
    (out / "instructions.json").write_text(json.dumps(result, indent=1) + "\n")
    print(report.render_instructions_table(result))
    print(f"\n{result['total_seconds']} s; results in {out}")
    if args.docs:
        render_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
