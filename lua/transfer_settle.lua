-- transfer_settle: mark a transfer complete on its source partition, once transfer_in has
-- applied it: its units are no longer in flight. Changes no available count, so writes no
-- event.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> transfer id
-- ARGV[4] -> how long (ms) the settled mark is kept (a late retry of transfer_out sees it)
--
-- Output: {'OK'} (also when already settled or unknown)
local id, keep_ms = need_text('transfer_settle', 3, 'transfer id'), need_int('transfer_settle', 4, 'keep', 0, MAX_MS)
local rec = redis.call('HGET', K_XFER, 'o:' .. id)
if rec then
  -- loc|sku|shard|qty|to partition|to shard|at
  local t = split(rec)
  redis.call('HINCRBY', K_STOCK, field(t[1], t[2], t[3]) .. '|t', -tonumber(t[4]))
  redis.call('HDEL', K_XFER, 'o:' .. id)
  redis.call('HSET', K_XFER, 's:' .. id, NOW)
  forget_at('x:s:' .. id, keep_ms)
end
return {'OK'}
