-- Moves due entries of a partition's delayed set back to its job streams,
-- atomically, so with several daemons each entry is moved exactly once.
-- KEYS: results, delayed, dead, then the partition's job streams, one per
--       channel name in ARGV[3..] (same order).
-- ARGV: now (ms), limit, then the channel names.
-- Members are JSON {"c": channel, "f": [field, value, ...]}. A member that is not
-- (written by hand, or corrupted) goes to the dead letters with a `failed` event
-- instead of blocking every later one.
local delayed, dead_letters = KEYS[2], KEYS[3]
local now, limit = ARGV[1], ARGV[2]
local streams = {}
for i = 3, #ARGV do streams[ARGV[i]] = KEYS[i + 1] end

local function valid(entry)
  if type(entry) ~= 'table' or not streams[entry.c] or type(entry.f) ~= 'table' then return false end
  local n = #entry.f
  if n < 2 or n > 1000 or n % 2 == 1 then return false end
  for i = 1, n do
    if type(entry.f[i]) ~= 'string' then return false end
  end
  return true
end

local dead = {}
local due = redis.call('ZRANGE', delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local ok, entry = pcall(cjson.decode, member)
  local moved = false
  if ok and valid(entry) then
    moved = type(redis.pcall('XADD', streams[entry.c], '*', unpack(entry.f))) == 'string'
  end
  if not moved then
    local reason = '{"code":"internal","message":"unreadable delayed entry"}'
    table.insert(dead, redis.call('XADD', dead_letters, '*', 'job', member, 'reason', reason))
  end
  redis.call('ZREM', delayed, member)
end
-- The count handled, then the ids of the dead letters written (the caller reports them).
return { #due, unpack(dead) }
