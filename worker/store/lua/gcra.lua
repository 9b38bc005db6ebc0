-- A vendor's shared rate budget, across every worker: each call is given its own slot, the time it may
-- leave, and slots are spaced by interval = ARGV[2] / ARGV[1] (rounded up to a microsecond) with no burst.
-- So no ARGV[1] + 1 slots fit in ARGV[2] ms: a window of ARGV[2] = 1000 ms never holds more than ARGV[1]
-- calls, and a window of 1000 + m ms keeps that true at the vendor for calls that arrive up to m ms after
-- their slot (the claim and the HTTP request come between the two).
-- A slot at most ARGV[3] ms ahead is reserved (the caller sleeps until it, then goes); a later one is not
-- (nothing is taken: the caller asks again after the wait).
-- Returns {1, us until the slot} when reserved, {0, us until the next slot} when not.
-- KEYS[1] budget key (the next free slot, us)   ARGV[1] rate (calls per window)   ARGV[2] window (ms)
-- ARGV[3] longest wait for a reserved slot (ms)   ARGV[4] now (us; absent: Redis's clock; tests only)
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = math.ceil(tonumber(ARGV[2]) * 1000 / tonumber(ARGV[1]))
local slot = tonumber(redis.call("GET", KEYS[1]) or now)
if slot < now then slot = now end
local wait = slot - now
if wait > tonumber(ARGV[3]) * 1000 then
  return {0, wait}
end
local after = slot + interval
redis.call("SET", KEYS[1], string.format("%d", after), "PX", math.ceil((after - now) / 1000) + 1000)
return {1, wait}
