-- A rate limit shared by every daemon: GCRA on Redis's clock, handing out a
-- lease of up to ARGV[3] permits at once so a daemon pays one round trip per
-- lease, not per message. Never grants more than `burst` ahead of the rate.
--
-- KEYS[1]  {p}:rate:{scope}           theoretical arrival time (µs, Redis clock)
-- KEYS[2]  {p}:rate:{scope}:daemons   zset: daemon → last lease (ms), for the
--                                     fallback share when Redis is unreachable
-- KEYS[3]  {p}:paused:{channel}       a pause set by any daemon (value: reason)
-- ARGV[1]  emission interval T (µs per permit)
-- ARGV[2]  burst (permits)
-- ARGV[3]  permits wanted
-- ARGV[4]  this daemon's name
-- ARGV[5]  reserve beyond (ms): when the next permit is further away than this,
--          take it now for that future moment (0: never reserve)
-- Returns {granted, wait_ms, pause_reason, daemons, reserved}: granted > 0; or
-- the wait until one permit is due (reserved = 1 if it is taken for the caller);
-- or the pause's remaining time, with its reason.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
redis.call('ZADD', KEYS[2], now_ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - 30000)
redis.call('PEXPIRE', KEYS[2], 60000)
local daemons = redis.call('ZCARD', KEYS[2])

local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then
  return {0, pause, redis.call('GET', KEYS[3]) or 'paused', daemons, 0}
end

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
if room >= 1 then
  local k = math.min(room, want)
  tat = tat + k * interval
  -- %.0f: Lua's default number format would round µs timestamps.
  redis.call('SET', KEYS[1], string.format('%.0f', tat),
    'PX', math.ceil((tat - now) / 1000) + 1000)
  return {k, 0, '', daemons, 0}
end
local wait = math.ceil((tat + interval - burst * interval - now) / 1000)
local reserve = tonumber(ARGV[5])
if reserve > 0 and wait > reserve then
  tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat),
    'PX', math.ceil((tat - now) / 1000) + 1000)
  return {0, wait, '', daemons, 1}
end
return {0, wait, '', daemons, 0}
