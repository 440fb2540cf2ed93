-- Moves due entries of {prefix}:delayed back to their job streams, atomically,
-- so with several daemons each entry is moved exactly once.
-- ARGV: prefix, now (ms), limit. Members are JSON {"c": channel, "f": [field, value, ...]}.
local prefix, now, limit = ARGV[1], ARGV[2], ARGV[3]
local delayed = prefix .. ':delayed'
local due = redis.call('ZRANGE', delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  local ok, entry = pcall(cjson.decode, member)
  if ok and type(entry) == 'table' and type(entry.c) == 'string' and type(entry.f) == 'table' then
    redis.call('XADD', prefix .. ':jobs:' .. entry.c, '*', unpack(entry.f))
  else
    redis.call('XADD', prefix .. ':dead', '*', 'job', member, 'reason', '{"code":"internal","message":"unreadable delayed entry"}')
  end
  redis.call('ZREM', delayed, member)
end
return #due
