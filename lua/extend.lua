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
-- ARGV[7] -> owner: the API key the part must belong to ('*': any)
--
-- Output:
--   {'OK', expires}        the part's expiry after the call
--   {'ENDED', outcome}     the part has ended (an overdue part is restored now, EXPIRED)
--   {'NOT_FOUND'}
--   {'FENCED', reason}
local part, new_exp = need_text('extend', 3, 'part'), need_int('extend', 4, 'expiry', 0, MAX_MS)
local actor, keep_ms = need_text('extend', 5, 'actor'), need_int('extend', 6, 'keep', 0, MAX_MS)
local owner = need_text('extend', 7, 'owner')
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local h, other = live_part(part, keep_ms, owner)
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
emit('EXTENDED', h.loc, h.sku, h.shard, 0, after, 0, part, h.qty, h.cust, h.token, actor, '', new_exp)
return {'OK', new_exp}
