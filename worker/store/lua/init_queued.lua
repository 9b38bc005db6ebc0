-- Record recipients as queued, without touching any that already have a state (a planning task that
-- is run again after a crash must not reset recipients its first run already sent).
-- KEYS[1] recipients hash   ARGV[1] the queued record   ARGV[2] TTL (s)   ARGV[3..] phones
local added = 0
for i = 3, #ARGV do
  added = added + redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[1])
end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[2]))
return added
