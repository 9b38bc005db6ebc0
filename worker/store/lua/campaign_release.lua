-- Take up to ARGV[1] chunk jobs held while the campaign was paused and open each again (its job in the
-- plan, a lease): the caller then queues them. A caller that dies before queuing leaves open chunks,
-- which the lease sweep queues again. (A held chunk was never counted done: it is still in flight.)
-- KEYS[1] held list   KEYS[2] plan hash (chunk number -> job)   KEYS[3] leases zset
-- ARGV[1] how many at most   ARGV[2] campaign id   ARGV[3] lease end (ms)   ARGV[4] retention (s)
-- Returns the jobs taken (JSON, as held).
local jobs = redis.call("LPOP", KEYS[1], tonumber(ARGV[1]))
if not jobs then return {} end
for _, raw in ipairs(jobs) do
  local number = tostring(cjson.decode(raw)["chunk"]["number"])
  redis.call("HSET", KEYS[2], number, raw)
  redis.call("ZADD", KEYS[3], tonumber(ARGV[3]), ARGV[2] .. "|" .. number)
end
redis.call("EXPIRE", KEYS[2], tonumber(ARGV[4]))
return jobs
