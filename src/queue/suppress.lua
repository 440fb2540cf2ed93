-- Suppresses an address on a channel (a hard bounce found while sending),
-- unless a newer change (a re-subscription) is already recorded for it.
-- KEYS: the suppression hash, its change times (address -> ms).
-- ARGV: address, reason, the change's time (ms).
-- Idempotent: applied again with the same time, it writes the same values, so
-- the caller applies it before acknowledging the job and may repeat it.
local address, reason, at = ARGV[1], ARGV[2], tonumber(ARGV[3]) or 0
if at >= (tonumber(redis.call('HGET', KEYS[2], address) or '0') or 0) then
  redis.call('HSET', KEYS[1], address, reason)
  redis.call('HSET', KEYS[2], address, at)
  return 1
end
return 0
