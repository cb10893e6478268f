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
local loc, sku = need_text('transfer_in', 3, 'location'), need_text('transfer_in', 4, 'sku')
local shard, qty = need_int('transfer_in', 5, 'shard', 0, 1023), need_int('transfer_in', 6, 'qty', 1, MAX_COUNT)
local id, actor = need_text('transfer_in', 7, 'transfer id'), need_text('transfer_in', 10, 'actor')
local from_part, from_shard = need_int('transfer_in', 8, 'partition', 0, 16383), need_int('transfer_in', 9, 'shard', 0, 1023)
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
local after = avail_incr(f, qty)
redis.call('HSET', K_XFER, 'i:' .. id, NOW)
emit('TRANSFER_IN', loc, sku, shard, qty, after, 0, '', qty, '', id, actor, from_part .. '/' .. from_shard, 0)
return {'OK', after, 'new'}
