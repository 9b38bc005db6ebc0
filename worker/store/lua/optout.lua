-- Add a phone to the opt-out set (with its info) or remove it, and publish the change only when the
-- set changed (adding a number twice publishes once).
-- KEYS[1] opt-out set   KEYS[2] opt-out info hash   KEYS[3] events stream
-- ARGV[1] "add" | "remove"   ARGV[2] phone   ARGV[3] info JSON   ARGV[4] events min id (ms)
-- ARGV[5..] the event's fields and values
-- Returns 1 if the set changed, else 0.
local changed
if ARGV[1] == "add" then
  changed = redis.call("SADD", KEYS[1], ARGV[2])
  if changed == 1 then redis.call("HSET", KEYS[2], ARGV[2], ARGV[3]) end
else
  changed = redis.call("SREM", KEYS[1], ARGV[2])
  redis.call("HDEL", KEYS[2], ARGV[2])
end
if changed == 1 then
  redis.call("XADD", KEYS[3], "MINID", "~", ARGV[4], "*", unpack(ARGV, 5))
end
return changed
