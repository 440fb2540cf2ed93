-- Records a provider's report (a webhook event) exactly once.
-- ARGV: prefix, dedupe key, dedupe ttl (s), suppression hash ('' for none),
--       address, reason ('' lifts the suppression), event JSON ('' for none).
-- Returns 1 when recorded now, 0 for a redelivery already recorded.
local prefix, seen, ttl, hash, address, reason, event =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if not redis.call('SET', seen, '1', 'NX', 'EX', ttl) then
  return 0
end
if hash ~= '' and address ~= '' then
  if reason ~= '' then
    redis.call('HSET', hash, address, reason)
  else
    redis.call('HDEL', hash, address)
  end
end
if event ~= '' then
  redis.call('XADD', prefix .. ':results', '*', 'event', event)
end
return 1
