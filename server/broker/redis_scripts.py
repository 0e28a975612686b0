"""Lua scripts run atomically inside Redis (Valkey and Redis 6+ alike).

A channel's stream is two keys: a hash `meta` (`s`: top offset, `e`: epoch) and
a list `stream` of encoded messages, oldest first, holding offsets
top-LLEN+1 .. top. Messages are single msgpack arrays built here so that a
node decodes each once: `[0, offset, epoch, publication-map]` for a
publication; joins and leaves are `[1, info]` / `[2, info]`, sent from Python.
"""

from __future__ import annotations

__all__ = ["HISTORY", "PRESENCE_GET", "PUBLISH"]

# KEYS: meta, stream, pubsub channel, idempotency key
# ARGV: publication map (msgpack bytes), history size (0: none), history ttl (ms),
#       meta ttl (ms), epoch to use if the channel has none,
#       idempotency window (ms; 0: no idempotency key)
# Returns: {offset, epoch}; for a key seen within the window, the first result
# (stored as "offset:epoch") and nothing is published.
PUBLISH = """
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
if tonumber(ARGV[2]) > 0 then
  epoch = redis.call("hget", KEYS[1], "e")
  if not epoch then
    epoch = ARGV[5]
    redis.call("hset", KEYS[1], "e", epoch)
  end
  offset = redis.call("hincrby", KEYS[1], "s", 1)
  redis.call("pexpire", KEYS[1], ARGV[4])
  message = string.char(0x94) .. cmsgpack.pack(0) .. cmsgpack.pack(offset)
    .. cmsgpack.pack(epoch) .. ARGV[1]
  redis.call("rpush", KEYS[2], message)
  redis.call("ltrim", KEYS[2], -tonumber(ARGV[2]), -1)
  redis.call("pexpire", KEYS[2], ARGV[3])
else
  message = string.char(0x94) .. cmsgpack.pack(0) .. cmsgpack.pack(0)
    .. cmsgpack.pack("") .. ARGV[1]
end
redis.call("publish", KEYS[3], message)
if window > 0 then
  redis.call("set", KEYS[4], offset .. ":" .. epoch, "px", window)
end
return {offset, epoch}
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
