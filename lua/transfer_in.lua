-- transfer_in: give a shard the units that transfer_out took from another shard of its pool.
-- The record that it was applied stays until transfer_done, which runs only after the source
-- settled the transfer: as long as the source still lists the transfer as pending, a retry
-- (or CompleteTransfers) finds the record here and changes nothing.
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
--
-- Output:
--   {'OK', available_after, 'new'|'existing'}  ('existing': applied before; nothing changed)
--   {'UNKNOWN_POOL'}
--   {'FENCED', reason}
local t, reply = transfer_begin('transfer_in', 'i:')
if reply then
  return reply
end
if not redis.call('HGET', K_STOCK, t.f) then
  return {'UNKNOWN_POOL'}
end
local after = avail_incr(t.f, t.qty)
redis.call('HSET', K_XFER, 'i:' .. t.id, NOW)
emit('TRANSFER_IN', t.loc, t.sku, t.shard, t.qty, after, 0, '', t.qty, '', t.id, t.actor, t.other, 0)
return {'OK', after, 'new'}
