-- Move recipients to new records, but only those whose current state is one of the allowed ones:
-- a vendor call's outcome replaces only "sending" (a receipt that beat us to it has already settled the
-- recipient and must not be overwritten); a re-run plan writes only where there is no record yet.
-- KEYS[1] recipients hash   ARGV[1] TTL (s)   ARGV[2] allowed states, space-separated ("none": no record)
-- ARGV[3..] pairs: phone, record
-- Returns the phones written.
local SEP = "\31"
local allowed = {}
for state in string.gmatch(ARGV[2], "%S+") do allowed[state] = true end
local written = {}
for i = 3, #ARGV, 2 do
  local current = redis.call("HGET", KEYS[1], ARGV[i])
  local state = "none"
  if current then state = string.sub(current, 1, (string.find(current, SEP, 1, true) or 1) - 1) end
  if allowed[state] then
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
    written[#written + 1] = ARGV[i]
  end
end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[1]))
return written
