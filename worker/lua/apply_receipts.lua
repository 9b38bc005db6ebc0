-- Apply delivery receipts. A receipt proves the vendor accepted the message, so it settles a recipient
-- that is "submitted" or still "sending" (the answer to our call may not be recorded yet, or never will
-- be: the sending worker died). A repeated or late receipt never overwrites a final state.
-- KEYS[1] recipients hash   ARGV[1] now (ms)   ARGV[2..] triples: phone, state, code
-- Returns the phones that changed, each followed by its new state (for events).
local SEP = "\31"
local out = {}
for i = 2, #ARGV, 3 do
  local phone, state, code = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local rec = redis.call("HGET", KEYS[1], phone)
  local state_now = rec and string.sub(rec, 1, (string.find(rec, SEP, 1, true) or 1) - 1)
  if state_now == "submitted" or state_now == "sending" then
    local parts = {}
    for part in string.gmatch(rec .. SEP, "(.-)" .. SEP) do parts[#parts + 1] = part end
    local fee = ""
    if parts[7] and parts[7] ~= "" then fee = SEP .. parts[7] end  -- billed segments, kept
    redis.call("HSET", KEYS[1], phone,
      state .. SEP .. ARGV[1] .. SEP .. (parts[3] or "") .. SEP .. (parts[4] or "") .. SEP .. code .. SEP
        .. (parts[6] or "") .. fee)
    out[#out + 1] = phone
    out[#out + 1] = state
  end
end
return out
