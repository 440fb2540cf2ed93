-- Adds a batch's events to one profile (src/profile/mod.rs: fields and units).
-- KEYS: the profile hash.
-- ARGV: now (ms), half-life (ms), ttl (ms), the default reference time (ms,
--       for a profile without `e`), half-lives after which to rescale, then
--       pairs of field and event time (ms).
-- Weights are 2^((at - e) / half-life). When `now` is more than the limit past
-- the profile's reference `e`, every weight is first multiplied by
-- 2^(-(now - e) / half-life) and `e` becomes `now` (the same as
-- `profile::rescale`), so stored weights never grow past a double's range.
-- One script per profile: a rescale and the additions of another daemon cannot
-- interleave.
local key = KEYS[1]
local now, half_life, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local e = tonumber(redis.call('HGET', key, 'e') or '') or tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
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
  redis.call('HSET', key, 'e', string.format('%d', e))
end
for i = 6, #ARGV, 2 do
  local w = 2 ^ ((tonumber(ARGV[i + 1]) - e) / half_life)
  redis.call('HINCRBYFLOAT', key, ARGV[i], string.format('%.17g', w))
end
redis.call('HSET', key, 't', string.format('%d', now))
redis.call('PEXPIRE', key, ttl)
return 1
