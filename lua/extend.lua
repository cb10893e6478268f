-- extend: move an active hold part's expiry later (never earlier).
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> part id
-- ARGV[4] -> new expiry (ms); a value at or before the current expiry changes nothing,
--            so running the script twice with the same arguments writes one event
-- ARGV[5] -> actor
-- ARGV[6] -> how long (ms) a tombstone is kept, should the part turn out expired
--
-- Output:
--   {'OK', expires}        the part's expiry after the call
--   {'ENDED', outcome}     the part has ended (an overdue part is restored now, EXPIRED)
--   {'NOT_FOUND'}
--   {'FENCED', reason}
local part, new_exp, actor, keep_ms = ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local h, other = live_part(part, keep_ms)
if not h then
  return other
end
if new_exp <= h.exp then
  return {'OK', h.exp}
end
h.exp = new_exp
redis.call('HSET', K_HOLDS, part, enc_hold(h))
redis.call('ZADD', K_EXP, new_exp, part)
local after = tonumber(redis.call('HGET', K_STOCK, field(h.loc, h.sku, h.shard)))
emit('EXTENDED', h.loc, h.sku, h.shard, 0, after, 0, part, h.qty, h.cust, h.token, actor, tostring(new_exp))
return {'OK', new_exp}
