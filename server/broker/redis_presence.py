"""Presence in Redis: one hash of entries and one sorted set of their deadlines per
channel, both under the channel's hash tag. The node's periodic refresh sends
its entries in non-transactional pipelines (`add_presence_many`): one round
trip per `REFRESH_CHUNK` entries, instead of one per subscription."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgpack
from redis.asyncio import Redis

from ..protocol import ClientInfo
from .base import PresenceEntry, PresenceManager
from .redis_keys import channel_key
from .redis_scripts import PRESENCE_GET
from .redis_user_leases import RedisUserLeases

__all__ = ["REFRESH_CHUNK", "RedisPresence"]

REFRESH_CHUNK = 1000
"""Entries `add_presence_many` sends per pipeline at most."""


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class RedisPresence(PresenceManager):
    """Presence entries expire `ttl` seconds after their last refresh, so the clients
    of a node that died disappear without anyone removing them."""

    def __init__(self, client: Redis, prefix: str = "wsfan", ttl: float = 60.0) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._get = client.register_script(PRESENCE_GET)
        self._user_leases = RedisUserLeases(client, prefix)

    def _keys(self, channel: str) -> tuple[str, str]:
        return channel_key(self.prefix, "presence", channel), channel_key(
            self.prefix, "presence.z", channel
        )

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        data, expiry = self._keys(channel)
        ttl = self._ttl_ms
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(data, client_id, msgpack.packb(info.to_dict(), use_bin_type=True))
            pipe.zadd(expiry, {client_id: int(time.time() * 1000) + ttl})
            pipe.pexpire(data, ttl)
            pipe.pexpire(expiry, ttl)
            await pipe.execute()

    async def add_presence_many(self, entries: Sequence[PresenceEntry]) -> None:
        """Each entry's four commands (one channel's keys, so one slot), every
        entry in one non-transactional pipeline per `REFRESH_CHUNK`: a cluster
        client's pipeline splits it by node by itself."""
        ttl = self._ttl_ms
        for start in range(0, len(entries), REFRESH_CHUNK):
            expires = int(time.time() * 1000) + ttl
            async with self.client.pipeline(transaction=False) as pipe:
                for channel, client_id, info in entries[start : start + REFRESH_CHUNK]:
                    data, expiry = self._keys(channel)
                    pipe.hset(data, client_id, msgpack.packb(info.to_dict(), use_bin_type=True))
                    pipe.zadd(expiry, {client_id: expires})
                    pipe.pexpire(data, ttl)
                    pipe.pexpire(expiry, ttl)
                await pipe.execute()

    def user_leases(self) -> RedisUserLeases:
        """Leases in this Redis, next to presence (`<prefix>.user.{<user>}`)."""
        return self._user_leases

    async def remove_presence(self, channel: str, client_id: str) -> None:
        data, expiry = self._keys(channel)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(data, client_id)
            pipe.zrem(expiry, client_id)
            await pipe.execute()

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        flat = await self._get(keys=list(self._keys(channel)), args=[int(time.time() * 1000)])
        return {
            flat[i].decode(): ClientInfo.from_dict(_unpack(flat[i + 1]))
            for i in range(0, len(flat), 2)
        }
