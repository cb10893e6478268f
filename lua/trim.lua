-- trim: remove old entries from the partition's stream, never one a consumer group has not
-- acknowledged: the ledger's persister and the alert detector each read the stream in a
-- group of their own, and neither may lose an entry to the other's trimming.
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> up to: entries up to this seq may go ('-1': no bound of the caller's own)
-- ARGV[4] -> keep: this many entries below the bound stay
--
-- Every group's bound is the entry before its first pending one, or, with none pending, the
-- last one delivered to it: everything up to it was acknowledged. The stream keeps every
-- entry after min(up to, every group's bound) - keep.
--
-- Output: {removed, first seq kept (0: nothing to remove)}
local upto, keep = need_int('trim', 3, 'up to', -1, MAX_COUNT), need_int('trim', 4, 'keep', 0, MAX_COUNT)
if redis.call('EXISTS', K_LOG) == 0 then
  return {0, 0}
end
local bound = upto
local function lower(seq)
  if bound < 0 or seq < bound then
    bound = seq
  end
end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', K_LOG)) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then
      name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then
      last = tonumber(string.match(g[i + 1], '^(%d+)'))
    end
  end
  local pending = redis.call('XPENDING', K_LOG, name)
  if pending[1] > 0 then
    lower(tonumber(string.match(pending[2], '^(%d+)')) - 1)
  else
    lower(last)
  end
end
if bound < 0 then -- no bound at all: keep the last entries
  local head = tonumber(redis.call('HGET', K_META, 'seq') or '0')
  bound = head
end
local first = bound - keep + 1
if first <= 1 then
  return {0, 0}
end
local removed = redis.call('XTRIM', K_LOG, 'MINID', first .. '-0')
return {removed, first}
