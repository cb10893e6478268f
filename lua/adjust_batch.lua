-- adjust_batch: many vendor changes of single-shard pools on one partition in one call
-- (imports). Each change is handled exactly as adjust.lua would handle it alone (shard 0, no
-- share of a sharded pool's change), in order: a later change of the same shard sees what an
-- earlier one left.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3]  -> actor, ARGV[4] -> how long (ms) transaction records are kept, ARGV[5] -> the
--             most units a shard may have available: the same for every change
-- ARGV[6..] -> changes, 7 values each: location, sku, kind (RESTOCK, SPOILAGE, ADJUSTMENT,
--             SET or WRITEOFF), n, transaction id, fingerprint, reason (as adjust.lua's)
--
-- Output: one reply per change: a change made now is answered with the shard's available
-- count before it alone (the caller knows the change; a table costs Redis more to send than
-- the number), any other as adjust.lua's reply; or {'FENCED', reason} for all.
--
-- Nothing is written before the last change is done (BATCH keeps counters, records and events
-- and flush writes them), and a malformed batch is refused before that: a runtime error
-- half-way leaves the partition as it was.
local WIDTH = 7
if #ARGV < 5 or (#ARGV - 5) % WIDTH ~= 0 then
  return redis.error_reply('ERR adjust_batch: ' .. (#ARGV - 5) .. ' change values, not a multiple of ' .. WIDTH)
end
local actor = need_text('adjust_batch', 3, 'actor')
local keep_ms = need_int('adjust_batch', 4, 'keep', 0, MAX_MS)
local ceiling = need_int('adjust_batch', 5, 'ceiling', 0, MAX_COUNT)
local kinds = {RESTOCK = true, SPOILAGE = true, ADJUSTMENT = true, SET = true, WRITEOFF = true}
local changes = {}
for i = 6, #ARGV, WIDTH do
  local a = {loc = need_text('adjust_batch', i, 'location'), sku = need_text('adjust_batch', i + 1, 'sku'), shard = 0,
    kind = ARGV[i + 2], n = need_int('adjust_batch', i + 3, 'n', -MAX_QTY, MAX_COUNT),
    tx = need_text('adjust_batch', i + 4, 'transaction id'), fp = need_text('adjust_batch', i + 5, 'fingerprint'),
    reason = need_text('adjust_batch', i + 6, 'reason'), actor = actor, keep_ms = keep_ms, ceiling = ceiling,
    whole_before = '', whole_delta = ''}
  if not kinds[a.kind] then
    bad('adjust_batch', 'kind', a.kind)
  end
  changes[#changes + 1] = a
end
local fenced_reply = batch_begin()
if fenced_reply then
  return fenced_reply
end
prefetch_adjust(changes)
local out = {}
for _, a in ipairs(changes) do
  local res = adjust_one(a)
  if res[1] == 'OK' and res[4] == 'new' then
    res = res[2]
  end
  out[#out + 1] = res
  fill_raised()
end
flush()
return out
