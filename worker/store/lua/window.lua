-- A strict sliding window: at most ARGV[1] events per ARGV[2] ms under KEYS[1] (e.g. Infocloud's three
-- receipt queries a minute), across every worker and beat. Returns 0 and records the event when
-- allowed, else the milliseconds until the oldest event leaves the window.
-- KEYS[1] window key   ARGV[1] limit   ARGV[2] window (ms)   ARGV[3] a unique event id
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
if redis.call("ZCARD", KEYS[1]) >= limit then
  local oldest = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
end
redis.call("ZADD", KEYS[1], now, ARGV[3])
redis.call("PEXPIRE", KEYS[1], window)
return 0
