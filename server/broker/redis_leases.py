"""Channel leases in Redis (see server/broker/leases.py for the contract).

A lease is one string key, `<prefix>.lease.{<channel>}.<name>`, holding its
holder's token with a TTL: it shares the channel's hash tag, so the publish
script checks a fence in the same slot and the same atomic step.
"""

from __future__ import annotations

from redis.asyncio import Redis

from .leases import Leases
from .redis_keys import channel_key

__all__ = ["ACQUIRE", "RELEASE", "RedisLeases", "lease_key"]

# KEYS: the lease. ARGV: token, ttl (ms). Returns 1 when the token holds it after.
ACQUIRE = """
local holder = redis.call("get", KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call("set", KEYS[1], ARGV[1], "px", ARGV[2])
return 1
"""

# KEYS: the lease. ARGV: token. Deleted only while the token holds it.
RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
  redis.call("del", KEYS[1])
end
return 0
"""


def lease_key(prefix: str, channel: str, name: str) -> str:
    return channel_key(prefix, "lease", channel, name)


class RedisLeases(Leases):
    def __init__(self, client: Redis, prefix: str = "wsfan") -> None:
        self._prefix = prefix
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)

    async def acquire(self, channel: str, name: str, token: str, ttl: float) -> bool:
        key = lease_key(self._prefix, channel, name)
        return bool(await self._acquire(keys=[key], args=[token, max(1, int(ttl * 1000))]))

    async def release(self, channel: str, name: str, token: str) -> None:
        await self._release(keys=[lease_key(self._prefix, channel, name)], args=[token])
