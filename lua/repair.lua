-- repair: remove a drift that reconciliation measured on one shard's counter (a change made
-- behind the engine's back), as an audited event.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> location
-- ARGV[4]  -> sku
-- ARGV[5]  -> shard index
-- ARGV[6]  -> drift: live count minus the ledger's count (taken off the live count, so traffic
--             since the measurement, which moved both alike, does not matter)
-- ARGV[7]  -> repair id (idempotency: a retry changes nothing more)
-- ARGV[8]  -> actor
-- ARGV[9]  -> reason (names the reconciliation run)
-- ARGV[10] -> how long (ms) the repair record is kept
-- ARGV[11] -> the counter: '' available, 'h' held, 'c' committed
--
-- The event is ADJUSTED with delta 0 and held_delta 0: in the ledger's account the count
-- never changed; the event records that Redis was brought back to it, and by how much (qty,
-- with the reason naming the counter). available_after is the (corrected) available count.
-- Fenced partitions may be repaired.
--
-- Output: {'OK', before, after, 'new'|'replay'}
--         {'INSUFFICIENT', available}   the correction would make the count negative
--         {'UNKNOWN_POOL'}
local loc, sku, shard = need_text('repair', 3, 'location'), need_text('repair', 4, 'sku'), need_int('repair', 5, 'shard', 0, 1023)
local drift = need_int('repair', 6, 'drift', -MAX_COUNT, MAX_COUNT)
local id, actor, reason = need_text('repair', 7, 'repair id'), need_text('repair', 8, 'actor'), need_text('repair', 9, 'reason')
local keep_ms = need_int('repair', 10, 'keep', 0, MAX_MS)
local counter = ARGV[11]
local replay = tx_replay(id)
if replay then
  return replay
end
local f = field(loc, sku, shard)
local before = redis.call('HGET', K_STOCK, f)
if not before then
  return {'UNKNOWN_POOL'}
end
local cf = f
if counter ~= '' then
  cf = f .. '|' .. counter
  before = redis.call('HGET', K_STOCK, cf) or '0'
end
before = tonumber(before)
if before - drift < 0 then
  return {'INSUFFICIENT', before}
end
local after
if counter == '' then
  after = avail_incr(f, -drift)
else
  after = redis.call('HINCRBY', K_STOCK, cf, -drift)
end
local avail = after
if counter ~= '' then
  avail = redis.call('HGET', K_STOCK, f)
end
local qty = drift
if qty < 0 then
  qty = -qty
end
emit('ADJUSTED', loc, sku, shard, 0, avail, 0, '', qty, '', id, actor, reason, 0)
redis.call('HSET', K_HOLDS, 'i:tx:' .. id, 'repair|' .. before .. '|' .. after)
forget_at('h:i:tx:' .. id, keep_ms)
return {'OK', before, after, 'new'}
