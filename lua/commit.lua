-- commit: end an active hold part as sold.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> part id
-- ARGV[4] -> actor
-- ARGV[5] -> how long (ms) the tombstone is kept
--
-- Output:
--   {'OK'}                 committed now
--   {'ENDED', outcome}     ended before (COMMITTED on a retry; RELEASED or EXPIRED: gone)
--   {'ENDED', 'EXPIRED'}   also when its expiry had passed: restored now, with an EXPIRED event
--   {'NOT_FOUND'}          no such part (never existed, or its tombstone was forgotten)
--   {'FENCED', reason}
local part, actor, keep_ms = ARGV[3], ARGV[4], tonumber(ARGV[5])
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return end_hold(part, 'COMMITTED', actor, keep_ms, '')
