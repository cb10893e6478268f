-- claim: start (or join) the slow path of a reservation under its key record.
--
-- A reservation's key record lives in the partition its idempotency token names, whatever
-- pools the request names, so one key always finds one record. It is a string with a TTL:
--   "<fingerprint>|F"                     the fast path was tried: its one part (or the
--                                         refusal of it) is the answer
--   "<fingerprint>|P|<attempt>|<until>"   an attempt of the slow path is running; until
--                                         (ms) it lapses, and a retry takes the request over
--   "<fingerprint>|A|<answer>"            answered with a hold: "<hold id>;<expires>;<qtys>"
--   "<fingerprint>|X|<code>|<n>|<line>"   refused (code INSUFFICIENT or LIMIT, for that line)
--
-- KEYS[1..8] -> the partition's keys (see lib.lua)
-- KEYS[9]    -> the key record
-- ARGV[1] -> partition number
-- ARGV[2] -> now (ms)
-- ARGV[3] -> request fingerprint
-- ARGV[4] -> this attempt's id
-- ARGV[5] -> lease (ms): how long the attempt holds the request
-- ARGV[6] -> how long (ms) the record is kept
--
-- Output:
--   {'START'}                 this attempt runs the request (also when it already did:
--                             running claim twice answers the same)
--   {'TAKEOVER', attempt}     as START, after the lease of that earlier attempt lapsed: its
--                             parts must be voided first
--   {'WAIT', until}           another attempt runs it until then
--   {'ANSWER', answer}        the request was answered with a hold
--   {'REFUSED', code, n, line} the request was refused
--   {'IDEM_MISMATCH'}         the key names another request
--   {'FENCED', reason}        the record's partition is fenced: it cannot be trusted now
local fp, attempt = need_text('claim', 3, 'fingerprint'), need_text('claim', 4, 'attempt')
local lease, keep_ms = need_int('claim', 5, 'lease', 1, MAX_MS), need_int('claim', 6, 'keep', 1, MAX_MS)
local fence = fenced()
if fence then
  return {'FENCED', fence}
end
local key = KEYS[9]
local rec = redis.call('GET', key)
local running = fp .. '|P|' .. attempt .. '|' .. (NOW + lease)
if not rec then
  redis.call('SET', key, running, 'PX', keep_ms)
  return {'START'}
end
local f = split(rec)
if f[1] ~= fp and f[1] ~= '*' then -- '*': restored from the ledger, which keeps no fingerprints
  return {'IDEM_MISMATCH'}
end
local state = f[2]
if state == 'F' then
  redis.call('SET', key, running, 'PX', keep_ms)
  return {'START'}
elseif state == 'P' then
  if f[3] == attempt then
    return {'START'}
  end
  if NOW < tonumber(f[4]) then
    return {'WAIT', tonumber(f[4])}
  end
  redis.call('SET', key, running, 'PX', keep_ms)
  return {'TAKEOVER', f[3]}
elseif state == 'A' then
  return {'ANSWER', f[3]}
elseif state == 'X' then
  return {'REFUSED', f[3], tonumber(f[4]), tonumber(f[5] or '0')}
end
return redis.error_reply('ERR claim: malformed key record ' .. rec)
