#!/usr/bin/env python3
"""Server CPU per delivery by subscriber transport, in one sitting.

Runs bench/run.py's 1,000-subscriber fanout over WebSocket (`fanout_redis`),
SSE (`fanout_sse_1k`) and HTTP-streaming (`fanout_http_stream_1k`), with the
raw picows baseline (`picows_1k`) as the machine's yardstick, `--runs` times
(the order rotating from run to run, so none always goes first), into
`--out`/run_N, and writes every run's figures and their medians to
`TRANSPORTS.md` and `transports.json` there:

    bench/transports.py --runs 3 --out bench/results/issue17_transports

`--resume` skips the runs whose folder already holds every result (`--runs 5
--resume` after three adds two).

Figures, per scenario: server CPU per delivery at 20 publications/s
(`bench.table.cpu_per_delivery`: server and Valkey, the three steps after the
warm-up), latency p50 and p99 of those same steps (their mean), deliveries/s
passing and capacity (`bench.table`), and the load generator's CPU per
delivery over the whole run (its cost of reading the transport), and the
cores other work kept busy at the 20/s steps. Raw picows above 8.5 us per
delivery, or other work of a quarter of a core or more, means a disturbed
machine: other work shared the CPUs.
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

from bench.table import CPU_RATE, OTHER_LOAD, capacity, cpu_per_delivery, passing  # noqa: E402

SCENARIOS = {  # label -> bench/run.py scenario
    "picows (baseline)": "picows_1k",
    "websocket": "fanout_redis",
    "sse": "fanout_sse_1k",
    "http_stream": "fanout_http_stream_1k",
}
DISTURBED_PICOWS_US = 8.5
"""Raw picows's CPU per delivery above which the machine counts as disturbed."""

Result = Mapping[str, Any]


def _cpu_steps(result: Result) -> list[Mapping[str, Any]]:
    """The steps `cpu_per_delivery` reads: at CPU_RATE, after the first."""
    steps = [s for s in result.get("steps", []) if s.get("rate") == CPU_RATE]
    return steps[1:] if len(steps) > 1 else steps


def _latency(key: str) -> Callable[[Result], float | None]:
    def read(result: Result) -> float | None:
        values = [s["latency_ms"][key] for s in _cpu_steps(result) if s["latency_ms"].get(key)]
        return round(statistics.fmean(values), 2) if values else None

    return read


def _figure(read: Callable[[Result], Any]) -> Callable[[Result], float | None]:
    def value(result: Result) -> float | None:
        figure = read(result)
        return None if figure is None else float(figure.value)

    return value


def _generator(result: Result) -> float | None:
    value = (result.get("generator") or {}).get("cpu_us_per_delivery")
    return None if value is None else float(value)


def _other(result: Result) -> float | None:
    values = [s["other_busy"] for s in _cpu_steps(result) if s.get("other_busy") is not None]
    return round(statistics.fmean(values), 2) if values else None


# name -> (read, unit)
FIGURES: dict[str, tuple[Callable[[Result], float | None], str]] = {
    "server CPU per delivery, 20 pubs/s": (cpu_per_delivery, "us"),
    "latency p50, 20 pubs/s": (_latency("p50"), "ms"),
    "latency p99, 20 pubs/s": (_latency("p99"), "ms"),
    "deliveries/s passing": (_figure(passing), "/s"),
    "capacity (no loss)": (_figure(capacity), "/s"),
    "generator CPU per delivery": (_generator, "us"),
    "other work, 20 pubs/s": (_other, "cores"),
}


def run_once(out: Path, scenarios: list[str], quick: bool) -> float:
    """bench/run.py of this tree into `out`; returns its wall time in seconds."""
    started = time.monotonic()
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "-q", "--out-dir", str(out)]
    command += ["--quick"] if quick else []
    subprocess.run([*command, *scenarios], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def figures_of(out: Path) -> dict[str, dict[str, float | None]]:
    """label -> figure -> value, from the results in `out` (missing: None)."""
    values: dict[str, dict[str, float | None]] = {}
    for label, scenario in SCENARIOS.items():
        path = out / f"{scenario}.json"
        result = json.loads(path.read_text()) if path.exists() else None
        values[label] = {
            name: (read(result) if result is not None else None)
            for name, (read, _unit) in FIGURES.items()
        }
    return values


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def report(runs: list[dict[str, dict[str, float | None]]]) -> tuple[str, dict[str, Any]]:
    """A markdown table per figure (every run and the median) and its data."""
    lines: list[str] = []
    data: dict[str, Any] = {}
    heads = " | ".join(f"run {i}" for i in range(1, len(runs) + 1))
    for name, (_read, unit) in FIGURES.items():
        lines += [f"### {name} ({unit})", "", f"| transport | {heads} | median |"]
        lines.append("|" + "---|" * (len(runs) + 2))
        data[name] = {"unit": unit}
        for label in SCENARIOS:
            values = [run[label][name] for run in runs]
            present = [v for v in values if v is not None]
            median = statistics.median(present) if present else None
            cells = " | ".join(_fmt(v) for v in values)
            lines.append(f"| {label} | {cells} | {_fmt(median)} |")
            data[name][label] = {"runs": values, "median": median}
        lines.append("")
    picows = data["server CPU per delivery, 20 pubs/s"]["picows (baseline)"]["runs"]
    slow = [i + 1 for i, v in enumerate(picows) if v is not None and v > DISTURBED_PICOWS_US]
    busy = sorted(
        {
            i + 1
            for label in SCENARIOS
            for i, v in enumerate(data["other work, 20 pubs/s"][label]["runs"])
            if v is not None and v >= OTHER_LOAD
        }
    )
    lines += [
        f"Raw picows above {DISTURBED_PICOWS_US} us per delivery (a disturbed machine) in "
        f"runs: {', '.join(map(str, slow)) if slow else 'none'}.",
        f"Other work at least {OTHER_LOAD} of a core at the 20 pubs/s steps of some scenario "
        f"in runs: {', '.join(map(str, busy)) if busy else 'none'}.",
    ]
    data["picows_over_limit_runs"] = slow
    data["other_work_runs"] = busy
    return "\n".join(lines) + "\n", data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument("--quick", action="store_true", help="1 s steps: a smoke run")
    parser.add_argument(
        "--report-only", action="store_true", help="no runs: the report of the run_N folders"
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip the runs whose folder holds every result"
    )
    args = parser.parse_args(argv)
    out = args.out.resolve()
    names = list(SCENARIOS.values())
    runs = []
    for i in range(1, args.runs + 1):
        folder = out / f"run_{i}"
        order = names[i - 1 :] + names[: i - 1]
        done = all((folder / f"{name}.json").exists() for name in names)
        run = not args.report_only and not (args.resume and done)
        seconds = run_once(folder, order, args.quick) if run else 0.0
        runs.append(figures_of(folder))
        print(f"run {i} ({', '.join(order)}): {seconds:.0f} s", flush=True)
    table, data = report(runs)
    (out / "TRANSPORTS.md").write_text(table)
    (out / "transports.json").write_text(json.dumps(data, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
