"""Render a benchmark run (the shared harness's ``summary.json``) as docs.

Pure functions: a summary dict (and the run's ``meta.json`` dict) in, a
markdown string out. The one side effect is :func:`write_chart`, which draws
the ratio chart into a PNG file and imports matplotlib only when called.

The "Memory" section comes from another run, ``benchmarks/memory.py``'s
``memory.json``: :func:`render_memory` renders it, :func:`memory_verdicts`
applies issue 7's two memory targets, and :func:`splice_memory_section` puts
the section into an existing page. The "Instructions per request" section
comes from ``benchmarks/instructions.py``'s ``instructions.json``:
:func:`render_instructions`, put in place by :func:`splice_section`.

A summary maps ``"SCENARIO|SERVER"`` to a cell: ``runs`` and ``ok_runs``
(measured and successful runs), ``metric`` (``req_s`` or ``mib_s``),
``value`` (the median of the successful runs, ``None`` if none succeeded),
``values`` (each successful run's figure), latency and CPU medians,
``errors`` and ``unsupported``.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BASELINE",
    "GROWTH_LIMIT_MIB",
    "INSTRUCTIONS_HEADING",
    "MEMORY_METHOD",
    "NONE",
    "SCENARIO_METHOD",
    "MemoryVerdict",
    "RunInfo",
    "cell_text",
    "instruction_pairs",
    "instruction_ratio",
    "memory_verdicts",
    "ratio",
    "render_instructions",
    "render_instructions_table",
    "render_markdown",
    "render_memory",
    "render_memory_table",
    "render_overview",
    "render_scenario_table",
    "scenarios_of",
    "servers_of",
    "splice_memory_section",
    "splice_section",
    "steal_by_run",
    "steal_sample",
    "write_chart",
]

BASELINE = "hypercorn-asyncio"
"""Every ratio is to this server: the one tricorn replaces."""

NONE = "\N{EN DASH}"
"""A table cell with no figure."""

TRICORN_BASE = "tricorn-asyncio"
"""tricorn's other workers are also compared with its asyncio worker."""

# What each scenario does and the client that drives it, as the shared
# harness's README documents them. {d} is the measured duration, {w} the warm-up.
SCENARIO_METHOD: dict[str, tuple[str, str]] = {
    "h1-hello": (
        "HTTP/1.1 cleartext, GET, 13-byte body",
        "h2load --h1 -t1 -c64 -D {d} --warm-up-time={w}",
    ),
    "h1-hello-wrk": ("the same, cross-checked with wrk", "wrk -c64 -t2 -d{wrk} --latency"),
    "h1-echo-64k": (
        "HTTP/1.1 POST 64 KiB, echoed back",
        "h2load --h1 -t1 -c64 -d body-64k.bin -D {d} --warm-up-time={w}",
    ),
    "h2c-hello": (
        "HTTP/2 prior knowledge, cleartext",
        "h2load -t1 -c8 -m16 -D {d} --warm-up-time={w}",
    ),
    "h2-tls-hello": (
        "HTTP/2 over TLS (ALPN h2)",
        "h2load -t1 -c8 -m16 -D {d} --warm-up-time={w} https://",
    ),
    "h1-tls-hello": (
        "HTTP/1.1 over TLS (ALPN http/1.1)",
        "h2load --h1 -t1 -c64 -D {d} --warm-up-time={w} https://",
    ),
    "stream-h1": (
        "1 MiB body in 64 KiB chunks over HTTP/1.1 (MiB/s)",
        "h2load --h1 -t1 -c8 -D {d} --warm-up-time={w}",
    ),
    "stream-h2c": (
        "1 MiB body in 64 KiB chunks over h2c (MiB/s)",
        "h2load -t1 -c2 -m4 -D {d} --warm-up-time={w}",
    ),
    "h3-hello": (
        "HTTP/3 (pure-Python aioquic client: client-bound, a floor)",
        "h3load.py -P 2 -c 4 -m 8 -D {d} --warm-up-time {w}",
    ),
    "ws-echo": (
        "WebSocket echo, 64-byte text, 32 connections (messages/s)",
        "wsload.py -P 1 -c 32 -m 1 -s 64 -D {d} --warm-up-time {w}",
    ),
}


PEER_PACKAGES = (
    "hypercorn", "uvicorn", "granian", "uvloop", "httptools", "trio", "anyio",
    "h2", "h11", "aioquic", "wsproto",
)  # fmt: skip


@dataclass(frozen=True)
class RunInfo:
    """What the method section states besides ``meta.json``."""

    command: str
    date: str
    tricorn_version: str = ""
    git_commit: str = ""
    cpu_model: str = ""
    chart: str | None = "performance.png"


def git_commit(repo: Path) -> str:
    """``git describe --always --dirty`` of ``repo`` ("" if git cannot say)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def scenarios_of(summary: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> list[str]:
    """The run's scenarios, in the order it ran them."""
    if meta and meta.get("scenarios"):
        return list(meta["scenarios"])
    return list(dict.fromkeys(key.split("|", 1)[0] for key in summary))


def servers_of(summary: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> list[str]:
    """The run's servers, in the order it ran them."""
    if meta and meta.get("servers"):
        return list(meta["servers"])
    return list(dict.fromkeys(key.split("|", 1)[1] for key in summary))


def _cell(summary: Mapping[str, Any], scenario: str, server: str) -> Mapping[str, Any] | None:
    cell = summary.get(f"{scenario}|{server}")
    return cell if isinstance(cell, Mapping) else None


def _value(summary: Mapping[str, Any], scenario: str, server: str) -> float | None:
    cell = _cell(summary, scenario, server)
    if cell is None or cell.get("unsupported"):
        return None
    value = cell.get("value")
    return float(value) if isinstance(value, (int, float)) else None


def ratio(summary: Mapping[str, Any], scenario: str, server: str, base: str) -> float | None:
    """``server``'s median over ``base``'s in ``scenario``; ``None`` if either is missing."""
    value = _value(summary, scenario, server)
    reference = _value(summary, scenario, base)
    if value is None or not reference:
        return None
    return value / reference


def _number(value: float | None, metric: str) -> str:
    if value is None:
        return NONE
    return f"{value:,.1f}" if metric == "mib_s" else f"{value:,.0f}"


def _unit(scenario: str, metric: str) -> str:
    if scenario == "ws-echo":
        return "msg/s"
    return "MiB/s" if metric == "mib_s" else "req/s"


def cell_text(summary: Mapping[str, Any], scenario: str, server: str) -> str:
    """One server's median, with ``[k/n]`` when only k of n runs succeeded.

    ``n/a``: the server does not support the scenario; ``FAIL [0/n]``: no run
    succeeded; an en dash: the server did not run it.
    """
    cell = _cell(summary, scenario, server)
    if cell is None or (not cell.get("runs") and not cell.get("unsupported")):
        return NONE
    if cell.get("unsupported"):
        return "n/a"
    runs, ok = int(cell.get("runs") or 0), int(cell.get("ok_runs") or 0)
    value = _value(summary, scenario, server)
    if value is None:
        return f"FAIL [0/{runs}]"
    text = _number(value, str(cell.get("metric", "req_s")))
    return text + (f" [{ok}/{runs}]" if ok < runs else "")


def _fixed(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else NONE


def _ratio_text(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}x"


def render_overview(
    summary: Mapping[str, Any], scenarios: Sequence[str], servers: Sequence[str]
) -> str:
    """A server x scenario matrix: each median and its ratio to the baseline."""
    lines = [
        "| server | " + " | ".join(scenarios) + " |",
        "|---|" + "---:|" * len(scenarios),
    ]
    for server in servers:
        row = [server]
        for scenario in scenarios:
            text = cell_text(summary, scenario, server)
            value = ratio(summary, scenario, server, BASELINE)
            row.append(text if value is None else f"{text} ({value:.2f}x)")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


COMPILED_PREFIX = "tricorn-compiled-"  # run.py --compiled: the build setup.py compiles


def render_compiled(
    summary: Mapping[str, Any], scenarios: Sequence[str], servers: Sequence[str]
) -> str | None:
    """The compiled build against the pure one, per worker and scenario (and
    its trio worker against its asyncio one, its uvloop worker against
    Uvicorn); ``None`` when the run has no compiled servers."""
    kinds = [
        server[len(COMPILED_PREFIX) :] for server in servers if server.startswith(COMPILED_PREFIX)
    ]
    if not kinds:
        return None
    columns: list[tuple[str, str, str]] = [
        (f"{kind}: compiled / pure", COMPILED_PREFIX + kind, f"tricorn-{kind}") for kind in kinds
    ]
    if "trio" in kinds and "asyncio" in kinds:
        columns.append(
            (
                "compiled trio / compiled asyncio",
                COMPILED_PREFIX + "trio",
                COMPILED_PREFIX + "asyncio",
            )
        )
    if "uvloop" in kinds and "uvicorn" in servers:
        columns.append(("compiled uvloop / uvicorn", COMPILED_PREFIX + "uvloop", "uvicorn"))
    lines = [
        "| scenario | " + " | ".join(title for title, _, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for scenario in scenarios:
        cells = [_ratio_text(ratio(summary, scenario, server, base)) for _, server, base in columns]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_scenario_table(
    summary: Mapping[str, Any],
    scenario: str,
    servers: Sequence[str],
    steal: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> str:
    """One scenario: each server's median, ratios, every run's figure, p99
    and CPU, and with ``steal`` (:func:`steal_by_run`) the most of the
    server core's time the hypervisor took in any of its runs."""
    metric = "req_s"
    for server in servers:
        cell = _cell(summary, scenario, server)
        if cell is not None and cell.get("metric"):
            metric = str(cell["metric"])
            break
    unit = _unit(scenario, metric)
    with_trio = TRICORN_BASE in servers and any(
        s.startswith("tricorn-") and s != TRICORN_BASE for s in servers
    )
    head = f"| server | {unit} (median) | vs {BASELINE} |"
    rule = "|---|---:|---:|"
    if with_trio:
        head += f" vs {TRICORN_BASE} |"
        rule += "---:|"
    head += " runs | p99 ms | server CPU | others' CPU |"
    rule += "---|---:|---:|---:|"
    if steal is not None:
        head += " stolen |"
        rule += "---:|"
    lines = [head, rule]
    for server in servers:
        cell = _cell(summary, scenario, server) or {}
        text = cell_text(summary, scenario, server)
        row = [server, text, _ratio_text(ratio(summary, scenario, server, BASELINE))]
        if with_trio:
            mine = server.startswith("tricorn-") and server != TRICORN_BASE
            row.append(_ratio_text(ratio(summary, scenario, server, TRICORN_BASE)) if mine else "")
        if text in ("n/a", NONE):
            row += [""] * (4 if steal is None else 5)
        else:
            figures = [v for v in cell.get("values") or [] if isinstance(v, (int, float))]
            values = ", ".join(_number(float(v), metric) for v in figures)
            runs = f"{cell.get('ok_runs', 0)}/{cell.get('runs', 0)}" + (
                f": {values}" if values else ""
            )
            row += [runs, _fixed(cell.get("lat_p99_ms")), _fixed(cell.get("server_cpu"))]
            row.append(_fixed(cell.get("other_cpu")))
            if steal is not None:
                stolen = (steal.get(scenario) or {}).get(server) or []
                row.append(f"{max(stolen):.0%}" if stolen else NONE)
        lines.append("| " + " | ".join(row) + " |")
    for server in servers:
        for error in (_cell(summary, scenario, server) or {}).get("errors") or []:
            lines.append(f"\n- {server} failed: {str(error).splitlines()[0][:200]}")
    return "\n".join(lines)


def _seconds(value: Any, default: float) -> str:
    number = float(value) if isinstance(value, (int, float)) else default
    return f"{number:g}s"


def render_method(meta: Mapping[str, Any], info: RunInfo, scenarios: Sequence[str]) -> str:
    """How the figures were taken: clients, durations, repetitions, machine."""
    d = _seconds(meta.get("duration"), 5.0)
    w = _seconds(meta.get("warmup"), 1.0)
    wrk = _seconds(meta.get("wrk_duration"), 10.0)
    repeat = int(meta.get("repeat") or 1)
    versions: Mapping[str, Any] = meta.get("versions") or {}
    lines = [
        "| scenario | what | client |",
        "|---|---|---|",
    ]
    for scenario in scenarios:
        what, client = SCENARIO_METHOD.get(scenario, ("", ""))
        lines.append(f"| {scenario} | {what} | `{client.format(d=d, w=w, wrk=wrk)}` |")
    pinned = meta.get("pin")
    lines += [
        "",
        f"- **Repetitions:** {repeat} "
        + (
            "(a single repetition: each figure is one run, and on this shared machine runs of "
            "one server can differ by a fifth or more, so read small differences as noise)"
            if repeat == 1
            else "interleaved repetitions; each figure is the median of the successful runs"
        )
        + ". Within a repetition every server runs each scenario in turn (A B C A B C ...).",
        (
            f"- **Durations:** {d} measured after {w} of unmeasured warm-up per run "
            f"(wrk: {wrk}); a fresh server process per run, primed once per transport "
            "beforehand."
        ),
        (
            "- **Connections and streams:** as in the client column (`-c` connections, "
            "`-m` concurrent streams per connection; `-P` client processes)."
        ),
        "- **Pinning:** "
        + (
            "the server (and its children) on CPU 0, the load generator on CPU 1"
            if pinned
            else "none"
        )
        + f"; nice {meta.get('nice', 0)}. Figures are for one server core: compare ratios, "
        "not absolute numbers from other machines.",
        (
            "- **Servers:** one process each (`-w 0` for Hypercorn and tricorn; Granian's "
            "supervisor and worker are measured as a tree); Hypercorn and tricorn read the same "
            "TOML file raising `keep_alive_max_requests` (h2load does not reconnect after GOAWAY)."
        ),
    ]
    machine = [f"{meta.get('cpus') or versions.get('cpus', '?')} CPUs"]
    if info.cpu_model:
        machine.append(info.cpu_model)
    machine.append(f"Linux {versions.get('kernel', '?')}")
    if versions.get("python"):
        machine.append(str(versions["python"]).splitlines()[0])
    lines.append("- **Machine:** " + ", ".join(machine) + "; loopback only.")
    tools = [str(versions[k]).split(" Copyright")[0] for k in ("h2load", "wrk") if versions.get(k)]
    if tools:
        lines.append("- **Clients:** " + "; ".join(tools) + ".")
    peers = [f"{name} {versions[name]}" for name in PEER_PACKAGES if versions.get(name)]
    ours = "tricorn " + (info.tricorn_version or "?")
    if info.git_commit:
        ours += f" (commit {info.git_commit})"
    lines.append("- **Versions:** " + ", ".join([ours, *peers]) + ".")
    lines.append(MEMORY_METHOD)
    return "\n".join(lines)


def render_markdown(
    summary: Mapping[str, Any],
    meta: Mapping[str, Any],
    info: RunInfo,
    memory: Mapping[str, Any] | None = None,
    steal: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    sections: Sequence[str] = (),
) -> str:
    """The whole ``docs/performance.md`` for one run (and a memory run's
    section; ``steal``: :func:`steal_by_run` of the run's samples;
    ``sections``: other runs' sections, rendered, put before the Method)."""
    scenarios = scenarios_of(summary, meta)
    servers = servers_of(summary, meta)
    repeat = int(meta.get("repeat") or 1)
    runs = "one repetition" if repeat == 1 else f"{repeat} interleaved repetitions"
    parts = [
        "# Performance",
        "",
        (
            "tricorn beside Hypercorn, Uvicorn and Granian on one machine, over loopback, "
            f"measured {info.date} with {runs} of these scenarios: {', '.join(scenarios)}. "
            f"Ratios are to Hypercorn's asyncio worker ({BASELINE}), which tricorn replaces; "
            "higher is better."
        ),
        "",
        "Regenerate with:",
        "",
        "```sh",
        info.command,
        "```",
        "",
    ]
    if info.chart:
        parts += [f"![Throughput relative to {BASELINE}]({info.chart})", ""]
    parts += [
        "## Medians",
        "",
        render_overview(summary, scenarios, servers),
        "",
        (
            "Cells are req/s (stream-*: MiB/s of response body; ws-echo: echoed messages/s) "
            f"with the ratio to {BASELINE}. `[k/n]`: only k of n runs succeeded; `FAIL`: none "
            "did; `n/a`: the server does not support the scenario."
        ),
        "",
    ]
    compiled = render_compiled(summary, scenarios, servers)
    if compiled is not None:
        parts += [
            "## The compiled build",
            "",
            (
                f"The `{COMPILED_PREFIX}*` rows are the same workers from the build that "
                "`TRICORN_COMPILE=1 pip install ...` makes: mypyc compiles the request path "
                "(the HTTP/1.1 adapter, the ASGI cycles and the event core; the list is in "
                "setup.py) to C extensions, from the same source; "
                "without it the package is pure Python (the `tricorn-*` rows). Ratios of the "
                "same run:"
            ),
            "",
            compiled,
            "",
        ]
    parts += [
        "## Per scenario",
        "",
    ]
    for scenario in scenarios:
        what = SCENARIO_METHOD.get(scenario, ("", ""))[0]
        parts += [
            f"### {scenario}" + (f": {what}" if what else ""),
            "",
            render_scenario_table(summary, scenario, servers, steal),
            "",
        ]
    parts += [
        (
            "Runs lists every successful run's figure; p99 is the median over runs of each "
            "run's 99th-percentile latency; server CPU is the cores the server's process tree "
            "used during the measurement (near 1.00: the server was the limit); others' CPU is "
            "what the rest of the machine used meanwhile (high: a disturbed run)."
            + (
                " Stolen is the most, over the server's runs, of the server core's time that "
                "the hypervisor gave to other machines (`steal` in /proc/stat), which no "
                "process here shows: a few percent or more and that run's figure is low for a "
                "reason outside it."
                if steal is not None
                else ""
            )
        ),
        "",
    ]
    if memory:
        parts += [render_memory(memory), ""]
    for section in sections:
        parts += [section.rstrip("\n"), ""]
    parts += [
        "## Method",
        "",
        render_method(meta, info, scenarios),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- memory

GROWTH_LIMIT_MIB = 5.0
"""Issue 7: RSS after 100,000 requests within this much of RSS after 10,000."""

MEMORY_HEADING = "## Memory"
MEMORY_WORKERS_HEADING = "## Memory of worker processes"
MEMORY_METHOD = (
    "- **Memory:** the Memory section has its own command, `python benchmarks/memory.py "
    "--python /tmp/peers-venv/bin/python` (about 10 minutes). For each server (one process, "
    "`-w 0`) and protocol (h1, h1-tls, h2c, h2-tls, h3, ws) it starts a fresh process, reads "
    "its resident set (`VmRSS`) once `GET /` has answered (idle), then after 10,000 and "
    "100,000 requests sent in client runs on new connections (h2load, `h3load.py`, "
    "`wsload.py`); Hypercorn is measured idle. Targets (issue 7), on every protocol: "
    "tricorn's idle RSS no higher than Hypercorn's with the same event loop, and RSS after "
    f"100,000 requests at most {GROWTH_LIMIT_MIB:g} MiB above RSS after 10,000. With "
    "`--workers 2` it measures the workers of `-w 2` servers instead (the largest worker's "
    "RSS, and the PSS of all the server's processes): the section Memory of worker processes."
)
"""The Method section's note on the memory run (also added by :func:`splice_memory_section`)."""


_MIB = 1024.0  # memory.json holds KiB


@dataclass(frozen=True)
class MemoryVerdict:
    """One server on one protocol against the two memory targets.

    ``None`` where a figure is missing (the run failed or stopped early) or,
    for ``idle_ok``, where there is nothing to compare with (the reference
    itself).
    """

    reference: str | None
    idle_ok: bool | None
    growth_mib: float | None
    growth_ok: bool | None


def _memory_runs(result: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    runs: dict[tuple[str, str], Mapping[str, Any]] = {}
    for run in result.get("runs") or []:
        if isinstance(run, Mapping):
            runs[(str(run.get("protocol")), str(run.get("server")))] = run
    return runs


def _kib(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _checkpoints(result: Mapping[str, Any], protocol: str) -> list[int]:
    counts = (result.get("checkpoints") or {}).get(protocol) or []
    return [int(c) for c in counts]


def _reading(run: Mapping[str, Any], requests: int) -> float | None:
    for point in run.get("points") or []:
        if point.get("requests") == requests:
            return _kib(point.get("rss_kib"))
    return None


def memory_reference(server: str, servers: Sequence[str]) -> str | None:
    """The Hypercorn run a tricorn server's idle RSS is held against.

    ``tricorn-K`` and ``tricorn-compiled-K`` are compared with
    ``hypercorn-K`` when that was measured, else with :data:`BASELINE`;
    Hypercorn servers are the references.
    """
    family, _, kind = server.partition("-")
    if family != "tricorn":
        return None
    kind = kind.rpartition("-")[2]
    same = f"hypercorn-{kind}"
    if same in servers:
        return same
    return BASELINE if BASELINE in servers else None


def memory_verdicts(result: Mapping[str, Any]) -> dict[tuple[str, str], MemoryVerdict]:
    """``(protocol, server)`` -> how that run did against the two targets.

    Idle: the idle RSS is at most the reference's (:func:`memory_reference`)
    on the same protocol. Growth: RSS at the last checkpoint minus RSS at the
    first is at most :data:`GROWTH_LIMIT_MIB` (over whatever span the run
    used: the target's is 10,000 to 100,000 requests).
    """
    runs = _memory_runs(result)
    servers = [str(s) for s in result.get("servers") or []]
    verdicts: dict[tuple[str, str], MemoryVerdict] = {}
    for (protocol, server), run in runs.items():
        reference = memory_reference(server, servers)
        idle_ok: bool | None = None
        idle = _kib(run.get("idle_kib"))
        ref_run = runs.get((protocol, reference)) if reference else None
        ref_idle = _kib(ref_run.get("idle_kib")) if ref_run else None
        if idle is not None and ref_idle is not None:
            idle_ok = idle <= ref_idle
        growth = None
        growth_ok: bool | None = None
        counts = _checkpoints(result, protocol)
        if len(counts) >= 2:
            first, last = _reading(run, counts[0]), _reading(run, counts[-1])
            if first is not None and last is not None:
                growth = (last - first) / _MIB
                growth_ok = growth <= GROWTH_LIMIT_MIB
        verdicts[(protocol, server)] = MemoryVerdict(reference, idle_ok, growth, growth_ok)
    return verdicts


def _mib(kib: float | None) -> str:
    return NONE if kib is None else f"{kib / _MIB:.1f}"


def _signed(mib: float | None) -> str:
    return NONE if mib is None else f"{mib:+.1f}"


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def _verdict(ok: bool | None) -> str:
    return NONE if ok is None else ("yes" if ok else "**no**")


def render_memory_table(result: Mapping[str, Any]) -> str:
    """Protocol x server: idle RSS, RSS at the first and last checkpoints, growth, verdicts."""
    runs = _memory_runs(result)
    verdicts = memory_verdicts(result)
    servers = [str(s) for s in result.get("servers") or []]
    workers = bool(result.get("workers"))
    lines = [
        (
            "| protocol | requests | server | idle MiB | MiB at 1st | MiB at last | growth MiB "
            + ("| all processes, idle PSS MiB " if workers else "")
            + "| idle <= Hypercorn | growth <= 5 MiB |"
        ),
        "|---|---|---|---:|---:|---:|---:|" + ("---:|" if workers else "") + "---|---|",
    ]
    for protocol in result.get("protocols") or []:
        counts = _checkpoints(result, protocol)
        span = " / ".join(_count(c) for c in (counts[:1] + counts[-1:])) if counts else NONE
        for server in servers:
            run = runs.get((protocol, server))
            if run is None:
                continue
            verdict = verdicts[(protocol, server)]
            first = _reading(run, counts[0]) if counts else None
            last = _reading(run, counts[-1]) if counts else None
            growth = _signed(verdict.growth_mib)
            idle_text = _verdict(verdict.idle_ok)
            if verdict.reference and verdict.reference != BASELINE and verdict.idle_ok is not None:
                idle_text += f" (vs {verdict.reference})"
            row = [
                protocol, span, server, _mib(_kib(run.get("idle_kib"))), _mib(first), _mib(last),
                growth, idle_text, _verdict(verdict.growth_ok),
            ]  # fmt: skip
            if workers:
                row.insert(7, _mib(_kib(run.get("idle_pss_kib"))))
            lines.append("| " + " | ".join(row) + " |")
    for protocol in result.get("protocols") or []:
        for server in servers:
            run = runs.get((protocol, server))
            if run is not None and run.get("error"):
                error = str(run["error"]).splitlines()[0][:200]
                lines.append(f"\n- {protocol}, {server}: {error}")
    return "\n".join(lines)


def _target_summary(result: Mapping[str, Any]) -> str:
    verdicts = {k: v for k, v in memory_verdicts(result).items() if k[1].startswith("tricorn-")}
    parts = []
    for label, attribute in (
        ("idle RSS no higher than Hypercorn's", "idle_ok"),
        (f"RSS growth at most {GROWTH_LIMIT_MIB:g} MiB", "growth_ok"),
    ):
        judged = {k: getattr(v, attribute) for k, v in verdicts.items()}
        passed = sum(1 for ok in judged.values() if ok)
        failed = sorted(f"{server} on {protocol}" for (protocol, server), ok in judged.items()
                        if ok is False)  # fmt: skip
        missing = sum(1 for ok in judged.values() if ok is None)
        text = f"{label}: {passed} of {len(judged)} tricorn runs pass"
        if failed:
            text += " (fails: " + ", ".join(failed) + ")"
        if missing:
            text += f"; {missing} without a figure"
        parts.append(f"- {text}.")
    return "\n".join(parts)


_REFERENCE_LOAD = {
    "none": (
        "Hypercorn, the reference, is measured idle only (its idle RSS is the target; "
        "`--reference-load first` or `all` loads it too)."
    ),
    "first": (
        "Hypercorn, the reference, is loaded to the first count only (its idle RSS is the "
        "target; `--reference-load all` loads it to the last as well)."
    ),
}


def render_memory(result: Mapping[str, Any]) -> str:
    """The "Memory" section of ``docs/performance.md`` from a ``memory.json``."""
    protocols = [str(p) for p in result.get("protocols") or []]
    rounds: Mapping[str, Any] = result.get("rounds") or {}
    clients: Mapping[str, Any] = result.get("clients") or {}
    versions: Mapping[str, Any] = result.get("versions") or {}
    spans = {
        p: " and ".join(f"{c:,}" for c in _checkpoints(result, p)) for p in protocols
    }  # fmt: skip
    workers = int(result.get("workers") or 0)
    what = (
        "one server process per protocol"
        if not workers
        else f"the worker processes of a server started with `-w {workers}`, per protocol"
    )
    parts = [
        MEMORY_WORKERS_HEADING if workers else MEMORY_HEADING,
        "",
        (
            f"Resident memory (RSS, `VmRSS`) of {what}: idle, and after a number of requests, "
            f"measured {result.get('date', '?')}. Issue 7's targets: idle RSS no higher than "
            f"Hypercorn's, and RSS after 100,000 requests within {GROWTH_LIMIT_MIB:g} MiB of RSS "
            "after 10,000 (no leaks), on every protocol. Regenerate with:"
        ),
        "",
        "```sh",
        str(result.get("command", "python benchmarks/memory.py")),
        "```",
        "",
        render_memory_table(result),
        "",
        _target_summary(result),
        "",
        "How it was measured:",
        "",
        "| protocol | RSS read after | requests per client run (`{n}`) | client |",
        "|---|---|---:|---|",
    ]
    for protocol in protocols:
        client = str(clients.get(protocol, ""))
        size = rounds.get(protocol)
        size_text = f"{int(size):,}" if isinstance(size, (int, float)) else NONE
        parts.append(f"| {protocol} | {spans[protocol]} | {size_text} | `{client}` |")
    processes = (
        "one process each (`-w 0`)"
        if not workers
        else (
            f"{workers} worker processes each (`-w {workers}`: tricorn's supervisor forks "
            "them, Hypercorn's spawns them), the whole tree"
        )
    )
    note = (
        f"- **Servers:** {processes}, started fresh for each protocol on "
        "127.0.0.1 with the shared harness's apps (`bench.apps:hello`, `bench.apps:ws` for "
        "WebSocket) and the same TOML file for Hypercorn and tricorn (it raises "
        "`keep_alive_max_requests`); tricorn from "
        + (
            "this checkout's `src/`"
            if result.get("tricorn_source") != "installed"
            else "the venv's installed package"
        )
        + (
            ", the `tricorn-compiled-*` rows from the compiled build (`TRICORN_COMPILE=1`, "
            "mypyc) of the same commit"
            if result.get("compiled_source")
            else ""
        )
        + ". Each server was started and sent a few requests once before measuring, so "
        "bytecode is cached and nothing is compiled during a measurement."
    )
    parts += ["", note]
    if workers:
        parts.append(
            "- **Workers:** each RSS figure is the largest of the server's workers at that "
            "moment (the kernel hands each connection to one of them, so they differ); the "
            "supervisor, which serves nothing, is not among them, nor the resource tracker "
            "that multiprocessing starts beside Hypercorn's. *All processes, idle PSS* is "
            "the proportional set size summed over the whole tree (supervisor, workers, "
            "helpers): what the deployment costs the machine, pages shared between its "
            "processes counted once. A worker replaced during the run ends it with an error."
        )
    parts += [
        (
            "- **Idle:** the server's RSS once `GET /` has answered (over TLS for the TLS and "
            f"QUIC runs) and {result.get('settle_s', 0.5)} s have passed, before any load. "
            "Two starts of the same server can differ by about 0.2 MiB (h1-tls and h2-tls "
            "start identical servers): a verdict decided by less than that is noise."
        ),
        (
            "- **Load:** client runs of the size in the table, each on new connections (`-c`; "
            f"{result.get('streams', '?')} concurrent streams per HTTP/2 and HTTP/3 "
            "connection), so connections open and close all along; a WebSocket request is one "
            "echoed message (its `failed` are the messages in flight when a client run closes). "
            "RSS is read after the run that reaches each count, once "
            f"{result.get('settle_s', 0.5)} s have passed. "
            + _REFERENCE_LOAD.get(str(result.get("reference_load", "all")), "")
        ),
        (
            "- **Growth:** RSS at the last reading minus RSS at the first, held against "
            f"{GROWTH_LIMIT_MIB:g} MiB. HTTP/3 is driven by a pure-Python client (`h3load.py`, "
            "a tenth of a second per QUIC handshake), so it runs on fewer connections: about "
            "a thousand requests a second."
        ),
        (
            "- **Idle comparison:** each tricorn worker against Hypercorn on the same protocol "
            f"(its own worker class where that was measured, else {BASELINE})."
        ),
        (
            "- **Machine:** "
            + ", ".join(
                x
                for x in (
                    f"{result.get('cpus', '?')} CPUs",
                    str(result.get("cpu_model") or ""),
                    f"Linux {result.get('kernel', '?')}",
                    f"Python {versions.get('python', '?')}",
                )
                if x
            )
            + (
                "; server on CPU 0, clients on CPU 1"
                if result.get("pinned")
                else "; nothing pinned"
            )
            + f"; the run took {result.get('total_seconds', '?')} s."
        ),
    ]
    names = ("hypercorn", "anyio", "h11", "h2", "wsproto", "aioquic", "uvloop", "trio")
    listed = [f"{name} {versions[name]}" for name in names if versions.get(name)]
    ours = "tricorn " + str(versions.get("tricorn", "?"))
    if result.get("git_commit"):
        ours += f" (commit {result['git_commit']})"
    parts.append("- **Versions:** " + ", ".join([ours, *listed]) + ".")
    return "\n".join(parts)


def _section_end(lines: Sequence[str], start: int) -> int:
    """The index of the line after the section whose heading is ``lines[start]``."""
    return next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))


def splice_section(page: str, section: str, after: str | None = None) -> str:
    """``page`` with the section that ``section`` is (its first line is the
    ``## `` heading) replaced by it; a page without that section gets it
    after the section headed ``after`` if there is one, else before
    "## Method", else at the end."""
    lines = page.splitlines()
    body = section.rstrip("\n").splitlines()
    heading = body[0] if body else ""
    if heading in lines:
        start = lines.index(heading)
        new = [*lines[:start], *body, "", *lines[_section_end(lines, start) :]]
    elif after is not None and after in lines:
        at = _section_end(lines, lines.index(after))
        new = [*lines[:at], *body, "", *lines[at:]]
    elif "## Method" in lines:
        at = lines.index("## Method")
        new = [*lines[:at], *body, "", *lines[at:]]
    else:
        new = [*lines, "", *body] if lines else body
    return "\n".join(new).rstrip("\n") + "\n"


def splice_memory_section(page: str, section: str) -> str:
    """``page`` with the section that ``section`` is (its first line, the
    heading: :data:`MEMORY_HEADING` or :data:`MEMORY_WORKERS_HEADING`)
    replaced by it. A page without that section gets it before "## Method"
    (the workers' one right after the Memory section, if there is one), or at
    the end. A "## Method" section without :data:`MEMORY_METHOD` gets it as its
    last point."""
    heading = section.split("\n", 1)[0] or MEMORY_HEADING
    after = MEMORY_HEADING if heading == MEMORY_WORKERS_HEADING else None
    new = splice_section(page, section, after).rstrip("\n").splitlines()
    stale = MEMORY_METHOD[: MEMORY_METHOD.index("`")]  # (an older wording of the point)
    new = [line for line in new if line == MEMORY_METHOD or not line.startswith(stale)]
    if "## Method" in new and MEMORY_METHOD not in new:
        end = _section_end(new, new.index("## Method"))
        while new[end - 1] == "":
            end -= 1
        new.insert(end, MEMORY_METHOD)
    text = "\n".join(new).rstrip("\n")
    return text + "\n"


# --------------------------------------------------------------------------- instructions

INSTRUCTIONS_HEADING = "## Instructions per request"
TRIO_TARGET = 0.7
"""Issue 7: the trio worker at least this fraction of the asyncio worker's speed."""


def _instruction_runs(result: Mapping[str, Any]) -> dict[tuple[str, str], float | None]:
    runs: dict[tuple[str, str], float | None] = {}
    for run in result.get("runs") or []:
        if isinstance(run, Mapping):
            figure = run.get("per_request")
            ok = isinstance(figure, (int, float)) and figure > 0 and not run.get("error")
            key = (str(run.get("protocol")), str(run.get("server")))
            runs[key] = float(figure) if ok and figure is not None else None
    return runs


def instruction_pairs(servers: Sequence[str]) -> list[tuple[str, str]]:
    """``(worker, its asyncio worker)`` for each tricorn trio or uvloop worker
    whose asyncio worker of the same build was measured too."""
    pairs = []
    for server in servers:
        head, _, kind = server.rpartition("-")
        base = f"{head}-asyncio"
        if head.startswith("tricorn") and kind in ("uvloop", "trio") and base in servers:
            pairs.append((server, base))
    return pairs


def instruction_ratio(
    result: Mapping[str, Any], protocol: str, server: str, base: str
) -> float | None:
    """``base``'s instructions per request over ``server``'s: the speed of
    ``server`` as a fraction of ``base``'s, if only instructions counted."""
    runs = _instruction_runs(result)
    mine, theirs = runs.get((protocol, server)), runs.get((protocol, base))
    if mine is None or theirs is None:
        return None
    return theirs / mine


def _thousands(value: float | None) -> str:
    return NONE if value is None else f"{value / 1000:,.1f}k"


def render_instructions_table(result: Mapping[str, Any]) -> str:
    """Protocol x server: instructions per request; and each trio (uvloop)
    worker's speed by that count as a fraction of its asyncio worker's."""
    runs = _instruction_runs(result)
    servers = [str(s) for s in result.get("servers") or []]
    pairs = instruction_pairs(servers)
    head = ["protocol", *servers, *(f"{a} / {b}" for a, b in pairs)]
    lines = [
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for protocol in result.get("protocols") or []:
        row = [str(protocol), *(_thousands(runs.get((protocol, s))) for s in servers)]
        for server, base in pairs:
            value = instruction_ratio(result, protocol, server, base)
            text = _ratio_text(value)
            if value is not None and server.endswith("-trio") and value < TRIO_TARGET:
                text = f"**{text}**"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    for run in result.get("runs") or []:
        if isinstance(run, Mapping) and run.get("error"):
            error = str(run["error"]).splitlines()[0][:200]
            lines.append(f"\n- {run.get('protocol')}, {run.get('server')}: {error}")
    return "\n".join(lines)


def render_instructions(result: Mapping[str, Any]) -> str:
    """The "Instructions per request" section of ``docs/performance.md`` from
    ``benchmarks/instructions.py``'s ``instructions.json``."""
    requests: Mapping[str, Any] = result.get("requests") or {}
    clients: Mapping[str, Any] = result.get("clients") or {}
    versions: Mapping[str, Any] = result.get("versions") or {}
    parts = [
        INSTRUCTIONS_HEADING,
        "",
        (
            "CPU instructions the server executes per request (per echoed message for ws), "
            f"counted by Valgrind's callgrind, measured {result.get('date', '?')}. Unlike "
            "requests per second, which move by 10-30% between runs on a shared virtual "
            "machine, these moved by at most 3% between two runs for HTTP/1.1 and HTTP/2 "
            "(how many requests each wake-up finds ready varies), 5% for HTTP/3 on trio "
            "(QUIC's timers, and under callgrind time runs slow; HTTP/3 moved 7% on asyncio "
            "with a test run sharing the machine: 563k quiet, 602k shared) and 11% for ws "
            "(on trio the socket lent to the app is taken back by a timer), so they "
            "compare the workers: the ratio columns are a worker's speed as "
            "a fraction of its asyncio worker's (the asyncio worker's count over its own). "
            f"Issue 7's target for the trio worker is {TRIO_TARGET:g}x (bold: below it). "
            "A count leaves out what it cannot see (cache misses, the kernel's side of "
            "system calls, time spent waiting): the req/s above are what clients get, these "
            "say how much work the server does for it. The two disagree most for the trio "
            "worker, which spends more time per instruction the more connections it "
            "serves: before the edge poller, its CPU per HTTP/1.1 request was 1.05-1.19x "
            "the asyncio worker's at 4 connections but 1.3-1.5x at 16 and 64 (2026-11-29, "
            "pairs of runs, CPU time from `/proc/PID/schedstat`), against 1.12x its "
            "instructions and as many Python calls per request (187 against 183). At 64 "
            "connections the very same C code, httptools' parser on the same bytes, took "
            "1.5-1.9x as long per request in the trio worker (`perf record`, three pairs), "
            "so the difference lies in how fast the processor runs the same work under "
            "trio's pattern (64 tasks, each resumed through its own stack of coroutine "
            "frames), not in more work; callgrind's "
            "simulated caches (L1, and a 2 MiB last level) and huge pages did not show it. "
            "Regenerate with:"
        ),
        "",
        "```sh",
        str(result.get("command", "python benchmarks/instructions.py")),
        "```",
        "",
        render_instructions_table(result),
        "",
        "How it was counted:",
        "",
        (
            "- Each server runs alone (`-w 0`) under `valgrind --tool=callgrind "
            "--instr-atstart=no`: its start-up is not counted. Once `GET /` answers, a client "
            "run of n requests warms it up; then counting is switched on and two client runs "
            "are counted, n requests and 2n, each dumped apart. Both pay the same connection "
            "set-up (the same connections and streams), so *(I(2n) - I(n)) / n* is the cost of "
            "one more request on open connections, as in the throughput scenarios."
        ),
        "",
        "| protocol | n | client (`{n}`: its requests) |",
        "|---|---:|---|",
    ]
    for protocol in result.get("protocols") or []:
        size = requests.get(protocol)
        size_text = f"{int(size):,}" if isinstance(size, (int, float)) else NONE
        parts.append(f"| {protocol} | {size_text} | `{clients.get(protocol, '')}` |")
    names = ("anyio", "h11", "h2", "wsproto", "aioquic", "uvloop", "trio")
    listed = [f"{name} {versions[name]}" for name in names if versions.get(name)]
    ours = "tricorn " + str(versions.get("tricorn", "?"))
    if result.get("git_commit"):
        ours += f" (commit {result['git_commit']})"
    machine = ", ".join(
        x
        for x in (
            str(result.get("cpu_model") or ""),
            f"Python {versions.get('python', '?')}",
            str(result.get("valgrind") or ""),
        )
        if x
    )
    parts += [
        "",
        f"- **Machine:** {machine}; the run took {result.get('total_seconds', '?')} s.",
        "- **Versions:** " + ", ".join([ours, *listed]) + ".",
    ]
    return "\n".join(parts)


def write_chart(
    summary: Mapping[str, Any],
    scenarios: Sequence[str],
    servers: Sequence[str],
    path: Path,
) -> None:
    """Draw a grouped bar chart of each server's ratio to the baseline per scenario.

    A server with no figure for a scenario (unsupported, failed) has no bar
    there. Raises ImportError when matplotlib is missing.
    """
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    import matplotlib.ticker  # type: ignore[import-not-found, unused-ignore]

    shown = [s for s in scenarios if _value(summary, s, BASELINE)]
    servers = [s for s in servers if s != BASELINE]  # the baseline is the 1x line
    width = 0.8 / max(len(servers), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(shown) + 2), 4.5))
    for i, server in enumerate(servers):
        xs: list[float] = []
        heights: list[float] = []
        for j, scenario in enumerate(shown):
            value = ratio(summary, scenario, server, BASELINE)
            if value is not None:
                xs.append(j + (i - (len(servers) - 1) / 2) * width)
                heights.append(value)
        # Bars grow from 1x: up when faster than the baseline, down when slower.
        ax.bar(xs, [h - 1.0 for h in heights], width, bottom=1.0, label=server)
    # Ratios run from under 1 to 20 and more: a log scale keeps the small ones readable.
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.axhline(1.0, color="black", linewidth=0.8, label=f"{BASELINE} = 1x")
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(shown, rotation=20, ha="right")
    ax.set_ylabel(f"throughput / {BASELINE} (log scale)")
    ax.set_title("Median throughput relative to Hypercorn (asyncio worker); higher is better")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_compiled_option(ap: argparse.ArgumentParser) -> None:
    """``--compiled SRC``: run.py and memory.py measure the compiled build's
    workers too (servers ``tricorn-compiled-WORKER``)."""
    ap.add_argument(
        "--compiled",
        type=Path,
        metavar="SRC",
        help="also measure the compiled build: the src/ directory of a checkout where"
        " TRICORN_COMPILE=1 pip install -e . built it (servers tricorn-compiled-WORKER)",
    )


def steal_sample(proc_stat: str, when: float) -> dict[str, Any]:
    """One reading of /proc/stat's per-CPU lines: ``{"t": when, "cpus":
    {"0": [stolen ticks, all ticks], ...}}`` (``steal`` is the eighth
    field; guest time is counted in user time already)."""
    cpus: dict[str, list[int]] = {}
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(x) for x in rest.split()[:8]]
            if len(ticks) == 8:
                cpus[name[3:]] = [ticks[7], sum(ticks)]
    return {"t": when, "cpus": cpus}


def steal_by_run(
    records: Sequence[Mapping[str, Any]], samples: Sequence[Mapping[str, Any]], cpu: int = 0
) -> dict[str, dict[str, list[float]]]:
    """``scenario -> server -> [share of CPU cpu's time stolen during each run]``.

    A run (a line of the harness's ``raw.jsonl``) spans its ``time`` (local
    time, to the second) plus ``wall_s`` and one second; its share is taken
    between the last sample at or before its start and the first at or
    after its end (or the last sample, for the run the harness ended with,
    if it is at least ``wall_s`` after the start). Runs the samples do not
    cover are left out."""
    points = sorted(
        (float(s["t"]), s["cpus"][str(cpu)])
        for s in samples
        if isinstance(s.get("cpus"), Mapping) and str(cpu) in s["cpus"]
    )
    out: dict[str, dict[str, list[float]]] = {}
    for record in records:
        try:
            start = time.mktime(time.strptime(str(record["time"]), "%Y-%m-%dT%H:%M:%S"))
            soonest = start + float(record["wall_s"])  # (its true start is within the second)
        except (KeyError, TypeError, ValueError):
            continue
        before = [p for p in points if p[0] <= start]
        after = [p for p in points if p[0] >= soonest + 1.0] or [
            p for p in points[-1:] if p[0] >= soonest
        ]
        if not before or not after:
            continue
        (_, (stolen0, all0)), (_, (stolen1, all1)) = before[-1], after[0]
        if all1 > all0:
            share = (stolen1 - stolen0) / (all1 - all0)
            out.setdefault(str(record.get("scenario")), {}).setdefault(
                str(record.get("server")), []
            ).append(share)
    return out
