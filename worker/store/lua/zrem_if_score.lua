-- Remove a sorted-set member only if its score is still the one a sweep read (a writer may have moved
-- the deadline on meanwhile, and then the entry must stay).
-- KEYS[1] sorted set   ARGV[1] member   ARGV[2] score read
local score = redis.call("ZSCORE", KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call("ZREM", KEYS[1], ARGV[1])
end
return 0
