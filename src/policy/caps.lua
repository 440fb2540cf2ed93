-- Frequency caps: count one send against a customer's rolling windows, or
-- refuse it, atomically (every daemon sees the same counts).
--
-- KEYS: the customer's sorted sets, one per scope (the channel's, "all");
--       members are job ids, scores the ms time each was counted.
-- ARGV[1]        now, ms
-- ARGV[2]        the job id
-- ARGV[3..2+#KEYS]  per key: the longest window of its caps, ms (trim + TTL)
-- then per cap, three values: key index (1-based), max, window ms.
--
-- A set that already holds the job (a retry, a redelivery) passes its caps
-- and is not added to again. Returns {1} when the job is counted (or already
-- was); {0, until_ms, cap} when it is not: `cap` (1-based, in ARGV order) is
-- the violated cap that frees a slot last, at `until_ms`.

local now = tonumber(ARGV[1])
local job = ARGV[2]
local nkeys = #KEYS

local longest = {}
local counted = {}
for i = 1, nkeys do
  longest[i] = tonumber(ARGV[2 + i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%d', now - longest[i]))
  counted[i] = redis.call('ZSCORE', KEYS[i], job) ~= false
end

local until_ms, worst = -1, 0
local cap = 0
for j = 3 + nkeys, #ARGV, 3 do
  cap = cap + 1
  local i = tonumber(ARGV[j])
  if not counted[i] then
    local max = tonumber(ARGV[j + 1])
    local window = tonumber(ARGV[j + 2])
    local since = string.format('(%d', now - window)
    local n = redis.call('ZCOUNT', KEYS[i], since, '+inf')
    if n >= max then
      -- The window has room again once the (n - max + 1)th oldest entry in it
      -- ages out.
      local entry = redis.call('ZRANGEBYSCORE', KEYS[i], since, '+inf',
        'WITHSCORES', 'LIMIT', n - max, 1)
      local t = tonumber(entry[2]) + window
      if t > until_ms then
        until_ms, worst = t, cap
      end
    end
  end
end

if worst > 0 then
  return {0, until_ms, worst}
end

for i = 1, nkeys do
  if not counted[i] then
    redis.call('ZADD', KEYS[i], string.format('%d', now), job)
    redis.call('PEXPIRE', KEYS[i], string.format('%d', longest[i]))
  end
end
return {1}
