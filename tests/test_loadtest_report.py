"""The load tester's charts: inline SVG, escaped, honest about missing data."""

from __future__ import annotations

from server.loadtest.report import svg_chart


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
