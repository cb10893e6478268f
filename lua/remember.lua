-- remember: store the answer of a reservation that took several calls (multi-part or cart),
-- under its idempotency token, so a retry answers the same; or, when it failed, clear its
-- in-progress mark so the key may be retried. Changes no counter: no event.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> idempotency token
-- ARGV[4] -> request fingerprint
-- ARGV[5] -> answer ("" to clear the in-progress mark instead)
-- ARGV[6] -> how long (ms) the record is kept
--
-- Output: {'OK', answer} with the answer now stored: ARGV[5], or the one another call
--         stored first; {'IDEM_MISMATCH'} when the token holds another request.
local token, fp, answer, keep_ms = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local prior = redis.call('HGET', K_HOLDS, 'i:' .. token)
if prior then
  local bar = string.find(prior, '|', 1, true)
  if string.sub(prior, 1, bar - 1) ~= fp then
    return {'IDEM_MISMATCH'}
  end
  local rest = string.sub(prior, bar + 1)
  if not pending_since(rest) then
    return {'OK', rest}
  end
end
if answer == '' then
  redis.call('HDEL', K_HOLDS, 'i:' .. token)
  return {'OK', ''}
end
redis.call('HSET', K_HOLDS, 'i:' .. token, fp .. '|' .. answer)
forget_at('h:i:' .. token, keep_ms)
return {'OK', answer}
