"""Counting without slowing the count: a log-linear histogram, a per-second timeline,
and CPU time read from /proc.

The histogram records non-negative integers (microseconds here) into buckets
exact below 32 and 1/16 of an octave wide above (percentiles within 6.25%);
its sparse form is a JSON-friendly `{index: count}` that merges by addition.
Percentiles report a bucket's upper edge, capped at the exact maximum seen, so
"p99 = 12.5 ms" reads "99% of deliveries took at most 12.5 ms".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "PERCENTILES",
    "Histogram",
    "Recorder",
    "cpu_seconds",
    "cpu_times",
    "merge_counts",
]

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
)

_SUB_BITS = 4
_SUB = 1 << _SUB_BITS  # 16 sub-buckets per octave
_EXACT = 2 * _SUB  # values below this have a bucket each
_BUCKETS = _EXACT + 48 * _SUB  # enough for 2**52 us (over a century)


def bucket_index(value: int) -> int:
    if value < _EXACT:
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS - 1
    return _EXACT + (shift - 1) * _SUB + ((value >> shift) - _SUB)


def bucket_upper(index: int) -> int:
    """The largest value that falls into bucket `index`."""
    if index < _EXACT:
        return index
    shift, sub = divmod(index - _EXACT, _SUB)
    shift += 1
    return ((sub + _SUB + 1) << shift) - 1


class Histogram:
    """Counts of values by bucket, plus exact count, sum, min and max."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int) -> None:
        """Add one value (negative values count as 0; callers count those apart)."""
        if value < 0:
            value = 0
        if value < _EXACT:
            self.counts[value] += 1
        else:
            shift = value.bit_length() - _SUB_BITS - 1
            index = _EXACT + (shift - 1) * _SUB + ((value >> shift) - _SUB)
            self.counts[min(index, _BUCKETS - 1)] += 1
        if not self.count or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        if not other.count:
            return
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.min = other.min if not self.count else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, q: float) -> int | None:
        """The value at or below which a fraction `q` of the values lie; None when empty."""
        if not self.count:
            return None
        rank = max(q * self.count, 1)
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(bucket_upper(i), self.max)
        return self.max

    def summary(self, scale: float = 1e-3, digits: int = 3) -> dict[str, float | None]:
        """p50 .. p99.9, max and mean, each divided by 1/scale (us -> ms by default)."""
        out: dict[str, float | None] = {}
        for name, q in PERCENTILES:
            value = self.percentile(q)
            out[name] = None if value is None else round(value * scale, digits)
        out["max"] = round(self.max * scale, digits) if self.count else None
        out["mean"] = round(self.total / self.count * scale, digits) if self.count else None
        return out

    def to_dict(self) -> dict[str, Any]:
        """Sparse, JSON-friendly; `from_dict` restores it exactly."""
        return {
            "n": self.count,
            "sum": self.total,
            "min": self.min,
            "max": self.max,
            "b": {str(i): c for i, c in enumerate(self.counts) if c},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Histogram:
        h = cls()
        h.count, h.total, h.min, h.max = int(d["n"]), int(d["sum"]), int(d["min"]), int(d["max"])
        for i, c in d["b"].items():
            h.counts[int(i)] = int(c)
        return h

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out


_NS = 1_000_000_000


class Recorder:
    """Latencies by second since `t0` (ns) and by ramp step: one histogram each.

    One `record` per delivery, so per-second charts and per-step tables come
    from the same counts. Seconds close as time moves on; `take_closed()` hands
    closed ones over once (workers stream them to the coordinator), `take_all()`
    the rest. A straggler stamped in a second already handed over joins the
    current one: a second is never reopened.
    """

    __slots__ = ("_closed", "current", "last", "second", "second_end", "t0")

    def __init__(self, t0: int = 0) -> None:
        self.t0 = t0
        self.second = 0
        self.second_end = t0 + _NS
        self.current: dict[int, Histogram] = {}
        self._closed: dict[int, dict[int, Histogram]] = {}
        self.last: dict[int, int] = {}  # step -> time (ns) of its latest delivery

    def record(self, now_ns: int, step: int, value: int) -> None:
        if now_ns >= self.second_end:
            self._rotate(now_ns)
        h = self.current.get(step)
        if h is None:
            h = self.current[step] = Histogram()
        h.record(value)
        self.last[step] = now_ns

    def last_seconds(self) -> dict[str, float]:
        """Per step, when its latest delivery arrived, in seconds since t0."""
        return {str(step): (ns - self.t0) / 1e9 for step, ns in self.last.items()}

    def _rotate(self, now_ns: int) -> None:
        if self.current:
            self._closed[self.second] = self.current
            self.current = {}
        self.second = (now_ns - self.t0) // _NS
        self.second_end = self.t0 + (self.second + 1) * _NS

    def take_closed(self, now_ns: int) -> dict[int, dict[int, Histogram]]:
        if now_ns >= self.second_end:
            self._rotate(now_ns)
        closed, self._closed = self._closed, {}
        return closed

    def take_all(self) -> dict[int, dict[int, Histogram]]:
        closed, self._closed = self._closed, {}
        if self.current:
            closed[self.second] = self.current
            self.current = {}
        return closed

    @staticmethod
    def to_wire(seconds: dict[int, dict[int, Histogram]]) -> dict[str, dict[str, Any]]:
        return {
            str(second): {str(step): h.to_dict() for step, h in steps.items()}
            for second, steps in seconds.items()
        }


def merge_counts(target: dict[str, int], source: Mapping[str, int]) -> dict[str, int]:
    for key, n in source.items():
        target[key] = target.get(key, 0) + int(n)
    return target


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of a process (this one by default) from /proc;
    None when the process is gone or /proc is unavailable."""
    times = cpu_times(pid)
    return None if times is None else times[0] + times[1]


def cpu_times(pid: int | None = None) -> tuple[float, float] | None:
    """User and system CPU seconds of a process (this one by default), apart."""
    if pid is None or pid == os.getpid():
        t = os.times()
        return t.user, t.system
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK
