-- Record recipients as queued, without touching any that already have a state (a planning task that
-- is run again after a crash must not reset recipients its first run already sent), and count those
-- added in the message's counters (records.py).
-- KEYS[1] recipients hash   KEYS[2] counters hash   ARGV[1] the queued record   ARGV[2] TTL (s)
-- ARGV[3..] phones
local added = 0
for i = 3, #ARGV do
  added = added + redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[1])
end
if added > 0 then redis.call("HINCRBY", KEYS[2], "queued", added) end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[2]))
redis.call("EXPIRE", KEYS[2], tonumber(ARGV[2]))
return added
