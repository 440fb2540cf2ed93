-- Records a provider's report (a webhook event) exactly once.
-- KEYS: the dedupe key, the results stream, then with a suppression change the
--       suppression hash, its change times and its change marks (one partition:
--       the address's).
-- ARGV: dedupe ttl (s), address, reason ('' lifts the suppression), event JSON
--       ('' for none), the event's own time (ms), the reaction's identity (its
--       mark in KEYS[5] is the first 16 hex digits of the identity's SHA-1).
-- A suppression change applies only if it is not older than the last one applied
-- for that address (their times in KEYS[4]): a late redelivery of an old
-- unfollow must not block a user who has followed again since.
-- The last few reactions that changed an address's suppression are remembered
-- with it (KEYS[5], no expiry), so a replay of one of them after the dedupe
-- window is still a redelivery: Twilio signs no time, so a captured STOP
-- replayed a week later would otherwise be newer than the START that lifted it.
-- Returns 1 when recorded now, 0 for a redelivery already recorded.
local seen, results = KEYS[1], KEYS[2]
local ttl, address, reason, event, at, identity =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]) or 0, ARGV[6]
if not redis.call('SET', seen, '1', 'NX', 'EX', ttl) then
  return 0
end
local REMEMBERED = 8
if #KEYS == 5 and address ~= '' then
  local hash, times, by = KEYS[3], KEYS[4], KEYS[5]
  local mark = string.sub(redis.sha1hex(identity), 1, 16)
  local recent = redis.call('HGET', by, address) or ''
  if string.find(recent, mark, 1, true) then
    return 0
  end
  local last = tonumber(redis.call('HGET', times, address) or '0') or 0
  if at >= last then
    local keep = mark
    local n = 1
    for m in string.gmatch(recent, '%x+') do
      if n >= REMEMBERED then break end
      keep = keep .. ' ' .. m
      n = n + 1
    end
    redis.call('HSET', by, address, keep)
    if reason ~= '' then
      redis.call('HSET', hash, address, reason)
    else
      redis.call('HDEL', hash, address)
    end
    redis.call('HSET', times, address, at)
  end
end
if event ~= '' then
  redis.call('XADD', results, '*', 'event', event)
end
return 1
