-- Records a provider's report (a webhook event) exactly once.
-- ARGV: prefix, dedupe key, dedupe ttl (s), suppression hash ('' for none),
--       address, reason ('' lifts the suppression), event JSON ('' for none),
--       the event's own time (ms).
-- A suppression change applies only if it is not older than the last one applied
-- for that address (their times in "{hash}:at"): a late redelivery of an old
-- unfollow must not block a user who has followed again since.
-- The last few reactions that changed an address's suppression are remembered
-- with it ("{hash}:by", no expiry), so a replay of one of them after the dedupe
-- window is still a redelivery: Twilio signs no time, so a captured STOP
-- replayed a week later would otherwise be newer than the START that lifted it.
-- Returns 1 when recorded now, 0 for a redelivery already recorded.
local prefix, seen, ttl, hash, address, reason, event, at =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]) or 0
if not redis.call('SET', seen, '1', 'NX', 'EX', ttl) then
  return 0
end
local REMEMBERED = 8
if hash ~= '' and address ~= '' then
  local by = hash .. ':by'
  local mark = string.sub(redis.sha1hex(seen), 1, 16)
  local recent = redis.call('HGET', by, address) or ''
  if string.find(recent, mark, 1, true) then
    return 0
  end
  local times = hash .. ':at'
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
  redis.call('XADD', prefix .. ':results', '*', 'event', event)
end
return 1
