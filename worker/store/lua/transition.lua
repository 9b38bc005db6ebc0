-- Move recipients to new records, but only those whose current state is one of the allowed ones:
-- a vendor call's outcome replaces only "sending" (a receipt that beat us to it has already settled the
-- recipient and must not be overwritten); a re-run plan writes only where there is no record yet.
-- The message's counters (records.py) follow each record written: its old state down, its new one up,
-- and "parts" up by the new record's fee (else 1) when the recipient reaches the vendor now (submitted,
-- or delivered at once, from a state before the vendor call). A refused write counts nothing.
-- The phones written are announced in the events stream, one state event per group (a state and a code,
-- in the order the caller gave them), so that what is announced is exactly what was written, in the
-- same round trip. The fields are worker/events.py's StateEvent.encode, written out again here:
-- tests/test_store.py checks the two field for field.
-- KEYS[1] recipients hash   KEYS[2] counters hash   KEYS[3] events stream
-- ARGV[1] TTL (s)   ARGV[2] allowed states, space-separated ("none": no record)
-- ARGV[3] event version   ARGV[4] at (ms)   ARGV[5] message id   ARGV[6] provider   ARGV[7] why
-- ARGV[8] the stream's MINID (ms)   ARGV[9] number of groups (g)   ARGV[10..9+g] group states
-- ARGV[10+g..9+2g] group codes   ARGV[10+2g..] triples: phone, record, group (1-based)
-- Returns the phones written.
local SEP = "\31"
local allowed = {}
for state in string.gmatch(ARGV[2], "%S+") do allowed[state] = true end
local groups = tonumber(ARGV[9])
local first = 10 + 2 * groups
local written = {}
local announced = {}
local delta = {}

-- Whether a recipient in this state has not reached the vendor yet.
local function unsent(state)
  return state == "none" or state == "queued" or state == "retry" or state == "sending"
end

-- The record's 7th field, its fee (billed parts), when set (one match: this runs for every phone sent).
local FEE = "^" .. string.rep("[^\31]*\31", 6) .. "(%d+)$"
local function fee(rec)
  return tonumber(string.match(rec, FEE))
end

for i = first, #ARGV, 3 do
  local phone = ARGV[i]
  local current = redis.call("HGET", KEYS[1], phone)
  local state = "none"
  if current then state = string.sub(current, 1, (string.find(current, SEP, 1, true) or 1) - 1) end
  if allowed[state] then
    local rec = ARGV[i + 1]
    redis.call("HSET", KEYS[1], phone, rec)
    written[#written + 1] = phone
    local group = tonumber(ARGV[i + 2])
    local phones = announced[group]
    if not phones then
      phones = {}
      announced[group] = phones
    end
    phones[#phones + 1] = phone
    local new_state = string.sub(rec, 1, (string.find(rec, SEP, 1, true) or 0) - 1)
    if current then delta[state] = (delta[state] or 0) - 1 end
    delta[new_state] = (delta[new_state] or 0) + 1
    if (new_state == "submitted" or new_state == "delivered") and unsent(state) then
      delta.parts = (delta.parts or 0) + (fee(rec) or 1)
    end
  end
end
for field, by in pairs(delta) do
  if by ~= 0 then redis.call("HINCRBY", KEYS[2], field, by) end
end
for g = 1, groups do
  local phones = announced[g]
  if phones then
    redis.call("XADD", KEYS[3], "MINID", "~", ARGV[8], "*",
      "v", ARGV[3], "type", "state", "at", ARGV[4], "message_id", ARGV[5], "state", ARGV[9 + g],
      "provider", ARGV[6], "code", ARGV[9 + groups + g], "why", ARGV[7], "count", tostring(#phones),
      "phones", table.concat(phones, ","))
  end
end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[1]))
redis.call("EXPIRE", KEYS[2], tonumber(ARGV[1]))
return written
