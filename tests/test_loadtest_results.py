"""CPU per ramp step from the coordinator's samples (server/loadtest/results.py)."""

from __future__ import annotations

import pytest
from wsfan.loadtest.results import CpuSample, cpu_at, step_windows


def test_cpu_between_samples_is_interpolated_linearly():
    assert cpu_at([0.0, 1.0, 2.0], [0.0, 1.0, 3.0], 1.5) == pytest.approx(2.0)


def test_cpu_outside_the_samples_is_the_nearest_end():
    times, values = [1.0, 2.0], [5.0, 6.0]
    assert cpu_at(times, values, 0.0) == 5.0 and cpu_at(times, values, 9.0) == 6.0
    assert cpu_at([], [], 1.0) == 0.0


def test_each_window_gets_the_cpu_spent_inside_it():
    samples = [
        CpuSample(t=0.0, server={1: 0.0, 2: 0.0}, generator=0.0, machine=0.0),
        CpuSample(t=1.0, server={1: 0.5, 2: 0.1}, generator=0.2, machine=1.0),
        CpuSample(t=2.0, server={1: 1.5, 2: 0.1}, generator=0.4, machine=2.0),
    ]
    first, second = step_windows(samples, [(0.0, 1.0), (1.0, 2.0)], cores=2)
    assert first["server_cpu_seconds"] == pytest.approx(0.6)
    assert first["generator_busy"] == pytest.approx(0.1)  # 0.2 s over 1 s of 2 cores
    assert first["other_busy"] == pytest.approx(0.2)  # 1.0 busy - 0.6 server - 0.2 generator
    assert second["server_busy"] == pytest.approx(1.0)
    assert second["other_busy"] == 0.0  # never negative


def test_without_machine_figures_other_work_is_unknown():
    samples = [CpuSample(t=0.0, server={}, generator=0.0), CpuSample(1.0, {}, 0.5)]
    (window,) = step_windows(samples, [(0.0, 1.0)], cores=1)
    assert window["other_busy"] is None and window["generator_busy"] == pytest.approx(0.5)


def test_embedded_servers_cpu_is_counted_apart_from_the_servers():
    samples = [
        CpuSample(t=0.0, server={1: 0.0, 9: 0.0}, generator=0.0, machine=0.0),
        CpuSample(t=1.0, server={1: 0.5, 9: 0.25}, generator=0.0, machine=1.0),
    ]
    (window,) = step_windows(samples, [(0.0, 1.0)], cores=1, embedded={9})
    assert window["server_cpu_seconds"] == pytest.approx(0.5)
    assert window["embedded_cpu_seconds"] == pytest.approx(0.25)
    assert window["other_busy"] == pytest.approx(0.25)  # 1.0 - 0.5 - 0.25
