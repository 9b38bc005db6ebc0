-- Move recipients to new records, but only those whose current state is one of the allowed ones:
-- a vendor call's outcome replaces only "sending" (a receipt that beat us to it has already settled the
-- recipient and must not be overwritten); a re-run plan writes only where there is no record yet.
-- The message's counters (records.py) follow each record written: its old state down, its new one up,
-- and "parts" up by the new record's fee (else 1) when the recipient reaches the vendor now (submitted,
-- or delivered at once, from a state before the vendor call). A refused write counts nothing.
-- KEYS[1] recipients hash   KEYS[2] counters hash
-- ARGV[1] TTL (s)   ARGV[2] allowed states, space-separated ("none": no record)
-- ARGV[3..] pairs: phone, record
-- Returns the phones written.
local SEP = "\31"
local allowed = {}
for state in string.gmatch(ARGV[2], "%S+") do allowed[state] = true end
local written = {}
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

for i = 3, #ARGV, 2 do
  local current = redis.call("HGET", KEYS[1], ARGV[i])
  local state = "none"
  if current then state = string.sub(current, 1, (string.find(current, SEP, 1, true) or 1) - 1) end
  if allowed[state] then
    local rec = ARGV[i + 1]
    redis.call("HSET", KEYS[1], ARGV[i], rec)
    written[#written + 1] = ARGV[i]
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
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[1]))
redis.call("EXPIRE", KEYS[2], tonumber(ARGV[1]))
return written
