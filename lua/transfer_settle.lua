-- transfer_settle: mark a transfer complete on its source partition, once transfer_in has
-- applied it. Changes no counter, so writes no event.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> transfer id
-- ARGV[4] -> how long (ms) the settled mark is kept (a late retry of transfer_out sees it)
--
-- Output: {'OK'} (also when already settled or unknown)
local id, keep_ms = ARGV[3], tonumber(ARGV[4])
if redis.call('HDEL', K_XFER, 'o:' .. id) == 1 then
  redis.call('HSET', K_XFER, 's:' .. id, NOW)
  forget_at('x:s:' .. id, keep_ms)
end
return {'OK'}
