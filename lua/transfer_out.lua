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
local t, reply = transfer_begin('transfer_out', 'o:')
if reply then
  return reply
end
if redis.call('HEXISTS', K_XFER, 's:' .. t.id) == 1 then
  return {'ENDED', 'SETTLED'}
end
local avail = redis.call('HGET', K_STOCK, t.f)
if not avail then
  return {'UNKNOWN_POOL'}
end
if tonumber(avail) < t.qty then
  return {'INSUFFICIENT', tonumber(avail)}
end
local after = redis.call('HINCRBY', K_STOCK, t.f, -t.qty)
-- Until settled, the units count as the source's in flight ("|t"), so that a reader summing
-- the shards one after another never misses them.
redis.call('HINCRBY', K_STOCK, t.f .. '|t', t.qty)
local to_part, to_shard = ARGV[8], ARGV[9]
redis.call('HSET', K_XFER, 'o:' .. t.id, table.concat({t.loc, t.sku, t.shard, t.qty, to_part, to_shard, NOW}, '|'))
emit('TRANSFER_OUT', t.loc, t.sku, t.shard, -t.qty, after, 0, '', t.qty, '', t.id, t.actor, t.other, 0)
return {'OK', after, 'new'}
