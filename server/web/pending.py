"""Accepted connections that have not upgraded to WebSocket (yet), under one cap.

A connection is pending from its accept until it upgrades or closes: while its
first request head arrives, while Tornado serves it an HTTP request, and while
it sits idle between keep-alive requests. `server.max_pending_connections`
caps them, so half-sent requests cannot hold every file descriptor.

When the cap is reached, the connection that has waited longest for a request
head is closed to make room for the newcomer. A client that means to talk sends
its head within a round trip, so under a slowloris the one dropped is almost
always the attacker's, and normal clients keep getting in. A connection busy
with a request (its head arrived) is never dropped; when every pending one is
busy, the newcomer is refused instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["PendingConnections"]


class PendingConnections:
    """Counts pending connections by key (any hashable, e.g. the socket).

    `add` counts one (waiting for its head), `busy` marks that its head arrived,
    `wait` that it waits for a head (again), `remove` that it upgraded or closed.
    `close` callbacks must end with `remove` of their key.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0  # waiting connections closed to make room
        self._counted: set[Hashable] = set()
        self._waiting: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()

    @property
    def count(self) -> int:
        return len(self._counted)

    @property
    def waiting(self) -> int:
        """How many wait for a request head (and could be dropped)."""
        return len(self._waiting)

    def longest_waiting(self) -> Hashable | None:
        """The connection that has waited longest for a request head, if any."""
        return next(iter(self._waiting), None)

    def drop(self, key: Hashable) -> None:
        """Close `key`, a waiting connection, to make room."""
        close = self._waiting.pop(key)
        self.dropped += 1
        close()
        self.remove(key)  # in case `close` did not

    def drop_longest_waiting(self) -> bool:
        """Close the connection that has waited longest for a head; False if none waits."""
        key = self.longest_waiting()
        if key is None:
            return False
        self.drop(key)
        return True

    def add(self, key: Hashable, close: Callable[[], None]) -> None:
        """A new connection, waiting for its first request head."""
        self._counted.add(key)
        self._waiting[key] = close

    def wait(self, key: Hashable, close: Callable[[], None]) -> None:
        """`key` waits for a request head (again), closed by `close` if dropped; one
        already waiting keeps its place in line."""
        if key in self._counted:
            self._waiting[key] = close  # an OrderedDict keeps an existing key's place

    def busy(self, key: Hashable) -> None:
        """`key`'s request head arrived: it is being served, not to be dropped."""
        self._waiting.pop(key, None)

    def remove(self, key: Hashable) -> None:
        """`key` upgraded or closed: no longer counted. Idempotent."""
        self._counted.discard(key)
        self._waiting.pop(key, None)
