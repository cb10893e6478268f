-- rebase: bring a fenced partition back to the state its ledger adds up to, after Redis lost
-- acknowledged writes (a restart without them, a failover to a replica that lagged). It
-- writes no event of its own (a backorder queue whose head can be filled then is filled after
-- it, with FILLED events): the ledger already holds every event up to the state written here, and
-- the partition's seq and chain head move to the ledger's last event so the next event
-- continues the ledger's chain. Events Redis wrote after it lost its writes (the fork) are
-- removed from the stream here; the caller has saved them and carries them over afterwards
-- (see carry.lua).
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> JSON: {
--   expect_seq, expect_head: Redis must still be here (the fence keeps writers out)
--   seq, head:               the ledger's last event
--   fork_from:               stream entries from this seq on are removed ("0": none)
--   fork_ids:                their entry ids (acknowledged in every consumer group)
--   shards:  {"loc|sku|shard": [available, held, committed, backordered]} (strings)
--   queues:  {"loc|sku|shard": queue} each shard's backorder queue ('': none; see queue_push)
--   drop:    [part]          active hold parts the ledger does not hold open
--   holds:   {part: [record, expires]} the parts the ledger holds open
--   cust:    {"loc|sku|customer": units} the per-customer counts, replacing all of them
--   ended:   {part: [tombstone, forget at]} parts that ended, where Redis has no tombstone
--   received: {transfer id: [applied at, forget at]} transfers these shards received, where
--            Redis has no record of it
--   pending: {transfer id: [record, "loc|sku|shard", qty]} transfers out of these shards the
--            ledger took out and saw no TRANSFER_IN of
-- }
--
-- Output: {'OK'}
--         {'NOT_FENCED'}      the partition must be fenced first
--         {'MOVED', seq}      Redis is no longer at expect_seq/expect_head
local s = cjson.decode(ARGV[3])
if not fenced() then
  return {'NOT_FENCED'}
end
local m = redis.call('HMGET', K_META, 'seq', 'head')
if (m[1] or '0') ~= s.expect_seq or (m[2] or GENESIS) ~= s.expect_head then
  return {'MOVED', m[1] or '0'}
end
for f, c in pairs(s.shards) do
  redis.call('HSET', K_STOCK, f, c[1], f .. '|h', c[2], f .. '|c', c[3])
  if c[4] == '0' then
    redis.call('HDEL', K_STOCK, f .. '|b')
  else
    redis.call('HSET', K_STOCK, f .. '|b', c[4])
  end
  redis.call('HINCRBY', K_STOCK, f .. '|r', 1) -- units may have come back: no reader may rely on an earlier count
end
for f, q in pairs(s.queues or {}) do
  if q == '' then
    redis.call('HDEL', K_HOLDS, 'q:' .. f)
  else
    redis.call('HSET', K_HOLDS, 'q:' .. f, q)
    -- The ledger may end between a give-back and the fill it made: fill now (after the seq and
    -- head below are written, so the fills continue the ledger's chain).
    raise(f)
  end
end
for _, part in ipairs(s.drop) do
  redis.call('HDEL', K_HOLDS, part)
  redis.call('ZREM', K_EXP, part)
end
for part, h in pairs(s.holds) do
  redis.call('HSET', K_HOLDS, part, h[1])
  redis.call('HDEL', K_HOLDS, 'd:' .. part)
  redis.call('ZADD', K_EXP, h[2], part)
end
for part, t in pairs(s.ended or {}) do
  if redis.call('HSETNX', K_HOLDS, 'd:' .. part, t[1]) == 1 then
    redis.call('ZADD', K_GC, t[2], 'h:d:' .. part)
  end
end
-- Transfers the ledger says these shards received: their record that they were applied (see
-- transfer_in), forgotten as transfer_done would.
for id, r in pairs(s.received or {}) do
  if redis.call('HSETNX', K_XFER, 'i:' .. id, r[1]) == 1 then
    redis.call('ZADD', K_GC, r[2], 'x:i:' .. id)
  end
end
-- Transfers out of these shards that the ledger took out and no TRANSFER_IN applied: pending
-- again, their units in flight, unless Redis has them pending or settled (see transfer_out).
for id, t in pairs(s.pending or {}) do
  if redis.call('HEXISTS', K_XFER, 'o:' .. id) == 0 and redis.call('HEXISTS', K_XFER, 's:' .. id) == 0 then
    redis.call('HSET', K_XFER, 'o:' .. id, t[1])
    redis.call('HINCRBY', K_STOCK, t[2] .. '|t', tonumber(t[3]))
  end
end
redis.call('DEL', K_CUST)
for f, n in pairs(s.cust) do
  redis.call('HSET', K_CUST, f, n)
end
if redis.call('EXISTS', K_LOG) == 1 then
  local groups = redis.call('XINFO', 'GROUPS', K_LOG)
  local names = {}
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then
        name = g[i + 1]
      elseif g[i] == 'last-delivered-id' then
        last = g[i + 1]
      end
    end
    names[#names + 1] = name
    -- Nothing between the fork and the ledger's head stays in the stream, so a group that
    -- had read into the fork reads on from the first new event.
    if s.fork_from ~= '0' and tonumber(string.match(last, '^(%d+)')) >= tonumber(s.fork_from) then
      redis.call('XGROUP', 'SETID', K_LOG, name, (tonumber(s.fork_from) - 1) .. '-0')
    end
  end
  for _, id in ipairs(s.fork_ids) do
    redis.call('XDEL', K_LOG, id)
    for _, name in ipairs(names) do
      redis.call('XACK', K_LOG, name, id)
    end
  end
  redis.call('XSETID', K_LOG, s.seq .. '-0')
end
redis.call('HSET', K_META, 'seq', s.seq, 'head', s.head)
return {'OK'}
