"""Sharded pub/sub on a Redis Cluster: one subscribe-mode connection per primary.

Each pub/sub channel lives in the slot of its name (the channel's hash tag, see
server/broker/redis_keys.py) and is subscribed with SSUBSCRIBE on the primary
that owns that slot, by the command client's slot map. Each primary has one
`PubSubConnection` (sharded), so subscribes made in one loop turn go out as one
write per shard (one SSUBSCRIBE per slot within it).

Promises:
- `subscribe(channels)` returns once each channel's owner confirmed it, or
  raises `RedisUnavailable` within `timeout` (a slot nobody serves, an owner
  that cannot be reached). A channel that moves meanwhile is followed.
- A channel its node gives up (its slot migrated: the node pushes
  `sunsubscribe`, or answers MOVED) is re-routed: the slot map is refreshed,
  the channel subscribed on its new owner, then `on_reconnect()` is called so
  the node checks positions (publications made in between are in history).
- When the connection to a primary is lost (it died, a replica takes over),
  the slot map is refreshed with backoff until every wanted channel is
  confirmed on a reachable owner; the moved channels are subscribed there,
  then `on_reconnect()`. A connection that comes back to the same node calls
  `on_reconnect()` too, as on a single Redis.
- `permanent` channels (the control stream) are routed like the others and
  stay subscribed for the subscriber's whole life.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from ..logs import Repeated
from .redis_pubsub import ChannelMoved, PubSubConnection, RedisUnavailable

__all__ = ["ShardedSubscriber"]

log = logging.getLogger(__name__)


def _connect(node: ClusterNode) -> Callable[[], AbstractConnection]:
    """New RESP2 connections to `node` (subscribe-mode replies as plain arrays)."""
    kwargs = {**node.connection_kwargs, "protocol": 2}
    return lambda: node.connection_class(**kwargs)


class ShardedSubscriber:
    def __init__(
        self,
        client: RedisCluster,
        on_message: Callable[[bytes, bytes], None],
        on_reconnect: Callable[[], None],
        timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        permanent: Iterable[bytes] = (),
        repeat_interval: float = 10.0,
    ) -> None:
        self._client = client
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._timeout = timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._repeat_interval = repeat_interval
        self._failures = Repeated(log, repeat_interval)
        self._permanent = frozenset(permanent)
        self._wanted: set[bytes] = set()
        self._route: dict[bytes, str] = {}  # wanted channel -> node it is subscribed on
        self.connections: dict[str, PubSubConnection] = {}  # node name ("host:port") -> its
        self._healer: asyncio.Task[None] | None = None
        self._heal_again = False
        self._closing = False
        self.reroutes = 0  # channels moved to another node after it gave them up or died

    # Life cycle --------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe the permanent channels; RedisUnavailable if not done within the
        timeout (they are subscribed once the cluster can be reached)."""
        self._wanted.update(self._permanent)
        try:
            await self._subscribe_routed(list(self._permanent))
        except RedisUnavailable:
            self._heal()
            raise

    async def close(self) -> None:
        self._closing = True
        healer, self._healer = self._healer, None
        if healer is not None:
            healer.cancel()
            await asyncio.gather(healer, return_exceptions=True)
        connections, self.connections = self.connections, {}
        await asyncio.gather(*(c.close() for c in connections.values()))

    # Subscriptions -----------------------------------------------------------

    async def subscribe(self, channels: Iterable[bytes]) -> None:
        new = [c for c in channels if c not in self._wanted]
        if not new:
            return
        self._wanted.update(new)
        try:
            await self._subscribe_routed(new)
        except RedisUnavailable:
            self._wanted.difference_update(new)
            for channel in new:
                name = self._route.pop(channel, None)
                connection = self.connections.get(name) if name else None
                if connection is not None:
                    await connection.unsubscribe([channel])
            raise

    async def unsubscribe(self, channels: Iterable[bytes]) -> None:
        gone = [c for c in channels if c in self._wanted and c not in self._permanent]
        self._wanted.difference_update(gone)
        groups: dict[str, list[bytes]] = {}
        for channel in gone:
            name = self._route.pop(channel, None)
            if name is not None:
                groups.setdefault(name, []).append(channel)
        await asyncio.gather(
            *(
                self.connections[n].unsubscribe(g)
                for n, g in groups.items()
                if n in self.connections
            )
        )

    def _owner(self, channel: bytes) -> ClusterNode | None:
        nodes = self._client.nodes_manager.slots_cache.get(key_slot(channel))
        return nodes[0] if nodes else None

    def _connection(self, node: ClusterNode) -> PubSubConnection:
        name = node.name
        connection = self.connections.get(name)
        if connection is None:
            connection = PubSubConnection(
                None,
                self._on_message,
                self._reconnected,
                timeout=self._timeout,
                reconnect_min=self._reconnect_min,
                reconnect_max=self._reconnect_max,
                on_lost=self._heal,
                repeat_interval=self._repeat_interval,
                sharded=True,
                connect=_connect(node),
                on_moved=lambda channels: self._heal(),
            )
            connection.start()
            self.connections[name] = connection
        return connection

    async def _subscribe_routed(self, channels: list[bytes]) -> None:
        """Subscribe each channel on its owner and wait for the confirmations; a
        channel whose node gives it up meanwhile is routed again."""
        try:
            async with asyncio.timeout(self._timeout):
                while channels:
                    channels = await self._subscribe_once(channels)
        except TimeoutError:
            raise RedisUnavailable("subscribe not confirmed in time") from None

    async def _subscribe_once(self, channels: list[bytes]) -> list[bytes]:
        """One routing pass; returns the channels that moved and must go again."""
        groups: dict[str, list[bytes]] = {}
        nodes: dict[str, ClusterNode] = {}
        if any(self._owner(c) is None for c in channels):
            await self._refresh()  # a slot served since the map was read?
        for channel in channels:
            owner = self._owner(channel)
            if owner is None:
                raise RedisUnavailable(f"slot {key_slot(channel)} is not served by the cluster")
            nodes[owner.name] = owner
            groups.setdefault(owner.name, []).append(channel)
        await self._leave_old_routes(groups)
        names = list(groups)
        results = await asyncio.gather(
            *(self._subscribe_on(nodes[n], groups[n]) for n in names), return_exceptions=True
        )
        again: list[bytes] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ChannelMoved):
                await self._refresh()
                again += [c for c in groups[name] if c in self._wanted]
            elif isinstance(result, BaseException):
                raise RedisUnavailable(f"subscribe on {name} failed: {result}") from None
        return again

    async def _leave_old_routes(self, groups: dict[str, list[bytes]]) -> None:
        """Record the new routes; channels routed elsewhere before leave that node."""
        leaving: dict[str, list[bytes]] = {}
        for name, group in groups.items():
            for channel in group:
                old = self._route.get(channel)
                if old is not None and old != name:
                    leaving.setdefault(old, []).append(channel)
                self._route[channel] = name
        await asyncio.gather(
            *(
                self.connections[n].unsubscribe(g)
                for n, g in leaving.items()
                if n in self.connections
            )
        )

    async def _subscribe_on(self, node: ClusterNode, channels: list[bytes]) -> None:
        connection = self._connection(node)
        await connection.subscribe(channels)
        await connection.wait_subscribed(channels)

    # Healing -----------------------------------------------------------------

    def _reconnected(self) -> None:
        """A node's connection came back (to the same node): check positions."""
        self._heal()  # its slots may have moved meanwhile
        self._on_reconnect()

    def _heal(self) -> None:
        """Make sure every wanted channel is confirmed on its owner (soon)."""
        if self._closing:
            return
        if self._healer is not None and not self._healer.done():
            self._heal_again = True
            return
        self._healer = asyncio.get_running_loop().create_task(self._heal_loop())

    async def _refresh(self) -> None:
        """Read the slot map again (shared with the command client)."""
        await self._client.nodes_manager.initialize()

    def _misplaced(self) -> list[bytes]:
        """Wanted channels not (or not confirmed) on their slot's owner now."""
        found = []
        for channel in self._wanted:
            owner = self._owner(channel)
            name = self._route.get(channel)
            connection = self.connections.get(name) if name else None
            if (
                owner is None
                or owner.name != name
                or connection is None
                or not connection.connected
                or not connection.confirmed(channel)
            ):
                found.append(channel)
        return found

    async def _heal_loop(self) -> None:
        delay = self._reconnect_min
        moved_any = False
        while not self._closing:
            self._heal_again = False
            try:
                await self._refresh()
                misplaced = self._misplaced()
                moving = [c for c in misplaced if self._moves(c)]
                if moving:
                    await self._subscribe_routed(moving)
                    moved_any = True
                    self.reroutes += len(moving)
                    log.info(
                        "redis sharded pub/sub: %d channels moved to their new owner", len(moving)
                    )
                await self._close_unused()
                healthy = not self._misplaced()
            except (RedisError, RedisClusterException, OSError) as exc:
                self._failures("redis cluster: re-routing subscriptions failed: %r", exc)
                healthy = False
            if healthy and not self._heal_again:
                if moved_any:
                    self._on_reconnect()
                if self._failures.failing:
                    self._failures.recovered("redis cluster: subscriptions re-routed")
                return
            if not self._heal_again:
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._reconnect_max)

    def _moves(self, channel: bytes) -> bool:
        """Whether to subscribe the channel (again) now: its owner is another node
        than the one it is routed to, or that node gave it up. A channel routed to
        an owner that cannot be reached yet waits for that connection instead."""
        owner = self._owner(channel)
        if owner is None:
            return False
        if owner.name != self._route.get(channel):
            return True
        connection = self.connections.get(owner.name)
        return connection is None or (connection.connected and not connection.wants(channel))

    async def _close_unused(self) -> None:
        """Drop connections no wanted channel is routed to (a dead or demoted node's)."""
        used = set(self._route.values())
        for name in [n for n in self.connections if n not in used]:
            await self.connections.pop(name).close()
