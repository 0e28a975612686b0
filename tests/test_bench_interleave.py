"""bench/interleave.py: each tree in its own virtualenv; the report's medians of each
side and the change, per figure."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import interleave
from bench.interleave import FIGURES, report

CPU = "CPU per delivery, 1k subs, 20 pubs/s"
STORM = "connection storm: connections/s"


def runs_of(cpu: list[float], storm: list[float]) -> list[dict[str, float | None]]:
    empty: dict[str, float | None] = dict.fromkeys(FIGURES)
    return [empty | {CPU: c, STORM: s} for c, s in zip(cpu, storm, strict=True)]


def test_the_change_is_between_the_medians_of_each_side() -> None:
    runs = {
        "before": runs_of([10.0, 30.0, 12.0], [100.0, 100.0, 100.0]),
        "after": runs_of([11.0, 11.0, 50.0], [90.0, 120.0, 110.0]),
    }
    _, data = report(runs, ["before_1", "after_1", "after_2", "before_2", "before_3", "after_3"])
    assert data[CPU]["median_before"] == 12.0 and data[CPU]["median_after"] == 11.0
    assert data[CPU]["change_percent"] == round(-1 / 12 * 100, 2)
    assert data[STORM]["change_percent"] == 10.0


def test_less_cpu_and_more_connections_read_as_better() -> None:
    runs = {"before": runs_of([12.0], [100.0]), "after": runs_of([11.0], [110.0])}
    table, _ = report(runs, ["before_1", "after_1"])
    rows = {line.split(" (")[0].strip("| "): line for line in table.splitlines()}
    assert "(better)" in rows[CPU] and "(better)" in rows[STORM]


def test_a_figure_missing_from_every_run_has_no_change() -> None:
    runs = {"before": runs_of([12.0], [100.0]), "after": runs_of([11.0], [110.0])}
    _, data = report(runs, ["before_1", "after_1"])
    assert data["broadcast 10k: capacity"]["change_percent"] is None


def test_each_tree_runs_in_its_own_virtualenv(tmp_path: Path) -> None:
    own = tmp_path / "with" / ".venv" / "bin" / "python"
    own.parent.mkdir(parents=True)
    own.write_text("")
    assert interleave.python_of(tmp_path / "with") == str(own)
    assert interleave.python_of(tmp_path / "without") == sys.executable
