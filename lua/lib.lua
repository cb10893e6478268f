-- lib.lua: helpers shared by every partition script; the loader prepends it to each one.
--
-- Every partition script receives the same ten keys, all in one partition {pN}:
--   KEYS[1]  stock  hash   "loc|sku|shard" -> available; "...|h" -> held; "...|c" -> committed
--   KEYS[2]  holds  hash   part id -> encoded hold part (see enc_hold)
--   KEYS[3]  exp    zset   part id scored by expiry (ms): the sweeper's index
--   KEYS[4]  idem   hash   idempotency token -> "fingerprint|answer"
--   KEYS[5]  done   hash   part id -> how it ended: "COMMITTED|RELEASED|EXPIRED" then "|ts|loc|sku|qty"
--   KEYS[6]  gc     zset   "i:<token>" / "d:<part>" / "x:<field>" scored by when to forget it
--   KEYS[7]  log    stream the partition's events, entry id "<seq>-0", fields e (canonical) and h (hash)
--   KEYS[8]  meta   hash   seq (last event seq), head (last event hash), fence (reason, when fenced)
--   KEYS[9]  cust   hash   "loc|sku|customer" -> units held or bought by that customer
--   KEYS[10] xfer   hash   "o:<id>" -> pending transfer out; "i:<id>" -> transfer in applied
-- Every script's ARGV starts with: ARGV[1] partition number, ARGV[2] now (ms).
-- Nothing reads the clock or draws random numbers: now comes in ARGV.
local K_STOCK, K_HOLDS, K_EXP, K_IDEM, K_DONE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_GC, K_LOG, K_META, K_CUST, K_XFER = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local PART = ARGV[1]
local NOW = tonumber(ARGV[2])
local GENESIS = '0000000000000000000000000000000000000000'

local function fenced()
  return redis.call('HGET', K_META, 'fence')
end

-- emit appends one event to the partition's stream and advances seq and the chain head.
-- Canonical form (hashed, and rebuilt by Go from ledger columns):
--   1|partition|seq|type|loc|sku|shard|delta|after|held_delta|hold|qty|customer|idem|actor|reason|ts|prev
local function emit(typ, loc, sku, shard, delta, after, hdelta, hold, qty, cust, idem, actor, reason)
  local seq = redis.call('HINCRBY', K_META, 'seq', 1)
  local prev = redis.call('HGET', K_META, 'head') or GENESIS
  local canon = table.concat({'1', PART, seq, typ, loc, sku, shard, delta, after, hdelta,
    hold, qty, cust, idem, actor, reason, NOW, prev}, '|')
  local h = redis.sha1hex(canon)
  redis.call('HSET', K_META, 'head', h)
  redis.call('XADD', K_LOG, seq .. '-0', 'e', canon, 'h', h)
  return seq
end

local function split(s)
  local out = {}
  for v in string.gmatch(s, '([^|]*)|?') do
    out[#out + 1] = v
  end
  return out
end

-- A hold part: loc|sku|shard|qty|expires|customer|limited|idem token|created
local function enc_hold(h)
  return table.concat({h.loc, h.sku, h.shard, h.qty, h.exp, h.cust, h.limited, h.token, h.created}, '|')
end

local function dec_hold(s)
  local f = split(s)
  return {loc = f[1], sku = f[2], shard = f[3], qty = tonumber(f[4]), exp = tonumber(f[5]),
    cust = f[6], limited = f[7], token = f[8], created = f[9]}
end

local function field(loc, sku, shard)
  return loc .. '|' .. sku .. '|' .. shard
end

-- forget_at schedules a record for removal by the sweep script's clean-up pass.
local function forget_at(member, ttl)
  redis.call('ZADD', K_GC, NOW + ttl, member)
end

-- end_part finishes an active hold part as COMMITTED, RELEASED or EXPIRED, writing its event.
-- Units come back to available unless committed. keep_ms: how long the tombstone stays;
-- 0 writes none (used when compensating a reservation that never reached the caller).
local function end_part(part, h, outcome, actor, reason, keep_ms)
  local f = field(h.loc, h.sku, h.shard)
  local delta, typ = h.qty, outcome
  if outcome == 'COMMITTED' then
    delta = 0
    redis.call('HINCRBY', K_STOCK, f .. '|c', h.qty)
  elseif h.limited == '1' and h.cust ~= '' then
    redis.call('HINCRBY', K_CUST, h.loc .. '|' .. h.sku .. '|' .. h.cust, -h.qty)
  end
  local after = redis.call('HINCRBY', K_STOCK, f, delta)
  redis.call('HINCRBY', K_STOCK, f .. '|h', -h.qty)
  redis.call('HDEL', K_HOLDS, part)
  redis.call('ZREM', K_EXP, part)
  if keep_ms > 0 then
    redis.call('HSET', K_DONE, part, table.concat({outcome, NOW, h.loc, h.sku, h.qty}, '|'))
    forget_at('d:' .. part, keep_ms)
  end
  emit(typ, h.loc, h.sku, h.shard, delta, after, -h.qty, part, h.qty, h.cust, h.token, actor, reason)
end

-- reclaim expires up to n holds of this partition whose expiry is <= now.
-- Returns the number restored.
local function reclaim(n, keep_ms)
  local due = redis.call('ZRANGEBYSCORE', K_EXP, '-inf', NOW, 'LIMIT', 0, n)
  for _, part in ipairs(due) do
    local rec = redis.call('HGET', K_HOLDS, part)
    if rec then
      end_part(part, dec_hold(rec), 'EXPIRED', 'sweeper', '', keep_ms)
    else
      redis.call('ZREM', K_EXP, part)
    end
  end
  return #due
end

-- An idempotency record is "fingerprint|answer", or "fingerprint|~P|since" while a request
-- that takes several calls (multi-part, cart) is in progress.
local function pending_since(rest)
  if string.sub(rest, 1, 3) == '~P|' then
    return tonumber(string.sub(rest, 4))
  end
  return nil
end

-- place_one places one hold part. r holds the request's fields (see read_req).
-- Reply: {'OK', qty, expires, available_after, 'new'|'existing'}, {'INSUFFICIENT', available},
-- {'LIMIT', used}, {'UNKNOWN_POOL'}, {'ENDED', outcome}.
local function place_one(r)
  local existing = redis.call('HGET', K_HOLDS, r.part)
  if existing then
    local h = dec_hold(existing)
    return {'OK', h.qty, h.exp, tonumber(redis.call('HGET', K_STOCK, field(h.loc, h.sku, h.shard))), 'existing'}
  end
  local ended = redis.call('HGET', K_DONE, r.part)
  if ended then
    return {'ENDED', split(ended)[1]}
  end
  local f = field(r.loc, r.sku, r.shard)
  local avail = redis.call('HGET', K_STOCK, f)
  if not avail then
    return {'UNKNOWN_POOL'}
  end
  avail = tonumber(avail)
  local cf, used = nil, 0
  if r.limit > 0 and r.cust ~= '' then
    cf = r.loc .. '|' .. r.sku .. '|' .. r.cust
    used = tonumber(redis.call('HGET', K_CUST, cf) or '0')
  end
  if avail < r.qty or (cf and used + r.qty > r.limit) then
    -- Sweeper lag must not show as a false "sold out" or a false "limit reached".
    if reclaim(r.reclaim, r.keep_ms) > 0 then
      avail = tonumber(redis.call('HGET', K_STOCK, f))
      if cf then
        used = tonumber(redis.call('HGET', K_CUST, cf) or '0')
      end
    end
  end
  if avail < r.qty then
    return {'INSUFFICIENT', avail}
  end
  if cf and used + r.qty > r.limit then
    return {'LIMIT', used}
  end
  local after = redis.call('HINCRBY', K_STOCK, f, -r.qty)
  redis.call('HINCRBY', K_STOCK, f .. '|h', r.qty)
  local limited = '0'
  if cf then
    redis.call('HINCRBY', K_CUST, cf, r.qty)
    limited = '1'
  end
  redis.call('HSET', K_HOLDS, r.part, enc_hold({loc = r.loc, sku = r.sku, shard = r.shard, qty = r.qty,
    exp = r.exp, cust = r.cust, limited = limited, token = r.token, created = NOW}))
  redis.call('ZADD', K_EXP, r.exp, r.part)
  emit('RESERVED', r.loc, r.sku, r.shard, -r.qty, after, r.qty, r.part, r.qty, r.cust, r.token, r.actor, '')
  if r.final == '1' then
    redis.call('HSET', K_IDEM, r.token, r.fp .. '|' .. r.answer)
    forget_at('i:' .. r.token, r.keep_ms)
  end
  return {'OK', r.qty, r.exp, after, 'new'}
end

-- reserve_one checks the idempotency record (on a request's first call), places the part,
-- and marks the request in progress when more calls must follow.
-- Extra replies: {'REPLAY', answer}, {'IDEM_MISMATCH'}, {'IN_PROGRESS'}.
local function reserve_one(r)
  if r.check_idem == '1' then
    local prior = redis.call('HGET', K_IDEM, r.token)
    if prior then
      local bar = string.find(prior, '|', 1, true)
      if string.sub(prior, 1, bar - 1) ~= r.fp then
        return {'IDEM_MISMATCH'}
      end
      local rest = string.sub(prior, bar + 1)
      local since = pending_since(rest)
      if not since then
        return {'REPLAY', rest}
      end
      if NOW - since < r.pending_ms then
        return {'IN_PROGRESS'}
      end
      -- The call that marked it stopped half-way; this one takes the request over.
    end
  end
  local res = place_one(r)
  if r.check_idem == '1' and r.pending_ms > 0 then
    local done = res[1] == 'OK' and res[5] == 'new' and r.final == '1'
    if not done and (res[1] == 'OK' or res[1] == 'INSUFFICIENT') then
      redis.call('HSET', K_IDEM, r.token, r.fp .. '|~P|' .. NOW)
      forget_at('i:' .. r.token, r.keep_ms)
    end
  end
  return res
end

-- REQ_WIDTH is the number of ARGV entries one reserve request takes (after partition and now).
local REQ_WIDTH = 17

-- read_req reads one reserve request starting at ARGV[i].
local function read_req(i)
  return {
    part = ARGV[i], loc = ARGV[i + 1], sku = ARGV[i + 2], shard = ARGV[i + 3],
    qty = tonumber(ARGV[i + 4]), exp = tonumber(ARGV[i + 5]), cust = ARGV[i + 6],
    limit = tonumber(ARGV[i + 7]), token = ARGV[i + 8], fp = ARGV[i + 9],
    check_idem = ARGV[i + 10], final = ARGV[i + 11], answer = ARGV[i + 12], actor = ARGV[i + 13],
    reclaim = tonumber(ARGV[i + 14]), keep_ms = tonumber(ARGV[i + 15]),
    pending_ms = tonumber(ARGV[i + 16]),
  }
end
