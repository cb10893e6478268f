-- adjust: a vendor's change to one shard's available units.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> location
-- ARGV[4]  -> sku
-- ARGV[5]  -> shard index
-- ARGV[6]  -> kind: RESTOCK (+n), SPOILAGE (-n), ADJUSTMENT (signed n), SET (available := n),
--             WRITEOFF (spoil every available unit; n is ignored),
--             or CREATE (make the shard with 0 units when it does not exist; never changes one),
--             or INSUFFICIENT or TOO_MANY: the caller found a sharded pool's change refused so
--             (n units asked for, ARGV[14] the pool's available units): record the refusal
-- ARGV[7]  -> n
-- ARGV[8]  -> transaction id (idempotency field, unique per shard)
-- ARGV[9]  -> request fingerprint
-- ARGV[10] -> actor
-- ARGV[11] -> reason
-- ARGV[12] -> how long (ms) the transaction record is kept
-- ARGV[13] -> the most units the shard may have available
-- ARGV[14], ARGV[15] -> for a share of a sharded pool's change: the pool's available units
--             before the change and the whole change, kept in the transaction record so a
--             retry completes the same change ('' for a single-shard pool)
--
-- Output:
--   {'OK', before, after, 'new'|'replay', pool before, whole change}
--                                          the shard's available before and after the change,
--                                          and (sharded pools) the pool's, as recorded
--   {'INSUFFICIENT', available, n}         the change would make available negative
--   {'TOO_MANY', available, n}             the change would make available exceed ARGV[13]
--                                          (a refusal is recorded: a retry gets it again)
--   {'UNKNOWN_POOL'}
--   {'IDEM_MISMATCH'}                      the transaction id was used for another change
--   {'FENCED', reason}
-- A change of zero units (SET to the current value) writes no event. The change itself is
-- lib.lua's adjust_one, which adjust_batch shares.
local a = read_adjust('adjust', 3, true)
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return adjust_one(a)
