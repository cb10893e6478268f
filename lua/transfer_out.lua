-- transfer_out: take units from one shard of a pool, to be given to another shard of the
-- same pool by transfer_in (rebalancing). The pending transfer is recorded here until
-- transfer_settle, so an interrupted transfer can be completed; so are its units, as the
-- shard's units in flight ("|t").
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> location
-- ARGV[4]  -> sku
-- ARGV[5]  -> source shard index
-- ARGV[6]  -> qty (> 0)
-- ARGV[7]  -> transfer id
-- ARGV[8]  -> destination partition
-- ARGV[9]  -> destination shard index
-- ARGV[10] -> actor
--
-- Output:
--   {'OK', available_after, 'new'|'existing'}  ('existing': this transfer id was taken out before)
--   {'INSUFFICIENT', available}
--   {'UNKNOWN_POOL'}
--   {'ENDED', 'SETTLED'}          this transfer id was completed and settled before
--   {'FENCED', reason}
local loc, sku = need_text('transfer_out', 3, 'location'), need_text('transfer_out', 4, 'sku')
local shard, qty = need_int('transfer_out', 5, 'shard', 0, 1023), need_int('transfer_out', 6, 'qty', 1, MAX_COUNT)
local id, actor = need_text('transfer_out', 7, 'transfer id'), need_text('transfer_out', 10, 'actor')
local to_part, to_shard = need_int('transfer_out', 8, 'partition', 0, 16383), need_int('transfer_out', 9, 'shard', 0, 1023)
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local f = field(loc, sku, shard)
if redis.call('HEXISTS', K_XFER, 'o:' .. id) == 1 then
  return {'OK', tonumber(redis.call('HGET', K_STOCK, f)), 'existing'}
end
if redis.call('HEXISTS', K_XFER, 's:' .. id) == 1 then
  return {'ENDED', 'SETTLED'}
end
local avail = redis.call('HGET', K_STOCK, f)
if not avail then
  return {'UNKNOWN_POOL'}
end
if tonumber(avail) < qty then
  return {'INSUFFICIENT', tonumber(avail)}
end
local after = redis.call('HINCRBY', K_STOCK, f, -qty)
-- Until settled, the units count as the source's in flight ("|t"), so that a reader summing
-- the shards one after another never misses them.
redis.call('HINCRBY', K_STOCK, f .. '|t', qty)
redis.call('HSET', K_XFER, 'o:' .. id, table.concat({loc, sku, shard, qty, to_part, to_shard, NOW}, '|'))
emit('TRANSFER_OUT', loc, sku, shard, -qty, after, 0, '', qty, '', id, actor, to_part .. '/' .. to_shard, 0)
return {'OK', after, 'new'}
