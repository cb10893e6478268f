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
local rec = redis.call('HGET', K_HOLDS, part)
if not rec then
  local ended = redis.call('HGET', K_HOLDS, 'd:' .. part)
  if ended then
    return {'ENDED', split(ended)[1]}
  end
  return {'NOT_FOUND'}
end
local h = dec_hold(rec)
if h.exp <= NOW then
  end_part(part, h, 'EXPIRED', 'sweeper', '', keep_ms)
  return {'ENDED', 'EXPIRED'}
end
end_part(part, h, 'COMMITTED', actor, '', keep_ms)
return {'OK'}
