-- transfer_done: on the destination of a transfer its source has settled, schedule the
-- record that transfer_in applied it for removal: nothing can ask to apply it again.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> transfer id
-- ARGV[4] -> how long (ms) the record is still kept
--
-- Output: {'OK'}
local id, keep_ms = need_text('transfer_done', 3, 'transfer id'), need_int('transfer_done', 4, 'keep', 0, MAX_MS)
if redis.call('HEXISTS', K_XFER, 'i:' .. id) == 1 then
  forget_at('x:i:' .. id, keep_ms)
end
return {'OK'}
