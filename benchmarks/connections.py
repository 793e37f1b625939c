"""Memory per idle connection: what each open connection between requests
costs a server in resident memory, per protocol.

    python benchmarks/connections.py --python /tmp/peers-venv/bin/python

A server holding many kept-alive connections (clients between requests,
HTTP/2 connections with no stream open) pays this for every one of them.
For each server (one process, ``-w 0``) and protocol it starts the server,
opens ``--low`` connections that each make one request and read its
response, reads the server's resident set (``VmRSS``), opens ``--high`` less
``--low`` more the same way and reads it again:
``(RSS(high) - RSS(low)) / (high - low)`` is what one more idle connection
costs, the interpreter, the libraries and the allocator's warm-up cancelled
out. ``--high`` stays below tricorn's ``max_connections`` (2,048 by default;
past it idle connections are closed to make room), and the servers' keep-alive
timeout is raised so that none closes during the run.

It writes ``connections.json`` into the run directory
(``benchmarks/results/connections-<time>/``), copies it to
``docs/performance-connections.json`` and rewrites the "Memory per idle
connection" section of ``docs/performance.md``; ``--report-only DIR`` does
the last two again without measuring.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import resource
import shlex
import signal
import socket
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DOCS_JSON = "performance-connections.json"
HEADING = "## Memory per idle connection"
AFTER = "## Memory of worker processes"
DEFAULT_SERVERS = (
    "hypercorn-asyncio",
    "hypercorn-uvloop",
    "hypercorn-trio",
    "tricorn-asyncio",
    "tricorn-uvloop",
    "tricorn-trio",
)
PROTOCOLS = ("h1", "h1-tls", "h2c", "ws")
DEFAULT_LOW = 500
DEFAULT_HIGH = 1500
WS_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
BATCH = 50  # connections whose requests are sent before their responses are read
SETTLE = 1.0  # seconds between the last response and a reading
NONE = "\u2013"  # (an en dash: nothing to show)
TOML = (
    "# written by benchmarks/connections.py\n"
    "keep_alive_max_requests = 1000000000\n"
    "keep_alive_timeout = 600\n"
)


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


def per_connection_kib(low_kib: int | None, high_kib: int | None, added: int) -> float | None:
    """KiB per idle connection between two readings ``added`` connections apart."""
    if low_kib is None or high_kib is None or added <= 0:
        return None
    return (high_kib - low_kib) / added


def response_complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole HTTP/1.1 response framed by Content-Length
    (or a head without a body: a ``101``)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    if data.startswith(b"HTTP/1.1 101"):
        return True
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(data) >= end + 4 + int(value.strip())
    return True  # (no body framing: the head is the whole of it)


def _reference(server: str) -> str:
    """The Hypercorn worker a tricorn worker is held against (same event loop)."""
    kind = server.rpartition("-")[2]
    return f"hypercorn-{kind}"


def render(result: Mapping[str, Any]) -> str:
    """The "Memory per idle connection" section from a ``connections.json``."""
    servers = [str(s) for s in result.get("servers") or []]
    protocols = [str(p) for p in result.get("protocols") or []]
    runs = {(r["protocol"], r["server"]): r for r in result.get("runs") or []}
    lines = [
        HEADING,
        "",
        (
            f"Resident memory each idle connection adds to a server (one process), measured "
            f"{result.get('date', '?')}: RSS with {result.get('high', '?'):,} connections less "
            f"RSS with {result.get('low', '?'):,}, over the difference. Each connection made one "
            "request and read its response (`GET /`, the hello app): an HTTP/1.1 keep-alive "
            "between requests, an HTTP/2 connection with no stream open; a WebSocket (ws) was "
            "accepted by the echo app, which waits for a message. Regenerate with:"
        ),
        "",
        "```sh",
        str(result.get("command", "python benchmarks/connections.py")),
        "```",
        "",
        "| protocol | server | KiB per idle connection | vs Hypercorn (same loop) |",
        "|---|---|---:|---:|",
    ]
    for protocol in protocols:
        for server in servers:
            run = runs.get((protocol, server))
            if run is None:
                continue
            value = run.get("per_connection_kib")
            if value is None:
                lines.append(f"| {protocol} | {server} | {run.get('error') or 'n/a'} | {NONE} |")
                continue
            ratio = NONE
            reference = runs.get((protocol, _reference(server)))
            if not server.startswith("hypercorn-") and reference is not None:
                base = reference.get("per_connection_kib")
                if base:
                    ratio = f"{value / base:.2f}x"
            lines.append(f"| {protocol} | {server} | {value:.1f} | {ratio} |")
    lines += [
        "",
        (
            "Where tricorn's share goes: each connection is three anyio tasks (its read loop, "
            "its timers, and its request runner, parked between requests), each with its "
            "coroutine frames and the cancel scope and event anyio gives every task it spawns. "
            "Over TLS, asyncio's own TLS transport (Hypercorn's asyncio worker) allocates a "
            "256 KiB read buffer for each connection; tricorn's TLS reads through memory BIOs "
            "into the worker's one shared read buffer."
        ),
    ]
    versions = result.get("versions") or {}
    if versions:
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- measuring


class Client:
    """Opens the connections, each with one request answered."""

    def __init__(self, protocol: str, port: int) -> None:
        self.protocol = protocol
        self.port = port
        self.sockets: list[socket.socket] = []
        self._tls = None
        if protocol == "h1-tls":
            self._tls = ssl.create_default_context()
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE
            self._tls.set_alpn_protocols(["http/1.1"])

    def _request(self) -> tuple[bytes, Any]:
        if self.protocol == "ws":
            return WS_UPGRADE, None
        if self.protocol != "h2c":
            return b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", None
        import h2.config
        import h2.connection

        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
        conn.send_headers(1, headers, end_stream=True)
        return conn.data_to_send(), conn

    def _answered(self, sock: socket.socket, h2conn: Any) -> None:
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed a connection")
            if h2conn is None:
                data += chunk
                if response_complete(data):
                    return
                continue
            import h2.events

            for event in h2conn.receive_data(chunk):
                if isinstance(event, h2.events.StreamEnded):
                    sock.sendall(h2conn.data_to_send())  # (its acknowledgements)
                    return
            sock.sendall(h2conn.data_to_send())

    def add(self, count: int) -> None:
        """Open ``count`` more connections; return once each has its answer."""
        while count > 0:
            batch = []
            for _ in range(min(BATCH, count)):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                if self._tls is not None:
                    sock = self._tls.wrap_socket(sock, server_hostname="localhost")
                request, h2conn = self._request()
                sock.sendall(request)
                batch.append((sock, h2conn))
            for sock, h2conn in batch:
                self._answered(sock, h2conn)
                self.sockets.append(sock)
            count -= len(batch)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def measure(server: str, protocol: str, s: argparse.Namespace) -> dict[str, Any]:
    """One server on one protocol: its RSS at ``low`` and at ``high`` idle connections."""
    memory = _load("memory")
    record: dict[str, Any] = {"server": server, "protocol": protocol, "error": None}
    port = memory.free_port(*s.port_range)
    argv = memory.server_argv(
        server, memory.PROTOCOLS[protocol], python=s.python, port=port, toml=s.toml,
        installed=False, compiled_path=s.compiled_path,
    )  # fmt: skip
    proc = memory.Server(argv, s.env, s.out / "logs" / f"{protocol}.{server}.log", None)
    client = Client(protocol, port)
    try:
        error = proc.wait_ready(protocol == "h1-tls", port)
        if error:
            record["error"] = f"server {error}"
            return record
        readings = []
        for target in (s.low, s.high):
            client.add(target - len(client.sockets))
            time.sleep(SETTLE)
            readings.append(memory.memory_kib(proc.pid)["rss"])
        low_kib, high_kib = readings
        record["rss_low_kib"], record["rss_high_kib"] = low_kib, high_kib
        record["per_connection_kib"] = per_connection_kib(low_kib, high_kib, s.high - s.low)
    except (OSError, ConnectionError) as exc:
        record["error"] = f"client: {exc}"
    finally:
        client.close()
        proc.stop()
    return record


def render_docs(result: Mapping[str, Any]) -> None:
    report = _load("report")
    (DOCS / DOCS_JSON).write_text(json.dumps(result, indent=1) + "\n")
    page = DOCS / "performance.md"
    page.write_text(report.splice_section(page.read_text(), render(result), after=AFTER))
    print(f"wrote docs/{DOCS_JSON} and the section {HEADING!r} of docs/performance.md")


def main(argv: Sequence[str] | None = None) -> int:
    memory = _load("memory")
    report = _load("report")
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    memory.add_common_options(
        ap, DEFAULT_SERVERS, PROTOCOLS, "interpreter of the venv with Hypercorn"
    )
    ap.add_argument("--low", type=int, default=DEFAULT_LOW, help="first reading's connections")
    ap.add_argument("--high", type=int, default=DEFAULT_HIGH, help="second reading's connections")
    ap.add_argument("--ports", default="18000-18999", help="range to pick free ports from")
    memory.add_output_options(ap, "connections.json")
    args = ap.parse_args(argv)
    if args.report_only is not None:
        render_docs(json.loads((args.report_only / "connections.json").read_text()))
        return 0
    servers, protocols, args.compiled_path = memory.chosen_servers(ap, args, PROTOCOLS)
    if not 0 < args.low < args.high:
        ap.error(f"--low {args.low} and --high {args.high}: 0 < low < high")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.high + 256
    if soft < wanted:  # (the servers inherit it)
        if hard != resource.RLIM_INFINITY and hard < wanted:
            ap.error(f"--high {args.high}: the open-files limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    low_port, high_port = (int(x) for x in args.ports.split("-"))
    args.port_range = (low_port, high_port)
    now = dt.datetime.now(dt.timezone.utc)
    args.out = args.out or REPO / "benchmarks" / "results" / now.strftime(
        "connections-%Y%m%d-%H%M%S"
    )
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    toml = args.out / "bench.toml"
    toml.write_text(TOML)
    args.toml = str(toml)
    env = dict(os.environ)
    paths = [str(REPO / "src"), str(args.bench_dir.resolve().parent), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PATH"] = f"{Path(args.python).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = "/tmp/bench-pycache"
    args.env = env
    given = sys.argv[1:] if argv is None else list(argv)
    versions_text = memory._probe_python(args.python, memory.VERSIONS_CODE)
    result: dict[str, Any] = {
        "command": shlex.join(
            ["python", "benchmarks/connections.py", *memory.regenerate_args(given)]
        ),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "git_commit": report.git_commit(REPO),
        "versions": json.loads(versions_text) if versions_text else {},
        "servers": servers,
        "protocols": protocols,
        "low": args.low,
        "high": args.high,
        "runs": [],
    }
    signal.signal(signal.SIGTERM, memory._exit_on_signal)
    for protocol in protocols:
        for server in servers:
            record = measure(server, protocol, args)
            value = record.get("per_connection_kib")
            shown = f"{value:.1f} KiB" if value is not None else f"error: {record['error']}"
            print(f"  {protocol:7} {server:26} {shown}", flush=True)
            result["runs"].append(record)
            (args.out / "connections.json").write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    if args.docs:
        render_docs(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
