-- hold_change: change an active hold part in one step, with one event: REDUCE it to n units
-- (the rest come back to available: a REDUCED event of the units given back), or COMMIT n of
-- its units (sold; the rest come back: a COMMITTED event of n units whose change of available
-- is the units given back).
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> part id
-- ARGV[4] -> 'REDUCE' or 'COMMIT'
-- ARGV[5] -> n: the units to keep (REDUCE) or to sell (COMMIT)
-- ARGV[6] -> actor
-- ARGV[7] -> how long (ms) the tombstone is kept (COMMIT)
-- ARGV[8] -> owner: the API key the part must belong to ('*': any)
--
-- Output:
--   {'OK', units before}          changed now
--   {'SAME'}                      REDUCE: the part has n units already (a retry)
--   {'TOO_MANY', units}           n is not below (REDUCE) or not at most (COMMIT) the part's units
--   {'ENDED', outcome, units}     ended before (a COMMITTED part: the units it sold)
--   {'ENDED', 'EXPIRED'}          its expiry had passed: restored now, with an EXPIRED event
--   {'NOT_FOUND'}                 no such part for this owner
--   {'BACKORDERED'}               the part is backordered (see fill in lib.lua): none of its
--                                 units has come, so it is committed or released whole
--   {'FENCED', reason}
local part, op = need_text('hold_change', 3, 'part'), ARGV[4]
if op ~= 'REDUCE' and op ~= 'COMMIT' then
  bad('hold_change', 'op', op)
end
local n = need_int('hold_change', 5, 'n', 1, MAX_QTY)
local actor, keep_ms = need_text('hold_change', 6, 'actor'), need_int('hold_change', 7, 'keep', 0, MAX_MS)
local owner = need_text('hold_change', 8, 'owner')
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local h, other = live_part(part, keep_ms, owner)
if not h then
  if other[1] == 'ENDED' and other[2] ~= 'EXPIRED' then
    local t = redis.call('HGET', K_HOLDS, 'd:' .. part)
    if t then
      return {'ENDED', other[2], dec_tomb(t).qty}
    end
  end
  return other
end
local q = h.qty
if op == 'REDUCE' and n == q then
  return {'SAME'}
end
if n > q then
  return {'TOO_MANY', q}
end
if h.bo then
  if op == 'COMMIT' and n == q then
    end_part(part, h, 'COMMITTED', actor, '', keep_ms)
    return {'OK', q}
  end
  return {'BACKORDERED'}
end
local f = field(h.loc, h.sku, h.shard)
local back = q - n
local after = avail_incr(f, back)
if back > 0 and counted(h) then
  redis.call('HINCRBY', K_CUST, h.loc .. '|' .. h.sku .. '|' .. h.cust, -back)
end
h.qty = n
if op == 'REDUCE' then
  stock_incr(f .. '|h', -back)
  redis.call('HSET', K_HOLDS, part, enc_hold(h))
  emit('REDUCED', h.loc, h.sku, h.shard, back, after, -back, part, back, h.cust, h.token, actor, '', 0)
  return {'OK', q}
end
stock_incr(f .. '|h', -q)
stock_incr(f .. '|c', n)
cust_sold(h, n)
redis.call('HDEL', K_HOLDS, part)
redis.call('ZREM', K_EXP, part)
redis.call('HSET', K_HOLDS, 'd:' .. part, tomb('COMMITTED', h, h.fp, h.owner))
forget_at('h:d:' .. part, keep_ms)
emit('COMMITTED', h.loc, h.sku, h.shard, back, after, -q, part, n, h.cust, h.token, actor, '', 0)
return {'OK', q}
