"""Channel occupancy in Redis (the state machine of server/broker/occupancy.py).

Keys: `<prefix>.occ.m.{<channel>}` (sorted set: member -> lease expiry, ms),
`<prefix>.occ.s.{<channel>}` (hash: `s` wanted, `a` delivered, `v` vacate at,
`o` claimer, `d` claim deadline), both in the channel's slot, stepped by one
script on Redis's own clock (nodes' clocks never meet). The index of channels
with a deadline, `<prefix>.occ.due` (sorted set: channel -> next deadline), is
updated by separate commands, so every script stays within one slot: a channel
is added to it before its first JOIN and set to its next deadline after each
step; it leaves the index once quiescent and due. A node that dies between a
step and the index update is covered by the other members' next renewal.
"""

from __future__ import annotations

from redis.asyncio import Redis

from .occupancy import NOTHING, OccupancyStore, Op, Timing
from .redis_keys import channel_key

__all__ = ["DUE", "FORGET", "STEP", "RedisOccupancy"]

NOW = """
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
"""Redis's own clock, in ms, as `now` (every node reads the same clock)."""

# KEYS: members, state. ARGV: op, member, member ttl, vacate delay, claim ttl (ms),
# event acknowledged (ACK). Returns {event to deliver or -1, next deadline or -1}.
STEP = (
    NOW
    + """
local op, member = ARGV[1], ARGV[2]
if op == "join" then
  redis.call("zadd", KEYS[1], now + tonumber(ARGV[3]), member)
elseif op == "leave" then
  redis.call("zrem", KEYS[1], member)
elseif op == "ack" and redis.call("hget", KEYS[2], "o") == member then
  redis.call("hset", KEYS[2], "a", ARGV[6])
  redis.call("hdel", KEYS[2], "o", "d")
end
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
local f = redis.call("hmget", KEYS[2], "s", "a", "v", "o", "d")
local wanted, delivered = tonumber(f[1]) or 0, tonumber(f[2]) or 0
local vacate_at = tonumber(f[3])
local deadline = nil
local first = redis.call("zrange", KEYS[1], 0, 0, "WITHSCORES")
if #first > 0 then
  wanted = 1
  redis.call("hset", KEYS[2], "s", 1)
  redis.call("hdel", KEYS[2], "v")
  deadline = tonumber(first[2])
elseif wanted == 1 then
  if not vacate_at then
    vacate_at = now + tonumber(ARGV[4])
    redis.call("hset", KEYS[2], "v", vacate_at)
  end
  if now >= vacate_at then
    wanted = 0
    redis.call("hset", KEYS[2], "s", 0)
    redis.call("hdel", KEYS[2], "v")
  else
    deadline = vacate_at
  end
end
local deliver = -1
if wanted ~= delivered or f[4] then
  local claim_until = tonumber(f[5]) or 0
  if not f[4] or claim_until <= now then
    claim_until = now + tonumber(ARGV[5])
    redis.call("hset", KEYS[2], "o", member, "d", claim_until)
    deliver = 1 - delivered
  end
  if not deadline or claim_until < deadline then deadline = claim_until end
end
if not deadline then
  redis.call("del", KEYS[2])
  return {deliver, -1}
end
return {deliver, deadline}
"""
)

# KEYS: the index. ARGV: limit. Returns the channels whose deadline has passed.
DUE = (
    NOW
    + """
return redis.call("zrangebyscore", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[1]))
"""
)

# KEYS: the index. ARGV: channel. Removed only while due (a newer deadline stays).
FORGET = (
    NOW
    + """
local at = redis.call("zscore", KEYS[1], ARGV[1])
if at and tonumber(at) <= now then
  redis.call("zrem", KEYS[1], ARGV[1])
end
return 0
"""
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisOccupancy(OccupancyStore):
    def __init__(self, client: Redis, prefix: str = "wsfan") -> None:
        self._client = client
        self._prefix = prefix
        self._index = f"{prefix}.occ.due"
        self._step = client.register_script(STEP)
        self._due = client.register_script(DUE)
        self._forget = client.register_script(FORGET)

    async def step(
        self, channel: str, member: str, op: Op, timing: Timing, delivered: int = NOTHING
    ) -> int:
        if op is Op.JOIN:  # due at once until the step says when: never missed
            await self._client.zadd(self._index, {channel: 0}, nx=True)
        keys = [channel_key(self._prefix, kind, channel) for kind in ("occ.m", "occ.s")]
        args = [op.value, member, _ms(timing.member_ttl), _ms(timing.vacate_delay)]
        args += [_ms(timing.claim_ttl), delivered]
        deliver, deadline = await self._step(keys=keys, args=args)
        if int(deadline) < 0:
            await self._forget(keys=[self._index], args=[channel])
        else:
            await self._client.zadd(self._index, {channel: int(deadline)})
        return int(deliver)

    async def due(self, limit: int) -> list[str]:
        found = await self._due(keys=[self._index], args=[limit])
        return [c.decode() if isinstance(c, bytes) else str(c) for c in found]
