"""The benchmark table's rules (bench/table.py) over made-up results: which step
passes, which counts for capacity, where CPU and memory are read, and the flags."""

from __future__ import annotations

from typing import Any

from bench.table import (
    ENCODING_PAIRS,
    ISSUE_ROWS,
    MEASURED_ROWS,
    capacity,
    cpu_per_delivery,
    derive_row,
    encoding_rows,
    passing,
    render,
)


def step(
    rate: float,
    delivered: float,
    *,
    offered: float | None = None,
    loss: int = 0,
    failed: int = 0,
    p99: float | None = 10.0,
    generator_busy: float = 0.3,
    other_busy: float = 0.0,
    server_us: float | None = 5.0,
) -> dict[str, Any]:
    return {
        "rate": rate,
        "expected_deliveries": int(rate * 1000),
        "failed": failed,
        "loss": loss,
        "offered_per_second": delivered if offered is None else offered,
        "deliveries_per_second": delivered,
        "latency_ms": {"p99": p99},
        "generator_busy": generator_busy,
        "other_busy": other_busy,
        "server_cpu_us_per_delivery": server_us,
    }


def result(*steps: dict[str, Any], gaps: int = 0, kb: float | None = 10.0) -> dict[str, Any]:
    return {
        "steps": list(steps),
        "deliveries": {"gaps": gaps, "duplicates": 0},
        "server": {"kb_per_connection": kb},
        "clients": {"connections_per_second": 2500.0},
        "started": "2026-01-01T00:00:00+00:00",
    }


def test_passing_is_the_fastest_step_without_loss_and_p99_under_100_ms():
    r = result(step(20, 20_000), step(50, 50_000, p99=99.0), step(100, 80_000, p99=150.0))
    figure = passing(r)
    assert figure is not None and figure.value == 50_000 and figure.rate == 50
    assert not figure.at_least  # the 100/s step failed: the limit was found


def test_a_step_with_loss_counts_neither_for_passing_nor_for_capacity():
    r = result(step(20, 20_000), step(50, 60_000, loss=3))
    assert passing(r).value == capacity(r).value == 20_000  # type: ignore[union-attr]


def test_refused_publications_count_as_loss():
    r = result(step(20, 20_000), step(50, 50_000, failed=1))
    assert capacity(r).value == 20_000  # type: ignore[union-attr]


def test_a_slow_step_counts_for_capacity_but_not_for_passing():
    r = result(step(20, 20_000), step(100, 70_000, offered=100_000, p99=900.0))
    assert passing(r).value == 20_000  # type: ignore[union-attr]
    figure = capacity(r)
    assert figure is not None and figure.value == 70_000
    assert not figure.at_least  # delivered under 90% of offered: the server saturated


def test_gaps_anywhere_in_the_run_fail_every_step_for_passing():
    r = result(step(20, 20_000), gaps=1)
    assert passing(r) is None
    assert capacity(r) is not None  # capacity asks only for no loss


def test_a_ramp_that_never_reached_the_limit_gives_a_lower_bound():
    figure = capacity(result(step(20, 20_000), step(50, 50_000)))
    assert figure is not None and figure.at_least and figure.text() == "≥ 50k"


def test_a_saturated_generator_at_the_limit_step_is_flagged():
    r = result(step(20, 20_000), step(50, 30_000, offered=50_000, generator_busy=0.95))
    figure = capacity(r)
    assert figure is not None and figure.generator_limited and "(gen)" in figure.text()


def test_other_work_on_the_machine_at_the_figure_step_is_flagged():
    figure = passing(result(step(20, 20_000, other_busy=0.5), step(50, 50_000, p99=300.0)))
    assert figure is not None and figure.disturbed and figure.text() == "20k (busy)"


def test_no_step_passing_gives_none():
    assert passing(result(step(20, 20_000, p99=120.0))) is None


def test_cpu_per_delivery_is_read_from_the_20_per_second_step():
    r = result(step(10, 10_000, server_us=9.0), step(20, 20_000, server_us=7.5))
    assert cpu_per_delivery(r) == 7.5
    assert cpu_per_delivery(result(step(10, 10_000))) is None


def test_cpu_per_delivery_averages_the_steps_at_the_rate_after_the_warm_up():
    r = result(
        step(20, 20_000, server_us=12.0),
        step(20, 20_000, server_us=9.5),
        step(20, 20_000, server_us=10.5),
    )
    assert cpu_per_delivery(r) == 10.0


def test_a_row_takes_memory_from_its_10k_result_and_falls_back_to_the_1k_one():
    spec = MEASURED_ROWS[0]
    one, ten = result(step(20, 20_000), kb=30.0), result(step(2, 20_000), kb=28.0)
    assert derive_row(spec, {spec.one_k: one, spec.ten_k: ten})["kb_per_connection"] == 28.0
    assert derive_row(spec, {spec.one_k: one})["kb_per_connection"] == 30.0


def test_the_table_quotes_the_issue_rows_and_marks_unmeasured_ones():
    text, data = render({"picows_1k": result(step(20, 20_000), step(50, 40_000, p99=200.0))})
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("| ")]
    assert sum("*(issue's figures)*" in row for row in rows) == len(ISSUE_ROWS)
    picows = next(line for line in lines if line.startswith("| raw picows broadcast (measured"))
    assert picows == "| raw picows broadcast (measured here) | 20k | ≥ 40k / - | 5.0 us | 10.0 |"
    redis = next(line for line in lines if line.startswith("| wsfan, 1 process, Redis"))
    assert redis == "| wsfan, 1 process, Redis broker | - | - / - | - | - |"
    assert data["rows"][0]["passing"]["value"] == 20_000


def test_targets_compare_our_10k_capacity_with_raw_picows_measured_in_the_run():
    ten = step(2, 20_000)
    results = {
        "picows_10k": result(step(2, 20_000), step(5, 50_000), step(10, 60_000, offered=100_000)),
        "capacity_10k": result(ten, step(5, 40_000, offered=50_000)),
        "fanout_memory": result(step(20, 20_000, server_us=8.0)),
        "fanout_redis": result(step(20, 20_000, server_us=9.0)),
    }
    _, data = render(results)
    by_target = {t[0]: t[1:] for t in data["targets"]}
    share = next(v for k, v in by_target.items() if k.startswith("10k subs"))
    assert share == ["67% (40k of 60k)", "no"]
    redis_cost = next(v for k, v in by_target.items() if k.startswith("Redis broker"))
    assert redis_cost == ["+12%", "yes"]
    storm = next(v for k, v in by_target.items() if k.startswith("connection storm"))
    assert storm == ["-", "-"]  # not run


def test_the_encoding_section_pairs_json_and_msgpack_step_by_step_when_present():
    base = {"fanout_redis": result(step(20, 20_000))}
    table, data = render(base)
    assert "msgpack" not in table and "encodings" not in data  # unchanged without them

    def with_latency(s: dict[str, Any], p50: float) -> dict[str, Any]:
        return s | {"latency_ms": {"p50": p50, "p99": p50 * 4}}

    results = {
        "many_channels_zipf": result(
            with_latency(step(200, 5_000, server_us=30.0), 1.0),
            with_latency(step(500, 12_500, server_us=25.0), 2.0),
        ),
        "many_channels_zipf_msgpack": result(with_latency(step(200, 5_000, server_us=20.0), 0.5)),
    }
    rows = encoding_rows(results)
    assert rows == [
        [ENCODING_PAIRS[1][0], "200", "5,000 / 5,000", "1.00 / 0.50", "4.00 / 2.00", "30.0 / 20.0"],
        [ENCODING_PAIRS[1][0], "500", "12,500 / -", "2.00 / -", "8.00 / -", "25.0 / -"],
    ]
    table, data = render(results)
    assert "| 10,000 clients on 5 of 2,000 channels, Zipf 1.0 | 200 |" in table
    assert data["encodings"]["rows"] == rows
