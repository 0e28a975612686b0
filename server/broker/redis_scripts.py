"""Lua scripts run atomically inside Redis (Valkey and Redis 6+ alike).

A channel's stream is two keys: a hash `meta` (`s`: top offset, `e`: epoch and,
for channels whose publications go to the durable log, `l`: the log's
checkpoint, every offset up to it is stored there) and a list `stream` of
encoded messages, oldest first, holding offsets top-LLEN+1 .. top. Messages are
single msgpack arrays built here so that a node decodes each once:
`[0, offset, epoch, publication-map]` for a publication; joins and leaves are
`[1, info]` / `[2, info]`, sent from Python.

A logged channel's stream never drops a publication above the checkpoint:
trimming keeps max(history size, top - checkpoint) entries, and the stream has
no TTL while anything above the checkpoint is in it. Offsets the log stored out
of order wait in a sorted set `logged` until the checkpoint reaches them. Every
key of a channel carries the channel's hash tag (one slot per channel).
"""

from __future__ import annotations

__all__ = ["HISTORY", "LOGGED", "NEW_EPOCH", "PRESENCE_GET", "PUBLISH"]

# KEYS: meta, stream, pubsub channel, idempotency key[, fence lease]
# ARGV: publication map (msgpack bytes), history size (0: none), history ttl (ms),
#       meta ttl (ms), epoch to use if the channel has none,
#       idempotency window (ms; 0: no idempotency key),
#       log lag limit (0: the channel is not logged),
#       the publish command ("publish"; "spublish" on a Redis Cluster, where the
#       pub/sub channel, in the channel's slot, is a shard channel)[, fence token]
# Returns: {offset, epoch}; for a key seen within the window, the first result
# (stored as "offset:epoch") and nothing is published; {-1, epoch} when the
# channel's log trails its stream by the lag limit, {-2, ""} when the fence
# lease is not held by the fence token (nothing is published).
PUBLISH = """
if KEYS[5] and redis.call("get", KEYS[5]) ~= ARGV[9] then
  return {-2, ""}
end
local window = tonumber(ARGV[6])
if window > 0 then
  local seen = redis.call("get", KEYS[4])
  if seen then
    local sep = string.find(seen, ":", 1, true)
    return {tonumber(string.sub(seen, 1, sep - 1)), string.sub(seen, sep + 1)}
  end
end
local offset, epoch = 0, ""
local message
local size = tonumber(ARGV[2])
if size > 0 then
  local lag = tonumber(ARGV[7])
  epoch = redis.call("hget", KEYS[1], "e")
  if not epoch then
    epoch = ARGV[5]
    redis.call("hset", KEYS[1], "e", epoch)
  end
  local logged = 0
  if lag > 0 then
    local fields = redis.call("hmget", KEYS[1], "s", "l")
    local top = tonumber(fields[1]) or 0
    logged = tonumber(fields[2]) or top
    if top - logged >= lag then
      return {-1, epoch}
    end
    if not fields[2] then redis.call("hset", KEYS[1], "l", logged) end
  end
  offset = redis.call("hincrby", KEYS[1], "s", 1)
  redis.call("pexpire", KEYS[1], ARGV[4])
  message = string.char(0x94) .. cmsgpack.pack(0) .. cmsgpack.pack(offset)
    .. cmsgpack.pack(epoch) .. ARGV[1]
  redis.call("rpush", KEYS[2], message)
  if lag > 0 then
    redis.call("ltrim", KEYS[2], -math.max(size, offset - logged), -1)
    redis.call("persist", KEYS[2])
  else
    redis.call("ltrim", KEYS[2], -size, -1)
    redis.call("pexpire", KEYS[2], ARGV[3])
  end
else
  message = string.char(0x94) .. cmsgpack.pack(0) .. cmsgpack.pack(0)
    .. cmsgpack.pack("") .. ARGV[1]
end
redis.call(ARGV[8], KEYS[3], message)
if window > 0 then
  redis.call("set", KEYS[4], offset .. ":" .. epoch, "px", window)
end
return {offset, epoch}
"""

# KEYS: meta, stream, logged (sorted set of offsets stored beyond the checkpoint)
# ARGV: epoch, history size, history ttl (ms), meta ttl (ms), then pairs of
#       offsets first, last: runs the log has stored
# Returns: the checkpoint after the runs are counted, or -1 when the channel is in
# another epoch now (the runs are of a stream that is gone).
LOGGED = """
local fields = redis.call("hmget", KEYS[1], "e", "s", "l")
if fields[1] ~= ARGV[1] then
  return -1
end
local top = tonumber(fields[2]) or 0
local logged = tonumber(fields[3]) or 0
local pending = false
for i = 5, #ARGV, 2 do
  local first, last = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if last > logged then
    if first <= logged + 1 then
      logged = last
    else
      for o = first, last do redis.call("zadd", KEYS[3], o, o) end
      pending = true
    end
  end
end
redis.call("zremrangebyscore", KEYS[3], "-inf", logged)
while true do
  local head = redis.call("zrange", KEYS[3], 0, 0, "WITHSCORES")
  if #head == 0 or tonumber(head[2]) ~= logged + 1 then break end
  logged = logged + 1
  redis.call("zrem", KEYS[3], head[1])
end
if logged > top then logged = top end
redis.call("hset", KEYS[1], "l", logged)
redis.call("ltrim", KEYS[2], -math.max(tonumber(ARGV[2]), top - logged), -1)
if logged >= top then
  redis.call("pexpire", KEYS[2], ARGV[3])
  redis.call("del", KEYS[3])
elseif pending then
  redis.call("pexpire", KEYS[3], ARGV[4])
end
return logged
"""

# KEYS: meta, stream, logged
# ARGV: the epoch the caller saw, the offset it knows was acknowledged, new epoch
# Returns: the channel's epoch afterwards. When the channel is still in the
# caller's epoch but its top offset is below what was acknowledged (Redis lost
# the tail of its data), the stream restarts in the new epoch from offset 0, so
# (epoch, offset) pairs are never reused for other publications.
NEW_EPOCH = """
local fields = redis.call("hmget", KEYS[1], "e", "s")
if fields[1] ~= ARGV[1] or (tonumber(fields[2]) or 0) >= tonumber(ARGV[2]) then
  return fields[1]
end
redis.call("hset", KEYS[1], "e", ARGV[3], "s", 0, "l", 0)
redis.call("del", KEYS[2], KEYS[3])
return ARGV[3]
"""

# KEYS: meta, stream
# ARGV: epoch to use if the channel has none, meta ttl (ms),
#       since offset (-1: none), limit (-1: all, 0: none), reverse (0/1)
# Returns: {top offset, epoch, stream length, {messages}} where messages are the
# candidates in stream order; the caller checks whether `since` was servable.
HISTORY = """
local top = tonumber(redis.call("hget", KEYS[1], "s")) or 0
local epoch = redis.call("hget", KEYS[1], "e")
if not epoch then
  epoch = ARGV[1]
  redis.call("hset", KEYS[1], "e", epoch)
  redis.call("pexpire", KEYS[1], ARGV[2])
end
local len = redis.call("llen", KEYS[2])
local since = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local reverse = ARGV[5] == "1"
if limit == 0 then
  return {top, epoch, len, {}}
end
local first = top - len + 1
local lo, hi = 0, len - 1
if since >= 0 then
  if reverse then hi = since - first - 1 else lo = since - first + 1 end
end
if lo < 0 then lo = 0 end
if hi > len - 1 then hi = len - 1 end
if limit > 0 then
  if reverse then
    lo = math.max(lo, hi - limit + 1)
  else
    hi = math.min(hi, lo + limit - 1)
  end
end
local messages = {}
if hi >= lo then messages = redis.call("lrange", KEYS[2], lo, hi) end
return {top, epoch, len, messages}
"""

# KEYS: presence hash (client -> info), presence zset (client -> expiry ms)
# ARGV: now (ms)
# Returns: flat {client, info, ...} of live entries; expired ones are removed.
PRESENCE_GET = """
local expired = redis.call("zrangebyscore", KEYS[2], "-inf", ARGV[1])
if #expired > 0 then
  redis.call("hdel", KEYS[1], unpack(expired))
  redis.call("zremrangebyscore", KEYS[2], "-inf", ARGV[1])
end
return redis.call("hgetall", KEYS[1])
"""
