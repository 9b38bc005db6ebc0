-- A vendor's circuit breaker, shared by every worker: after ARGV[2] certain failures in a row it opens;
-- while open, one call (a probe) is let through every ARGV[3] ms; a successful call closes it.
--
-- A success is not reported here: the run that made it SETs KEYS[2] to a unique value in its existing
-- pipelined write (one SET, no extra round trip). Each run of this script first compares that value with
-- the one it saw last ("seen"): if it changed, a call succeeded since, so the breaker is closed and the
-- failures start again from 0. Ordering is by arrival at Redis; clocks are Redis's (TIME).
--
-- KEYS[1] breaker hash (state, failures, opened, next_probe, probes, seen)   KEYS[2] last success
-- ARGV[1] "ask" (may a call go now?) or "fail" (a call failed for certain)
-- ARGV[2] failures that open it   ARGV[3] probe interval (ms)   ARGV[4] TTL of the hash (s)
-- Returns {allowed or open (0/1), probe (0/1), wait (ms), failures}:
--   ask:  {1, 0, 0, n} closed | {1, 1, 0, n} open, and this caller holds the probe slot
--         | {0, 0, ms until the next probe slot, n} open
--   fail: {1 if open now, 0, ms until the next probe slot (0 if closed), n}
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local threshold = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local ok = redis.call("GET", KEYS[2]) or ""
local seen = redis.call("HGET", KEYS[1], "seen") or ""
if ok ~= seen then
  redis.call("HSET", KEYS[1], "seen", ok, "failures", 0, "state", "closed")
  redis.call("HDEL", KEYS[1], "opened", "next_probe")
  redis.call("EXPIRE", KEYS[1], ttl)
end
local open = redis.call("HGET", KEYS[1], "state") == "open"
local failures = tonumber(redis.call("HGET", KEYS[1], "failures") or "0")

if ARGV[1] == "ask" then
  if not open then return {1, 0, 0, failures} end
  local next_probe = tonumber(redis.call("HGET", KEYS[1], "next_probe") or "0")
  if now < next_probe then return {0, 0, next_probe - now, failures} end
  redis.call("HSET", KEYS[1], "next_probe", now + interval)
  redis.call("HINCRBY", KEYS[1], "probes", 1)
  redis.call("EXPIRE", KEYS[1], ttl)
  return {1, 1, 0, failures}
end

failures = redis.call("HINCRBY", KEYS[1], "failures", 1)
if not open and failures >= threshold then
  redis.call("HSET", KEYS[1], "state", "open", "opened", now, "next_probe", now + interval, "probes", 0)
  open = true
end
redis.call("EXPIRE", KEYS[1], ttl)
if not open then return {0, 0, 0, failures} end
local next_probe = tonumber(redis.call("HGET", KEYS[1], "next_probe") or "0")
return {1, 0, math.max(0, next_probe - now), failures}
