"""Channel leases: a named lease per channel, held by one token at a time until
it expires or its holder releases it. Channel sources (server/app/sources.py)
hold one per channel they run, and publish fenced by it (`Fence`): the broker
refuses a publish whose token no longer holds the lease, in the same atomic
step as the publish.

Each broker keeps the leases where it keeps its channels: the memory broker
in this process (`MemoryLeases`, its `leases` attribute), Redis in keys that
share the channel's hash tag (server/broker/redis_leases.py).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from .base import Fence

__all__ = ["Leases", "MemoryLeases"]


class Leases(ABC):
    """Contract: `acquire` takes the lease when nobody holds it (or it expired)
    and extends it when `token` already holds it, for `ttl` seconds from now;
    it returns whether `token` holds it afterwards. `release` ends it only if
    `token` holds it. Both are atomic against every other caller sharing the
    backend, and against fenced publishes."""

    @abstractmethod
    async def acquire(self, channel: str, name: str, token: str, ttl: float) -> bool: ...

    @abstractmethod
    async def release(self, channel: str, name: str, token: str) -> None: ...


class MemoryLeases(Leases):
    """Leases in this process (the memory broker's: it checks fences against them)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[str, float]] = {}  # -> (token, expires at)

    def holder(self, channel: str, name: str) -> str | None:
        """The token holding the lease now (None: nobody)."""
        held = self._held.get((channel, name))
        if held is None:
            return None
        if held[1] <= self._clock():
            del self._held[(channel, name)]
            return None
        return held[0]

    def admits(self, channel: str, fence: Fence) -> bool:
        return self.holder(channel, fence.name) == fence.token

    async def acquire(self, channel: str, name: str, token: str, ttl: float) -> bool:
        if self.holder(channel, name) not in (None, token):
            return False
        self._held[(channel, name)] = (token, self._clock() + ttl)
        return True

    async def release(self, channel: str, name: str, token: str) -> None:
        if self.holder(channel, name) == token:
            del self._held[(channel, name)]
