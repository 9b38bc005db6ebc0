-- End a chunk's lease and, when it ends for good, count the chunk done in its message's counters
-- (records.py): only if this call removed the lease, so a replayed end counts once, and only while the
-- message has counters (an expired message gets none back).
-- KEYS[1] leases sorted set   KEYS[2] counters hash   ARGV[1] lease member   ARGV[2] "1": count it done
-- Returns 1 if the lease was removed, else 0.
local removed = redis.call("ZREM", KEYS[1], ARGV[1])
if removed == 1 and ARGV[2] == "1" and redis.call("EXISTS", KEYS[2]) == 1 then
  redis.call("HINCRBY", KEYS[2], "chunks_done", 1)
end
return removed
