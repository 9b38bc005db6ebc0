-- Settle recipients: a receipt (or the settle sweep) moves a recipient that is "submitted", or still
-- "sending", to its final state. A receipt proves the vendor accepted the message, so it settles a
-- recipient whose call's answer is not recorded yet, or never will be (the sending worker died). A
-- repeated or late receipt never overwrites a final state. The provider, vendor id, text and fee stay.
-- The message's counters (records.py) follow each move; one from "sending" also adds the recipient's
-- parts (its fee, else 1), as its submission would have, had the call's answer been recorded first.
-- KEYS[1] recipients hash   KEYS[2] counters hash
-- ARGV[1] now (ms)   ARGV[2] TTL (s)   ARGV[3..] triples: phone, state, code
-- Returns the phones that changed, each followed by its new state and code (for events).
local SEP = "\31"
local out = {}
local delta = {}
for i = 3, #ARGV, 3 do
  local phone, state, code = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local rec = redis.call("HGET", KEYS[1], phone)
  local state_now = rec and string.sub(rec, 1, (string.find(rec, SEP, 1, true) or 1) - 1)
  if state_now == "submitted" or state_now == "sending" then
    local parts = {}
    for part in string.gmatch(rec .. SEP, "(.-)" .. SEP) do parts[#parts + 1] = part end
    local vendor_id = parts[4] or ""
    local fee = ""
    if parts[7] and parts[7] ~= "" then fee = SEP .. parts[7] end
    if state_now == "sending" then
      vendor_id = ""  -- that slot held the claim token
      delta.parts = (delta.parts or 0) + (tonumber(parts[7] or "") or 1)
    end
    redis.call("HSET", KEYS[1], phone,
      state .. SEP .. ARGV[1] .. SEP .. (parts[3] or "") .. SEP .. vendor_id .. SEP .. code .. SEP
        .. (parts[6] or "") .. fee)
    delta[state_now] = (delta[state_now] or 0) - 1
    delta[state] = (delta[state] or 0) + 1
    out[#out + 1] = phone
    out[#out + 1] = state
    out[#out + 1] = code
  end
end
if #out > 0 then
  for field, by in pairs(delta) do
    if by ~= 0 then redis.call("HINCRBY", KEYS[2], field, by) end
  end
  redis.call("EXPIRE", KEYS[1], tonumber(ARGV[2]))
  redis.call("EXPIRE", KEYS[2], tonumber(ARGV[2]))
end
return out
