"""Render a benchmark run (the shared harness's ``summary.json``) as docs.

Pure functions: a summary dict (and the run's ``meta.json`` dict) in, a
markdown string out. The one side effect is :func:`write_chart`, which draws
the ratio chart into a PNG file and imports matplotlib only when called.

A summary maps ``"SCENARIO|SERVER"`` to a cell: ``runs`` and ``ok_runs``
(measured and successful runs), ``metric`` (``req_s`` or ``mib_s``),
``value`` (the median of the successful runs, ``None`` if none succeeded),
``values`` (each successful run's figure), latency and CPU medians,
``errors`` and ``unsupported``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BASELINE",
    "NONE",
    "SCENARIO_METHOD",
    "RunInfo",
    "cell_text",
    "ratio",
    "render_markdown",
    "render_overview",
    "render_scenario_table",
    "scenarios_of",
    "servers_of",
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


def render_scenario_table(summary: Mapping[str, Any], scenario: str, servers: Sequence[str]) -> str:
    """One scenario: each server's median, ratios, every run's figure, p99 and CPU."""
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
    lines = [head + " runs | p99 ms | server CPU | others' CPU |", rule + "---|---:|---:|---:|"]
    for server in servers:
        cell = _cell(summary, scenario, server) or {}
        text = cell_text(summary, scenario, server)
        row = [server, text, _ratio_text(ratio(summary, scenario, server, BASELINE))]
        if with_trio:
            mine = server.startswith("tricorn-") and server != TRICORN_BASE
            row.append(_ratio_text(ratio(summary, scenario, server, TRICORN_BASE)) if mine else "")
        if text in ("n/a", NONE):
            row += ["", "", "", ""]
        else:
            figures = [v for v in cell.get("values") or [] if isinstance(v, (int, float))]
            values = ", ".join(_number(float(v), metric) for v in figures)
            runs = f"{cell.get('ok_runs', 0)}/{cell.get('runs', 0)}" + (
                f": {values}" if values else ""
            )
            row += [runs, _fixed(cell.get("lat_p99_ms")), _fixed(cell.get("server_cpu"))]
            row.append(_fixed(cell.get("other_cpu")))
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
    return "\n".join(lines)


def render_markdown(summary: Mapping[str, Any], meta: Mapping[str, Any], info: RunInfo) -> str:
    """The whole ``docs/performance.md`` for one run."""
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
        "## Per scenario",
        "",
    ]
    for scenario in scenarios:
        what = SCENARIO_METHOD.get(scenario, ("", ""))[0]
        parts += [
            f"### {scenario}" + (f": {what}" if what else ""),
            "",
            render_scenario_table(summary, scenario, servers),
            "",
        ]
    parts += [
        (
            "Runs lists every successful run's figure; p99 is the median over runs of each "
            "run's 99th-percentile latency; server CPU is the cores the server's process tree "
            "used during the measurement (near 1.00: the server was the limit); others' CPU is "
            "what the rest of the machine used meanwhile (high: a disturbed run)."
        ),
        "",
        "## Method",
        "",
        render_method(meta, info, scenarios),
        "",
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
