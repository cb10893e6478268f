-- repair: remove a drift that reconciliation measured on one shard's available count (a
-- change made behind the engine's back), as an audited event.
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
--
-- The event is ADJUSTED with delta 0 and available_after = the corrected count: in the
-- ledger's account the count never changed; the event records that Redis was brought back to
-- it, and by how much (qty, with the reason). Fenced partitions may be repaired.
--
-- Output: {'OK', before, after, 'new'|'replay'}
--         {'INSUFFICIENT', available}   the correction would make the count negative
--         {'UNKNOWN_POOL'}
local loc, sku, shard, drift = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local id, actor, reason, keep_ms = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
local rf = 'i:tx:' .. id
local prior = redis.call('HGET', K_HOLDS, rf)
if prior then
  local r = split(prior)
  return {'OK', tonumber(r[2]), tonumber(r[3]), 'replay'}
end
local f = field(loc, sku, shard)
local before = redis.call('HGET', K_STOCK, f)
if not before then
  return {'UNKNOWN_POOL'}
end
before = tonumber(before)
if before - drift < 0 then
  return {'INSUFFICIENT', before}
end
local after = redis.call('HINCRBY', K_STOCK, f, -drift)
local qty = drift
if qty < 0 then
  qty = -qty
end
emit('ADJUSTED', loc, sku, shard, 0, after, 0, '', qty, '', id, actor, reason)
redis.call('HSET', K_HOLDS, rf, 'repair|' .. before .. '|' .. after)
forget_at('h:' .. rf, keep_ms)
return {'OK', before, after, 'new'}
