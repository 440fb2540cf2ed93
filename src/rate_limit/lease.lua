-- A rate limit shared by every daemon: GCRA on Redis's clock. One call leases
-- the next ARGV[3] permits with their due times (the first at `due`, each
-- further one an interval later), so a daemon pays one round trip per lease —
-- about 20 ms of sends — and releases each permit locally when it is due.
-- TAT advances by one interval per permit granted, whenever it is due, so the
-- permits of every daemon together never run more than `burst` ahead of the
-- rate: a permit is never due before GCRA would have granted it.
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
-- ARGV[6]  reach (µs): lease only when the first permit is due within this
-- Returns {granted, due_us, pause_reason, daemons, reserved, wait_ms}:
--   granted > 0: permits leased; the first is due `due_us` from now (≤ 0: now),
--     permit i (from 0) at due_us + i·T;
--   reserved = 1: one permit taken for the caller, due in wait_ms;
--   a pause reason: the pause's remaining time in wait_ms;
--   otherwise nothing leased: ask again in wait_ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
redis.call('ZADD', KEYS[2], now_ms, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - 30000)
redis.call('PEXPIRE', KEYS[2], 60000)
local daemons = redis.call('ZCARD', KEYS[2])

local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then
  return {0, 0, redis.call('GET', KEYS[3]) or 'paused', daemons, 0, pause}
end

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local reach = tonumber(ARGV[6])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
-- When GCRA grants the next permit: once TAT is at most `burst` intervals ahead.
local due = tat + interval - burst * interval - now
local function set_tat(v)
  -- %.0f: Lua's default number format would round µs timestamps.
  redis.call('SET', KEYS[1], string.format('%.0f', v),
    'PX', math.ceil((v - now) / 1000) + 1000)
end
if due <= reach then
  set_tat(tat + want * interval)
  return {want, due, '', daemons, 0, 0}
end
local due_ms = math.ceil(due / 1000)
local reserve = tonumber(ARGV[5])
if reserve > 0 and due_ms > reserve then
  set_tat(tat + interval)
  return {0, due, '', daemons, 1, due_ms}
end
return {0, due, '', daemons, 0, math.ceil((due - reach) / 1000)}
