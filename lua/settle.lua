-- settle: end a slow-path attempt by writing the request's outcome into its key record (see
-- claim.lua), if the attempt still holds the request.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- KEYS[9]    -> the key record
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> the attempt's id
-- ARGV[4] -> the record's new value: "<fp>|A|<answer>" or "<fp>|X|<code>|<n>|<line>"; '' removes
--            the record (the attempt gave everything back and answered nothing)
-- ARGV[5] -> how long (ms) the new value is kept
--
-- Output: {'OK'}           written (also when it was written before: settle twice answers
--                          the same)
--         {'LOST', record} the attempt no longer holds the request (another took it over, or
--                          the record is gone): nothing written
local attempt, value = need_text('settle', 3, 'attempt'), ARGV[4]
local keep_ms = need_int('settle', 5, 'keep', 1, MAX_MS)
local key = KEYS[9]
local rec = redis.call('GET', key)
if rec and rec == value then
  return {'OK'}
end
if not rec then
  if value == '' then
    return {'OK'}
  end
  return {'LOST', ''}
end
local f = split(rec)
if f[2] ~= 'P' or f[3] ~= attempt then
  return {'LOST', rec}
end
if value == '' then
  redis.call('DEL', key)
else
  redis.call('SET', key, value, 'PX', keep_ms)
end
return {'OK'}
