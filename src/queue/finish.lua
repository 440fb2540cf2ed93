-- Records outcomes and acknowledges jobs in one atomic step, for one partition.
-- KEYS: results, delayed, dead, then the partition's job streams (one per
--       channel, in registry order), then the records of event ids written of
--       the jobs whose events must be new ('C', 'F'): every key the script may
--       touch.
-- ARGV: group, then for each job:
--   stream (index into KEYS), entry id, op count, ops...
-- ops: 'E' event-json                     -> XADD results
--      'C' record-index event-id event-json -> XADD results only if event-id
--                                            is new to KEYS[record-index] (a hash:
--                                            the job's event ids written)
--      'F' record-index                   -> empty KEYS[record-index]
-- (HSETNX, HGETALL and HDEL rather than a set: the commands docs/security.md's
-- ACL already allows.)
--      'Z' score member                   -> ZADD delayed
--      'X' stream-index n field value ... -> XADD KEYS[stream-index] (dead
--                                            letters, the next channel's jobs)
-- Suppressions (a hard bounce) live in the address's partition, another slot
-- on a cluster: the caller applies them first, idempotently (suppress.lua).
-- An op runs only if XACK acknowledged the entry here and now, so a batch
-- retried after a lost reply, or a job finished twice by two consumers,
-- never writes its events twice.
-- The results stream is trimmed elsewhere (trim_results.lua), by one rule for
-- every writer.
local group = ARGV[1]
local results, delayed = KEYS[1], KEYS[2]
local i, done = 2, 0
-- Acknowledged entries, deleted per stream in one XDEL at the end: a call per
-- job cost 1.8 µs of Redis CPU per job in `cargo bench --bench bullmq`
-- (BENCH_COMMANDS=1). XACK stays per entry: its answer decides the ops.
local finished = {}
while i <= #ARGV do
  local stream, id, nops = KEYS[tonumber(ARGV[i])], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local acked = redis.call('XACK', stream, group, id) == 1
  for _ = 1, nops do
    local op = ARGV[i]
    if op == 'E' then
      if acked then redis.call('XADD', results, '*', 'event', ARGV[i + 1]) end
      i = i + 2
    elseif op == 'C' then
      -- A dead letter's events, and a re-driven one's: its attempts restart, so
      -- an id may already be in the results; the record says which are.
      if acked and redis.call('HSETNX', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], '1') == 1 then
        redis.call('XADD', results, '*', 'event', ARGV[i + 3])
      end
      i = i + 4
    elseif op == 'F' then
      if acked then
        local record = KEYS[tonumber(ARGV[i + 1])]
        local f = redis.call('HGETALL', record)
        for j = 1, #f, 2 do redis.call('HDEL', record, f[j]) end
      end
      i = i + 2
    elseif op == 'Z' then
      if acked then redis.call('ZADD', delayed, ARGV[i + 1], ARGV[i + 2]) end
      i = i + 3
    elseif op == 'X' then
      local key, n = KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
      if acked then redis.call('XADD', key, '*', unpack(ARGV, i + 3, i + 2 + n)) end
      i = i + 3 + n
    else
      return redis.error_reply('finish: unknown op ' .. tostring(op))
    end
  end
  if acked then
    local ids = finished[stream]
    if ids == nil then
      ids = {}
      finished[stream] = ids
    end
    ids[#ids + 1] = id
    done = done + 1
  end
end
for stream, ids in pairs(finished) do
  -- unpack is bounded by Lua's C stack (LUAI_MAXCSTACK 8000): delete in chunks.
  for first = 1, #ids, 1000 do
    redis.call('XDEL', stream, unpack(ids, first, math.min(first + 999, #ids)))
  end
end
return done
