-- lib.lua: helpers shared by every partition operation. The lua package builds one Functions
-- library of it and of every operation: this file runs once, when the library loads, and each
-- operation's file becomes the body of a registered function that starts with begin().
--
-- Every partition operation receives the same eight keys, all in one partition {pN}:
--   KEYS[1] stock  hash   "loc|sku|shard" -> available; "...|h" -> held; "...|c" -> committed
--   KEYS[2] holds  hash   "<part>"      -> an active hold part (see enc_hold)
--                         "d:<part>"    -> how an ended part ended (see end_part)
--                         "i:<token>"   -> idempotency record: "fingerprint|answer", or
--                                          "fingerprint|~P|since" while a request is in progress
--                         "i:tx:<id>"   -> a vendor transaction: "fingerprint|before|after", and
--                                          for a share of a sharded pool's change
--                                          "|pool before|whole change"
--   KEYS[3] exp    zset   part id scored by expiry (ms): the sweeper's index
--   KEYS[4] gc     zset   "h:<holds field>" / "x:<xfer field>" scored by when to forget it
--   KEYS[5] log    stream the partition's events, entry id "<seq>-0", fields e (canonical) and h (hash)
--   KEYS[6] meta   hash   seq (last event seq), head (last event hash), fence (reason, when fenced)
--   KEYS[7] cust   hash   "loc|sku|customer" -> units held or bought by that customer
--   KEYS[8] xfer   hash   "o:<id>" -> pending transfer out; "i:<id>" / "s:<id>" -> applied / settled
-- Every operation's ARGV starts with: ARGV[1] partition number, ARGV[2] now (ms).
-- Nothing reads the clock or draws random numbers: now comes in ARGV.
--
-- The per-call state below lives in the library and is shared by its functions; begin() sets
-- all of it at the start of every call (Redis runs one call at a time), so nothing carries
-- over from one call to the next.
local KEYS, ARGV
local K_STOCK, K_HOLDS, K_EXP, K_GC, K_LOG, K_META, K_CUST, K_XFER
local PART, NOW_S, NOW
local GENESIS = '0000000000000000000000000000000000000000'

local function fenced()
  return redis.call('HGET', K_META, 'fence')
end

-- The partition's seq and chain head, read on the first event of a call. A batch keeps them
-- here and writes them once at its end (flush); single calls write them at every event.
local SEQ, HEAD

-- BATCH: this call places many parts (reserve_batch). It then also keeps the stock counters it
-- touches, and the hold records and expiry entries it adds, here, and writes each once at its
-- end (flush). One call is atomic, so nothing can observe them in between.
local BATCH
local STOCK       -- counter field -> number, or false when it does not exist
local STOCK_DIRTY -- counter fields to write (or delete, when false) at flush
local NEW_HOLDS, NEW_EXP -- HSET and ZADD arguments of the parts placed
local PLACED      -- part -> record, for a part placed earlier in this call

-- begin starts a call: it binds the call's keys and arguments and resets the per-call state.
local function begin(keys, args)
  KEYS, ARGV = keys, args
  K_STOCK, K_HOLDS, K_EXP, K_GC = keys[1], keys[2], keys[3], keys[4]
  K_LOG, K_META, K_CUST, K_XFER = keys[5], keys[6], keys[7], keys[8]
  PART, NOW_S = args[1], args[2]
  NOW = tonumber(NOW_S)
  SEQ, HEAD, BATCH = nil, nil, false
  STOCK, STOCK_DIRTY, NEW_HOLDS, NEW_EXP, PLACED = {}, {}, {}, {}, {}
end

-- call_chunked calls cmd key with args in slices (Lua's unpack has a stack limit).
local function call_chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

local function flush()
  if BATCH then
    local set, del = {}, {}
    for f in pairs(STOCK_DIRTY) do
      if STOCK[f] then
        set[#set + 1], set[#set + 2] = f, string.format('%d', STOCK[f]) -- exact, unlike tostring
      else
        del[#del + 1] = f
      end
    end
    call_chunked('HSET', K_STOCK, set)
    call_chunked('HDEL', K_STOCK, del)
    call_chunked('HSET', K_HOLDS, NEW_HOLDS)
    call_chunked('ZADD', K_EXP, NEW_EXP)
  end
  if SEQ then
    redis.call('HSET', K_META, 'seq', SEQ, 'head', HEAD)
  end
end

-- The stock counters (KEYS[1]), through which every script reads and writes them: in a batch
-- from and into STOCK, otherwise straight from and into Redis.
local function stock_read(f)
  local v = STOCK[f]
  if v == nil then
    v = tonumber(redis.call('HGET', K_STOCK, f)) or false
    STOCK[f] = v
  end
  return v
end

-- stock_get: the counter, or nil when it does not exist.
local function stock_get(f)
  if not BATCH then
    return tonumber(redis.call('HGET', K_STOCK, f))
  end
  return stock_read(f) or nil
end

-- stock_incr adds d as HINCRBY does (a missing counter counts as 0 and is created).
local function stock_incr(f, d)
  if not BATCH then
    return redis.call('HINCRBY', K_STOCK, f, d)
  end
  local v = (stock_read(f) or 0) + d
  STOCK[f], STOCK_DIRTY[f] = v, true
  return v
end

local function stock_exists(f)
  if not BATCH then
    return redis.call('HEXISTS', K_STOCK, f) == 1
  end
  return stock_read(f) ~= false
end

local function stock_del(f)
  if not BATCH then
    redis.call('HDEL', K_STOCK, f)
    return
  end
  STOCK[f], STOCK_DIRTY[f] = false, true
end

-- emit appends one event to the partition's stream and advances seq and the chain head.
-- Canonical form (hashed, and rebuilt by Go from ledger columns):
--   1|partition|seq|type|loc|sku|shard|delta|after|held_delta|hold|qty|customer|idem|actor|reason|ts|prev
local function emit(typ, loc, sku, shard, delta, after, hdelta, hold, qty, cust, idem, actor, reason)
  if not SEQ then
    local m = redis.call('HMGET', K_META, 'seq', 'head')
    SEQ, HEAD = tonumber(m[1] or '0'), m[2] or GENESIS
  end
  SEQ = SEQ + 1
  -- Numbers formatted once, with %d: concatenating a number formats it with %.14g, which costs
  -- Redis about twice as much.
  local seq = string.format('%d', SEQ)
  if type(after) == 'number' then
    after = string.format('%d', after)
  end
  local canon = '1|' .. PART .. '|' .. seq .. '|' .. typ .. '|' .. loc .. '|' .. sku .. '|' .. shard
    .. '|' .. delta .. '|' .. after .. '|' .. hdelta .. '|' .. hold .. '|' .. qty .. '|' .. cust
    .. '|' .. idem .. '|' .. actor .. '|' .. reason .. '|' .. NOW_S .. '|' .. HEAD
  HEAD = redis.sha1hex(canon)
  redis.call('XADD', K_LOG, seq .. '-0', 'e', canon, 'h', HEAD)
  if not BATCH then
    flush()
  end
  return SEQ
end

local function split(s)
  local out = {}
  for v in string.gmatch(s, '([^|]*)|?') do
    out[#out + 1] = v
  end
  return out
end

-- tx_replay answers a repeated repair or carry from its record "i:tx:<id>" = "what|a|b", or
-- returns nil when there is none.
local function tx_replay(id)
  local prior = redis.call('HGET', K_HOLDS, 'i:tx:' .. id)
  if not prior then
    return nil
  end
  local r = split(prior)
  return {'OK', tonumber(r[2]), tonumber(r[3]), 'replay'}
end

-- A hold part: loc|sku|shard|qty|expires|customer|limited|idem token|created|fingerprint
local function hold_record(loc, sku, shard, qty, exp, cust, limited, token, created, fp)
  return loc .. '|' .. sku .. '|' .. shard .. '|' .. qty .. '|' .. exp .. '|' .. cust .. '|' .. limited
    .. '|' .. token .. '|' .. created .. '|' .. fp
end

local function enc_hold(h)
  return hold_record(h.loc, h.sku, h.shard, h.qty, h.exp, h.cust, h.limited, h.token, h.created, h.fp)
end

local function dec_hold(s)
  local f = split(s)
  return {loc = f[1], sku = f[2], shard = f[3], qty = tonumber(f[4]), exp = tonumber(f[5]),
    cust = f[6], limited = f[7], token = f[8], created = f[9], fp = f[10]}
end

local function field(loc, sku, shard)
  return loc .. '|' .. sku .. '|' .. shard
end

-- forget_at schedules a record for removal by the sweep script's clean-up pass.
local function forget_at(member, ttl)
  redis.call('ZADD', K_GC, NOW + ttl, member)
end

-- A tombstone: outcome|ended at|loc|sku|qty|expires|fingerprint
local function dec_tomb(s)
  local f = split(s)
  return {outcome = f[1], at = f[2], loc = f[3], sku = f[4], qty = tonumber(f[5]), exp = tonumber(f[6]), fp = f[7]}
end

-- end_part finishes an active hold part as COMMITTED, RELEASED or EXPIRED, writing its event.
-- Units come back to available unless committed. keep_ms: how long the tombstone stays;
-- 0 writes none (used when compensating a reservation that never reached the caller).
local function end_part(part, h, outcome, actor, reason, keep_ms)
  local f = field(h.loc, h.sku, h.shard)
  local delta = h.qty
  if outcome == 'COMMITTED' then
    delta = 0
    stock_incr(f .. '|c', h.qty)
  elseif h.limited == '1' and h.cust ~= '' then
    redis.call('HINCRBY', K_CUST, h.loc .. '|' .. h.sku .. '|' .. h.cust, -h.qty)
  end
  local after = stock_incr(f, delta)
  stock_incr(f .. '|h', -h.qty)
  redis.call('HDEL', K_HOLDS, part)
  redis.call('ZREM', K_EXP, part)
  if keep_ms > 0 then
    redis.call('HSET', K_HOLDS, 'd:' .. part,
      outcome .. '|' .. NOW_S .. '|' .. h.loc .. '|' .. h.sku .. '|' .. h.qty .. '|' .. h.exp .. '|' .. h.fp)
    forget_at('h:d:' .. part, keep_ms)
  end
  emit(outcome, h.loc, h.sku, h.shard, delta, after, -h.qty, part, h.qty, h.cust, h.token, actor, reason)
end

-- live_part reads an active hold part for commit, release, extend and end_batch. It returns
-- the part, or nil and the reply to give instead: {'ENDED', outcome} when it ended before,
-- {'ENDED', 'EXPIRED'} when its expiry had passed (it is restored now, with an EXPIRED event),
-- {'NOT_FOUND'} when there is no such part (never placed, or its tombstone was forgotten).
local function live_part(part, keep_ms)
  local rec = redis.call('HGET', K_HOLDS, part)
  if not rec then
    local ended = redis.call('HGET', K_HOLDS, 'd:' .. part)
    if ended then
      return nil, {'ENDED', split(ended)[1]}
    end
    return nil, {'NOT_FOUND'}
  end
  local h = dec_hold(rec)
  if h.exp <= NOW then
    end_part(part, h, 'EXPIRED', 'sweeper', '', keep_ms)
    return nil, {'ENDED', 'EXPIRED'}
  end
  return h
end

-- end_hold ends an active hold part as outcome (COMMITTED or RELEASED): {'OK'}, or
-- live_part's reply.
local function end_hold(part, outcome, actor, keep_ms, reason)
  local h, other = live_part(part, keep_ms)
  if not h then
    return other
  end
  end_part(part, h, outcome, actor, reason, keep_ms)
  return {'OK'}
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

-- take decrements a shard by qty if it has that many, reclaiming expired holds of the
-- partition first when it is short. Returns available after, or nil and the available count,
-- or false when the shard does not exist.
local function take(r, f)
  local after = stock_incr(f, -r.qty)
  if after >= 0 then
    return after
  end
  stock_incr(f, r.qty)
  if not stock_exists(f .. '|h') then
    stock_del(f) -- the increment created it: there is no such shard
    return false
  end
  -- Sweeper lag must not show as a false "sold out".
  if reclaim(r.reclaim, tonumber(r.keep_ms)) > 0 then
    after = stock_incr(f, -r.qty)
    if after >= 0 then
      return after
    end
    stock_incr(f, r.qty)
  end
  return nil, after + r.qty
end

-- place_one places one hold part whose id is neither active nor ended. r holds the request's
-- fields (see read_req).
-- Reply: {'OK', qty, expires, available_after, 'new'}, {'INSUFFICIENT', available},
-- {'LIMIT', used}, {'UNKNOWN_POOL'}.
local function place_one(r)
  local f = field(r.loc, r.sku, r.shard)
  local cf = nil
  if r.limit ~= '0' and r.cust ~= '' then
    local limit = tonumber(r.limit)
    cf = r.loc .. '|' .. r.sku .. '|' .. r.cust
    local used = tonumber(redis.call('HGET', K_CUST, cf) or '0')
    if used + r.qty > limit then
      -- The customer's own expired holds may not have been swept yet.
      reclaim(r.reclaim, tonumber(r.keep_ms))
      used = tonumber(redis.call('HGET', K_CUST, cf) or '0')
      if used + r.qty > limit then
        if not stock_exists(f) then
          return {'UNKNOWN_POOL'}
        end
        return {'LIMIT', used}
      end
    end
  end
  local after, avail = take(r, f)
  if after == false then
    return {'UNKNOWN_POOL'}
  end
  if not after then
    return {'INSUFFICIENT', avail}
  end
  stock_incr(f .. '|h', r.qty)
  local limited = '0'
  if cf then
    redis.call('HINCRBY', K_CUST, cf, r.qty)
    limited = '1'
  end
  -- Strings straight from ARGV where possible: Lua's number formatting is slow.
  local rec = hold_record(r.loc, r.sku, r.shard, r.qty_s, r.exp_s, r.cust, limited, r.token, NOW_S, r.fp)
  if BATCH then
    local n = #NEW_HOLDS
    NEW_HOLDS[n + 1], NEW_HOLDS[n + 2] = r.part, rec
    NEW_EXP[n + 1], NEW_EXP[n + 2] = r.exp_s, r.part
    PLACED[r.part] = rec
  else
    redis.call('HSET', K_HOLDS, r.part, rec)
    redis.call('ZADD', K_EXP, r.exp_s, r.part)
  end
  emit('RESERVED', r.loc, r.sku, r.shard, '-' .. r.qty_s, after, r.qty_s, r.part, r.qty_s, r.cust, r.token, r.actor, '')
  return {'OK', r.qty, r.exp_s, after, 'new'}
end

-- reserve_one answers a request from what is recorded under its token and part id, or places
-- the part. A single-part hold's own record (and later its tombstone) is its idempotency
-- record; requests that take several calls also keep one under "i:<token>", and are marked in
-- progress meanwhile.
-- Replies: those of place_one, and {'OK', qty, expires, available_after, 'existing'},
-- {'ENDED', outcome, qty, expires}, {'REPLAY', answer}, {'IDEM_MISMATCH'}, {'IN_PROGRESS'}.
local function reserve_one(r)
  local rec = redis.call('HMGET', K_HOLDS, 'i:' .. r.token, r.part, 'd:' .. r.part)
  rec[2] = PLACED[r.part] or rec[2]
  if r.check_idem == '1' and rec[1] then
    local bar = string.find(rec[1], '|', 1, true)
    if string.sub(rec[1], 1, bar - 1) ~= r.fp then
      return {'IDEM_MISMATCH'}
    end
    local rest = string.sub(rec[1], bar + 1)
    local since = pending_since(rest)
    if not since then
      return {'REPLAY', rest}
    end
    if NOW - since < tonumber(r.pending_ms) then
      return {'IN_PROGRESS'}
    end
    -- The call that marked it stopped half-way; this one takes the request over.
  end
  local res
  if rec[2] then
    local h = dec_hold(rec[2])
    if h.fp ~= r.fp and h.fp ~= '' then -- '': restored from the ledger, which has no fingerprint
      return {'IDEM_MISMATCH'}
    end
    res = {'OK', h.qty, h.exp, stock_get(field(h.loc, h.sku, h.shard)), 'existing'}
  elseif rec[3] then
    local t = dec_tomb(rec[3])
    if t.fp ~= r.fp then
      return {'IDEM_MISMATCH'}
    end
    return {'ENDED', t.outcome, t.qty, t.exp}
  else
    res = place_one(r)
  end
  if r.check_idem == '1' and r.pending_ms ~= '0' then
    local done = res[1] == 'OK' and res[2] == r.qty and r.final == '1'
    if not done and (res[1] == 'OK' or res[1] == 'INSUFFICIENT') then
      redis.call('HSET', K_HOLDS, 'i:' .. r.token, r.fp .. '|~P|' .. NOW)
      forget_at('h:i:' .. r.token, tonumber(r.keep_ms))
    end
  end
  return res
end

-- REQ_WIDTH is the number of ARGV entries one reserve request takes (after partition and now).
local REQ_WIDTH = 16

-- read_req reads one reserve request starting at ARGV[i] into R and returns it. R is one
-- table the call reuses for every request it reads (a new one per request would cost Redis
-- about 3,000 more instructions): whoever calls read_req again is done with the last request.
-- Only qty becomes a number here: a tonumber costs Redis about 1,500 instructions (strtod),
-- and limit, reclaim, keep_ms and pending_ms (decimal strings, "0" when unset) are needed as
-- numbers on rare paths only, which convert them there.
local R = {}
local function read_req(i)
  local r = R
  r.part, r.loc, r.sku, r.shard = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  r.qty, r.qty_s, r.exp_s = tonumber(ARGV[i + 4]), ARGV[i + 4], ARGV[i + 5]
  r.cust, r.limit, r.token, r.fp = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9]
  r.check_idem, r.final, r.actor = ARGV[i + 10], ARGV[i + 11], ARGV[i + 12]
  r.reclaim, r.keep_ms, r.pending_ms = ARGV[i + 13], ARGV[i + 14], ARGV[i + 15]
  return r
end
