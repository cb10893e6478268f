-- reserve_batch: place many hold parts on one partition in one call (coalesced reserves).
-- Each request is handled exactly as reserve.lua would handle it alone, in order.
--
-- KEYS[1..10] -> the partition's keys (see lib.lua)
-- ARGV[1]  -> partition number
-- ARGV[2]  -> now (ms)
-- ARGV[3..] -> requests, 17 values each, in the order of reserve.lua's ARGV[3..19]
--
-- Output: one reply per request, each as reserve.lua's reply; or {'FENCED', reason} for all.
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local out = {}
for i = 3, #ARGV, REQ_WIDTH do
  out[#out + 1] = reserve_one(read_req(i))
end
return out
