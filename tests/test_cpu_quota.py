"""Usable CPUs under a cgroup CPU quota (server/cpu_quota.py), from cgroup files
written under a temporary root in each format the kernel uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wsfan.cpu_quota import cgroup_quota, usable_cpus


def v2(root: Path, text: str) -> Path:
    (root / "cpu.max").write_text(text + "\n")
    return root


def v1(root: Path, quota: str, period: str) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


def test_a_v2_quota_is_read_in_cpus(tmp_path: Path) -> None:
    assert cgroup_quota(v2(tmp_path, "150000 100000")) == 1.5


def test_a_v2_max_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(v2(tmp_path, "max 100000")) is None


def test_a_v1_quota_is_read_in_cpus(tmp_path: Path) -> None:
    assert cgroup_quota(v1(tmp_path, "200000", "100000")) == 2.0


def test_a_v1_quota_of_minus_one_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(v1(tmp_path, "-1", "100000")) is None


def test_no_cgroup_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None


@pytest.mark.parametrize("text", ["garbage", "100000", "0 100000", "abc 100000"])
def test_an_unreadable_quota_means_no_quota(tmp_path: Path, text: str) -> None:
    assert cgroup_quota(v2(tmp_path, text)) is None


def test_a_fractional_quota_rounds_up_to_whole_workers(tmp_path: Path) -> None:
    assert usable_cpus(v2(tmp_path, "50000 100000")) == 1


def test_the_quota_caps_the_cores(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert usable_cpus(v2(tmp_path, f"{100000 * (cores + 4)} 100000")) == cores
    assert usable_cpus(v2(tmp_path, "100000 100000")) == 1
