"""The load tester's histogram and per-second recorder."""

from __future__ import annotations

import random

import pytest
from wsfan.loadtest.metrics import (
    Histogram,
    Recorder,
    bucket_index,
    bucket_upper,
    cpu_seconds,
    cpu_times,
)

NS = 1_000_000_000


def test_small_values_have_exact_buckets():
    h = Histogram()
    for v in range(1, 11):
        h.record(v)
    assert [h.percentile(q) for q in (0.1, 0.5, 1.0)] == [1, 5, 10]


def test_percentiles_are_within_one_sixteenth_above_the_true_value():
    rng = random.Random(7)
    values = sorted(int(rng.lognormvariate(9, 2)) for _ in range(20_000))
    h = Histogram()
    for v in values:
        h.record(v)
    for q in (0.5, 0.9, 0.99, 0.999):
        true = values[int(q * len(values)) - 1]
        assert true <= h.percentile(q) <= true * (1 + 1 / 16) + 1


def test_every_value_lies_in_its_bucket():
    for v in [*range(0, 5000), 2**20 + 12345, 2**40 + 1]:
        i = bucket_index(v)
        assert (bucket_upper(i - 1) if i else -1) < v <= bucket_upper(i)


def test_the_maximum_caps_the_top_percentile():
    h = Histogram()
    h.record(1000)
    assert h.percentile(0.999) == 1000 == h.max


def test_an_empty_histogram_has_no_percentiles():
    assert Histogram().percentile(0.5) is None
    assert Histogram().summary()["p99"] is None


def test_merging_equals_recording_everything_in_one():
    a, b, both = Histogram(), Histogram(), Histogram()
    for v in range(0, 10_000, 7):
        (a if v % 2 else b).record(v)
        both.record(v)
    a.merge(b)
    assert a.to_dict() == both.to_dict()


def test_sparse_form_round_trips():
    h = Histogram()
    for v in (3, 300, 30_000, 3_000_000):
        h.record(v)
    assert Histogram.from_dict(h.to_dict()).to_dict() == h.to_dict()


def test_summary_is_in_milliseconds():
    h = Histogram()
    h.record(2500)
    assert h.summary()["max"] == 2.5


def test_recorder_splits_by_second_and_step_and_hands_each_second_over_once():
    r = Recorder(t0=10 * NS)
    r.record(10 * NS + 1, 0, 5)
    r.record(10 * NS + 2, 1, 6)
    r.record(11 * NS + 5, 1, 7)
    closed = r.take_closed(11 * NS + 6)
    assert {s: {k: h.count for k, h in steps.items()} for s, steps in closed.items()} == {
        0: {0: 1, 1: 1}
    }
    assert r.take_closed(11 * NS + 7) == {}
    rest = r.take_all()
    assert list(rest) == [1] and rest[1][1].count == 1


def test_cpu_times_split_what_cpu_seconds_sums():
    user, system = cpu_times()
    assert user >= 0 and system >= 0
    assert cpu_seconds() == pytest.approx(user + system, abs=0.05)
    assert cpu_times(2**22 + 12345) is None  # no such process
