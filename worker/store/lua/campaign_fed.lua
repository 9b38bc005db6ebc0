-- Advance a campaign's feed cursor past page ARGV[1], whose ARGV[2] chunks are opened and queued, unless
-- another feeder already did: the cursor moves once per page, so a feeder killed mid-page (which feeds
-- the page again) neither skips it nor counts its chunks twice. The pages list goes once all are fed.
-- KEYS[1] campaign meta hash   KEYS[2] its pages list
-- ARGV[1] page fed (0-based)   ARGV[2] chunks opened for it
-- Returns 1 when moved, 0 when the cursor was elsewhere.
local fed = tonumber(redis.call("HGET", KEYS[1], "fed") or "0") or 0
if fed ~= tonumber(ARGV[1]) then return 0 end
redis.call("HSET", KEYS[1], "fed", fed + 1)
redis.call("HINCRBY", KEYS[1], "chunks_fed", tonumber(ARGV[2]))
local pages = tonumber(redis.call("HGET", KEYS[1], "pages") or "0") or 0
if fed + 1 >= pages then redis.call("DEL", KEYS[2]) end
return 1
