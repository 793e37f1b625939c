"""Measure each server's memory per protocol: idle, and after 10,000 and 100,000 requests.

    python benchmarks/memory.py --python /tmp/peers-venv/bin/python

For each server (one process, ``-w 0``) and each protocol it starts the
server on 127.0.0.1, waits until ``GET /`` answers, reads the idle resident
set (``VmRSS`` of ``/proc/PID/status``, and ``Pss`` of ``smaps_rollup``),
then sends requests in rounds (each round a fresh client run with fresh
connections) and reads the resident set again at each checkpoint: after
10,000 requests and after 100,000.
With ``--workers N`` each server runs ``-w N`` and what is read is its
worker processes (the largest one's RSS) and the PSS of all its processes;
that run's figures go to their own section, "Memory of worker processes".
Hypercorn's workers are the references: measured idle only by default
(``--reference-load``). The servers run the shared harness's apps
(``bench.apps:hello``, ``bench.apps:ws``) with its load generators: h2load
for HTTP/1.1 and HTTP/2, ``h3load.py`` for HTTP/3, ``wsload.py`` for
WebSocket echo messages.

It writes ``memory.json`` and ``memory.md`` into the run directory
(``benchmarks/results/memory-<time>/``), copies the JSON to
``docs/performance-memory.json`` and rewrites the "Memory" section of
``docs/performance.md``; ``--report-only DIR`` does the last two again
without measuring. The targets (issue 7): idle RSS no higher than
Hypercorn's, and at most 5 MiB more RSS after the last checkpoint than
after the first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import itertools
import json
import os
import random
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DOCS_JSON = "performance-memory.json"
DOCS_WORKERS_JSON = "performance-memory-workers.json"  # (a run with --workers)
MAX_WORKERS = 16
CERT = REPO / "certs" / "localhost.pem"
KEY = REPO / "certs" / "localhost-key.pem"
HOST = "127.0.0.1"
KIB = 1024

HYPERCORN_TOML = "# written by benchmarks/memory.py\nkeep_alive_max_requests = 1000000000\n"
"""As in the shared harness: h2load's HTTP/2 client does not reconnect after GOAWAY."""


@dataclass(frozen=True)
class Protocol:
    """One protocol the servers are measured on."""

    name: str
    app: str
    transport: str  # "tcp", "tls" or "quic"
    what: str


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("h1", "hello", "tcp", "HTTP/1.1 cleartext, GET, 13-byte body"),
        Protocol("h1-tls", "hello", "tls", "HTTP/1.1 over TLS"),
        Protocol("h2c", "hello", "tcp", "HTTP/2 prior knowledge, cleartext"),
        Protocol("h2-tls", "hello", "tls", "HTTP/2 over TLS (ALPN h2)"),
        Protocol("h3", "hello", "quic", "HTTP/3 over QUIC"),
        Protocol("ws", "ws", "tcp", "WebSocket echo of 64-byte text (a request: a message)"),
    )
}

HYPERCORN_KINDS = ("asyncio", "uvloop", "trio")
TRICORN_KINDS = ("asyncio", "uvloop", "trio")
COMPILED_PREFIX = "tricorn-compiled-"  # --compiled: the build setup.py compiles
DEFAULT_SERVERS = (
    *(f"hypercorn-{kind}" for kind in HYPERCORN_KINDS),
    *(f"tricorn-{kind}" for kind in TRICORN_KINDS),
)
COMPILED_SERVERS = tuple(f"{COMPILED_PREFIX}{kind}" for kind in TRICORN_KINDS)
KNOWN_SERVERS = (*DEFAULT_SERVERS, *COMPILED_SERVERS)
# Each tricorn worker (either build) is held against Hypercorn's worker of the
# same event loop.

DEFAULT_CHECKPOINTS = (10_000, 100_000)
DEFAULT_CONNECTIONS = 16
# HTTP/3 is driven by aioquic's pure-Python client (h3load.py), whose QUIC
# handshakes cost it about 0.1 s each: 4 connections with 8 streams each keep
# it at about 1,000 requests a second, so 100,000 take under two minutes.
DEFAULT_H3_CONNECTIONS = 4
DEFAULT_STREAMS = 8  # concurrent streams per HTTP/2 and HTTP/3 connection
DEFAULT_ROUND = 5_000  # requests per client run (h2load, h3load.py)
DEFAULT_WS_ROUND = 10_000  # wsload starts a Python process per run: fewer, longer runs


def _load_report() -> ModuleType:
    """Import benchmarks/report.py by path (benchmarks/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location(
        "tricorn_bench_report", REPO / "benchmarks" / "report.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit("benchmarks/report.py: cannot be loaded")
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- pure parts


def parse_checkpoints(text: str) -> tuple[int, ...]:
    """``"10000,100000"`` -> ``(10000, 100000)``: two or more increasing counts."""
    try:
        counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"not a comma list of request counts: {text!r}") from None
    if len(counts) < 2 or counts[0] <= 0 or any(b <= a for a, b in itertools.pairwise(counts)):
        raise ValueError(f"want two or more increasing positive counts, got {text!r}")
    return counts


def plan_rounds(checkpoints: Sequence[int], round_size: int) -> list[tuple[int, int | None]]:
    """The client runs to make: ``(requests, checkpoint reached after it or None)``.

    Rounds have ``round_size`` requests, cut short where needed so that
    the running total lands on every checkpoint.
    """
    if round_size <= 0:
        raise ValueError("round_size must be positive")
    plan: list[tuple[int, int | None]] = []
    done = 0
    for checkpoint in checkpoints:
        while done < checkpoint:
            size = min(round_size, checkpoint - done)
            done += size
            plan.append((size, checkpoint if done == checkpoint else None))
    return plan


def status_kib(status_text: str, key: str) -> int | None:
    """A ``kB`` field (``VmRSS``, ``VmHWM``) of ``/proc/PID/status`` text."""
    match = re.search(rf"^{key}:\s+(\d+) kB", status_text, re.M)
    return int(match.group(1)) if match else None


def pss_kib(smaps_rollup_text: str) -> int | None:
    """``Pss`` of ``/proc/PID/smaps_rollup`` text: RSS with shared pages split."""
    match = re.search(r"^Pss:\s+(\d+) kB", smaps_rollup_text, re.M)
    return int(match.group(1)) if match else None


def parse_h2load(text: str) -> tuple[int, int]:
    """``(completed, failed)`` requests of an h2load run.

    h2load's HTTP/1 parser cannot read a status line with an empty reason
    phrase (h11's, so Hypercorn's): all its status counters stay 0 and every
    completed response counts as failed. Completed responses are then counted
    as they are (the readiness probe checked the status), as the shared
    harness does.
    """
    match = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    if not match:
        return 0, 0
    done, ok, failed, errored, timeout = map(int, match.groups())
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    no_codes = codes is not None and not any(int(c) for c in codes.groups())
    if no_codes and ok == 0 and failed == done and not errored:
        return done - timeout, timeout
    return ok, failed


def parse_json_client(text: str) -> tuple[int, int, str]:
    """``(succeeded, failed, fatal error)`` of an ``h3load.py`` / ``wsload.py --json`` run."""
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("{")), None)
    if line is None:
        tail = " | ".join(text.strip().splitlines()[-3:])
        return 0, 0, f"no JSON line: {tail}"[:300]
    data = json.loads(line)
    failed = int(data.get("failed", 0)) + int(data.get("errored", 0))
    return int(data.get("succeeded", 0)), failed, "; ".join(data.get("fatal") or [])


def server_argv(
    server: str,
    protocol: Protocol,
    *,
    python: str,
    port: int,
    toml: str,
    installed: bool,
    compiled_path: str | None = None,
    workers: int = 0,
) -> list[str]:
    """The command line of ``server`` (``hypercorn-K``, ``tricorn-K`` or
    ``tricorn-compiled-K``) for ``protocol``, with ``workers`` worker
    processes (0: it serves in its own process). The compiled build's runs
    import tricorn from ``compiled_path`` (their ``PYTHONPATH``: the compiled
    tree, then the harness's apps)."""
    family, _, kind = server.partition("-")
    kind = kind.rpartition("-")[2]
    bindir = str(Path(python).parent)
    if family == "hypercorn":
        argv = [f"{bindir}/hypercorn"]
    elif server.startswith(COMPILED_PREFIX):
        if compiled_path is None:
            raise ValueError(f"{server} needs the compiled build (--compiled)")
        argv = ["env", f"PYTHONPATH={compiled_path}", python, "-m", "tricorn"]
    elif family == "tricorn":
        argv = [f"{bindir}/tricorn"] if installed else [python, "-m", "tricorn"]
    else:
        raise ValueError(f"unknown server {server!r}")
    argv += ["-c", toml, "-w", str(workers), "-k", kind, "--bind", f"{HOST}:{port}"]
    if protocol.transport in ("tls", "quic"):
        argv += ["--certfile", str(CERT), "--keyfile", str(KEY)]
    if protocol.transport == "quic":
        argv += ["--quic-bind", f"{HOST}:{port}"]
    return [*argv, f"bench.apps:{protocol.app}"]


def client_argv(
    protocol: Protocol,
    requests: int,
    *,
    python: str,
    bench_dir: Path,
    port: int,
    connections: int,
    streams: int,
) -> list[str]:
    """One round's load generator: ``requests`` requests on fresh connections."""
    name = protocol.name
    c, n = str(connections), str(requests)
    if name in ("h1", "h1-tls"):
        scheme = "https" if name == "h1-tls" else "http"
        return ["h2load", "--h1", "-t1", "-c", c, "-n", n, f"{scheme}://{HOST}:{port}/"]
    if name in ("h2c", "h2-tls"):
        scheme = "https" if name == "h2-tls" else "http"
        m = str(streams)
        return ["h2load", "-t1", "-c", c, "-m", m, "-n", n, f"{scheme}://{HOST}:{port}/"]
    if name == "h3":
        return [
            python, str(bench_dir / "h3load.py"), f"https://{HOST}:{port}/",
            "-P", "1", "-c", c, "-m", str(streams), "-n", n, "--json",
        ]  # fmt: skip
    if name == "ws":
        return [
            python, str(bench_dir / "wsload.py"), f"ws://{HOST}:{port}/",
            "-P", "1", "-c", c, "-m", "1", "-s", "64", "-n", n, "--json",
        ]  # fmt: skip
    raise ValueError(f"unknown protocol {name!r}")


_LOCAL_OPTIONS = frozenset({"--out", "--ports", "--bench-dir"})  # (take a value)
_LOCAL_FLAGS = frozenset({"--no-docs", "--no-prime"})


def regenerate_args(argv: Sequence[str]) -> list[str]:
    """``argv`` without what only concerned this machine's run (where it wrote,
    which ports it took, whether it skipped priming): the docs' command."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _LOCAL_FLAGS or name in _LOCAL_OPTIONS:
            skip = name in _LOCAL_OPTIONS and "=" not in arg
            continue
        out.append(arg)
    return out


def client_text(protocol: Protocol, connections: int, streams: int) -> str:
    """The client command of one round, for the method table (``{n}``: its requests)."""
    argv = client_argv(
        protocol, 0, python="python", bench_dir=Path(), port=0,
        connections=connections, streams=streams,
    )  # fmt: skip
    argv = [a.replace(":0/", ":PORT/") for a in argv]
    return shlex.join(argv).replace("-n 0", "-n {n}")


# --------------------------------------------------------------------------- processes


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def memory_kib(pid: int) -> dict[str, int | None]:
    """The process's resident set now: ``rss``, ``pss`` and peak ``hwm``, in KiB."""
    status = _read(f"/proc/{pid}/status")
    return {
        "rss": status_kib(status, "VmRSS"),
        "hwm": status_kib(status, "VmHWM"),
        "pss": pss_kib(_read(f"/proc/{pid}/smaps_rollup")),
    }


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and fields[1] == str(pid):
                found.append(int(entry))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: its children, theirs, and so on."""
    out: list[int] = []
    todo = [pid]
    while todo:
        below = children(todo.pop())
        out += below
        todo += below
    return sorted(out)


HELPER_MARK = "resource_tracker"
"""What names a process of the server's tree that serves nothing: the helper
multiprocessing starts beside Hypercorn's spawned workers."""


def worker_pids(pid: int) -> list[int]:
    """The worker processes below the server process ``pid``: tricorn's
    supervisor forks them, Hypercorn's spawns them (beside multiprocessing's
    resource tracker, which is not one)."""
    return _workers_among(descendants(pid))


def _workers_among(pids: Sequence[int]) -> list[int]:
    return [p for p in pids if HELPER_MARK not in _read(f"/proc/{p}/cmdline")]


def reading(pid: int, workers: int) -> dict[str, Any]:
    """Memory of the server ``pid`` now, in KiB. One process (``workers``
    0): its ``rss``, ``pss`` and peak ``hwm``. With workers: ``rss`` and
    ``hwm`` are the largest worker's (and ``worker_rss`` each one's, with
    ``worker_pids``), ``pss`` is the sum over the whole process tree
    (supervisor, workers, helpers): what the deployment costs the machine,
    pages shared between its processes counted once."""
    if workers == 0:
        return memory_kib(pid)
    below = descendants(pid)
    pids = _workers_among(below)
    each = [memory_kib(p) for p in pids]
    tree = [memory_kib(p)["pss"] for p in (pid, *below)]
    return {
        "rss": max((m["rss"] or 0 for m in each), default=None),
        "hwm": max((m["hwm"] or 0 for m in each), default=None),
        "pss": sum(p for p in tree if p) or None,
        "worker_pids": pids,
        "worker_rss": [m["rss"] for m in each],
    }


def wait_workers(pid: int, workers: int, timeout: float = 30.0) -> list[int] | None:
    """The server's ``workers`` worker PIDs once all are up (None: they were
    not, within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(pid)
        if len(pids) == workers:
            return pids
        time.sleep(0.1)
    return None


def free_port(low: int, high: int) -> int:
    """A port in ``[low, high]`` free for both TCP and UDP on 127.0.0.1."""
    ports = list(range(low, high + 1))
    random.shuffle(ports)
    for port in ports:
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind((HOST, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


def probe(port: int, tls: bool) -> int | None:
    """The status of ``GET /`` over HTTP/1.1, or None while nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as raw:
            sock: socket.socket = raw
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                ctx.set_alpn_protocols(["http/1.1"])
                sock = ctx.wrap_socket(raw, server_hostname=HOST)
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            data = sock.recv(64)
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.") or len(data) < 12:
        return None
    try:
        return int(data[9:12])
    except ValueError:
        return None


def _pinned(cpu: int | None) -> Callable[[], None]:
    """A ``preexec_fn`` that pins the child to ``cpu`` (``None``: not at all)."""

    def pre() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return pre


class Server:
    """One server process we started, in its own session (its group is its PID)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cpu: int | None) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_pinned(cpu),
        )
        self.pid = self.proc.pid

    def wait_ready(self, tls: bool, port: int, timeout: float = 30.0) -> str | None:
        """None once ``GET /`` answers; else why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode}: {self.tail()}"
            if probe(port, tls) is not None:
                return None
            time.sleep(0.05)
        return f"did not answer within {timeout:g}s: {self.tail()}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-4:])[:300]

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, and SIGKILL to its group if it has not exited ``grace`` seconds later."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)  # our own session's group
                self.proc.wait(5)
        self._out.close()


def run_client(argv: list[str], env: dict[str, str], cpu: int | None, timeout: float) -> str:
    """Run one round's client; its output (stdout and stderr)."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            preexec_fn=_pinned(cpu),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        return (out if isinstance(out, str) else out.decode(errors="replace")) + "\nTIMEOUT"
    return done.stdout + done.stderr


def count(protocol: Protocol, output: str) -> tuple[int, int, str]:
    """``(succeeded, failed, error)`` of one round's client output."""
    if protocol.name in ("h3", "ws"):
        return parse_json_client(output)
    ok, failed = parse_h2load(output)
    error = "" if ok else " | ".join(output.strip().splitlines()[-3:])[:300]
    return ok, failed, error


@dataclass
class Settings:
    """What one measuring session needs besides the server and protocol."""

    python: str
    bench_dir: Path
    out: Path
    env: dict[str, str]
    toml: str
    installed: bool
    compiled_path: str | None
    ports: tuple[int, int]
    connections: dict[str, int]
    streams: int
    checkpoints: dict[str, tuple[int, ...]]
    rounds: dict[str, int]
    settle: float
    budget: float
    reference_checkpoints: int | None  # Hypercorn's (None: all of them)
    workers: int  # -w: 0, one process; else measure its worker processes
    server_cpu: int | None
    client_cpu: int | None


def measure(server: str, protocol: Protocol, s: Settings) -> dict[str, Any]:
    """One fresh server process: idle memory, then memory at each checkpoint."""
    port = free_port(*s.ports)
    argv = server_argv(
        server, protocol, python=s.python, port=port, toml=s.toml, installed=s.installed,
        compiled_path=s.compiled_path, workers=s.workers,
    )  # fmt: skip
    record: dict[str, Any] = {
        "server": server,
        "protocol": protocol.name,
        "server_cmd": shlex.join(argv),
        "points": [],
        "error": None,
    }
    logs = s.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    proc = Server(argv, s.env, logs / f"{protocol.name}.{server}.log", s.server_cpu)
    started = time.monotonic()
    try:
        error = proc.wait_ready(protocol.transport != "tcp", port)
        if error:
            record["error"] = f"server {error}"
            return record
        workers: list[int] | None = []
        if s.workers:
            workers = wait_workers(proc.pid, s.workers)
            if workers is None:
                record["error"] = f"{s.workers} workers did not start: {proc.tail()}"
                return record
        time.sleep(s.settle + (0.3 if protocol.transport == "quic" else 0.0))
        idle = reading(proc.pid, s.workers)
        record["idle_kib"], record["idle_pss_kib"] = idle["rss"], idle["pss"]
        if s.workers:
            record["idle_worker_kib"] = idle["worker_rss"]
        ok_total = failed_total = sent = 0
        checkpoints = s.checkpoints[protocol.name]
        if server.startswith("hypercorn-"):  # its idle RSS is the target; its growth is not
            checkpoints = checkpoints[: s.reference_checkpoints]
        for size, checkpoint in plan_rounds(checkpoints, s.rounds[protocol.name]):
            if time.monotonic() - started > s.budget:
                record["error"] = f"stopped after {sent:,} requests: over --budget {s.budget:g}s"
                break
            argv = client_argv(
                protocol, size, python=s.python, bench_dir=s.bench_dir, port=port,
                connections=s.connections[protocol.name], streams=s.streams,
            )  # fmt: skip
            output = run_client(argv, s.env, s.client_cpu, timeout=s.budget + 60)
            ok, failed, error = count(protocol, output)
            sent += size
            ok_total += ok
            failed_total += failed
            if not proc.alive():
                record["error"] = f"server died: {proc.tail()}"
                break
            if not ok:
                record["error"] = f"round of {size} after {sent - size:,}: no success; {error}"
                break
            if checkpoint is not None:
                time.sleep(s.settle)
                mem = reading(proc.pid, s.workers)
                point = {
                    "requests": checkpoint,
                    "rss_kib": mem["rss"],
                    "pss_kib": mem["pss"],
                    "succeeded": ok_total,
                    "failed": failed_total,
                    "seconds": round(time.monotonic() - started, 1),
                }
                if s.workers:
                    point["worker_kib"] = mem["worker_rss"]
                record["points"].append(point)
                if s.workers and mem["worker_pids"] != workers:
                    # A replaced worker starts small: its growth would hide a leak.
                    record["error"] = (
                        f"a worker was replaced by {checkpoint:,} requests "
                        f"({workers} -> {mem['worker_pids']}): {proc.tail()}"
                    )
                    break
                print(
                    f"  {protocol.name:7} {server:18} {checkpoint:>7,}: "
                    f"{(mem['rss'] or 0) / KIB:6.1f} MiB ({failed_total} failed)",
                    flush=True,
                )
        record["hwm_kib"] = reading(proc.pid, s.workers)["hwm"]
        return record
    finally:
        record["seconds"] = round(time.monotonic() - started, 1)
        proc.stop()


def prime(servers: Sequence[str], protocols: Sequence[Protocol], s: Settings) -> None:
    """Start each server and send each protocol a few requests, before measuring.

    The first start compiles bytecode into the cache and the first requests
    import what a server imports lazily; neither should land in a measurement.
    Two starts per server do: one bound for TLS and QUIC (the ``hello`` app),
    one cleartext (the ``ws`` app, which answers plain HTTP too, with 426).
    """
    secure = [p for p in protocols if p.transport != "tcp"]
    quic = next((p for p in secure if p.transport == "quic"), secure[0] if secure else None)
    starts = [(quic, secure)] if quic is not None else []
    clear = [p for p in protocols if p.transport == "tcp"]
    if clear:
        starts.append((PROTOCOLS["ws"], clear))
    for server in servers:
        for protocol, clients in starts:
            port = free_port(*s.ports)
            argv = server_argv(
                server, protocol, python=s.python, port=port, toml=s.toml,
                installed=s.installed, compiled_path=s.compiled_path,
            )  # fmt: skip
            log = s.out / "logs" / f"prime.{server}.{protocol.name}.log"
            proc = Server(argv, s.env, log, None)
            try:
                if proc.wait_ready(protocol.transport != "tcp", port) is not None:
                    continue
                if protocol.transport == "quic":
                    time.sleep(0.3)
                for client in clients:
                    argv = client_argv(
                        client, 20, python=s.python, bench_dir=s.bench_dir, port=port,
                        connections=2, streams=2,
                    )  # fmt: skip
                    run_client(argv, s.env, None, timeout=60)
            finally:
                proc.stop()


# --------------------------------------------------------------------------- the command


def _probe_python(python: str, code: str) -> str:
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


VERSIONS_CODE = """
import importlib.metadata as m, json, platform
names = ("tricorn", "hypercorn", "anyio", "h11", "h2", "wsproto", "aioquic", "uvloop", "trio")
out = {"python": platform.python_version()}
for name in names:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def render_docs(result: dict[str, Any]) -> None:
    """Copy the result into docs/ and rewrite its section of docs/performance.md:
    "Memory" for one process, "Memory of worker processes" for a run with
    ``--workers`` (each with its own JSON file)."""
    report = _load_report()
    name = DOCS_WORKERS_JSON if result.get("workers") else DOCS_JSON
    (DOCS / name).write_text(json.dumps(result, indent=1) + "\n")
    page = DOCS / "performance.md"
    text = page.read_text() if page.exists() else "# Performance\n"
    section = report.render_memory(result)
    page.write_text(report.splice_memory_section(text, section))
    print(f"wrote docs/{name} and the section {section.splitlines()[0]!r} of docs/performance.md")


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def add_common_options(
    ap: argparse.ArgumentParser, servers: Sequence[str], protocols: Sequence[str], python_help: str
) -> None:
    """The options memory.py and instructions.py share: the harness, servers,
    protocols, the venv's interpreter and the compiled build."""
    ap.add_argument(
        "--bench-dir",
        type=Path,
        default=REPO.parent / "shared" / "bench",
        help="the shared harness, for its apps and clients (default: ../shared/bench)",
    )
    ap.add_argument("--servers", default=",".join(servers), help="comma list")
    ap.add_argument("--protocols", default=",".join(protocols), help="comma list")
    ap.add_argument("--python", default=sys.executable, help=python_help)
    _load_report().add_compiled_option(ap)


def add_output_options(ap: argparse.ArgumentParser, result_file: str) -> None:
    """Where a run writes (``--out``), whether it rewrites docs/, and
    ``--report-only``: docs/ again from a finished run's ``result_file``."""
    ap.add_argument("--no-docs", dest="docs", action="store_false", help="leave docs/ alone")
    ap.add_argument("--out", type=Path, help="run directory (default benchmarks/results/...)")
    ap.add_argument(
        "--report-only",
        type=Path,
        metavar="RUN_DIR",
        help=f"render docs/ from a finished run's {result_file}, without measuring",
    )


def chosen_servers(
    ap: argparse.ArgumentParser, args: argparse.Namespace, protocols: Sequence[str]
) -> tuple[list[str], list[str], str | None]:
    """The servers and protocols asked for (or ``ap.error``), and the
    compiled build's ``PYTHONPATH`` (None without ``--compiled``). With
    ``--compiled`` and no compiled server named, each tricorn server named
    gets its compiled twin (all three if none is named)."""
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if args.compiled is not None and not any(s.startswith(COMPILED_PREFIX) for s in servers):
        twins = [s.replace("tricorn-", COMPILED_PREFIX, 1) for s in servers
                 if s.startswith("tricorn-")]  # fmt: skip
        servers += twins or COMPILED_SERVERS
    for name in servers:
        if name not in KNOWN_SERVERS:
            ap.error(f"--servers: unknown {name!r} (known: {', '.join(KNOWN_SERVERS)})")
        if name.startswith(COMPILED_PREFIX) and args.compiled is None:
            ap.error(f"--servers: {name} needs --compiled SRC (the compiled build's src/)")
    compiled_path = None
    if args.compiled is not None:
        if not (args.compiled / "tricorn" / "__init__.py").is_file():
            ap.error(f"--compiled: {args.compiled} holds no tricorn package (give its src/)")
        compiled_path = f"{args.compiled.resolve()}{os.pathsep}{args.bench_dir.resolve().parent}"
    names = [p.strip() for p in args.protocols.split(",") if p.strip()]
    for name in names:
        if name not in protocols:
            ap.error(f"--protocols: unknown {name!r} (known: {', '.join(protocols)})")
    return servers, names, compiled_path


def main(argv: Sequence[str] | None = None) -> int:
    """Measure (or only re-render a finished run)."""
    report = _load_report()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_options(
        ap, DEFAULT_SERVERS, list(PROTOCOLS),
        "interpreter of the venv with Hypercorn and the protocol libraries",
    )  # fmt: skip
    ap.add_argument(
        "--installed",
        action="store_true",
        help="run that venv's installed tricorn (default: this checkout's src/)",
    )
    ap.add_argument(
        "--checkpoints",
        default=",".join(map(str, DEFAULT_CHECKPOINTS)),
        help="request counts to read memory at (default %(default)s)",
    )
    ap.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS, help="per client run")
    ap.add_argument("--h3-connections", type=int, default=DEFAULT_H3_CONNECTIONS)
    ap.add_argument("--streams", type=int, default=DEFAULT_STREAMS, help="per h2/h3 connection")
    ap.add_argument("--round", type=int, default=DEFAULT_ROUND, help="requests per client run")
    ap.add_argument("--ws-round", type=int, default=DEFAULT_WS_ROUND)
    ap.add_argument("--h3-round", type=int, default=DEFAULT_ROUND)
    ap.add_argument("--settle", type=float, default=0.5, help="seconds before each reading")
    ap.add_argument(
        "--budget", type=float, default=400.0, help="seconds per server and protocol at most"
    )
    ap.add_argument(
        "--reference-load",
        choices=("none", "first", "all"),
        default="none",
        help="Hypercorn idle only (default), or loaded to the first or to every checkpoint",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help=(
            "worker processes per server (-w); 0 (default): one process, measured itself; "
            "N: the largest worker's RSS and the whole tree's PSS (docs: the section "
            '"Memory of worker processes")'
        ),
    )
    ap.add_argument("--ports", default="18000-18999", help="port range to bind in")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to CPUs")
    ap.add_argument(
        "--no-prime",
        dest="prime",
        action="store_false",
        help="skip the first start per server (bytecode cached by an earlier run)",
    )
    add_output_options(ap, "memory.json")
    args = ap.parse_args(argv)
    if args.report_only:
        render_docs(json.loads((args.report_only / "memory.json").read_text()))
        return 0

    servers, protocols, compiled_path = chosen_servers(ap, args, list(PROTOCOLS))
    if not 0 <= args.workers <= MAX_WORKERS:
        ap.error(f"--workers: {args.workers} (allowed: 0 to {MAX_WORKERS})")
    try:
        checkpoints = parse_checkpoints(args.checkpoints)
        low, high = (int(x) for x in args.ports.split("-"))
    except ValueError as exc:
        ap.error(str(exc))
    if not (args.bench_dir / "apps.py").is_file():
        print(f"{args.bench_dir}: the shared harness is missing (--bench-dir)", file=sys.stderr)
        return 2

    now = dt.datetime.now(dt.timezone.utc)
    out: Path = args.out or REPO / "benchmarks" / "results" / now.strftime("memory-%Y%m%d-%H%M%S")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    toml = out / "hypercorn-bench.toml"
    toml.write_text(HYPERCORN_TOML)
    env = dict(os.environ)
    paths = [str(args.bench_dir.resolve().parent), env.get("PYTHONPATH", "")]
    if not args.installed:
        paths.insert(0, str(REPO / "src"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = f"{Path(args.python).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a deployed server: bytecode cached...
    env["PYTHONPYCACHEPREFIX"] = "/tmp/bench-pycache"  # ...out of the source tree
    env["PYTHONUNBUFFERED"] = "1"
    pin = args.pin and (os.cpu_count() or 1) >= 2
    settings = Settings(
        python=args.python,
        bench_dir=args.bench_dir.resolve(),
        out=out,
        env=env,
        toml=str(toml),
        installed=args.installed,
        compiled_path=compiled_path,
        ports=(low, high),
        connections=dict.fromkeys(PROTOCOLS, args.connections) | {"h3": args.h3_connections},
        streams=args.streams,
        checkpoints=dict.fromkeys(PROTOCOLS, checkpoints),
        rounds=dict.fromkeys(PROTOCOLS, args.round) | {"h3": args.h3_round, "ws": args.ws_round},
        settle=args.settle,
        budget=args.budget,
        reference_checkpoints={"none": 0, "first": 1}.get(args.reference_load),
        workers=args.workers,
        server_cpu=0 if pin else None,
        client_cpu=1 if pin else None,
    )
    given = sys.argv[1:] if argv is None else list(argv)
    versions_text = _probe_python(args.python, VERSIONS_CODE)
    result: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/memory.py", *regenerate_args(given)]),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": report.git_commit(REPO),
        "tricorn_source": "installed" if args.installed else "checkout",
        "compiled_source": str(args.compiled.resolve()) if args.compiled is not None else None,
        "cpu_model": report.cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "versions": json.loads(versions_text) if versions_text else {},
        "servers": servers,
        "protocols": protocols,
        "checkpoints": {p: list(settings.checkpoints[p]) for p in protocols},
        "rounds": {p: settings.rounds[p] for p in protocols},
        "connections": {p: settings.connections[p] for p in protocols},
        "streams": args.streams,
        "settle_s": args.settle,
        "reference_load": args.reference_load,
        "workers": args.workers,
        "pinned": pin,
        "clients": {
            p: client_text(PROTOCOLS[p], settings.connections[p], args.streams) for p in protocols
        },
        "runs": [],
    }
    chosen = [PROTOCOLS[p] for p in protocols]
    # A terminated run unwinds like an interrupted one: its server is stopped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    t0 = time.monotonic()
    if args.prime:
        print(f"priming {len(servers)} servers ...", flush=True)
        prime(servers, chosen, settings)
    for protocol in chosen:
        for server in servers:
            record = measure(server, protocol, settings)
            if record["error"]:
                print(f"  {protocol.name:7} {server:18} error: {record['error']}", flush=True)
            result["runs"].append(record)
            (out / "memory.json").write_text(json.dumps(result, indent=1) + "\n")
    result["total_seconds"] = round(time.monotonic() - t0)
    (out / "memory.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "memory.md").write_text(report.render_memory(result) + "\n")
    print(report.render_memory_table(result))
    print(f"\n{result['total_seconds']} s; results in {out}")
    if args.docs:
        render_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
