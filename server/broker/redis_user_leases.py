"""Per-user connection leases in Redis (see server/broker/user_leases.py).

A user's leases are one sorted set, `<prefix>.user.{<escaped user>}`
(server/broker/redis_keys.py), of connection ids scored by their expiry in Unix
milliseconds. The key carries the user's hash tag, so on a Redis Cluster each
user's script stays in one slot, and expires with its newest lease.

Expiry times come from the nodes' wall clocks (as presence's do): nodes whose
clocks disagree by a few seconds shift a dead node's leases by as much.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from .redis_keys import channel_key
from .user_leases import UserLeases

__all__ = ["ACQUIRE_USER", "RENEW_CHUNK", "RedisUserLeases", "user_key"]

RENEW_CHUNK = 1000
"""Leases renewed per pipeline at most."""

# KEYS: the user's set. ARGV: connection id, now (ms), ttl (ms), cap.
# Drops expired leases, then leases a place if one is free (or extends the
# connection's own). Returns 1 when the connection holds a lease after.
ACQUIRE_USER = """
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
if not redis.call("zscore", KEYS[1], ARGV[1])
    and redis.call("zcard", KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call("zadd", KEYS[1], now + ttl, ARGV[1])
redis.call("pexpire", KEYS[1], ttl)
return 1
"""


def user_key(prefix: str, user: str) -> str:
    return channel_key(prefix, "user", user)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisUserLeases(UserLeases):
    def __init__(self, client: Redis, prefix: str = "wsfan") -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(ACQUIRE_USER)

    async def acquire(self, user: str, connection: str, cap: int, ttl: float) -> bool:
        key = user_key(self._prefix, user)
        now = int(time.time() * 1000)
        return bool(await self._acquire(keys=[key], args=[connection, now, _ms(ttl), cap]))

    async def renew(self, leases: Sequence[tuple[str, str]], ttl: float) -> None:
        """One non-transactional pipeline per `RENEW_CHUNK` leases (each lease's
        commands touch its user's key alone, so a cluster pipeline splits it by node)."""
        ttl_ms = _ms(ttl)
        for start in range(0, len(leases), RENEW_CHUNK):
            expiry = int(time.time() * 1000) + ttl_ms
            async with self._client.pipeline(transaction=False) as pipe:
                for user, connection in leases[start : start + RENEW_CHUNK]:
                    key = user_key(self._prefix, user)
                    pipe.zadd(key, {connection: expiry})
                    pipe.pexpire(key, ttl_ms)
                await pipe.execute()

    async def release(self, user: str, connection: str) -> None:
        await self._client.zrem(user_key(self._prefix, user), connection)

    async def count(self, user: str) -> int:
        now = int(time.time() * 1000)
        return int(await self._client.zcount(user_key(self._prefix, user), f"({now}", "+inf"))
