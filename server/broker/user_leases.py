"""Per-user connection leases: the cluster-wide form of `client.max_connections_per_user`.

Each connection of a user holds a lease on one of the user's `cap` places, in a
store every node shares (Redis: server/broker/redis_user_leases.py). A lease
lasts `ttl` seconds unless renewed; the node renews the leases of its live
connections periodically and releases a connection's lease when it closes. A
node that dies renews nothing, so its connections' places come free within
`ttl`: a killed instance cannot lock its users out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

__all__ = ["UserLeases"]


class UserLeases(ABC):
    """Contract: `acquire` is one atomic step against every node sharing the
    store: expired leases of `user` are dropped, and `connection` gets a lease
    for `ttl` seconds from now only if fewer than `cap` leases remain (a
    connection already holding one just extends it). `renew` extends leases
    (a lease that expired meanwhile is taken again: its connection is alive,
    so it counts, even past the cap). `release` ends one; releasing a lease
    not held does nothing. Failures of the store raise."""

    @abstractmethod
    async def acquire(self, user: str, connection: str, cap: int, ttl: float) -> bool:
        """True when `connection` holds a lease on one of `user`'s places afterwards."""

    @abstractmethod
    async def renew(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """Extend each (user, connection) lease to `ttl` seconds from now (one
        round trip per store where it can)."""

    @abstractmethod
    async def release(self, user: str, connection: str) -> None: ...

    @abstractmethod
    async def count(self, user: str) -> int:
        """Leases of `user` that have not expired (for checks and tests)."""
