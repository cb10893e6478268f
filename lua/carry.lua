-- carry: apply one event that Redis wrote on a forked partition (after losing acknowledged
-- writes) on top of the state rebuilt from the ledger, as a new event that continues the
-- ledger's chain. The caller decides what the event still means (see reconcile); this script
-- applies it only if nothing goes negative, so a carried event can never oversell.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> carry id (idempotency: a retry changes nothing more)
-- ARGV[4]  -> event type
-- ARGV[5]  -> location
-- ARGV[6]  -> sku
-- ARGV[7]  -> shard index
-- ARGV[8]  -> change of available units
-- ARGV[9]  -> change of held units
-- ARGV[10] -> change of committed units
-- ARGV[11] -> hold part ('' when none)
-- ARGV[12] -> qty
-- ARGV[13] -> customer
-- ARGV[14] -> idempotency token (of the hold) or transaction id
-- ARGV[15] -> change of the customer's count ('' customer: ignored)
-- ARGV[16] -> what happens to the hold part: 'open', 'close' (its tombstone records qty
--             units: a part committed in part sold qty), 'extend', 'shrink' (qty units fewer),
--             'sold' (no part: qty units sold under the window of ARGV[17]'s record) or ''
-- ARGV[17] -> the part's record (open; sold: the customer and the window)
-- ARGV[18] -> the part's expiry in ms (open, extend)
-- ARGV[19] -> actor
-- ARGV[20] -> reason (names the forked event and the run)
-- ARGV[21] -> how long (ms) the carry record is kept
--
-- Output: {'OK', seq, available_after, 'new'|'replay'}
--         {'INSUFFICIENT', available, held}   a count would go negative: nothing changed
--         {'CONFLICT', why}                    the hold part is not in the state the op needs
--         {'NOT_FENCED'}                       only a fenced partition is carried over into
--         {'UNKNOWN_POOL'}
local id, typ, loc, sku, shard = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local da = need_int('carry', 8, 'available change', -MAX_COUNT, MAX_COUNT)
local dh = need_int('carry', 9, 'held change', -MAX_COUNT, MAX_COUNT)
local dc = need_int('carry', 10, 'committed change', -MAX_COUNT, MAX_COUNT)
local part, qty = need_text('carry', 11, 'part'), need_int('carry', 12, 'qty', 0, MAX_COUNT)
local cust, token = need_text('carry', 13, 'customer'), need_text('carry', 14, 'token')
local dcust = need_int('carry', 15, 'customer change', -MAX_COUNT, MAX_COUNT)
local op, rec, exp = ARGV[16], ARGV[17], ARGV[18]
if op == 'open' or op == 'extend' then
  need_int('carry', 18, 'expiry', 0, MAX_MS)
end
local actor, reason = need_text('carry', 19, 'actor'), need_text('carry', 20, 'reason')
local keep_ms = need_int('carry', 21, 'keep', 0, MAX_MS)
local replay = tx_replay(id)
if replay then
  return replay
end
if not fenced() then
  return {'NOT_FENCED'}
end
local f = field(loc, sku, shard)
local c = redis.call('HMGET', K_STOCK, f, f .. '|h', f .. '|c')
if not c[1] then
  return {'UNKNOWN_POOL'}
end
local avail, held = tonumber(c[1]), tonumber(c[2] or '0')
if avail + da < 0 or held + dh < 0 or tonumber(c[3] or '0') + dc < 0 then
  return {'INSUFFICIENT', avail, held}
end
local active = part ~= '' and redis.call('HEXISTS', K_HOLDS, part) == 1
if op == 'open' and active then
  return {'CONFLICT', 'hold part ' .. part .. ' is already active'}
elseif (op == 'close' or op == 'extend' or op == 'shrink') and not active then
  return {'CONFLICT', 'hold part ' .. part .. ' is not active'}
end
local after = avail_incr(f, da)
redis.call('HINCRBY', K_STOCK, f .. '|h', dh)
redis.call('HINCRBY', K_STOCK, f .. '|c', dc)
if cust ~= '' and dcust ~= 0 then
  redis.call('HINCRBY', K_CUST, loc .. '|' .. sku .. '|' .. cust, dcust)
end
if op == 'open' then
  redis.call('HSET', K_HOLDS, part, rec)
  redis.call('ZADD', K_EXP, exp, part)
elseif op == 'close' then
  local h = dec_hold(redis.call('HGET', K_HOLDS, part))
  if typ == 'COMMITTED' then
    cust_sold(h, qty) -- a sale under a limit over a window counts for the window
  end
  h.qty = qty
  redis.call('HDEL', K_HOLDS, part)
  redis.call('ZREM', K_EXP, part)
  redis.call('HSET', K_HOLDS, 'd:' .. part, tomb(typ, h, h.fp, h.owner))
  forget_at('h:d:' .. part, keep_ms)
elseif op == 'extend' then
  local h = dec_hold(redis.call('HGET', K_HOLDS, part))
  h.exp = exp
  redis.call('HSET', K_HOLDS, part, enc_hold(h))
  redis.call('ZADD', K_EXP, exp, part)
elseif op == 'sold' then
  cust_sold(dec_hold(rec), qty)
elseif op == 'shrink' then
  local h = dec_hold(redis.call('HGET', K_HOLDS, part))
  h.qty = h.qty - qty
  redis.call('HSET', K_HOLDS, part, enc_hold(h))
end
local ev_exp = 0
if op == 'open' or op == 'extend' then
  ev_exp = exp
end
local seq = emit(typ, loc, sku, shard, ARGV[8], after, ARGV[9], part, qty, cust, token, actor, reason, ev_exp)
redis.call('HSET', K_HOLDS, 'i:tx:' .. id, 'carry|' .. seq .. '|' .. after)
forget_at('h:i:tx:' .. id, keep_ms)
return {'OK', seq, after, 'new'}
