-- release: end an active hold part and give its units back.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> part id
-- ARGV[4] -> actor
-- ARGV[5] -> how long (ms) the tombstone is kept; 0 keeps none (compensation of a
--            reservation whose answer never reached the caller, so a retry may place it anew)
-- ARGV[6] -> reason ("" for a customer's release)
--
-- Output:
--   {'OK'}                 released now
--   {'ENDED', outcome}     ended before (RELEASED on a retry; EXPIRED or COMMITTED otherwise)
--   {'ENDED', 'EXPIRED'}   also when its expiry had passed: restored now, with an EXPIRED event
--   {'NOT_FOUND'}
--   {'FENCED', reason}
local part, actor, keep_ms, reason = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return end_hold(part, 'RELEASED', actor, keep_ms, reason)
