"""benchmarks/report.py: the performance tables from a hand-written summary.

The summary has the shape the shared harness's bench.py writes to
summary.json ("SCENARIO|SERVER" -> cell); the values are made up. No
matplotlib, no load tools.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .benchmark_modules import load

report = load("report")
NONE = "\N{EN DASH}"


def cell(values: list[float], *, runs: int | None = None, metric: str = "req_s", **extra: Any):
    """One summary.json cell: the median of ``values`` out of ``runs`` runs."""
    ordered = sorted(values)
    median = ordered[len(ordered) // 2] if ordered else None
    return {
        "runs": len(values) if runs is None else runs,
        "ok_runs": len(values),
        "metric": metric,
        "value": median,
        "values": values,
        "req_s": median,
        "mib_s": None,
        "lat_mean_ms": 1.5,
        "lat_p99_ms": 4.25 if values else None,
        "failed": 0,
        "rss_mib": 30.0,
        "rss_tree_mib": 30.0,
        "server_cpu": 0.98 if values else None,
        "client_cpu": 0.3,
        "other_cpu": 0.1,
        "other_on_server_core": 0.0,
        "server_core_busy": 1.0,
        "client_core_busy": 0.5,
        "errors": [],
        "unsupported": False,
    } | extra


SUMMARY = {
    "h1-hello|hypercorn-asyncio": cell([2000.0, 1900.0, 2100.0]),
    "h1-hello|uvicorn": cell([6000.0, 6200.0, 5800.0]),
    "h1-hello|tricorn-asyncio": cell([4000.0, 4100.0], runs=3, errors=["server did not start"]),
    "h1-hello|tricorn-trio": cell([3000.0, 3000.0, 3000.0]),
    "stream-h2c|hypercorn-asyncio": cell([100.0], runs=1, metric="mib_s"),
    "stream-h2c|uvicorn": cell([], runs=0, metric="mib_s", unsupported=True),
    "stream-h2c|tricorn-asyncio": cell([250.5], runs=1, metric="mib_s"),
    "stream-h2c|tricorn-trio": cell([], runs=1, metric="mib_s", errors=["no successful response"]),
}
META: dict[str, Any] = {
    "scenarios": ["h1-hello", "stream-h2c"],
    "servers": {"hypercorn-asyncio": {}, "uvicorn": {}, "tricorn-asyncio": {}, "tricorn-trio": {}},
    "repeat": 3,
    "duration": 5.0,
    "warmup": 1.0,
    "wrk_duration": 10.0,
    "pin": True,
    "nice": -10,
    "cpus": 2,
    "versions": {"hypercorn": "0.18.0", "kernel": "6.1.0", "h2load": "h2load nghttp2/1.52.0"},
}


def rows(table: str) -> dict[str, list[str]]:
    """A markdown table's body rows, by their first column."""
    out = {}
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| server"):
            columns = [c.strip() for c in line.strip("|").split("|")]
            out[columns[0]] = columns[1:]
    return out


def test_ratio_to_baseline_and_missing_cells():
    assert report.ratio(SUMMARY, "h1-hello", "uvicorn", "hypercorn-asyncio") == 3.0
    assert report.ratio(SUMMARY, "stream-h2c", "tricorn-asyncio", "hypercorn-asyncio") == 2.505
    assert report.ratio(SUMMARY, "stream-h2c", "uvicorn", "hypercorn-asyncio") is None
    assert report.ratio(SUMMARY, "stream-h2c", "tricorn-trio", "hypercorn-asyncio") is None
    assert report.ratio(SUMMARY, "h3-hello", "uvicorn", "hypercorn-asyncio") is None


def test_order_follows_meta_then_summary():
    assert report.scenarios_of(SUMMARY, META) == ["h1-hello", "stream-h2c"]
    assert report.servers_of(SUMMARY, META) == list(META["servers"])
    assert report.servers_of(SUMMARY) == [
        "hypercorn-asyncio",
        "uvicorn",
        "tricorn-asyncio",
        "tricorn-trio",
    ]


@pytest.mark.parametrize(
    ("scenario", "server", "expected"),
    [
        ("h1-hello", "hypercorn-asyncio", "2,000"),
        ("h1-hello", "tricorn-asyncio", "4,100 [2/3]"),
        ("stream-h2c", "tricorn-asyncio", "250.5"),
        ("stream-h2c", "uvicorn", "n/a"),
        ("stream-h2c", "tricorn-trio", "FAIL [0/1]"),
        ("h3-hello", "uvicorn", NONE),
    ],
)
def test_cell_text_marks(scenario: str, server: str, expected: str):
    assert report.cell_text(SUMMARY, scenario, server) == expected


def test_scenario_table_ratios_and_failures():
    servers = report.servers_of(SUMMARY, META)
    table = report.render_scenario_table(SUMMARY, "h1-hello", servers)
    lines = table.splitlines()
    assert lines[0].startswith(
        "| server | req/s (median) | vs hypercorn-asyncio | vs tricorn-asyncio |"
    )
    body = rows(table)
    assert list(body) == servers  # the run's order, not sorted by speed
    assert body["hypercorn-asyncio"][:3] == ["2,000", "1.00x", ""]
    assert body["uvicorn"][:3] == ["6,000", "3.00x", ""]
    assert body["tricorn-asyncio"][:4] == ["4,100 [2/3]", "2.05x", "", "2/3: 4,000, 4,100"]
    assert body["tricorn-trio"][:3] == ["3,000", "1.50x", "0.73x"]
    assert "- tricorn-asyncio failed: server did not start" in table

    stream = rows(report.render_scenario_table(SUMMARY, "stream-h2c", servers))
    assert stream["uvicorn"][:2] == ["n/a", NONE]
    assert stream["tricorn-asyncio"][:2] == ["250.5", "2.50x"]
    assert stream["tricorn-trio"][:3] == ["FAIL [0/1]", NONE, NONE]


def test_overview_has_every_cell_with_its_ratio():
    servers = report.servers_of(SUMMARY, META)
    body = rows(report.render_overview(SUMMARY, ["h1-hello", "stream-h2c"], servers))
    assert body["uvicorn"] == ["6,000 (3.00x)", "n/a"]
    assert body["tricorn-asyncio"] == ["4,100 [2/3] (2.05x)", "250.5 (2.50x)"]
    assert body["tricorn-trio"] == ["3,000 (1.50x)", "FAIL [0/1]"]


def test_markdown_states_method_and_command():
    info = report.RunInfo(
        command="python benchmarks/run.py --repeat 3", date="2026-01-02 03:04 UTC", chart=None
    )
    text = report.render_markdown(SUMMARY, META, info)
    assert text.startswith("# Performance\n")
    assert "python benchmarks/run.py --repeat 3\n" in text
    assert "2026-01-02 03:04 UTC with 3 interleaved repetitions" in text
    assert "`h2load -t1 -c2 -m4 -D 5s --warm-up-time=1s`" in text
    assert "2 CPUs" in text
    assert "Linux 6.1.0" in text
    assert "hypercorn 0.18.0" in text
    assert "performance.png" not in text  # no chart drawn, none linked
    single = report.render_markdown(SUMMARY, META | {"repeat": 1}, info)
    assert "with one repetition" in single
    assert "a single repetition" in single


def test_compiled_section_compares_each_build_of_a_run():
    summary = {
        **SUMMARY,
        "h1-hello|tricorn-compiled-asyncio": cell([6000.0]),
        "h1-hello|tricorn-compiled-trio": cell([4500.0]),
        "stream-h2c|tricorn-compiled-asyncio": cell([300.6], metric="mib_s"),
        "stream-h2c|tricorn-compiled-trio": cell([], runs=1, metric="mib_s"),
    }
    servers = report.servers_of(summary)
    body = rows(report.render_compiled(summary, ["h1-hello", "stream-h2c"], servers))
    # compiled / pure asyncio, compiled / pure trio, compiled trio / compiled asyncio
    # (no uvloop worker: no column against Uvicorn)
    assert body["h1-hello"] == ["1.46x", "1.50x", "0.75x"]
    assert body["stream-h2c"] == ["1.20x", NONE, NONE]
    assert report.render_compiled(SUMMARY, ["h1-hello"], report.servers_of(SUMMARY)) is None
    info = report.RunInfo(command="python benchmarks/run.py", date="today", chart=None)
    page = report.render_markdown(summary, {**META, "servers": {}}, info)
    assert "## The compiled build" in page
    assert "## The compiled build" not in report.render_markdown(SUMMARY, META, info)


PROC_STAT = """cpu  100 0 50 1000 0 0 0 30 0 0
cpu0 60 0 20 500 0 0 0 20 0 0
cpu1 40 0 30 500 0 0 0 10 0 0
intr 12345
"""


def test_steal_sample_reads_each_cpu():
    sample = report.steal_sample(PROC_STAT, 12.5)
    assert sample == {"t": 12.5, "cpus": {"0": [20, 600], "1": [10, 580]}}


def run_record(server: str, when: str, wall_s: float = 6.0) -> dict[str, Any]:
    return {"server": server, "scenario": "h1-hello", "time": when, "wall_s": wall_s}


def test_steal_share_of_each_run():
    start = time.mktime(time.strptime("2026-11-28T18:00:00", "%Y-%m-%dT%H:%M:%S"))

    def sample(offset: float, stolen: int, total: int) -> dict[str, Any]:
        return {"t": start + offset, "cpus": {"0": [stolen, total], "1": [0, total]}}

    samples = [sample(-0.5, 0, 1000), sample(7.5, 100, 1800), sample(20.0, 100, 3000)]
    records = [
        run_record("a", "2026-11-28T18:00:00"),  # -0.5 .. 7.5: 100 of 800 ticks
        run_record("b", "2026-11-28T18:00:08", wall_s=5.0),  # 7.5 .. 20: none stolen
        run_record("c", "2026-11-28T18:00:30"),  # after the last reading: left out
        run_record("e", "2026-11-28T18:00:12", wall_s=7.5),  # ends with the harness: the last
        {"server": "d", "scenario": "h1-hello", "time": "yesterday", "wall_s": 1.0},
    ]
    shares = report.steal_by_run(records, samples, cpu=0)
    assert shares == {"h1-hello": {"a": [0.125], "b": [0.0], "e": [0.0]}}
    assert report.steal_by_run(records, samples, cpu=1)["h1-hello"]["a"] == [0.0]


def test_scenario_table_shows_the_most_stolen_run():
    servers = report.servers_of(SUMMARY, META)
    steal = {"h1-hello": {"uvicorn": [0.0, 0.31, 0.02], "hypercorn-asyncio": [0.004]}}
    table = report.render_scenario_table(SUMMARY, "h1-hello", servers, steal)
    assert table.splitlines()[0].endswith("| others' CPU | stolen |")
    body = rows(table)
    assert body["uvicorn"][-1] == "31%"
    assert body["hypercorn-asyncio"][-1] == "0%"
    assert body["tricorn-trio"][-1] == NONE  # not recorded
    assert "stolen" not in report.render_scenario_table(SUMMARY, "h1-hello", servers)
    info = report.RunInfo(command="c", date="d", tricorn_version="", git_commit="", cpu_model="")
    assert "Stolen is the most" in report.render_markdown(SUMMARY, META, info, steal=steal)
    assert "Stolen is the most" not in report.render_markdown(SUMMARY, META, info)
