-- reserve: place one hold part on one shard.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3..20] -> the request (see read_req in lib.lua): part id, location, sku, shard, qty,
--             expires (ms), customer, per-customer limit, idempotency token, fingerprint,
--             mode (F, S or P), owner, holds to reclaim inline, tombstone and refusal
--             retention (ms), the pool's safety stock, the window (ms) of
--             the per-customer limit, backorders ('0', 'q' or the most units backordered)
--
-- Output:
--   {'OK', qty, expires, available_after, 'new'}       the part is held now
--   {'OK', qty, expires, available_after, 'new', 'B'}  the part is backordered: its units are
--                                      owed, taken from stock when they come (see fill)
--   {'OK', qty, expires, available_after, 'existing'}  the part was placed before (a retry;
--                                      'B' after it while it is still backordered)
--   {'ENDED', outcome, qty, expires}   the part was placed before and has ended
--   {'INSUFFICIENT', available, rises, in_flight, next_expiry}
--                                      the shard has fewer than qty units above the safety
--                                      stock (after inline reclaim); see short() in lib.lua
--   {'LIMIT', used}                    the customer would pass the pool's per-customer limit
--   {'REFUSED', code, n}               this request was refused before (code INSUFFICIENT or
--                                      LIMIT, n as in that reply)
--   {'SLOW'}                           this request went on to the slow path before
--   {'VOIDED'}                         this part id was voided: it can never be placed
--   {'IDEM_MISMATCH'}                  the part id belongs to a different request
--   {'UNKNOWN_POOL'}                   the shard does not exist
--   {'FENCED', reason}                 the partition refuses writes until repaired
local r = read_req(3)
if #ARGV ~= 2 + REQ_WIDTH then
  return redis.error_reply('ERR reserve: ' .. (#ARGV - 2) .. ' request values, want ' .. REQ_WIDTH)
end
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
return reserve_one(r)
