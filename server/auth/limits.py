"""Abuse limits: a per-connection command rate, and connection counts per address.

Pure bookkeeping, no I/O and no clock of its own: callers pass `now` (monotonic
seconds), which keeps the edges exact under test. Counts are per process; with
several workers or nodes a client can hold that many connections on each.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

__all__ = ["AddressRates", "CommandLimiter", "ConnectionCounter", "Verdict"]


class Verdict(Enum):
    ALLOW = "allow"
    REJECT = "reject"  # answer error 111
    DISCONNECT = "disconnect"  # rejected persistently: close with 3013


class CommandLimiter:
    """A token bucket (`rate` commands per second, up to `burst` at once) plus a
    count of rejections: more than `max_rejected` within `window` seconds turns
    the verdict into DISCONNECT. A `rate` of 0 allows everything."""

    __slots__ = ("_burst", "_last", "_max_rejected", "_rate", "_rejected", "_tokens", "_window")

    def __init__(
        self, rate: float, burst: int, max_rejected: int, window: float, now: float
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now
        self._max_rejected = max_rejected
        self._window = window
        # Made on the first rejection: an empty deque is 760 bytes, per connection.
        self._rejected: deque[float] | None = None

    def check(self, now: float) -> Verdict:
        """Take one token for a command arriving at `now`."""
        if self._rate <= 0:
            return Verdict.ALLOW
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Verdict.ALLOW
        rejected = self._rejected
        if rejected is None:
            rejected = self._rejected = deque()
        rejected.append(now)
        while rejected and rejected[0] <= now - self._window:
            rejected.popleft()
        if len(rejected) > self._max_rejected:
            return Verdict.DISCONNECT
        return Verdict.REJECT


class ConnectionCounter:
    """Open connections per key (a remote address), capped at `limit` (0: no cap)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Count one more connection for `key`; False (and nothing counted) at the cap."""
        count = self._counts.get(key, 0)
        if self.limit and count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)


class AddressRates:
    """A token bucket per address: `rate` requests per second, bursts of `burst`
    (0 rate: no limit). An address whose bucket is full again is forgotten (at
    the next request from any address), so the table holds only those that sent
    within the last `burst / rate` seconds (at most `max_addresses`; the least
    recently seen is forgotten past it)."""

    def __init__(self, rate: float, burst: int, max_addresses: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._max = max_addresses
        # address -> (tokens, at), least recently seen first
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, address: str, now: float) -> bool:
        """Take one request for `address`; False when its bucket is empty."""
        if not self.rate:
            return True
        self._forget_full(now)
        tokens, at = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= self._max:
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[address] = (tokens, now)
        return allowed

    def _forget_full(self, now: float) -> None:
        """Forget the least recently seen addresses whose buckets are full by `now`
        (what an address never seen gets). Each is full by its last request plus
        `burst / rate`, so those behind the first still filling go soon after it."""
        buckets = self._buckets
        while buckets:
            address = next(iter(buckets))
            tokens, at = buckets[address]
            if tokens + (now - at) * self.rate < self.burst:
                return
            del buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)
