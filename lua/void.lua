-- void: give back hold parts that no caller was ever told of (the parts of a refused,
-- abandoned or taken-over reservation attempt), and make sure none of them can be placed
-- afterwards by a call of that attempt still on its way.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> actor
-- ARGV[4]  -> how long (ms) the tombstones are kept
-- ARGV[5]  -> reason
-- ARGV[6..] -> part ids
--
-- Each part: an active one ends VOIDED (its units come back; a VOIDED event, which pairs with
-- its RESERVED); one never placed gets a VOIDED tombstone (nothing changed: no event); one
-- that has a tombstone already is left as it is.
--
-- Output: {voided, fenced_off}  parts given back, parts made unplaceable
--         {'FENCED', reason}
local actor, keep_ms = need_text('void', 3, 'actor'), need_int('void', 4, 'keep', 0, MAX_MS)
local reason = need_text('void', 5, 'reason')
for i = 6, #ARGV do
  need_text('void', i, 'part')
end
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local voided, fenced_off = 0, 0
for i = 6, #ARGV do
  local part = ARGV[i]
  local v = redis.call('HMGET', K_HOLDS, part, 'd:' .. part)
  if v[1] then
    end_part(part, dec_hold(v[1]), 'VOIDED', actor, reason, keep_ms)
    voided = voided + 1
  elseif not v[2] then
    redis.call('HSET', K_HOLDS, 'd:' .. part, tomb('VOIDED', {loc = '', sku = '', qty = 0, exp = 0}, '', ''))
    forget_at('h:d:' .. part, keep_ms)
    fenced_off = fenced_off + 1
  end
end
return {voided, fenced_off}
