-- hold_end: decide how a hold of several parts ends, so that a commit and a release racing
-- each other (or a retry of either) end it one way: every part sold, or every part given back.
--
-- The record is a string with a TTL, in the partition of the reservation's key record:
--   absent            the hold is open
--   "C|<id>|<until>"  commit <id> is checking that every part is still held (lapses at until)
--   "D|<id>|<until>"  every part was held: the commit is decided and is committing the parts;
--                     whoever finds it so finishes the commit
--   "c"               committed
--   "r"               released (or given up by a commit that found a part gone)
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- KEYS[9]    -> the hold's end record
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> op: commit, decided, committed, abort or release
-- ARGV[4] -> the caller's id (one per Commit or Release call)
-- ARGV[5] -> lease (ms)
-- ARGV[6] -> how long (ms) the record is kept
--
-- Output:
--   {'START'}          go on: commit (check, then decide) or release the parts
--   {'FINISH'}         a commit was decided: commit every part (a release must not go on)
--   {'BUSY', until}    another commit is checking the parts until then
--   {'DONE'}           (commit) already committed
--   {'GONE'}           (commit) already released
--   {'COMMITTED'}      (release) already committed
--   {'OK'}             decided, committed, abort: written
--   {'LOST'}           decided, abort: the caller no longer holds the record
local op, id = need_text('hold_end', 3, 'op'), need_text('hold_end', 4, 'id')
local lease, keep_ms = need_int('hold_end', 5, 'lease', 1, MAX_MS), need_int('hold_end', 6, 'keep', 1, MAX_MS)
local key = KEYS[9]
local rec = redis.call('GET', key)
local f = rec and split(rec) or {}
local state = f[1]
local mine = f[2] == id
local live = state and f[3] and NOW < tonumber(f[3])
local function set(v)
  redis.call('SET', key, v, 'PX', keep_ms)
end
if op == 'commit' then
  if not rec or (state == 'C' and (mine or not live)) then
    set('C|' .. id .. '|' .. (NOW + lease))
    return {'START'}
  elseif state == 'C' then
    return {'BUSY', tonumber(f[3])}
  elseif state == 'D' then
    set('D|' .. id .. '|' .. (NOW + lease))
    return {'FINISH'}
  elseif state == 'c' then
    return {'DONE'}
  end
  return {'GONE'}
elseif op == 'decided' then
  if (state == 'C' or state == 'D') and mine then
    set('D|' .. id .. '|' .. (NOW + lease))
    return {'OK'}
  end
  return {'LOST'}
elseif op == 'committed' then
  if state == 'D' or state == 'c' then
    set('c')
    return {'OK'}
  end
  return {'LOST'}
elseif op == 'abort' then
  if state == 'r' or (state == 'C' and mine) then
    set('r')
    return {'OK'}
  end
  return {'LOST'}
elseif op == 'release' then
  if not rec or state == 'r' or (state == 'C' and not live) then
    set('r')
    return {'START'}
  elseif state == 'C' then
    return {'BUSY', tonumber(f[3])}
  elseif state == 'D' then
    return {'FINISH'}
  end
  return {'COMMITTED'}
end
return redis.error_reply('ERR hold_end: unknown op ' .. op)
