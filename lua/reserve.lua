-- reserve: place one hold part on one shard.
--
-- KEYS[1..10] -> the partition's keys (see lib.lua)
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
-- ARGV[12] -> request fingerprint (same key with another fingerprint is refused)
-- ARGV[13] -> "1": answer from the idempotency record when there is one
-- ARGV[14] -> "1": this part completes the request; store the answer under the token
-- ARGV[15] -> answer to store (the hold id and expiry), when ARGV[14] is "1"
-- ARGV[16] -> actor (API key id)
-- ARGV[17] -> how many expired holds to reclaim inline when the shard is short
-- ARGV[18] -> how long (ms) idempotency records and tombstones are kept
-- ARGV[19] -> in-progress lease (ms): when > 0 and ARGV[13] is "1", a call that does not
--             complete the request marks the key in progress; duplicates arriving within the
--             lease are told IN_PROGRESS, later ones take the request over
--
-- Output:
--   {'OK', qty, expires, available_after, 'new'|'existing'}  the part is held ('existing': placed earlier)
--   {'REPLAY', answer}             the request was answered before; nothing changed
--   {'INSUFFICIENT', available}    the shard has fewer than qty units (after inline reclaim)
--   {'LIMIT', used}                the customer would pass the pool's per-customer limit
--   {'ENDED', outcome}             this part was placed earlier and has already ended
--   {'IDEM_MISMATCH'}              the token was used for a different request
--   {'IN_PROGRESS'}                a duplicate of this request is being served right now
--   {'UNKNOWN_POOL'}               the shard does not exist
--   {'FENCED', reason}             the partition refuses writes until repaired
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return reserve_one(read_req(3))
