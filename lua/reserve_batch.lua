-- reserve_batch: place many hold parts on one partition in one call (coalesced reserves).
-- Each request is handled exactly as reserve.lua would handle it alone, in order.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3..] -> requests, 18 values each, in the order of reserve.lua's ARGV[3..20]
--
-- Output: one reply per request, each as reserve.lua's reply, except that a part placed now
-- ({'OK', qty, expires, available_after, 'new'}, not backordered) is answered with
-- available_after alone: the
-- caller knows qty and expiry, and a table costs Redis about 7,000 instructions more to send.
-- Or {'FENCED', reason} for all.
--
-- Counters, hold records and events are written once the last request is done (BATCH keeps
-- them and flush writes them); tombstones and backorder queues are written as they change.
-- A malformed batch is refused before anything is written.
if (#ARGV - 2) % REQ_WIDTH ~= 0 then
  return redis.error_reply('ERR reserve_batch: ' .. (#ARGV - 2) .. ' request values, not a multiple of ' .. REQ_WIDTH)
end
for i = 3, #ARGV, REQ_WIDTH do
  read_req(i)
end
local fenced_reply = batch_begin()
if fenced_reply then
  return fenced_reply
end
local out = {}
for i = 3, #ARGV, REQ_WIDTH do
  local res = reserve_one(read_req(i))
  if res[5] == 'new' and not res[6] then
    res = res[4]
  end
  out[#out + 1] = res
  fill_raised()
end
flush()
return out
