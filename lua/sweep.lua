-- sweep: restore holds whose expiry has come, and forget old idempotency records and tombstones.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms); a hold expires when its expiry <= now
-- ARGV[3] -> at most this many holds restored
-- ARGV[4] -> at most this many old records forgotten
-- ARGV[5] -> how long (ms) tombstones of expired holds are kept
--
-- Output: {restored, next_expiry (ms, -1 when no hold is open), forgotten}
--         or {'FENCED', reason}
local limit, gc_limit = need_int('sweep', 3, 'limit', 0, 100000), need_int('sweep', 4, 'gc limit', 0, 100000)
local keep_ms = need_int('sweep', 5, 'keep', 0, MAX_MS)
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local restored = 0
if limit > 0 then
  restored = reclaim(limit, keep_ms)
end
local old = redis.call('ZRANGEBYSCORE', K_GC, '-inf', NOW, 'LIMIT', 0, gc_limit)
for _, m in ipairs(old) do
  local kind, id = string.sub(m, 1, 1), string.sub(m, 3)
  if kind == 'h' then
    redis.call('HDEL', K_HOLDS, id)
  elseif kind == 'x' then
    redis.call('HDEL', K_XFER, id)
  end
  redis.call('ZREM', K_GC, m)
end
local nxt = redis.call('ZRANGE', K_EXP, 0, 0, 'WITHSCORES')
local next_exp = -1
if nxt[2] then
  next_exp = tonumber(nxt[2])
end
return {restored, next_exp, #old}
