-- snapshot: one partition's counters, open holds, pending transfers, seq and chain head,
-- read atomically: the consistent cut that reconciliation compares the ledger against.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
--
-- Output: {seq, head, fence, stock (flat field/value list), holds (flat; includes the
--         "d:" and "i:" records), xfer (flat)}
local meta = redis.call('HMGET', K_META, 'seq', 'head', 'fence')
return {meta[1] or '0', meta[2] or GENESIS, meta[3] or '',
  redis.call('HGETALL', K_STOCK), redis.call('HGETALL', K_HOLDS), redis.call('HGETALL', K_XFER)}
