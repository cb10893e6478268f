-- reserve: place one hold part on one shard.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> part id ("<token>.<line>.<shard>"), unique within the partition
-- ARGV[4]  -> location
-- ARGV[5]  -> sku
-- ARGV[6]  -> shard index
-- ARGV[7]  -> qty (> 0)
-- ARGV[8]  -> expires at (ms)
-- ARGV[9]  -> customer id, or ""
-- ARGV[10] -> per-customer limit of the pool (0: none)
-- ARGV[11] -> idempotency token (scoped hash of the caller's idempotency key)
-- ARGV[12] -> request fingerprint (the same token with another fingerprint is refused)
-- ARGV[13] -> "1": this is the request's first call: answer from its idempotency record
-- ARGV[14] -> "1": this part alone completes the request
-- ARGV[15] -> actor (API key id)
-- ARGV[16] -> how many expired holds to reclaim inline when the shard is short
-- ARGV[17] -> how long (ms) idempotency records and tombstones are kept
-- ARGV[18] -> in-progress lease (ms): when > 0 and ARGV[13] is "1", a call that does not
--             complete the request marks the token in progress; duplicates arriving within
--             the lease are told IN_PROGRESS, later ones take the request over
--
-- Output:
--   {'OK', qty, expires, available_after, 'new'}       the part is held now
--   {'OK', qty, expires, available_after, 'existing'}  the part was placed before (a retry)
--   {'ENDED', outcome, qty, expires}   the part was placed before and has ended
--   {'REPLAY', answer}                 a request of several calls was answered before
--   {'INSUFFICIENT', available}        the shard has fewer than qty units (after inline reclaim)
--   {'LIMIT', used}                    the customer would pass the pool's per-customer limit
--   {'IDEM_MISMATCH'}                  the token was used for a different request
--   {'IN_PROGRESS'}                    a duplicate of this request is being served right now
--   {'UNKNOWN_POOL'}                   the shard does not exist
--   {'FENCED', reason}                 the partition refuses writes until repaired
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return reserve_one(read_req(3))
