-- release: end an active hold part and give its units back.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> part id
-- ARGV[4] -> actor
-- ARGV[5] -> how long (ms) the tombstone is kept
-- ARGV[6] -> reason ("" for a customer's release)
-- ARGV[7] -> owner: the API key the part must belong to ('*': any)
--
-- Output:
--   {'OK'}                 released now
--   {'ENDED', outcome}     ended before (RELEASED on a retry; EXPIRED or COMMITTED otherwise)
--   {'ENDED', 'EXPIRED'}   also when its expiry had passed: restored now, with an EXPIRED event
--   {'NOT_FOUND'}
--   {'FENCED', reason}
local part, actor = need_text('release', 3, 'part'), need_text('release', 4, 'actor')
local keep_ms, reason = need_int('release', 5, 'keep', 0, MAX_MS), need_text('release', 6, 'reason')
local owner = need_text('release', 7, 'owner')
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return end_hold(part, 'RELEASED', actor, keep_ms, reason, owner)
