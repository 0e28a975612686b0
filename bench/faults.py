#!/usr/bin/env python3
"""Acknowledged publications lost per fault scenario (issue 14), counted over N runs.

Each run of a scenario is the test suite's harness (tests/faults.py): run.py
instances (one worker each) on a Valkey (AOF, appendfsync always) and a
SecantusDB of their own, a persisted channel with a 50-entry Redis window, HTTP
API publishers as fast as they go and recoverable SDK subscribers, the fault
under load, then history paged from the first offset and every subscriber's
publications compared with what the publishers were acknowledged.

    python bench/faults.py --label before              # every scenario, 3 runs each
    python bench/faults.py --label after --runs 5
    python bench/faults.py --runs 1 sigterm valkey_kill # some of them, faults.{md,json}

Writes bench/results/faults[_LABEL].json (every run's full report) and .md (the
table). `--parallel K` runs K scenario runs at once, each in its own process: on
a small machine that changes the load each one sees, so the default is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults import SCENARIOS, LoadShape, run_scenario  # noqa: E402

COLUMNS = (
    ("acknowledged", "acknowledged"),
    ("lost", "lost from history"),
    ("late_count", "in history only 3 s later"),
    ("max_missed", "max missed per subscriber"),
    ("recovered_false", "recovered:false"),
    ("unreadable_offsets", "offsets history will not page over"),
    ("slowest_exit", "slowest exit after SIGTERM (s)"),
)


def run_once(name: str, publishers: int) -> dict[str, Any]:
    """One run of scenario `name` in a fresh directory: its report as a dict."""
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
        started = time.monotonic()
        shape = LoadShape(publishers=publishers)
        try:
            report = asyncio.run(run_scenario(name, Path(tmp), shape))
        except Exception as exc:  # a run that could not finish is a result too
            return {"scenario": name, "error": f"{type(exc).__name__}: {exc}"}
        report.logs = ""  # gone with the directory
        result = report.to_dict()
        result["late_count"] = len(report.late)
        result["unreadable_offsets"] = sum(b - a + 1 for a, b, _ in report.unreadable)
        hung = any(code is None for _, code, _ in report.exits)
        slowest = max((t for _, _, t in report.exits), default="-")
        result["slowest_exit"] = "hung" if hung else slowest
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        print(report.describe(), flush=True)
        return result


def summarize(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {
        "runs": len(runs),
        "ok": sum(1 for r in done if r["ok"]),
        "errors": [r["error"] for r in runs if "error" in r],
    }
    for key, _ in COLUMNS:
        summary[key] = [r[key] for r in done]
    summary["description"] = (SCENARIOS[name].fault.__doc__ or "").strip()
    return summary


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["scenario", "runs ok", *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in results.items():
        errors = f" ({len(s['errors'])} did not finish)" if s["errors"] else ""
        cells = [f"`{name}`", f"{s['ok']}/{s['runs']}{errors}"]
        cells += [" / ".join(str(v) for v in s[key]) or "-" for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(data: dict[str, Any]) -> str:
    results = data["scenarios"]
    scenarios = "\n".join(f"- `{n}`: {s['description']}" for n, s in results.items())
    errors = [f"- `{n}`: {e}" for n, s in results.items() for e in s["errors"]]
    machine = data["machine"]
    return f"""# Acknowledged publications lost per fault scenario ({data["label"] or "latest"})

{data["date"]}, commit `{data["commit"]}`; {data["runs"]} run(s) per scenario, figures per run
(`a / b / c`). {machine["cpus"]} CPUs, Python {machine["python"]}, {machine["platform"]}.
Made by `python bench/faults.py{" --label " + data["label"] if data["label"] else ""}`.

Each run: run.py (1 worker per instance) on a test-owned Valkey (AOF, `appendfsync
always`; `everysec` in `valkey_tail_lost`) and SecantusDB; channel `log:faults`
persisted, history_size 50; {data["publishers"]} HTTP API publishers as fast as they
go; 2 SDK subscribers per instance (centrifuge-python, recoverable, positioned); the
fault once 400 publications are acknowledged, then 300 more after the deployment is
whole again.

- **acknowledged**: publications the API answered with an offset.
- **lost from history**: acknowledged ones that paging `history` from the first
  offset (through MongoDB past the Redis window) does not give back as published,
  even 3 s later.
- **in history only 3 s later**: acknowledged ones history did not give back at
  once but did on a second read 3 s later: at first neither the Redis window
  nor the log held them (the seam).
- **max missed per subscriber**: acknowledged ones the worst subscriber never got.
- **recovered:false**: resubscriptions answered `recovered: false`, all subscribers.
- **offsets history will not page over**: offsets (acknowledged or not) where
  paging stops with an error, even 3 s later; each is a hole recovery cannot cross.

{table(results)}

Scenarios:
{scenarios}
{chr(10).join(["", "Runs that did not finish:", *errors]) if errors else ""}
"""


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario")
    parser.add_argument("--label", default="", help="before, after: faults_LABEL.{json,md}")
    parser.add_argument("--parallel", type=int, default=1, help="scenario runs at once")
    parser.add_argument("--publishers", type=int, default=LoadShape.publishers)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; there are {list(SCENARIOS)}")
    jobs = [name for name in names for _ in range(args.runs)]
    with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn")) as pool:
        done = list(pool.map(run_once, jobs, [args.publishers] * len(jobs)))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for result in done:
        runs[result["scenario"]].append(result)
    data = {
        "label": args.label,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "runs": args.runs,
        "publishers": args.publishers,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "scenarios": {name: summarize(name, runs[name]) for name in names},
        "reports": runs,
    }
    stem = f"faults_{args.label}" if args.label else "faults"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(data))
    print(table(data["scenarios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
