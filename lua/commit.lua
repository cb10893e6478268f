-- commit: end an active hold part as sold.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> part id
-- ARGV[4] -> actor
-- ARGV[5] -> how long (ms) the tombstone is kept
-- ARGV[6] -> owner: the API key the part must belong to ('*': any)
--
-- Output:
--   {'OK'}                 committed now
--   {'ENDED', outcome}     ended before (COMMITTED on a retry; RELEASED or EXPIRED: gone)
--   {'ENDED', 'EXPIRED'}   also when its expiry had passed: restored now, with an EXPIRED event
--   {'NOT_FOUND'}          no such part for this owner (never placed, voided, another key's,
--                          or its tombstone was forgotten)
--   {'FENCED', reason}
local part, actor = need_text('commit', 3, 'part'), need_text('commit', 4, 'actor')
local keep_ms, owner = need_int('commit', 5, 'keep', 0, MAX_MS), need_text('commit', 6, 'owner')
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return end_hold(part, 'COMMITTED', actor, keep_ms, '', owner)
