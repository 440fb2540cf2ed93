-- Records a provider's report (a webhook event) exactly once.
-- ARGV: prefix, dedupe key, dedupe ttl (s), suppression hash ('' for none),
--       address, reason ('' lifts the suppression), event JSON ('' for none),
--       the event's own time (ms).
-- A suppression change applies only if it is not older than the last one applied
-- for that address (their times in "{hash}:at"): a late redelivery of an old
-- unfollow must not block a user who has followed again since.
-- Returns 1 when recorded now, 0 for a redelivery already recorded.
local prefix, seen, ttl, hash, address, reason, event, at =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]) or 0
if not redis.call('SET', seen, '1', 'NX', 'EX', ttl) then
  return 0
end
if hash ~= '' and address ~= '' then
  local times = hash .. ':at'
  local last = tonumber(redis.call('HGET', times, address) or '0') or 0
  if at >= last then
    if reason ~= '' then
      redis.call('HSET', hash, address, reason)
    else
      redis.call('HDEL', hash, address)
    end
    redis.call('HSET', times, address, at)
  end
end
if event ~= '' then
  redis.call('XADD', prefix .. ':results', '*', 'event', event)
end
return 1
