-- A shared rate budget (GCRA): at most ARGV[1] calls per second with a burst of ARGV[2], across every
-- worker. Returns 0 when the call may go now, else the milliseconds to wait before asking again.
-- KEYS[1] budget key   ARGV[1] rate (per s)   ARGV[2] burst
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = 1000 / tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then
  return math.ceil(allow_at - now)
end
redis.call("SET", KEYS[1], tostring(tat + interval), "PX", math.ceil(tat + interval - now + 1000))
return 0
