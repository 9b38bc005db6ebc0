-- Move a campaign's status by a control action, only from the statuses the action may leave, and keep
-- the active set (the ids the runner's tick looks at) with it. One script, so that a pause racing a
-- cancel or the runner's own moves never leaves a status the table does not allow.
--
-- KEYS[1] campaign meta hash   KEYS[2] active campaigns set   KEYS[3] its pages list   KEYS[4] its held list
-- ARGV[1] campaign id   ARGV[2] action   ARGV[3] now (ms)
-- Actions (from -> to; a status already reached is answered as is, changing nothing):
--   pause:     scheduled, running -> paused
--   resume:    paused -> scheduled (start_ms still ahead) | running
--   cancel:    scheduled, running, paused -> cancelling
--   start:     scheduled -> running (start_ms due)             [runner]
--   finish:    running -> done                                  [runner]
--   cancelled: cancelling -> cancelled (pages and held dropped)  [runner]
-- Returns {status before, status after}: after is "" when the action is not allowed from before
-- (before is "" when the campaign does not exist).
local status = redis.call("HGET", KEYS[1], "status")
if not status then return {"", ""} end
local action = ARGV[2]
local now = tonumber(ARGV[3])
local start_ms = tonumber(redis.call("HGET", KEYS[1], "start_ms") or "0") or 0

local reached = {pause = "paused", cancel = "cancelling", finish = "done", cancelled = "cancelled"}
local from = {
  pause = {scheduled = true, running = true},
  resume = {paused = true},
  cancel = {scheduled = true, running = true, paused = true},
  start = {scheduled = true},
  finish = {running = true},
  cancelled = {cancelling = true},
}
if status == reached[action] or (action == "cancel" and status == "cancelled")
    or (action == "resume" and (status == "running" or status == "scheduled")) then
  return {status, status}
end
if not from[action] or not from[action][status] then return {status, ""} end

local to = reached[action]
if action == "resume" then
  if start_ms > now then to = "scheduled" else to = "running" end
elseif action == "start" then
  if start_ms > now then return {status, status} end
  to = "running"
end
redis.call("HSET", KEYS[1], "status", to)
if to == "done" or to == "cancelled" then
  redis.call("HSET", KEYS[1], "finished_ms", now, "held_reason", "", "held_until_ms", "0")
  redis.call("SREM", KEYS[2], ARGV[1])
  redis.call("DEL", KEYS[3], KEYS[4])
end
return {status, to}
