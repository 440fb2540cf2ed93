-- Records outcomes and acknowledges jobs in one atomic step.
-- ARGV: prefix, group, results_max_len, then for each job:
--   stream, entry id, op count, ops...
-- ops: 'E' event-json                  -> XADD {prefix}:results
--      'Z' score member                -> ZADD {prefix}:delayed
--      'X' key n field value ... (n)   -> XADD key (dead letters, fallback)
--      'S' hash address reason at-ms   -> HSET hash (a suppression; skipped if a
--                                         newer change is recorded in hash:at)
-- An op runs only if XACK acknowledged the entry here and now, so a batch
-- retried after a lost reply, or a job finished twice by two consumers,
-- never writes its events twice.
local prefix, group, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local results, delayed = prefix .. ':results', prefix .. ':delayed'
local i, done = 4, 0
while i <= #ARGV do
  local stream, id, nops = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local acked = redis.call('XACK', stream, group, id) == 1
  for _ = 1, nops do
    local op = ARGV[i]
    if op == 'E' then
      if acked then
        if maxlen > 0 then
          redis.call('XADD', results, 'MAXLEN', '~', maxlen, '*', 'event', ARGV[i + 1])
        else
          redis.call('XADD', results, '*', 'event', ARGV[i + 1])
        end
      end
      i = i + 2
    elseif op == 'Z' then
      if acked then redis.call('ZADD', delayed, ARGV[i + 1], ARGV[i + 2]) end
      i = i + 3
    elseif op == 'X' then
      local key, n = ARGV[i + 1], tonumber(ARGV[i + 2])
      if acked then redis.call('XADD', key, '*', unpack(ARGV, i + 3, i + 2 + n)) end
      i = i + 3 + n
    elseif op == 'S' then
      if acked then
        local hash, address, at = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 4]) or 0
        local times = hash .. ':at'
        if at >= (tonumber(redis.call('HGET', times, address) or '0') or 0) then
          redis.call('HSET', hash, address, ARGV[i + 3])
          redis.call('HSET', times, address, at)
        end
      end
      i = i + 5
    else
      return redis.error_reply('finish: unknown op ' .. tostring(op))
    end
  end
  if acked then
    redis.call('XDEL', stream, id)
    done = done + 1
  end
end
return done
