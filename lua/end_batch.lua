-- end_batch: commit or release many hold parts of one partition in one call (coalesced
-- commits and releases). Each request is handled exactly as commit.lua or release.lua would
-- handle it alone, in order.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3..] -> requests, 6 values each: outcome (COMMITTED or RELEASED), part id, actor, how
--              long (ms) the tombstone is kept, reason, owner ('*': any)
--
-- Output: one reply per request, each as commit.lua's or release.lua's reply; or
-- {'FENCED', reason} for all.
--
-- Counters, hold records and events are written once the last request is done (BATCH keeps
-- them and flush writes them); tombstones and backorder queues are written as they change.
-- A malformed batch is refused before anything is written.
if (#ARGV - 2) % 6 ~= 0 then
  return redis.error_reply('ERR end_batch: ' .. (#ARGV - 2) .. ' request values, not a multiple of 6')
end
for i = 3, #ARGV, 6 do
  if ARGV[i] ~= 'COMMITTED' and ARGV[i] ~= 'RELEASED' then
    return redis.error_reply('ERR end_batch: outcome must be COMMITTED or RELEASED, got ' .. tostring(ARGV[i]))
  end
  need_text('end_batch', i + 1, 'part')
  need_text('end_batch', i + 2, 'actor')
  need_int('end_batch', i + 3, 'keep', 0, MAX_MS)
  need_text('end_batch', i + 4, 'reason')
  need_text('end_batch', i + 5, 'owner')
end
local fenced_reply = batch_begin()
if fenced_reply then
  return fenced_reply
end
local out = {}
for i = 3, #ARGV, 6 do
  out[#out + 1] = end_hold(ARGV[i + 1], ARGV[i], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4], ARGV[i + 5])
  fill_raised()
end
flush()
return out
