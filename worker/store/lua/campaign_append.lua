-- Append one page of a campaign's recipients at intake (Store.campaign_append): record each phone queued
-- unless it already has a record (then the file named it before: a duplicate), push the new rows as one
-- page for the runner, and count: the meta's accepted, duplicates and pages, and the counters' queued
-- (records.py: every script that writes records keeps them).
-- A call run twice (a retried command whose first run went through) must not count its phones as
-- duplicates of themselves: each call carries its sequence number, and a call already applied returns
-- the duplicates it found then.
-- KEYS[1] recipients hash   KEYS[2] counters hash   KEYS[3] campaign meta   KEYS[4] pages list
-- ARGV[1] the queued record   ARGV[2] TTL (s)   ARGV[3] this call's sequence number (1, 2, ...)
-- ARGV[4..] pairs: phone, its row as JSON ([phone, params or null])
-- Returns the positions (1-based) of the pairs that were duplicates.
local seq = tonumber(ARGV[3])
if seq <= tonumber(redis.call("HGET", KEYS[3], "appended") or "0") then
  return cjson.decode(redis.call("HGET", KEYS[3], "appended_dups") or "[]")
end
local rows, dups, n = {}, {}, 0
for i = 4, #ARGV, 2 do
  n = n + 1
  if redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[1]) == 1 then
    rows[#rows + 1] = ARGV[i + 1]
  else
    dups[#dups + 1] = n
  end
end
if #rows > 0 then
  redis.call("RPUSH", KEYS[4], "[" .. table.concat(rows, ",") .. "]")
  redis.call("HINCRBY", KEYS[2], "queued", #rows)
  redis.call("HINCRBY", KEYS[3], "pages", 1)
  redis.call("HINCRBY", KEYS[3], "accepted", #rows)
end
if #dups > 0 then redis.call("HINCRBY", KEYS[3], "duplicates", #dups) end
redis.call("HSET", KEYS[3], "appended", seq, "appended_dups", #dups > 0 and cjson.encode(dups) or "[]")
local ttl = tonumber(ARGV[2])
for k = 1, 4 do redis.call("EXPIRE", KEYS[k], ttl) end
return dups
