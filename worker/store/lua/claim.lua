-- Claim a chunk's recipients for one vendor call, atomically, across every worker.
-- For each phone: skip it if it is already past the queue (a retried or redelivered chunk never
-- resends), refuse it if opted out or over a per-phone limit, otherwise charge its limits and mark it
-- "sending" with this run's claim token. One round trip per chunk. The opt-out set is looked up only
-- when it exists; limits are charged first and taken back for a phone over one.
--
-- The token makes the script safe to run twice for the same run (a command retried after a dropped
-- connection): a phone already "sending" under our own token is ours again, and is not charged twice.
-- The message's counters (records.py) move with each record written; a phone with no record yet (a
-- one-chunk send is claimed without being recorded queued first) only adds to its new state.
--
-- KEYS[1]  recipients hash (phone -> record)      KEYS[2]  counters hash      KEYS[3]  opt-out set
-- KEYS[4..] one limit hash per rule (phone -> count in the current window)
-- ARGV[1] now (ms)   ARGV[2] stale after (ms)   ARGV[3] number of rules (n)
-- ARGV[4..3+n] rule counts   ARGV[4+n..3+2n] limit key TTLs (s)   ARGV[4+2n..3+3n] rule labels
-- ARGV[4+3n] provider   ARGV[5+3n] claim token   ARGV[6+3n] recipients TTL (s)
-- ARGV[7+3n] "1" if this kind honours opt-outs (OTPs do not, by default)   ARGV[8+3n..] phones
-- Returns one code per phone: S send | O opted out | L<i> over rule i (1-based) | W in flight elsewhere
--   | A orphan (was sending, the sender vanished) | D<state> already done
local SEP = "\31"
local LIMITS = 3  -- KEYS[LIMITS + r] is rule r's hash
local now = tonumber(ARGV[1])
local stale = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local provider = ARGV[4 + 3 * n]
local token = ARGV[5 + 3 * n]
local ttl = tonumber(ARGV[6 + 3 * n])
local first = 8 + 3 * n
local sending = "sending" .. SEP .. now .. SEP .. provider .. SEP .. token .. SEP .. SEP
local check_optout = ARGV[7 + 3 * n] == "1" and redis.call("EXISTS", KEYS[3]) == 1
local limit = {}
for r = 1, n do limit[r] = tonumber(ARGV[3 + r]) end
local out = {}
local delta = {}

local function record(state, code, text)
  return state .. SEP .. now .. SEP .. provider .. SEP .. "" .. SEP .. code .. SEP .. text
end

local function fields(rec)
  local parts = {}
  for part in string.gmatch(rec .. SEP, "(.-)" .. SEP) do parts[#parts + 1] = part end
  return parts
end

-- Write the phone's new record and count the move (from nothing when it had no record).
local function write(phone, rec, state, new_state, value)
  redis.call("HSET", KEYS[1], phone, value)
  if rec then delta[state] = (delta[state] or 0) - 1 end
  delta[new_state] = (delta[new_state] or 0) + 1
end

local function opted_out(phone)
  return check_optout and redis.call("SISMEMBER", KEYS[3], phone) == 1
end

for i = first, #ARGV do
  local phone = ARGV[i]
  local rec = redis.call("HGET", KEYS[1], phone)
  local state = "queued"
  if rec then state = string.sub(rec, 1, (string.find(rec, SEP, 1, true) or 1) - 1) end
  local result
  if state == "queued" then
    if opted_out(phone) then
      write(phone, rec, state, "opted_out", record("opted_out", "OPTOUT", "the recipient opted out"))
      result = "O"
    else
      -- Charge each rule and take the charges back if one goes over: one call per rule for a phone
      -- within its limits (the common case), not a read and then a write.
      local hit
      for r = 1, n do
        if redis.call("HINCRBY", KEYS[LIMITS + r], phone, 1) > limit[r] then
          hit = r
          break
        end
      end
      if hit then
        for r = 1, hit do
          redis.call("HINCRBY", KEYS[LIMITS + r], phone, -1)
        end
        write(phone, rec, state, "rate_limited", record("rate_limited", "LIMIT", ARGV[3 + 2 * n + hit]))
        result = "L" .. hit
      else
        write(phone, rec, state, "sending", sending)
        result = "S"
      end
    end
  elseif state == "retry" then
    -- its limits were charged by the attempt that failed before reaching the vendor; an opt-out that
    -- came in meanwhile still holds
    if opted_out(phone) then
      write(phone, rec, state, "opted_out", record("opted_out", "OPTOUT", "the recipient opted out"))
      result = "O"
    else
      write(phone, rec, state, "sending", sending)
      result = "S"
    end
  elseif state == "sending" then
    local parts = fields(rec)
    if parts[4] == token then
      result = "S"  -- our own claim, made again
    elseif now - (tonumber(parts[2]) or 0) > stale then
      result = "A"
    else
      result = "W"
    end
  else
    result = "D" .. state
  end
  out[#out + 1] = result
end

for r = 1, n do
  redis.call("EXPIRE", KEYS[LIMITS + r], tonumber(ARGV[3 + n + r]))
end
for field, by in pairs(delta) do
  if by ~= 0 then redis.call("HINCRBY", KEYS[2], field, by) end
end
redis.call("EXPIRE", KEYS[1], ttl)
redis.call("EXPIRE", KEYS[2], ttl)
return out
