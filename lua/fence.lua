-- fence: raise or lift a partition's fence. While raised, every writing script refuses
-- with FENCED (used when Redis is found to have lost acknowledged writes).
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> "1" raise, "0" lift
-- ARGV[4] -> reason (kept while raised)
--
-- Output: {'OK', previous reason or ''}
local raise, reason = ARGV[3], need_text('fence', 4, 'reason')
if raise ~= '1' and raise ~= '0' then
  bad('fence', 'flag', raise)
end
local prev = redis.call('HGET', K_META, 'fence') or ''
if raise == '1' then
  redis.call('HSET', K_META, 'fence', reason)
else
  redis.call('HDEL', K_META, 'fence')
end
return {'OK', prev}
