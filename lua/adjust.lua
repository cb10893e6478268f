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
--             or CREATE (make the shard with 0 units when it does not exist; never changes one)
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
--   {'INSUFFICIENT', available}            the change would make available negative
--   {'TOO_MANY', available}                the change would make available exceed ARGV[13]
--   {'UNKNOWN_POOL'}
--   {'IDEM_MISMATCH'}                      the transaction id was used for another change
--   {'FENCED', reason}
-- A change of zero units (SET to the current value) writes no event.
local loc, sku = need_text('adjust', 3, 'location'), need_text('adjust', 4, 'sku')
local shard, kind = need_int('adjust', 5, 'shard', 0, 1023), ARGV[6]
local n, tx, fp, actor, reason, keep_ms, ceiling
if kind ~= 'CREATE' then
  n = need_int('adjust', 7, 'n', -MAX_QTY, MAX_COUNT)
  tx, fp, actor = need_text('adjust', 8, 'transaction id'), need_text('adjust', 9, 'fingerprint'), need_text('adjust', 10, 'actor')
  reason, keep_ms = need_text('adjust', 11, 'reason'), need_int('adjust', 12, 'keep', 0, MAX_MS)
  ceiling = need_int('adjust', 13, 'ceiling', 0, MAX_COUNT)
  if (ARGV[14] or '') ~= '' then
    need_int('adjust', 14, 'pool before', 0, MAX_COUNT)
    need_int('adjust', 15, 'whole change', -MAX_COUNT, MAX_COUNT)
  end
end
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local f = field(loc, sku, shard)
if kind == 'CREATE' then
  local cur = redis.call('HGET', K_STOCK, f)
  if not cur then
    cur = 0
    redis.call('HSET', K_STOCK, f, 0, f .. '|h', 0, f .. '|c', 0, f .. '|r', 0, f .. '|t', 0)
  end
  return {'OK', tonumber(cur), tonumber(cur), 'new'}
end
local tf = 'i:tx:' .. tx
local prior = redis.call('HGET', K_HOLDS, tf)
if prior then
  local r = split(prior)
  if r[1] ~= fp then
    return {'IDEM_MISMATCH'}
  end
  return {'OK', tonumber(r[2]), tonumber(r[3]), 'replay', r[4] or '', r[5] or ''}
end
local before = redis.call('HGET', K_STOCK, f)
if not before then
  return {'UNKNOWN_POOL'}
end
before = tonumber(before)
local delta, typ = 0, 'ADJUSTED'
if kind == 'RESTOCK' then
  delta, typ = n, 'RESTOCKED'
elseif kind == 'SPOILAGE' then
  delta, typ = -n, 'SPOILED'
elseif kind == 'ADJUSTMENT' then
  delta = n
elseif kind == 'SET' then
  delta = n - before
  if reason == '' then
    reason = 'SET'
  end
elseif kind == 'WRITEOFF' then
  delta, typ = -before, 'SPOILED'
else
  return redis.error_reply('ERR adjust: unknown kind ' .. kind)
end
if before + delta < 0 then
  return {'INSUFFICIENT', before}
end
if delta > 0 and before + delta > ceiling then
  return {'TOO_MANY', before}
end
local after = before
if delta ~= 0 then
  after = avail_incr(f, delta)
  emit(typ, loc, sku, shard, delta, after, 0, '', 0, '', tx, actor, reason, 0)
end
local record = fp .. '|' .. before .. '|' .. after
if (ARGV[14] or '') ~= '' then
  record = record .. '|' .. ARGV[14] .. '|' .. ARGV[15]
end
redis.call('HSET', K_HOLDS, tf, record)
forget_at('h:' .. tf, keep_ms)
return {'OK', before, after, 'new', ARGV[14] or '', ARGV[15] or ''}
