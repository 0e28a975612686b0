"""Broker on a Redis Cluster (`[redis] cluster = true`, `redis.url` naming any node).

Everything a channel has (meta, stream, presence, leases, occupancy, its pub/sub
channel) carries the channel's hash tag (server/broker/redis_keys.py), so it all
lives in one slot, on one shard, and the per-channel Lua scripts of the single
Redis broker run unchanged there; the PUBLISH script calls `spublish` (sharded
pub/sub: a publication goes to its shard's nodes only, not to the whole cluster).
Commands go through redis-py's RedisCluster, which follows MOVED and ASK and
reads the slot map again after a failover. Subscriptions are sharded too, one
pub/sub connection per primary (server/broker/redis_cluster_pubsub.py).

The control stream (node announcements, surveys, API commands for other nodes,
emulation forwarding) is the shard channel `<prefix>.control`: it lives on the
one shard that owns its slot, and while that shard is down nodes do not hear
each other (channels on the other shards keep working). The occupancy index
`<prefix>.occ.due` is one key too, on one shard. `log_lagging` scans every
primary.

Faults: a channel whose slot is not served, or whose shard is down, fails at
once (ReplyError 100 for the client) while the other shards keep working; `ping`
fails only when no shard answers; `shard_states` tells each primary's state.
Unlike the single Redis broker there is no restart watch: a primary that lost
its data is replaced by its replica, which has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.retry import Retry

from ..protocol import ClientInfo, StreamPosition
from .base import (
    BrokerEventHandler,
    Fence,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
)
from .leases import Leases
from .occupancy import OccupancyStore
from .redis import RedisBroker
from .redis_cluster_check import SLOTS, check_cluster
from .redis_cluster_pubsub import ShardedSubscriber
from .redis_leases import RedisLeases
from .redis_occupancy import RedisOccupancy
from .redis_pubsub import RedisUnavailable
from .redis_scripts import NEW_EPOCH

__all__ = ["RedisClusterBroker", "SlotNotServed", "cluster_client"]

log = logging.getLogger(__name__)


class SlotNotServed(RedisError):
    """The channel's slot is not served by any node (as the slot map last read says)."""


class ShardScript(AsyncScript):
    """A Lua script run on the node owning its keys' slot. redis-py's own loads a
    script the node lacks with SCRIPT LOAD on every primary, which fails while any
    shard is down (and a promoted replica starts without the scripts): this one
    sends it with EVAL to that one node instead (which caches it there)."""

    async def __call__(
        self,
        keys: Iterable[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        names, values = list(keys or ()), list(args or ())
        target = client if client is not None else self.registered_client
        try:
            return await target.evalsha(self.sha, len(names), *names, *values)
        except NoScriptError:
            return await target.eval(cast(str, self.script), len(names), *names, *values)


_HOLDING: ContextVar[bool] = ContextVar("cluster_command_held", default=False)
"""Set inside a command or pipeline that holds a place: what it runs inside
(retries, one command per node) does not wait for another one."""


class ShardedRedisCluster(RedisCluster):
    """RedisCluster whose registered scripts are `ShardScript`s and whose commands
    wait for one of `max_connections` places (up to `socket_timeout`, then a
    ConnectionError), as a blocking pool does: redis-py's cluster nodes refuse a
    command at once (MaxConnectionsError) when their connections are all busy,
    which would fail a burst of subscribes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._places = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))
        self._place_wait = float(kwargs.get("socket_timeout") or 5.0)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold one place for the block (at once when this task holds one already)."""
        if _HOLDING.get():
            yield
            return
        try:
            async with asyncio.timeout(self._place_wait):
                await self._places.acquire()
        except TimeoutError:
            raise RedisConnectionError(
                f"no free Redis Cluster connection within {self._place_wait:g}s"
            ) from None
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self._places.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.held():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        super().pipeline(transaction, shard_hint)  # its checks
        return _HeldPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py does

    def register_script(self, script: Any) -> AsyncScript:  # type: ignore[override]
        return ShardScript(self, script)


class _HeldPipeline(ClusterPipeline):
    """A pipeline that holds one place of its client while it executes."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, ShardedRedisCluster)
        async with client.held():
            return await super().execute(raise_on_error, allow_redirections)


def cluster_client(
    url: str, connect_timeout: float = 2.0, command_timeout: float = 5.0, max_connections: int = 32
) -> RedisCluster:
    """A cluster client that tolerates partial slot coverage, retries a command once
    after a connection error (reading the slot map again), runs at most
    `max_connections` commands at once (more wait, up to `command_timeout`), and
    runs scripts on their slot's node alone."""
    return ShardedRedisCluster.from_url(
        url,
        require_full_coverage=False,
        retry=Retry(NoBackoff(), 1),
        max_connections=max_connections,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
    )


class RedisClusterBroker(RedisBroker):
    """RedisBroker's channels on a cluster; see the module docstring."""

    _publish_command = "spublish"

    def __init__(
        self,
        client: RedisCluster,
        prefix: str = "wsfan",
        timeout: float = 5.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        repeat_interval: float = 10.0,
        url: str = "",
    ) -> None:
        # RedisBroker's methods use commands RedisCluster answers alike (scripts,
        # DEL, SCAN over every primary, pipelines): it stands in for a Redis.
        self._setup(cast(Redis, client), prefix)
        self.cluster = client
        self.timeout = timeout
        self._url = url
        self._refresh_interval = reconnect_max
        self._new_epoch = client.register_script(NEW_EPOCH)
        self.subscriber = ShardedSubscriber(
            client,
            self._on_message,
            self._on_reconnect,
            timeout=timeout,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            permanent=[self._control],
            repeat_interval=repeat_interval,
        )
        self._watch: asyncio.Task[None] | None = None

    # Life cycle --------------------------------------------------------------

    async def start(self, handler: BrokerEventHandler) -> None:
        """ClusterConfigError when `url` is not a cluster node or no slot is served;
        otherwise starts (even while the cluster cannot be reached, joining it
        once it can), waiting up to the timeout for the control stream."""
        self._handler = handler
        if self._url:
            await check_cluster(self._url, self.timeout)
        try:
            await self.cluster.initialize()
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("redis cluster not reachable yet: %s", exc)
        self._watch = asyncio.get_running_loop().create_task(self._watch_coverage())
        try:
            await self.subscriber.start()
        except RedisUnavailable as exc:
            log.warning("control stream not subscribed yet: %s", exc)
            return
        await self._warn_if_evicting()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.subscriber.close()
        await self.cluster.aclose()
        # aclose() does nothing while the client means to read the slot map again
        # (after a connection error): close its nodes' connections regardless.
        manager = self.cluster.nodes_manager
        await manager.aclose()
        await manager.aclose("startup_nodes")

    async def _watch_coverage(self) -> None:
        """While some slots are not served (or the cluster was not reachable), read
        the slot map again now and then, so that commands find them once served
        (redis-py reads it again only after connection errors and redirects)."""
        while True:
            await asyncio.sleep(self._refresh_interval)
            manager = self.cluster.nodes_manager
            if len(manager.slots_cache) < SLOTS:
                try:
                    await manager.initialize()
                except (RedisError, RedisClusterException, OSError) as exc:
                    log.debug("slot map refresh failed: %r", exc)

    def reconnect_checked(self) -> None:
        return None

    # Shards ------------------------------------------------------------------

    async def shard_states(self) -> dict[str, str]:
        """Each primary ("host:port") -> "ok" or "unavailable: <reason>", by PING
        (bounded by the command timeout)."""
        try:
            await self.cluster.initialize()
        except (RedisError, RedisClusterException, OSError) as exc:
            return {self._url or "cluster": f"unavailable: {exc}"}
        primaries = self.cluster.get_primaries()
        answers = await asyncio.gather(
            *(self._ping_node(node.name) for node in primaries), return_exceptions=True
        )
        return {
            node.name: "ok" if answer is None else f"unavailable: {answer}"
            for node, answer in zip(primaries, answers, strict=True)
        }

    async def _ping_node(self, name: str) -> None:
        node = self.cluster.get_node(node_name=name)
        async with asyncio.timeout(self.timeout):
            await self.cluster.execute_command("PING", target_nodes=node)

    async def ping(self) -> None:
        """Returns while any shard answers; raises when none does."""
        states = await self.shard_states()
        if not any(state == "ok" for state in states.values()):
            raise RedisUnavailable(f"no Redis Cluster shard answers: {states}")

    def channel_stores(self) -> tuple[OccupancyStore, Leases]:
        client = cast(Redis, self.cluster)
        return RedisOccupancy(client, self.prefix), RedisLeases(client, self.prefix)

    # Delivery ----------------------------------------------------------------

    async def subscribe(self, channels: Sequence[str]) -> None:
        await self.subscriber.subscribe([self._pubsub_channel(c) for c in channels])

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        await self.subscriber.unsubscribe([self._pubsub_channel(c) for c in channels])

    async def _send(self, pubsub_channel: bytes, message: bytes) -> None:
        await self.cluster.spublish(pubsub_channel, message)

    # Channels in slots nobody serves -------------------------------------------
    # redis-py 8.1 answers a command for such a slot with a bare KeyError (its slot
    # map is a dict; it expects an IndexError): say what it is, before sending.

    def _served(self, channel: str) -> None:
        slot = key_slot(self._pubsub_channel(channel))
        if slot not in self.cluster.nodes_manager.slots_cache:
            raise SlotNotServed(f"slot {slot} of channel {channel!r} is not served")

    async def publish(
        self,
        channel: str,
        data: Any,
        options: HistoryOptions,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float = 300.0,
        fence: Fence | None = None,
    ) -> StreamPosition:
        self._served(channel)
        return await super().publish(
            channel, data, options, info, tags, idempotency_key, idempotency_window, fence
        )

    async def _publish_event(self, channel: str, kind: int, info: ClientInfo) -> None:
        self._served(channel)
        await super()._publish_event(channel, kind, info)

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        self._served(channel)
        return await super().history(channel, query, options)

    async def remove_history(self, channel: str) -> None:
        self._served(channel)
        await super().remove_history(channel)

    async def log_stored(
        self, channel: str, epoch: str, runs: Sequence[tuple[int, int]], options: HistoryOptions
    ) -> int:
        self._served(channel)
        return await super().log_stored(channel, epoch, runs, options)

    async def restart_epoch(
        self, channel: str, epoch: str, acknowledged: int, options: HistoryOptions
    ) -> str:
        self._served(channel)
        return await super().restart_epoch(channel, epoch, acknowledged, options)
