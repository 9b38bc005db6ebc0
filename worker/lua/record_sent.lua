-- Record the outcome of a vendor call for the recipients this call claimed. A record is written only
-- over "sending": a receipt that came back before us (the vendor answered the phone faster than we
-- recorded its answer to our call) has already settled the recipient, and must not be overwritten.
-- KEYS[1] recipients hash   ARGV[1] TTL (s)   ARGV[2..] pairs: phone, record
-- Returns how many records were written.
local SENDING = "sending\31"
local written = 0
for i = 2, #ARGV, 2 do
  local current = redis.call("HGET", KEYS[1], ARGV[i])
  if not current or string.sub(current, 1, #SENDING) == SENDING then
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
    written = written + 1
  end
end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[1]))
return written
