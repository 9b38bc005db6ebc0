-- Let go of a campaign's feed lock, only if it is still ours (it may have expired and been taken by
-- another tick meanwhile; that one's lock must stay).
-- KEYS[1] lock key   ARGV[1] our token
-- Returns 1 if released, else 0.
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
