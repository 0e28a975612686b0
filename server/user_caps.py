"""`client.max_connections_per_user`: whether a user's next connection fits.

Scope "process" counts this node's connections of the user. Scope "cluster"
takes a lease on one of the user's places in the store every node shares
(`PresenceManager.user_leases`; none with the memory broker, whose process is
the cluster), renewed with presence (`renew`) and given back when the
connection ends (`release`). When that store cannot be reached, `admit` fails
closed: ReplyError(100), so the connect is answered with the temporary error
and the SDK retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .broker.base import PresenceManager
from .broker.user_leases import UserLeases
from .config import Settings
from .logs import Repeated, temporary_failure

__all__ = ["UserCaps"]

log = logging.getLogger(__name__)


class UserCaps:
    """The cap per user of one node. `count(user)`: this node's connections of
    `user`; broker failures go to `failures` (rate-bounded); `spawn` runs the
    background releases."""

    def __init__(
        self,
        settings: Settings,
        presence: PresenceManager,
        count: Callable[[str], int],
        failures: Repeated,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        client = settings.client
        self._cap = client.max_connections_per_user
        cluster = bool(self._cap) and client.max_connections_per_user_scope == "cluster"
        self._leases = presence.user_leases() if cluster else None
        if cluster and self._leases is None and settings.broker.type != "memory":
            log.warning(
                "client.max_connections_per_user_scope 'cluster': this presence keeps "
                "no shared leases, so the cap counts this process's connections only"
            )
        self._ttl = settings.redis.presence_ttl
        self._count = count
        self._failures = failures
        self._spawn = spawn
        self._leased: dict[str, str] = {}  # client id -> user

    @property
    def leasing(self) -> bool:
        """Whether leases are taken (and must be renewed with presence)."""
        return self._leases is not None

    async def admit(self, user: str, client_id: str) -> bool:
        """Whether connection `client_id` of `user` fits the cap (0: always); in
        scope "cluster" it then holds a lease until `release`."""
        if not self._cap:
            return True
        leases = self._leases
        if leases is None:
            return self._count(user) < self._cap
        with temporary_failure(self._failures, "leasing a connection place of", user):
            held = await leases.acquire(user, client_id, self._cap, self._ttl)
        if held:
            self._leased[client_id] = user
        return held

    def release(self, client_id: str) -> None:
        """Give back the lease `admit` took for `client_id`, if any (in the
        background; a failure is logged and the lease expires by itself)."""
        user = self._leased.pop(client_id, None)
        if user is not None and self._leases is not None:
            self._spawn(self._release(self._leases, user, client_id))

    async def renew(self) -> None:
        """Renew every lease held, in one `UserLeases.renew`; a failure is logged
        (the next pass tries again). A lease released meanwhile is released again."""
        leases = self._leases
        if leases is None or not self._leased:
            return
        held = [(user, client_id) for client_id, user in self._leased.items()]
        try:
            await leases.renew(held, self._ttl)
        except Exception as exc:
            self._failures("renewing user connection leases failed: %s", exc)
        for user, client_id in held:  # released while the renewal was on its way
            if client_id not in self._leased:
                self._spawn(self._release(leases, user, client_id))

    async def _release(self, leases: UserLeases, user: str, client_id: str) -> None:
        try:
            await leases.release(user, client_id)
        except Exception as exc:
            self._failures("releasing a connection place of %r failed: %s", user, exc)
