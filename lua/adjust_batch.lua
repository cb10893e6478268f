-- adjust_batch: many vendor changes on one partition in one call (imports). Each change is
-- handled exactly as adjust.lua would handle it alone, in order: a later change of the same
-- shard sees what an earlier one left.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3..] -> changes, 13 values each, in the order of adjust.lua's ARGV[3..15]; kind is
--             RESTOCK, SPOILAGE, ADJUSTMENT, SET or WRITEOFF (not CREATE)
--
-- Output: one reply per change, each as adjust.lua's reply; or {'FENCED', reason} for all.
--
-- A runtime error half-way would leave what BATCH keeps unwritten: a malformed batch is
-- refused before anything changes.
if (#ARGV - 2) % ADJ_WIDTH ~= 0 then
  return redis.error_reply('ERR adjust_batch: ' .. (#ARGV - 2) .. ' change values, not a multiple of ' .. ADJ_WIDTH)
end
local changes = {}
for i = 3, #ARGV, ADJ_WIDTH do
  changes[#changes + 1] = read_adjust('adjust_batch', i, false)
end
local fenced_reply = batch_begin()
if fenced_reply then
  return fenced_reply
end
prefetch_adjust(changes)
local out = {}
for _, a in ipairs(changes) do
  out[#out + 1] = adjust_one(a)
end
flush()
return out
