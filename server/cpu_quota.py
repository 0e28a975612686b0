"""The CPUs this process may use: `os.cpu_count()` capped by the scheduler
affinity and by a cgroup CPU quota (a container's `--cpus`, a Kubernetes CPU
limit), which `os.cpu_count()` ignores.

`usable_cpus(root)` reads cgroup v2 (`<root>/cpu.max`: "<quota> <period>" or
"max <period>") or, failing that, cgroup v1 (`<root>/cpu/cpu.cfs_quota_us` and
`cpu.cfs_period_us`, -1 meaning none); a quota of 1.5 CPUs gives 2 (rounded up,
at least 1). Missing or unreadable files mean no quota.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_quota", "usable_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in CPUs (1.5 for 150 ms per 100 ms), or None."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota == "max" or not period:
            return None
        return _ratio(quota, period)
    v1_quota = _read(root / "cpu" / "cpu.cfs_quota_us")
    v1_period = _read(root / "cpu" / "cpu.cfs_period_us")
    if v1_quota is None or v1_period is None:
        return None
    return _ratio(v1_quota, v1_period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """The CPUs worth one worker each: cores, affinity and cgroup quota considered."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    cpus = cpus or os.cpu_count() or 1
    quota = cgroup_quota(root)
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else cpus
