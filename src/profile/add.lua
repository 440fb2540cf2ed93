-- Adds a batch's events to profiles (src/profile/mod.rs: fields and units).
-- KEYS: the profile hashes (one slot: a partition's).
-- ARGV: now (ms), half-life (ms), ttl (ms), the default reference time (ms, for
--       a profile without `e`), half-lives after which to rescale; then per key,
--       in KEYS' order, the number of its events and that many pairs of field
--       and event time (ms).
-- Weights are 2^((at - e) / half-life). When `now` is more than the limit past
-- a profile's reference `e`, every weight is first multiplied by
-- 2^(-(now - e) / half-life) and `e` becomes `now` (the same as
-- `profile::rescale`), so stored weights never grow past a double's range.
-- Atomic: a rescale and another daemon's additions cannot interleave.
local now, half_life, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local epoch, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local now_text = string.format('%d', now)
local a = 6
for _, key in ipairs(KEYS) do
  local e = tonumber(redis.call('HGET', key, 'e') or '') or epoch
  local behind = (now - e) / half_life
  if behind > limit then
    local factor = 2 ^ (-behind)
    local fields = redis.call('HGETALL', key)
    local scaled = {}
    for i = 1, #fields, 2 do
      local kind = string.sub(fields[i], 1, 2)
      if kind == 's:' or kind == 'r:' or kind == 'x:' or kind == 'h:' then
        local v = tonumber(fields[i + 1])
        if v then
          scaled[#scaled + 1] = fields[i]
          scaled[#scaled + 1] = string.format('%.17g', v * factor)
        end
      end
    end
    if #scaled > 0 then
      redis.call('HSET', key, unpack(scaled))
    end
    e = now
    redis.call('HSET', key, 'e', now_text)
  end
  local n = tonumber(ARGV[a])
  for i = a + 1, a + 2 * n, 2 do
    local w = 2 ^ ((tonumber(ARGV[i + 1]) - e) / half_life)
    redis.call('HINCRBYFLOAT', key, ARGV[i], string.format('%.17g', w))
  end
  a = a + 1 + 2 * n
  redis.call('HSET', key, 't', now_text)
  redis.call('PEXPIRE', key, ttl)
end
return #KEYS
