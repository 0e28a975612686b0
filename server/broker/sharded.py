"""Client-side sharding: channels spread over independent Redis servers.

`[redis] shards = ["redis://a:6379/0", "redis://b:6379/0"]` builds one
RedisBroker (and RedisPresence) per server. Every call about a channel goes to
the channel's shard, chosen by `shard_of`: a jump consistent hash (Lamping and
Veach, 2014) of the first 8 bytes of the channel name's BLAKE2b digest, as a
big-endian integer. The mapping depends on the channel name and the number of
shards only, so every node agrees on it. Adding a shard at the end of the list
moves about 1/n of the channels, each to the new shard; a moved channel has no
stream there, so it starts a new epoch and its recovering clients get
`recovered: false` (they reload, as after a Redis restart without
persistence). Reordering or removing shards moves many more: append only.

A channel's history, positions, presence, occupancy and leases (source leases
included, and the fence a source's publish checks) all live on its shard.
Control traffic (node announcements, surveys, API commands to other nodes and
`/emulation` forwarding) goes through the first shard only: with the first
shard down, the cluster view goes stale while channels on the other shards
keep working. `ping` fails only when no shard answers; `shard_states` reports
each one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..protocol import ClientInfo, Publication, StreamPosition
from .base import (
    Broker,
    BrokerEventHandler,
    Fence,
    HistoryOptions,
    HistoryQuery,
    HistoryResult,
    LogState,
    PresenceEntry,
    PresenceManager,
)
from .leases import Leases
from .occupancy import NOTHING, OccupancyStore, Op, Timing
from .user_leases import UserLeases

__all__ = [
    "ShardedBroker",
    "ShardedLeases",
    "ShardedOccupancy",
    "ShardedPresence",
    "ShardedUserLeases",
    "jump_hash",
    "shard_label",
    "shard_of",
]

T = TypeVar("T")

_JUMP = 2862933555777941757
_MASK = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash of a 64-bit `key` into `range(buckets)`."""
    if buckets < 1:
        raise ValueError("jump_hash needs at least one bucket")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP + 1) & _MASK
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_of(channel: str, shards: int) -> int:
    """The index of `channel`'s shard among `shards` (stable; see the module doc)."""
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), shards)


def shard_label(url: str) -> str:
    """A shard's name in reports: host:port/db, never its password."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


def _grouped(channels: Sequence[str], shards: int) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = defaultdict(list)
    for channel in channels:
        groups[shard_of(channel, shards)].append(channel)
    return groups


class _ShardHandler:
    """Passes one shard's events on; control traffic only from the first shard."""

    def __init__(self, handler: BrokerEventHandler, first: bool) -> None:
        self._handler = handler
        self._first = first

    def handle_publication(self, channel: str, pub: Publication) -> None:
        self._handler.handle_publication(channel, pub)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self._handler.handle_join(channel, info)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self._handler.handle_leave(channel, info)

    def handle_broker_reconnect(self) -> None:
        self._handler.handle_broker_reconnect()

    def handle_control(self, data: bytes) -> None:
        if self._first:
            self._handler.handle_control(data)


class ShardedBroker(Broker):
    """One broker per shard (each on its own Redis), behind the Broker contract.

    `labels` name the shards in `shard_states` (same order as `shards`)."""

    def __init__(self, shards: Sequence[Broker], labels: Sequence[str]) -> None:
        if not shards or len(shards) != len(labels):
            raise ValueError("ShardedBroker needs one label per shard, and a shard")
        self.shards = list(shards)
        self.labels = list(labels)

    def shard(self, channel: str) -> Broker:
        return self.shards[shard_of(channel, len(self.shards))]

    async def _each(self, call: Callable[[Broker], Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*(call(s) for s in self.shards)))

    # Life cycle --------------------------------------------------------------

    async def start(self, handler: BrokerEventHandler) -> None:
        await asyncio.gather(
            *(s.start(_ShardHandler(handler, i == 0)) for i, s in enumerate(self.shards))
        )

    async def close(self) -> None:
        await self._each(lambda s: s.close())

    def channel_stores(self) -> tuple[OccupancyStore, Leases]:
        stores = [s.channel_stores() for s in self.shards]
        return (
            ShardedOccupancy([occupancy for occupancy, _ in stores]),
            ShardedLeases([leases for _, leases in stores]),
        )

    async def ping(self) -> None:
        """Returns once any shard answers; raises the first shard's error when none does."""
        states = await self._pings()
        errors = [e for e in states if e is not None]
        if len(errors) == len(self.shards):
            raise errors[0]

    async def _pings(self) -> list[BaseException | None]:
        async def one(shard: Broker) -> BaseException | None:
            try:
                await shard.ping()
            except Exception as exc:  # a shard that cannot be reached is reported
                return exc
            return None

        return await self._each(one)

    async def shard_states(self) -> dict[str, str]:
        """Each shard's label -> "ok" or "unavailable: <error type>"."""
        states = await self._pings()
        return {
            label: "ok" if error is None else f"unavailable: {type(error).__name__}"
            for label, error in zip(self.labels, states, strict=True)
        }

    def reconnect_checked(self) -> None:
        for shard in self.shards:
            shard.reconnect_checked()

    # Channels ----------------------------------------------------------------

    async def subscribe(self, channels: Sequence[str]) -> None:
        groups = _grouped(channels, len(self.shards))
        await asyncio.gather(*(self.shards[i].subscribe(g) for i, g in groups.items()))

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        groups = _grouped(channels, len(self.shards))
        await asyncio.gather(*(self.shards[i].unsubscribe(g) for i, g in groups.items()))

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
        return await self.shard(channel).publish(
            channel, data, options, info, tags, idempotency_key, idempotency_window, fence
        )

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self.shard(channel).publish_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self.shard(channel).publish_leave(channel, info)

    async def history(
        self, channel: str, query: HistoryQuery, options: HistoryOptions
    ) -> HistoryResult:
        return await self.shard(channel).history(channel, query, options)

    async def remove_history(self, channel: str) -> None:
        await self.shard(channel).remove_history(channel)

    async def publish_control(self, data: bytes) -> None:
        await self.shards[0].publish_control(data)

    # The durable log's checkpoint --------------------------------------------

    async def log_stored(
        self, channel: str, epoch: str, runs: Sequence[tuple[int, int]], options: HistoryOptions
    ) -> int:
        return await self.shard(channel).log_stored(channel, epoch, runs, options)

    async def log_lagging(self, prefixes: Sequence[str]) -> list[LogState]:
        found = await self._each(lambda s: s.log_lagging(prefixes))
        return [state for states in found for state in states]

    async def restart_epoch(
        self, channel: str, epoch: str, acknowledged: int, options: HistoryOptions
    ) -> str:
        return await self.shard(channel).restart_epoch(channel, epoch, acknowledged, options)


class ShardedPresence(PresenceManager):
    """Presence on the channel's shard; a user's connection leases on the shard
    of the user's name (same map, keyed by user)."""

    def __init__(self, shards: Sequence[PresenceManager]) -> None:
        self.shards = list(shards)
        self.ttl = self.shards[0].ttl
        leases = [s.user_leases() for s in self.shards]
        self._leases = (
            None
            if any(lease is None for lease in leases)
            else ShardedUserLeases([lease for lease in leases if lease is not None])
        )

    def shard(self, channel: str) -> PresenceManager:
        return self.shards[shard_of(channel, len(self.shards))]

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        await self.shard(channel).add_presence(channel, client_id, info)

    async def add_presence_many(self, entries: Sequence[PresenceEntry]) -> None:
        """One batch per shard, the shards' round trips at once."""
        groups: dict[int, list[PresenceEntry]] = defaultdict(list)
        for entry in entries:
            groups[shard_of(entry[0], len(self.shards))].append(entry)
        await asyncio.gather(*(self.shards[i].add_presence_many(g) for i, g in groups.items()))

    def user_leases(self) -> UserLeases | None:
        return self._leases

    async def remove_presence(self, channel: str, client_id: str) -> None:
        await self.shard(channel).remove_presence(channel, client_id)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return await self.shard(channel).presence(channel)


class ShardedUserLeases(UserLeases):
    """Each user's leases on one shard, chosen by the user's name."""

    def __init__(self, shards: Sequence[UserLeases]) -> None:
        self.shards = list(shards)

    def _shard(self, user: str) -> UserLeases:
        return self.shards[shard_of(user, len(self.shards))]

    async def acquire(self, user: str, connection: str, cap: int, ttl: float) -> bool:
        return await self._shard(user).acquire(user, connection, cap, ttl)

    async def renew(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        groups: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for lease in leases:
            groups[shard_of(lease[0], len(self.shards))].append(lease)
        await asyncio.gather(*(self.shards[i].renew(g, ttl) for i, g in groups.items()))

    async def release(self, user: str, connection: str) -> None:
        await self._shard(user).release(user, connection)

    async def count(self, user: str) -> int:
        return await self._shard(user).count(user)


class ShardedOccupancy(OccupancyStore):
    """Occupancy on the channel's shard; `due` asks every shard."""

    def __init__(self, shards: Sequence[OccupancyStore]) -> None:
        self.shards = list(shards)

    async def step(
        self, channel: str, member: str, op: Op, timing: Timing, delivered: int = NOTHING
    ) -> int:
        shard = self.shards[shard_of(channel, len(self.shards))]
        return await shard.step(channel, member, op, timing, delivered)

    async def due(self, limit: int) -> list[str]:
        found = await asyncio.gather(*(s.due(limit) for s in self.shards))
        return [channel for channels in found for channel in channels][:limit]


class ShardedLeases(Leases):
    """Leases on the channel's shard (where fenced publishes check them)."""

    def __init__(self, shards: Sequence[Leases]) -> None:
        self.shards = list(shards)

    def _shard(self, channel: str) -> Leases:
        return self.shards[shard_of(channel, len(self.shards))]

    async def acquire(self, channel: str, name: str, token: str, ttl: float) -> bool:
        return await self._shard(channel).acquire(channel, name, token, ttl)

    async def release(self, channel: str, name: str, token: str) -> None:
        await self._shard(channel).release(channel, name, token)
