-- Record replies (MO), each once: store it in the inbound stream, publish it, and apply the opt-out or
-- opt-in it asks for, all or nothing per call. A reply already seen (its dedupe key exists) changes
-- nothing, so the script is safe to run twice for the same page (a retried command, a page replayed).
--
-- KEYS[1] inbound stream   KEYS[2] events stream   KEYS[3] opt-out set   KEYS[4] opt-out info hash
-- KEYS[5..] one dedupe key per reply
-- ARGV[1] inbound stream min id (ms)   ARGV[2] inbound stream max length (approximate)
-- ARGV[3] events stream min id (ms)   ARGV[4] dedupe key TTL (s)
-- ARGV[5..] one JSON object per reply, in KEYS order:
--   {"e": [inbound entry fields and values], "v": [its event's fields and values],
--    "a": "optout" | "optin" | "", "p": phone, "i": opt-out info JSON, "o": [opt-out event fields]}
-- Returns the number of new replies, then one "1" (new) or "0" (seen before) per reply.
local new = 0
local flags = {}
for i = 5, #KEYS do
  local reply = cjson.decode(ARGV[i])
  if redis.call("SET", KEYS[i], "1", "NX", "EX", tonumber(ARGV[4])) then
    new = new + 1
    flags[#flags + 1] = "1"
    redis.call("XADD", KEYS[1], "MINID", ARGV[1], "*", unpack(reply["e"]))  -- exact: replies are few
    redis.call("XADD", KEYS[2], "MINID", "~", ARGV[3], "*", unpack(reply["v"]))
    local changed = 0
    if reply["a"] == "optout" then
      changed = redis.call("SADD", KEYS[3], reply["p"])
      if changed == 1 then redis.call("HSET", KEYS[4], reply["p"], reply["i"]) end
    elseif reply["a"] == "optin" then
      changed = redis.call("SREM", KEYS[3], reply["p"])
      if changed == 1 then redis.call("HDEL", KEYS[4], reply["p"]) end
    end
    if changed == 1 then
      redis.call("XADD", KEYS[2], "MINID", "~", ARGV[3], "*", unpack(reply["o"]))
    end
  else
    flags[#flags + 1] = "0"
  end
end
if new > 0 then
  redis.call("XTRIM", KEYS[1], "MAXLEN", "~", tonumber(ARGV[2]))
end
local out = {new}
for _, flag in ipairs(flags) do out[#out + 1] = flag end
return out
