"""The load tester's charts: inline SVG, escaped, honest about missing data."""

from __future__ import annotations

import re

import pytest
from wsfan.loadtest.options import Options
from wsfan.loadtest.report import format_table, nice_ticks, render_html, svg_chart
from wsfan.loadtest.results import CpuSample, build


def test_a_missing_value_breaks_the_line_instead_of_drawing_zero():
    svg = svg_chart("latency", [("p99", [(0, 1.0), (1, 2.0), (2, None), (3, 4.0), (4, 5.0)])])
    assert svg.count("<polyline") == 2


def test_a_lone_point_is_drawn_as_a_dot():
    svg = svg_chart("latency", [("p99", [(0, None), (1, 3.0), (2, None)])])
    assert svg.count("<circle") == 1 and "<polyline" not in svg


def test_labels_are_escaped():
    svg = svg_chart("<b>&", [("a<b", [(0, 1.0), (1, 2.0)])])
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg and "a&lt;b" in svg


def test_a_chart_without_data_says_so():
    assert "no data" in svg_chart("empty", [("x", [])])


def tick_labels(svg: str, axis: str) -> list[str]:
    return re.findall(rf'class="tick-{axis}">([^<]*)<', svg)


def test_axis_ticks_are_round_numbers_whatever_the_data_range():
    # CPU samples fall every quarter second from an odd start: 0.271, 0.521, ... 13.271
    points = [(0.271 + i * 0.25, 3.0 + (i % 7) * 0.9) for i in range(53)]
    svg = svg_chart("CPU busy", [("generator", points)])
    assert tick_labels(svg, "x") == ["2", "4", "6", "8", "10", "12"]
    assert tick_labels(svg, "y") == ["0", "2", "4", "6", "8", "10"]


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 7, [0, 1, 2, 3, 4, 5, 6, 7]),
        (3.271, 6.328, [3.5, 4.0, 4.5, 5.0, 5.5, 6.0]),
        (0.271, 13.271, [2, 4, 6, 8, 10, 12]),
        (0, 2400, [0, 500, 1000, 1500, 2000]),
    ],
)
def test_nice_ticks_step_by_one_two_or_five_times_a_power_of_ten(lo, hi, ticks):
    assert nice_ticks(lo, hi) == ticks


def a_result(server_pids: tuple[int, ...]) -> dict:
    """A load test's result, built as the coordinator builds it, with CPU samples."""
    samples = [
        CpuSample(t=i / 4, server={p: i * 0.1 for p in server_pids}, generator=i * 0.2)
        for i in range(9)
    ]
    processes = [{"pid": p, "role": "server", "name": "server", "via": p} for p in server_pids]
    return build(
        Options(server_pids=server_pids, rates=(0.0,)),
        subscribers=[],
        readies=[],
        publisher=None,
        timeline={},
        step_latency={},
        published_timeline={},
        samples=[{"t": 0.5, "subscribed": 3}, {"t": 1.5, "subscribed": 7}],
        connect_seconds=1.0,
        publish_seconds=2.0,
        generator_cpu_connect=0.1,
        generator_cpu_run={"subscribers": 0.5},
        server_cpu_run={p: 0.8 for p in server_pids} if server_pids else None,
        cpu_samples=samples,
        server_processes=processes,
    )


def cpu_chart(page: str) -> str:
    return page[page.index('aria-label="CPU busy') :].split("</svg>", 1)[0]


def test_without_a_server_pid_the_cpu_chart_has_no_server_line_and_says_why():
    page = render_html(a_result(()))
    legend = re.findall(r"<rect [^>]*/><text [^>]*>([^<]*)</text>", cpu_chart(page))
    assert legend == ["generator", "other"]
    assert "not measured (no --server-pid given)" in page
    assert "server: CPU and memory not measured" in format_table(a_result(()))


def test_with_a_server_pid_the_cpu_chart_draws_the_server_and_names_its_process():
    page = render_html(a_result((4242,)))
    legend = re.findall(r"<rect [^>]*/><text [^>]*>([^<]*)</text>", cpu_chart(page))
    assert legend == ["server", "generator", "other"]
    assert "4242 server" in page and "not measured" not in page
