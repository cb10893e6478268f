-- lib.lua: helpers shared by every partition operation. The lua package builds one Functions
-- library of it and of every operation: this file runs once, when the library loads, and each
-- operation's file becomes the body of a registered function that starts with begin().
--
-- Every partition operation receives the same eight keys, all in one partition {pN}:
--   KEYS[1] stock  hash   "loc|sku|shard" -> available; "...|h" -> held; "...|c" -> committed;
--                         "...|r" -> how many times available went up (release, expiry,
--                         restock, transfer in, ...): a reader that finds it unchanged knows the
--                         shard gained nothing in between; "...|t" -> units taken out by
--                         transfers not yet settled (in flight to another shard); "...|b" ->
--                         units backordered: owed to parts, not yet taken from stock
--   KEYS[2] holds  hash   "<part>"      -> an active hold part (see hold_record)
--                         "d:<part>"    -> the part's tombstone (see tomb): how it ended, or
--                                          that it was refused, sent to the slow path, or voided
--                         "q:<loc|sku|shard>" -> the shard's backorder queue (see fill)
--                         "i:tx:<id>"   -> a vendor transaction: "fingerprint|before|after", and
--                                          for a sharded pool's change "|pool before|whole change";
--                                          or its refusal "fingerprint|code|available|n"
--   KEYS[3] exp    zset   part id scored by expiry (ms): the sweeper's index
--   KEYS[4] gc     zset   "h:<holds field>" / "x:<xfer field>" scored by when to forget it
--   KEYS[5] log    stream the partition's events, entry id "<seq>-0", fields e (canonical) and h (hash)
--   KEYS[6] meta   hash   seq (last event seq), head (last event hash), fence (reason, when fenced)
--   KEYS[7] cust   hash   "loc|sku|customer" -> units held or bought by that customer
--   KEYS[8] xfer   hash   "o:<id>" -> pending transfer out; "i:<id>" / "s:<id>" -> applied / settled
-- Operations on a request's key record (claim, settle, hold_end) get a ninth key in the same
-- partition: the record itself, a string with a TTL (see claim.lua).
-- Every operation's ARGV starts with: ARGV[1] partition number, ARGV[2] now (ms).
-- Nothing reads the clock or draws random numbers: now comes in ARGV.
--
-- Arguments are checked before anything is written (a runtime error half-way through a call
-- would leave its first writes in place): numbers must be integers in their range, and text
-- that goes into a "|"-separated record or event must not contain "|".
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
local NEW_HOLDS, NEW_EXP -- HSET and ZADD arguments of the parts placed (and transactions made)
local PLACED      -- part -> record, for a part placed earlier in this call
local PLACED_AT   -- part -> the index of its record in NEW_HOLDS
local NEW_GC      -- ZADD arguments of the gc index, for the records made in this call
local NEW_EVENTS  -- in a batch, the events made (entry id, canonical form, hash), appended at flush
local TXS         -- transaction field -> record, or false: read at the start, made since
local RAISED      -- counter fields whose available count went up in this call (see finish)

-- begin starts a call: it binds the call's keys and arguments and resets the per-call state.
local function begin(keys, args)
  KEYS, ARGV = keys, args
  K_STOCK, K_HOLDS, K_EXP, K_GC = keys[1], keys[2], keys[3], keys[4]
  K_LOG, K_META, K_CUST, K_XFER = keys[5], keys[6], keys[7], keys[8]
  PART, NOW_S = args[1], args[2]
  NOW = tonumber(NOW_S)
  SEQ, HEAD, BATCH = nil, nil, false
  STOCK, STOCK_DIRTY, NEW_HOLDS, NEW_EXP, PLACED, PLACED_AT = {}, {}, {}, {}, {}, {}
  NEW_GC, TXS, NEW_EVENTS, RAISED = {}, {}, {}, nil
end

-- call_chunked calls cmd key with args in slices (Lua's unpack has a stack limit).
local function call_chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

local function flush()
  if BATCH then
    -- Events first, as a single call writes them: nothing of a batch is written before its last
    -- request is done, so a runtime error half-way leaves the partition as it was.
    for _, ev in ipairs(NEW_EVENTS) do
      redis.call('XADD', K_LOG, ev[1], 'e', ev[2], 'h', ev[3])
    end
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
    call_chunked('ZADD', K_GC, NEW_GC)
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

-- avail_incr changes a shard's available count f by d and returns the count after. When it
-- goes up it also counts the rise in "f|r", so that a reader who found the shard short can
-- tell later that no unit has come back to it since.
-- raise notes that shard f may have units its backorder queue can take (see fill).
local function raise(f)
  RAISED = RAISED or {}
  RAISED[f] = true
end

local function avail_incr(f, d)
  if d > 0 then
    stock_incr(f .. '|r', 1)
    raise(f)
  end
  return stock_incr(f, d)
end

-- emit appends one event to the partition's stream and advances seq and the chain head.
-- Canonical form, version 2 (hashed, and rebuilt by Go from ledger columns):
--   2|partition|seq|type|loc|sku|shard|delta|after|held_delta|hold|qty|customer|idem|actor|reason|expires_at|ts|prev
-- exp is the part's expiry (ms) after a RESERVED or EXTENDED event, 0 otherwise.
local function emit(typ, loc, sku, shard, delta, after, hdelta, hold, qty, cust, idem, actor, reason, exp)
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
  if type(exp) == 'number' then
    exp = string.format('%d', exp)
  end
  local canon = '2|' .. PART .. '|' .. seq .. '|' .. typ .. '|' .. loc .. '|' .. sku .. '|' .. shard
    .. '|' .. delta .. '|' .. after .. '|' .. hdelta .. '|' .. hold .. '|' .. qty .. '|' .. cust
    .. '|' .. idem .. '|' .. actor .. '|' .. reason .. '|' .. exp .. '|' .. NOW_S .. '|' .. HEAD
  HEAD = redis.sha1hex(canon)
  if BATCH then
    NEW_EVENTS[#NEW_EVENTS + 1] = {seq .. '-0', canon, HEAD}
  else
    redis.call('XADD', K_LOG, seq .. '-0', 'e', canon, 'h', HEAD)
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

-- Argument checks. int returns the decimal integer s as a number if lo <= s <= hi, else nil
-- ("1.5", "1e3", " 7" and "0x10" are not integers here). text returns s if it holds no "|".
local function int(s, lo, hi)
  if type(s) ~= 'string' or not string.match(s, '^-?%d+$') then
    return nil
  end
  local n = tonumber(s)
  if n < lo or n > hi then
    return nil
  end
  return n
end

local function text(s)
  if type(s) ~= 'string' or string.find(s, '|', 1, true) then
    return nil
  end
  return s
end

-- bad raises the error every check failure gives: nothing has been written yet.
local function bad(op, what, v)
  error({err = 'ERR ' .. op .. ': bad ' .. what .. ' ' .. tostring(v)})
end

-- need checks ARGV[i] with int or text (lo given: int) and returns it, or raises bad.
local MAX_QTY, MAX_MS, MAX_COUNT = 1000000000, 100000000000000, 1000000000000000
local function need_int(op, i, what, lo, hi)
  local n = int(ARGV[i], lo, hi)
  if not n then
    bad(op, what, ARGV[i])
  end
  return n
end

local function need_text(op, i, what)
  local v = text(ARGV[i])
  if not v then
    bad(op, what, ARGV[i])
  end
  return v
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

-- A hold part: loc|sku|shard|qty|expires|customer|limited|idem token|created|fingerprint|owner
-- (owner: the API key that placed it; only it may read, extend, commit or release the part;
-- limited: '0' when its units do not count against the customer's limit, '1' when they count
-- while held and, once sold, for good, 'w<ms>' when they count while held and for <ms> after
-- they were sold: a limit over a window). A backordered part (its units owed, not yet taken
-- from stock: see fill) has a twelfth field, 'b'.
local function hold_record(loc, sku, shard, qty, exp, cust, limited, token, created, fp, owner)
  return loc .. '|' .. sku .. '|' .. shard .. '|' .. qty .. '|' .. exp .. '|' .. cust .. '|' .. limited
    .. '|' .. token .. '|' .. created .. '|' .. fp .. '|' .. owner
end

local function enc_hold(h)
  local s = hold_record(h.loc, h.sku, h.shard, h.qty, h.exp, h.cust, h.limited, h.token, h.created, h.fp, h.owner)
  if h.bo then
    s = s .. '|b'
  end
  return s
end

local function dec_hold(s)
  local f = split(s)
  return {loc = f[1], sku = f[2], shard = f[3], qty = tonumber(f[4]), exp = tonumber(f[5]),
    cust = f[6], limited = f[7], token = f[8], created = f[9], fp = f[10], owner = f[11] or '', bo = f[12] == 'b'}
end

local function field(loc, sku, shard)
  return loc .. '|' .. sku .. '|' .. shard
end

-- counted says whether a part's units count against its customer's limit (K_CUST).
local function counted(h)
  return h.limited ~= '0' and h.limited ~= '' and h.cust ~= ''
end

-- A limit over a window keeps, beside the customer's count "loc|sku|customer", the sales
-- that still count in "loc|sku|customer|w": "<until ms>:<units>" entries, space-separated.

-- cust_sold records that n units of part h were sold: with a window, they stop counting
-- when it has passed.
local function cust_sold(h, n)
  if string.sub(h.limited, 1, 1) ~= 'w' or h.cust == '' or n <= 0 then
    return
  end
  local f = h.loc .. '|' .. h.sku .. '|' .. h.cust .. '|w'
  local entry = string.format('%d', NOW + tonumber(string.sub(h.limited, 2))) .. ':' .. string.format('%d', n)
  local old = redis.call('HGET', K_CUST, f)
  redis.call('HSET', K_CUST, f, old and (old .. ' ' .. entry) or entry)
end

-- cust_expire takes the sales whose window has passed off the customer's count cf.
local function cust_expire(cf)
  local f = cf .. '|w'
  local v = redis.call('HGET', K_CUST, f)
  if not v then
    return
  end
  local keep, gone = {}, 0
  for at, n in string.gmatch(v, '(%d+):(%d+)') do
    if tonumber(at) <= NOW then
      gone = gone + tonumber(n)
    else
      keep[#keep + 1] = at .. ':' .. n
    end
  end
  if gone == 0 then
    return
  end
  redis.call('HINCRBY', K_CUST, cf, -gone)
  if #keep == 0 then
    redis.call('HDEL', K_CUST, f)
  else
    redis.call('HSET', K_CUST, f, table.concat(keep, ' '))
  end
end

-- forget_at schedules a record for removal by the sweep script's clean-up pass.
local function forget_at(member, ttl)
  redis.call('ZADD', K_GC, NOW + ttl, member)
end

-- A tombstone "d:<part>": outcome|at|loc|sku|qty|expires|fingerprint|owner|code|n
--   COMMITTED, RELEASED, EXPIRED  the part ended so (a retry answers from it)
--   VOIDED    the part was given back, or never placed, for a request whose caller was never
--             told of it; the part id can never be placed again
--   REFUSED   the request this part was to be was refused (code INSUFFICIENT or LIMIT, n the
--             available units or the customer's units); kept for the refusal's retention
--   SLOW      the request went on to the slow path: its answer is in its key record
-- A COMMITTED part whose units are still owed (sold backordered) has code B until it is filled.
local function tomb(outcome, h, fp, owner, code, n)
  return outcome .. '|' .. NOW_S .. '|' .. h.loc .. '|' .. h.sku .. '|' .. h.qty .. '|' .. h.exp .. '|' .. fp
    .. '|' .. owner .. '|' .. (code or '') .. '|' .. (n or '')
end

local function dec_tomb(s)
  local f = split(s)
  return {outcome = f[1], at = f[2], loc = f[3], sku = f[4], qty = tonumber(f[5]), exp = tonumber(f[6]),
    fp = f[7] or '', owner = f[8] or '', code = f[9] or '', n = tonumber(f[10] or '')}
end

-- A shard's backorder queue, "q:<loc|sku|shard>" in the holds hash: its backordered parts in
-- the order they were placed, "<part>:<qty>:<o|s>" separated by spaces (o: the part is open,
-- its record marked backordered; s: it was sold before its units came). The shard's "|b"
-- counter is the sum of their units. Units that come back to a shard with a queue go to the
-- queue first (fill), so a new hold never takes stock ahead of a backorder.

local function queue_push(f, part, qty_s)
  local qf, entry = 'q:' .. f, part .. ':' .. qty_s .. ':o'
  local old = redis.call('HGET', K_HOLDS, qf)
  redis.call('HSET', K_HOLDS, qf, old and (old .. ' ' .. entry) or entry)
  stock_incr(f .. '|b', tonumber(qty_s))
end

-- queue_end takes an open backordered part off its shard's queue (given back), or marks it
-- sold (its units are still owed). It raises an error, before anything is written, when the
-- queue lacks the part.
local function queue_end(f, part, qty, sold)
  local qf = 'q:' .. f
  local q = redis.call('HGET', K_HOLDS, qf) or ''
  local entry = part .. ':' .. string.format('%d', qty) .. ':o'
  local i = string.find(' ' .. q .. ' ', ' ' .. entry .. ' ', 1, true)
  if not i then
    error({err = 'ERR backorder queue of ' .. f .. ' lacks part ' .. part})
  end
  local before, after = string.sub(q, 1, i - 1), string.sub(q, i + #entry)
  if sold then
    q = before .. part .. ':' .. string.format('%d', qty) .. ':s' .. after
  else
    if string.sub(before, -1) == ' ' then
      before = string.sub(before, 1, -2)
    elseif string.sub(after, 1, 1) == ' ' then
      after = string.sub(after, 2)
    end
    q = before .. after
    stock_incr(f .. '|b', -qty)
    stock_incr(f .. '|r', 1) -- room came back: no reader may rely on an earlier reading
    raise(f) -- the part behind it may be filled now
  end
  if q == '' then
    redis.call('HDEL', K_HOLDS, qf)
  else
    redis.call('HSET', K_HOLDS, qf, q)
  end
end

-- end_part finishes an active hold part as COMMITTED, RELEASED, EXPIRED or VOIDED, writing
-- its event and its tombstone (kept keep_ms). Units come back to available unless committed.
local function end_part(part, h, outcome, actor, reason, keep_ms)
  local f = field(h.loc, h.sku, h.shard)
  local sold = outcome == 'COMMITTED'
  if h.bo then
    -- Backordered: no unit was taken. Sold, its units stay owed; else they are owed no more.
    queue_end(f, part, h.qty, sold)
  end
  if sold then
    cust_sold(h, h.qty)
  elseif counted(h) then
    redis.call('HINCRBY', K_CUST, h.loc .. '|' .. h.sku .. '|' .. h.cust, -h.qty)
  end
  local delta, hdelta, after, code = 0, 0, nil, nil
  if h.bo then
    after = stock_get(f) or 0
    if sold then
      code = 'B' -- a sale whose units are still owed says so in its tombstone until its fill
    end
  else
    if sold then
      stock_incr(f .. '|c', h.qty)
    else
      delta = h.qty
    end
    hdelta = -h.qty
    after = avail_incr(f, delta)
    stock_incr(f .. '|h', -h.qty)
  end
  redis.call('HDEL', K_HOLDS, part)
  redis.call('ZREM', K_EXP, part)
  redis.call('HSET', K_HOLDS, 'd:' .. part, tomb(outcome, h, h.fp, h.owner, code))
  forget_at('h:d:' .. part, keep_ms)
  emit(outcome, h.loc, h.sku, h.shard, delta, after, hdelta, part, h.qty, h.cust, h.token, actor, reason, 0)
end

-- owns reports whether owner may act on a part (or tombstone) of owner_of_part: the same
-- API key, or '*' (an operator).
local function owns(owner, owner_of_part)
  return owner == '*' or owner_of_part == '' or owner == owner_of_part
end

-- live_part reads an active hold part for commit, release, extend and end_batch. It returns
-- the part, or nil and the reply to give instead: {'ENDED', outcome} when it ended before,
-- {'ENDED', 'EXPIRED'} when its expiry had passed (it is restored now, with an EXPIRED event),
-- {'NOT_FOUND'} when there is no such part for this owner (never placed, voided, placed by
-- another API key, or its tombstone was forgotten).
local function live_part(part, keep_ms, owner)
  local v = redis.call('HMGET', K_HOLDS, part, 'd:' .. part)
  if not v[1] then
    if v[2] then
      local t = dec_tomb(v[2])
      if owns(owner, t.owner) and (t.outcome == 'COMMITTED' or t.outcome == 'RELEASED' or t.outcome == 'EXPIRED') then
        return nil, {'ENDED', t.outcome}
      end
    end
    return nil, {'NOT_FOUND'}
  end
  local h = dec_hold(v[1])
  if not owns(owner, h.owner) then
    return nil, {'NOT_FOUND'}
  end
  if h.exp <= NOW then
    end_part(part, h, 'EXPIRED', 'sweeper', '', keep_ms)
    return nil, {'ENDED', 'EXPIRED'}
  end
  return h
end

-- end_hold ends an active hold part as outcome (COMMITTED or RELEASED): {'OK'}, or
-- live_part's reply.
local function end_hold(part, outcome, actor, keep_ms, reason, owner)
  local h, other = live_part(part, keep_ms, owner)
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

-- fill gives the units available on shard f to its backorder queue, first come first served:
-- each part at the head of the queue whose units are all available takes them (an open part
-- is then held like any other; a sold one is committed), with a FILLED event; the first that
-- cannot be filled in whole stops the fill, so none is passed over. In a batch it goes through
-- the batch's counters, records and events like the request that brought the units.
local function fill(f)
  local qf = 'q:' .. f
  local q = redis.call('HGET', K_HOLDS, qf)
  if not q then
    return
  end
  local loc, sku, shard = string.match(f, '^(.*)|(.*)|(%d+)$')
  local avail = stock_get(f) or 0
  -- First the parts to fill, each open one's record read: a queue that names a part with no
  -- record raises an error before anything is written.
  local todo, pos, left = {}, 1, avail
  while true do
    local s, e, part, qty, state = string.find(q, '^([^ :]+):(%d+):([os]) ?', pos)
    if not s or left < tonumber(qty) then
      break
    end
    local rec
    if state == 'o' then
      rec = PLACED[part] or redis.call('HGET', K_HOLDS, part)
      if not rec then
        error({err = 'ERR backorder queue of ' .. f .. ' names part ' .. part .. ', which has no record'})
      end
    end
    left = left - tonumber(qty)
    todo[#todo + 1] = {part, tonumber(qty), state, rec}
    pos = e + 1
  end
  for _, t in ipairs(todo) do
    local part, n, state, rec = t[1], t[2], t[3], t[4]
    avail = stock_incr(f, -n)
    stock_incr(f .. '|b', -n)
    if state == 'o' then
      local h = dec_hold(rec)
      h.bo = false
      rec = enc_hold(h)
      if PLACED[part] then
        PLACED[part], NEW_HOLDS[PLACED_AT[part]] = rec, rec
      else
        redis.call('HSET', K_HOLDS, part, rec)
      end
      stock_incr(f .. '|h', n)
      emit('FILLED', loc, sku, shard, -n, avail, n, part, n, h.cust, h.token, 'filler', '', 0)
    else
      stock_incr(f .. '|c', n)
      local sold = redis.call('HGET', K_HOLDS, 'd:' .. part) -- its tombstone: owed no more
      if sold and string.sub(sold, -3) == '|B|' then
        redis.call('HSET', K_HOLDS, 'd:' .. part, string.sub(sold, 1, -3) .. '|')
      end
      emit('FILLED', loc, sku, shard, -n, avail, 0, part, n, '', '', 'filler', 'sold', 0)
    end
  end
  if pos > 1 then
    if pos > #q then
      redis.call('HDEL', K_HOLDS, qf)
    else
      redis.call('HSET', K_HOLDS, qf, string.sub(q, pos))
    end
  end
end

-- fill_raised fills the queues of the shards that may have gained units since it last ran.
-- A batch calls it after each request, so that the next request finds the queue as it would
-- after that request alone.
local function fill_raised()
  local raised = RAISED
  if raised then
    RAISED = nil
    for f in pairs(raised) do
      fill(f)
    end
  end
end

-- take decrements a shard by qty if it has that many, reclaiming expired holds of the
-- partition first when it is short. Returns available after, or nil and the available count,
-- or false when the shard does not exist.
-- The pool's safety stock (r.floor; only a pool of one shard has one) is never taken: the
-- returned available count, when short, is what is left above it.
local function take(r, f)
  local after = stock_incr(f, -r.qty)
  if after >= r.floor then
    return after
  end
  stock_incr(f, r.qty)
  if not stock_exists(f .. '|h') then
    stock_del(f) -- the increment created it: there is no such shard
    return false
  end
  -- Sweeper lag must not show as a false "sold out".
  if reclaim(r.reclaim, r.keep_ms) > 0 then
    after = stock_incr(f, -r.qty)
    if after >= r.floor then
      return after
    end
    stock_incr(f, r.qty)
  end
  return nil, math.max(after + r.qty - r.floor, 0)
end

-- short is the reply of a shard that cannot give qty units: its available count (above the
-- safety stock), how often units came back to it so far ("|r"), the units it has in flight
-- to other shards ("|t") and the partition's next expiry (-1: none), so the caller can later
-- prove nothing came back.
local function short(f, avail)
  local nxt = redis.call('ZRANGE', K_EXP, 0, 0, 'WITHSCORES')
  return {'INSUFFICIENT', avail, stock_get(f .. '|r') or 0, stock_get(f .. '|t') or 0, tonumber(nxt[2] or '-1')}
end

-- place_one places one hold part whose id is neither active nor ended. r holds the request's
-- fields (see read_req). On a pool that takes backorders (r.bo > 0) a part the shard cannot
-- give is backordered while the shard's backorders stay within r.bo; on such a pool, and on
-- one that took them before (r.bo == 0), nothing is taken while earlier backorders wait.
-- Reply: {'OK', qty, expires, available_after, 'new'} (a sixth value 'B': backordered),
-- short()'s {'INSUFFICIENT', ...}, {'LIMIT', used}, {'UNKNOWN_POOL'}.
local function place_one(r)
  local f = field(r.loc, r.sku, r.shard)
  local cf = nil
  if r.limit > 0 and r.cust ~= '' then
    cf = r.loc .. '|' .. r.sku .. '|' .. r.cust
    -- Sales made under a window come off when it has passed, whatever the pool's window is
    -- now (a pool whose window was removed still has them).
    cust_expire(cf)
    local used = tonumber(redis.call('HGET', K_CUST, cf) or '0')
    if used + r.qty > r.limit then
      -- The customer's own expired holds may not have been swept yet.
      reclaim(r.reclaim, r.keep_ms)
      used = tonumber(redis.call('HGET', K_CUST, cf) or '0')
      if used + r.qty > r.limit then
        if not stock_exists(f) then
          return {'UNKNOWN_POOL'}
        end
        return {'LIMIT', used}
      end
    end
  end
  local after, avail, owed
  local waiting = stock_get(f .. '|b') or 0 -- whatever the pool's policy is now
  if waiting > 0 and (not r.bo or waiting + r.qty > r.bo) then
    -- About to be refused: expired holds not swept yet (reclaimed here, or by the limit's
    -- check above) may give the queue what it waits for.
    reclaim(r.reclaim, r.keep_ms)
    if RAISED then
      fill_raised()
      waiting = stock_get(f .. '|b') or 0
    end
  end
  if waiting > 0 then
    after, avail = nil, 0 -- units that come go to the earlier backorders first
  else
    after, avail = take(r, f)
    if after == false then
      return {'UNKNOWN_POOL'}
    end
  end
  if not after then
    if not r.bo or waiting + r.qty > r.bo then
      return short(f, avail)
    end
    owed, after = true, stock_get(f)
  end
  if owed then
    queue_push(f, r.part, r.qty_s)
  else
    stock_incr(f .. '|h', r.qty)
  end
  local limited = '0'
  if cf then
    redis.call('HINCRBY', K_CUST, cf, r.qty)
    limited = r.window > 0 and ('w' .. r.window_s) or '1'
  end
  -- Strings straight from ARGV where possible: Lua's number formatting is slow.
  local rec = hold_record(r.loc, r.sku, r.shard, r.qty_s, r.exp_s, r.cust, limited, r.token, NOW_S, r.fp, r.owner)
  if owed then
    rec = rec .. '|b'
  end
  if BATCH then
    local n, m = #NEW_HOLDS, #NEW_EXP
    NEW_HOLDS[n + 1], NEW_HOLDS[n + 2] = r.part, rec
    NEW_EXP[m + 1], NEW_EXP[m + 2] = r.exp_s, r.part
    PLACED[r.part], PLACED_AT[r.part] = rec, n + 2
  else
    redis.call('HSET', K_HOLDS, r.part, rec)
    redis.call('ZADD', K_EXP, r.exp_s, r.part)
  end
  if owed then
    emit('BACKORDERED', r.loc, r.sku, r.shard, 0, after, 0, r.part, r.qty_s, r.cust, r.token, r.owner, '', r.exp_s)
    return {'OK', r.qty, r.exp_s, after, 'new', 'B'}
  end
  emit('RESERVED', r.loc, r.sku, r.shard, '-' .. r.qty_s, after, r.qty_s, r.part, r.qty_s, r.cust, r.token, r.owner, '', r.exp_s)
  return {'OK', r.qty, r.exp_s, after, 'new'}
end

-- reserve_one answers a request from what is recorded under its part id, or places the part.
-- The part record (later its tombstone) is the request's answer on the fast path; a refusal
-- there is recorded too, so that the same request sent again gets the same answer.
-- r.mode says what a shortage means: 'F' (fast, final: the only shard; refuse, recorded),
-- 'S' (fast on a sharded pool: record that the request goes on to the slow path) or 'P' (a
-- part of a slow-path attempt: just report it). A LIMIT refusal is final in every mode but 'P'.
-- Replies: those of place_one, and {'OK', qty, expires, available_after, 'existing'},
-- {'ENDED', outcome, qty, expires}, {'REFUSED', code, n}, {'SLOW'}, {'VOIDED'},
-- {'IDEM_MISMATCH'}.
local function reserve_one(r)
  local rec, t = PLACED[r.part], nil
  if not rec then
    local v = redis.call('HMGET', K_HOLDS, r.part, 'd:' .. r.part)
    rec, t = v[1], v[2]
  end
  if rec then
    local h = dec_hold(rec)
    if (h.fp ~= r.fp and h.fp ~= '') or (h.owner ~= r.owner and h.owner ~= '') then -- '': restored from the ledger
      return {'IDEM_MISMATCH'}
    end
    return {'OK', h.qty, h.exp, stock_get(field(h.loc, h.sku, h.shard)), 'existing', h.bo and 'B' or nil}
  end
  if t then
    t = dec_tomb(t)
    if t.outcome == 'VOIDED' then
      return {'VOIDED'}
    end
    if (t.fp ~= r.fp and t.fp ~= '') or (t.owner ~= r.owner and t.owner ~= '') then
      return {'IDEM_MISMATCH'}
    end
    if t.outcome == 'REFUSED' then
      return {'REFUSED', t.code, t.n}
    elseif t.outcome == 'SLOW' then
      return {'SLOW'}
    end
    return {'ENDED', t.outcome, t.qty, t.exp, t.code == 'B' and 'B' or nil}
  end
  local res = place_one(r)
  local code = res[1]
  if r.mode ~= 'P' and (code == 'LIMIT' or code == 'INSUFFICIENT') then
    local h = {loc = r.loc, sku = r.sku, qty = r.qty_s, exp = r.exp_s}
    if code == 'LIMIT' or r.mode == 'F' then
      redis.call('HSET', K_HOLDS, 'd:' .. r.part, tomb('REFUSED', h, r.fp, r.owner, code, res[2]))
      forget_at('h:d:' .. r.part, r.refusal_ms)
    else
      redis.call('HSET', K_HOLDS, 'd:' .. r.part, tomb('SLOW', h, r.fp, r.owner))
      forget_at('h:d:' .. r.part, r.keep_ms)
    end
  end
  return res
end

-- REQ_WIDTH is the number of ARGV entries one reserve request takes (after partition and now).
local REQ_WIDTH = 18

-- read_req reads one reserve request starting at ARGV[i] into R, checks it (raising an error
-- before anything is written when it is malformed) and returns it. R is one table the call
-- reuses for every request it reads (a new one per request would cost Redis about 3,000 more
-- instructions): whoever calls read_req again is done with the last request.
--   i+0 part id, i+1 location, i+2 sku, i+3 shard, i+4 qty, i+5 expires (ms), i+6 customer,
--   i+7 per-customer limit (0: none), i+8 idempotency token, i+9 fingerprint, i+10 mode
--   (F, S or P, see reserve_one), i+11 owner, i+12 expired holds to reclaim inline,
--   i+13 how long (ms) tombstones are kept, i+14 how long (ms) a refusal is kept, i+15 the
--   units the shard keeps back (the pool's safety stock), i+16 the window (ms)
--   of the per-customer limit (0: sold units count for good), i+17 backorders: '0' none,
--   'q' none new but the shard's queue is honoured, n > 0 at most n units backordered
local R = {}
local MODES = {F = true, S = true, P = true}
local function read_req(i)
  local r = R
  r.part, r.loc, r.sku = text(ARGV[i]), text(ARGV[i + 1]), text(ARGV[i + 2])
  r.shard, r.qty_s, r.exp_s = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  r.cust, r.token, r.fp = text(ARGV[i + 6]), text(ARGV[i + 8]), text(ARGV[i + 9])
  r.mode, r.owner = ARGV[i + 10], text(ARGV[i + 11])
  r.qty, r.limit = int(r.qty_s, 1, MAX_QTY), int(ARGV[i + 7], 0, MAX_QTY)
  r.reclaim, r.keep_ms, r.refusal_ms = int(ARGV[i + 12], 0, 1000), int(ARGV[i + 13], 0, MAX_MS), int(ARGV[i + 14], 0, MAX_MS)
  -- Most pools have neither a safety stock nor a window: "0" is read without a pattern match.
  local floor_s, window_s = ARGV[i + 15], ARGV[i + 16]
  r.floor = floor_s == '0' and 0 or int(floor_s, 0, MAX_QTY)
  r.window_s, r.window = window_s, window_s == '0' and 0 or int(window_s, 0, MAX_MS)
  local bo_s = ARGV[i + 17]
  if bo_s == '0' then
    r.bo = nil
  elseif bo_s == 'q' then
    r.bo = 0
  else
    r.bo = int(bo_s, 1, MAX_QTY) or -1
  end
  if not (r.part and r.loc and r.sku and r.cust and r.token and r.fp and r.owner and r.qty and r.limit
      and r.reclaim and r.keep_ms and r.refusal_ms and r.floor and r.window and r.bo ~= -1 and MODES[r.mode]
      and int(r.shard, 0, 1023) and int(r.exp_s, NOW + 1, MAX_MS)) then
    error({err = 'ERR reserve: malformed request at argument ' .. (i - 2) .. ': '
      .. table.concat(ARGV, ' ', i, math.min(#ARGV, i + REQ_WIDTH - 1))})
  end
  return r
end

-- transfer_begin starts transfer_out and transfer_in. It reads their shared arguments:
-- ARGV[3] location, ARGV[4] sku, ARGV[5] this side's shard, ARGV[6] qty (> 0), ARGV[7]
-- transfer id, ARGV[8] and ARGV[9] the other side's partition and shard, ARGV[10] actor; t.f is
-- this shard's counter field and t.other names the other side ("partition/shard", the event's
-- reason). It returns a reply as well when the call ends here: the partition is fenced, or this
-- side applied the transfer before (its record is mark .. id in the transfer hash; nothing
-- changes, and the reply gives the shard's count).
local function transfer_begin(name, mark)
  local t = {loc = need_text(name, 3, 'location'), sku = need_text(name, 4, 'sku'),
    shard = need_int(name, 5, 'shard', 0, 1023), qty = need_int(name, 6, 'qty', 1, MAX_COUNT),
    id = need_text(name, 7, 'transfer id'), actor = need_text(name, 10, 'actor')}
  t.other = need_int(name, 8, 'partition', 0, 16383) .. '/' .. need_int(name, 9, 'shard', 0, 1023)
  t.f = field(t.loc, t.sku, t.shard)
  local fence = fenced()
  if fence then
    return t, {'FENCED', fence}
  end
  if redis.call('HEXISTS', K_XFER, mark .. t.id) == 1 then
    return t, {'OK', tonumber(redis.call('HGET', K_STOCK, t.f)), 'existing'}
  end
  return t, nil
end

-- batch_begin starts a call that answers many requests in one (see BATCH): counters, hold
-- records, seq and head are then written once, after the last request (flush). It returns the
-- FENCED reply when the partition is fenced.
local function batch_begin()
  local fence = fenced()
  if fence then
    return {'FENCED', fence}
  end
  BATCH = true
end

-- ADJ_WIDTH: the values of one change in adjust's ARGV (ARGV[3..15]), and in adjust_batch's.
local ADJ_WIDTH = 13

-- REFUSALS: the codes a change is refused with for what the pool holds. Its transaction record
-- keeps the refusal ("fingerprint|code|available|n"), so a retry is refused the same way and
-- the change never happens later, after the pool changed.
local REFUSALS = {INSUFFICIENT = true, TOO_MANY = true}

-- read_adjust checks the change whose values start at ARGV[i] (in the order of adjust.lua's
-- ARGV[3..15]) and returns it; create allows CREATE (not in a batch).
local function read_adjust(op, i, create)
  local a = {loc = need_text(op, i, 'location'), sku = need_text(op, i + 1, 'sku'),
    shard = need_int(op, i + 2, 'shard', 0, 1023), kind = ARGV[i + 3]}
  if a.kind == 'CREATE' then
    if not create then
      bad(op, 'kind', a.kind)
    end
    return a
  end
  a.n = need_int(op, i + 4, 'n', -MAX_QTY, MAX_COUNT)
  a.tx, a.fp = need_text(op, i + 5, 'transaction id'), need_text(op, i + 6, 'fingerprint')
  a.actor, a.reason = need_text(op, i + 7, 'actor'), need_text(op, i + 8, 'reason')
  a.keep_ms, a.ceiling = need_int(op, i + 9, 'keep', 0, MAX_MS), need_int(op, i + 10, 'ceiling', 0, MAX_COUNT)
  a.whole_before, a.whole_delta = ARGV[i + 11] or '', ARGV[i + 12] or ''
  if a.whole_before ~= '' or REFUSALS[a.kind] then
    need_int(op, i + 11, 'pool before', 0, MAX_COUNT)
    need_int(op, i + 12, 'whole change', -MAX_COUNT, MAX_COUNT)
  end
  return a
end

-- tx_record is the record of transaction field tf, or nil: in a batch from TXS (see
-- prefetch_adjust), else from Redis.
local function tx_record(tf)
  if not BATCH then
    return redis.call('HGET', K_HOLDS, tf)
  end
  local v = TXS[tf]
  if v == nil then
    v = redis.call('HGET', K_HOLDS, tf)
    TXS[tf] = v
  end
  return v or nil
end

-- tx_write makes transaction field tf's record, forgotten after keep_ms; in a batch it is
-- written with the others at flush.
local function tx_write(tf, record, keep_ms)
  if not BATCH then
    redis.call('HSET', K_HOLDS, tf, record)
    forget_at('h:' .. tf, keep_ms)
    return
  end
  TXS[tf] = record
  local n, m = #NEW_HOLDS, #NEW_GC
  NEW_HOLDS[n + 1], NEW_HOLDS[n + 2] = tf, record
  NEW_GC[m + 1], NEW_GC[m + 2] = NOW + keep_ms, 'h:' .. tf
end

-- prefetch_adjust reads, for a batch of changes, every transaction record and counter they
-- read, with one HMGET per thousand fields instead of one HGET each.
local function prefetch_adjust(changes)
  local tfs, fs = {}, {}
  for _, a in ipairs(changes) do
    local f = field(a.loc, a.sku, a.shard)
    tfs[#tfs + 1] = 'i:tx:' .. a.tx
    fs[#fs + 1], fs[#fs + 2] = f, f .. '|r'
  end
  for i = 1, #tfs, 1000 do
    local vals = redis.call('HMGET', K_HOLDS, unpack(tfs, i, math.min(i + 999, #tfs)))
    for j = 1, #vals do
      TXS[tfs[i + j - 1]] = vals[j]
    end
  end
  for i = 1, #fs, 1000 do
    local vals = redis.call('HMGET', K_STOCK, unpack(fs, i, math.min(i + 999, #fs)))
    for j = 1, #vals do
      STOCK[fs[i + j - 1]] = tonumber(vals[j]) or false
    end
  end
end

-- refuse records that change a (transaction field tf) was refused with code, the shard (or
-- the pool) having available units, and returns the refusal: {code, available, n}.
local function refuse(tf, a, code, available)
  tx_write(tf, a.fp .. '|' .. code .. '|' .. string.format('%d', available) .. '|' .. string.format('%d', a.n), a.keep_ms)
  return {code, available, a.n}
end

-- adjust_one applies a change read by read_adjust to its shard and returns adjust's reply.
local function adjust_one(a)
  local f = field(a.loc, a.sku, a.shard)
  if a.kind == 'CREATE' then
    local cur = redis.call('HGET', K_STOCK, f)
    if not cur then
      cur = 0
      redis.call('HSET', K_STOCK, f, 0, f .. '|h', 0, f .. '|c', 0, f .. '|r', 0, f .. '|t', 0)
    end
    return {'OK', tonumber(cur), tonumber(cur), 'new'}
  end
  local tf = 'i:tx:' .. a.tx
  local prior = tx_record(tf)
  if prior then
    local r = split(prior)
    if r[1] ~= a.fp then
      return {'IDEM_MISMATCH'}
    end
    if REFUSALS[r[2]] then
      return {r[2], tonumber(r[3]), tonumber(r[4])}
    end
    return {'OK', tonumber(r[2]), tonumber(r[3]), 'replay', r[4] or '', r[5] or ''}
  end
  if REFUSALS[a.kind] then
    -- A sharded pool's change the caller found refused: recorded, so a retry is refused too.
    return refuse(tf, a, a.kind, tonumber(a.whole_before))
  end
  local before = stock_get(f)
  if not before then
    return {'UNKNOWN_POOL'}
  end
  local n, kind, reason = a.n, a.kind, a.reason
  local delta, typ = 0, 'ADJUSTED'
  if kind == 'RESTOCK' then
    delta, typ = n, 'RESTOCKED'
  elseif kind == 'SPOILAGE' then
    delta, typ = -n, 'SPOILED'
  elseif kind == 'ADJUSTMENT' then
    delta = n
  elseif kind == 'SET' then
    delta = n - before
    if reason == '' then
      reason = 'SET'
    end
  elseif kind == 'WRITEOFF' then
    delta, typ = -before, 'SPOILED'
  else
    return redis.error_reply('ERR adjust: unknown kind ' .. kind)
  end
  -- A single-shard pool's refusal is the pool's, and recorded; a sharded pool's share refused
  -- on its home shard is not (racing reservations took the units gathered there: the caller
  -- reads the shards again, and records the pool's refusal itself when it proves one).
  if before + delta < 0 then
    if a.whole_before ~= '' then
      return {'INSUFFICIENT', before, a.n}
    end
    return refuse(tf, a, 'INSUFFICIENT', before)
  end
  if delta > 0 and before + delta > a.ceiling then
    if a.whole_before ~= '' then
      return {'TOO_MANY', before, a.n}
    end
    return refuse(tf, a, 'TOO_MANY', before)
  end
  local after = before
  if delta ~= 0 then
    after = avail_incr(f, delta)
    emit(typ, a.loc, a.sku, a.shard, delta, after, 0, '', 0, '', a.tx, a.actor, reason, 0)
  end
  local record = a.fp .. '|' .. before .. '|' .. after
  if a.whole_before ~= '' then
    record = record .. '|' .. a.whole_before .. '|' .. a.whole_delta
  end
  tx_write(tf, record, a.keep_ms)
  return {'OK', before, after, 'new', a.whole_before, a.whole_delta}
end

-- finish ends every call (the function library wraps each operation's body in it): units that
-- came back to a shard during the call go to its backorder queue, if it has one, in the same
-- call. A batch has filled after each request and written everything at its flush; what is
-- left is written straight to Redis.
local function finish(reply)
  if RAISED then
    BATCH = false
    fill_raised()
  end
  return reply
end
