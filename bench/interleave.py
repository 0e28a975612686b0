#!/usr/bin/env python3
"""Before/after comparison: bench/run.py from two source trees, interleaved.

Run-to-run noise on a shared VM is about 25%, so one run of each says little.
This runs the same scenarios `--runs` times from each tree, alternating which
goes first, and reports every run's figures and their medians:

    bench/interleave.py --before ../wsfan-before --after . --out bench/results/NAME

Each tree's own bench/run.py starts its own server (`run.py` of that tree), in
that tree's own virtualenv (`make venv` there: the package is installed editable,
so another tree's interpreter would run the other tree's code), so the trees may
differ in anything but the load-test result format. Figures:
server CPU per delivery at 1,000 subscribers and 20 publications/s
(`fanout_redis`), deliveries/s passing for broadcast to 1k (`fanout_redis`) and
10k (`capacity_10k`), connections/s of `connection_storm`, and raw picows's CPU
per delivery (`picows_1k`) and connections/s (`picows_storm`) in the same run as the
machine's yardstick. Server CPU is the server's own processes' (Valkey's apart).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.table import capacity, cpu_per_delivery, passing  # noqa: E402

SCENARIOS = ("picows_1k", "fanout_redis", "capacity_10k", "connection_storm", "picows_storm")

Result = Mapping[str, Any]


def _figure_value(figure: Any) -> float | None:
    return None if figure is None else float(figure.value)


def _storm(result: Result) -> float | None:
    value = (result.get("clients") or {}).get("connections_per_second")
    return None if value is None else float(value)


def _server(key: str) -> Callable[[Result], float | None]:
    def read(result: Result) -> float | None:
        value = (result.get("server") or {}).get(key)
        return None if value is None else float(value)

    return read


# name -> (scenario, figure from its result, unit, higher is better)
FIGURES: dict[str, tuple[str, Callable[[Result], float | None], str, bool]] = {
    "CPU per delivery, 1k subs, 20 pubs/s": ("fanout_redis", cpu_per_delivery, "us", False),
    "broadcast 1k: deliveries/s passing": (
        "fanout_redis",
        lambda r: _figure_value(passing(r)),
        "/s",
        True,
    ),
    "broadcast 1k: capacity": ("fanout_redis", lambda r: _figure_value(capacity(r)), "/s", True),
    "broadcast 10k: deliveries/s passing": (
        "capacity_10k",
        lambda r: _figure_value(passing(r)),
        "/s",
        True,
    ),
    "broadcast 10k: capacity": ("capacity_10k", lambda r: _figure_value(capacity(r)), "/s", True),
    "connection storm: connections/s": ("connection_storm", _storm, "/s", True),
    "connection storm: server CPU per connection": (
        "connection_storm",
        _server("cpu_us_per_connection"),
        "us",
        False,
    ),
    "KB per idle connection, 10k subs": ("capacity_10k", _server("kb_per_connection"), "KB", False),
    "raw picows CPU per delivery, 1k subs": ("picows_1k", cpu_per_delivery, "us", False),
    "raw picows connection storm: connections/s": ("picows_storm", _storm, "/s", True),
}


def python_of(tree: Path) -> str:
    """The interpreter of `tree`'s own virtualenv (`make venv` there), whose editable
    `wsfan` is that tree's code; this interpreter only when it has none."""
    own = tree / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def run_once(tree: Path, out: Path, scenarios: list[str], quick: bool = False) -> float:
    """bench/run.py of `tree` into `out`, in that tree's virtualenv; returns its wall
    time in seconds."""
    started = time.monotonic()
    command = [python_of(tree), str(tree / "bench" / "run.py"), "-q", "--out-dir", str(out)]
    command += ["--quick"] if quick else []
    subprocess.run([*command, *scenarios], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def figures_of(out: Path) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for name, (scenario, read, _unit, _higher) in FIGURES.items():
        path = out / f"{scenario}.json"
        values[name] = read(json.loads(path.read_text())) if path.exists() else None
    return values


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def report(runs: dict[str, list[dict[str, float | None]]], labels: list[str]) -> tuple[str, Any]:
    """A markdown table (every run, then medians and the change) and its data."""
    lines = ["| figure | " + " | ".join(labels) + " | median before | median after | change |"]
    lines.append("|" + "---|" * (len(labels) + 4))
    data: dict[str, Any] = {}
    for name, (_scenario, _read, unit, higher) in FIGURES.items():
        cells = []
        for label in labels:
            side, index = label.rsplit("_", 1)
            cells.append(_fmt(runs[side][int(index) - 1].get(name)))
        medians = {}
        for side in ("before", "after"):
            values = [v for run in runs[side] if (v := run.get(name)) is not None]
            medians[side] = statistics.median(values) if values else None
        before, after = medians["before"], medians["after"]
        change = None if not before or after is None else (after - before) / before * 100
        better = None if change is None else (change >= 0) == higher or change == 0
        change_text = "-" if change is None else f"{change:+.1f}%"
        if better is not None and change is not None and abs(change) > 0:
            change_text += " (better)" if better else " (worse)"
        lines.append(
            f"| {name} ({unit}) | "
            + " | ".join(cells)
            + f" | {_fmt(before)} | {_fmt(after)} | {change_text} |"
        )
        data[name] = {
            "unit": unit,
            "higher_is_better": higher,
            "before": [run.get(name) for run in runs["before"]],
            "after": [run.get(name) for run in runs["after"]],
            "median_before": before,
            "median_after": after,
            "change_percent": None if change is None else round(change, 2),
        }
    return "\n".join(lines) + "\n", data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree before")
    parser.add_argument("--after", type=Path, required=True, help="source tree after")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument("--quick", action="store_true", help="1 s steps: a smoke run")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no runs: the report of the before_N / after_N folders in --out",
    )
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results = args.out.resolve()  # each run's cwd is its own tree
    runs: dict[str, list[dict[str, float | None]]] = {"before": [], "after": []}
    labels: list[str] = []
    for i in range(1, args.runs + 1):
        order = ("before", "after") if i % 2 else ("after", "before")
        for side in order:
            out = results / f"{side}_{i}"
            if args.report_only:
                seconds = 0.0
            else:
                seconds = run_once(trees[side], out, args.scenarios, args.quick)
            runs[side].append(figures_of(out))
            labels.append(f"{side}_{i}")
            print(f"{side} run {i}: {seconds:.0f} s {runs[side][-1]}", flush=True)
    ordered = sorted(labels, key=lambda x: (x.rsplit("_", 1)[1], labels.index(x)))
    table, data = report(runs, ordered)
    (results / "COMPARISON.md").write_text(table)
    (results / "comparison.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
