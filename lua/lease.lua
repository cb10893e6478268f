-- lease: take or renew a short lease (who may do some background work on something now).
-- Not a partition script: it gets no shared helpers and touches only its one key.
--
-- KEYS[1] -> the lease key
-- ARGV[1] -> owner id
-- ARGV[2] -> lease length (ms)
-- ARGV[3] -> "1" take or renew, "0" give up (only if owned)
--
-- Output: 1 when the caller holds the lease after the call (or gave it up), 0 when another does.
local key, owner, ttl, take = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('GET', key)
if take == '0' then
  if cur == owner then
    redis.call('DEL', key)
  end
  return 1
end
if cur == owner then
  redis.call('PEXPIRE', key, ttl)
  return 1
end
if not cur then
  redis.call('SET', key, owner, 'PX', ttl)
  return 1
end
return 0
