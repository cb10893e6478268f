-- transfer_in: give a shard the units that transfer_out took from another shard of its pool.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> location
-- ARGV[4]  -> sku
-- ARGV[5]  -> destination shard index
-- ARGV[6]  -> qty (> 0)
-- ARGV[7]  -> transfer id
-- ARGV[8]  -> source partition
-- ARGV[9]  -> source shard index
-- ARGV[10] -> actor
-- ARGV[11] -> how long (ms) the record of the applied transfer is kept
--
-- Output:
--   {'OK', available_after, 'new'|'existing'}  ('existing': applied before; nothing changed)
--   {'UNKNOWN_POOL'}
--   {'FENCED', reason}
local loc, sku, shard, qty, id = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local from_part, from_shard, actor, keep_ms = ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local f = field(loc, sku, shard)
if redis.call('HEXISTS', K_XFER, 'i:' .. id) == 1 then
  return {'OK', tonumber(redis.call('HGET', K_STOCK, f)), 'existing'}
end
if not redis.call('HGET', K_STOCK, f) then
  return {'UNKNOWN_POOL'}
end
local after = redis.call('HINCRBY', K_STOCK, f, qty)
redis.call('HSET', K_XFER, 'i:' .. id, NOW)
forget_at('x:i:' .. id, keep_ms)
emit('TRANSFER_IN', loc, sku, shard, qty, after, 0, '', qty, '', id, actor, from_part .. '/' .. from_shard)
return {'OK', after, 'new'}
