-- Dedupe claims in bucketed hashes: the shared part of every claim script
-- (src/queue/claims.rs explains the layout and its measurements).
--
-- KEYS[1] is the claims prefix `P:{k}:claims:<window s>:` of one partition. The
-- keys below are that prefix plus a suffix: they share its hash tag, so they are
-- in its slot. (The one place a script names keys itself: which shard keys
-- exist depends on the bucket's shard counts, which this script decides
-- atomically; a caller could only guess them.)
--   <prefix><bucket>                  hash: gens (shard counts, oldest first), n (claims)
--   <prefix><bucket>:<shards>:<shard> hash: claim field -> the claim's value
-- ARGV[1] is the window in ms, ARGV[2] the shard count a first bucket starts
-- with (claims.rs `MIN_SHARDS`); the scripts' own arguments follow.

-- A shard is sized for PER_SHARD claims; a bucket whose newest generation
-- averages GROW_AT gets a generation four times larger. A lookup that misses
-- reads a whole shard (a listpack is scanned, not hashed: 1.8 µs for 48 claims
-- measured, mostly cache misses), so shards are small; and they stay under
-- hash-max-listpack-entries (128 by default), past which a hash becomes a hash
-- table and a claim costs ~3x the bytes. An empty shard does not exist, so many
-- shards cost nothing until claims fill them: a first bucket starts with
-- ARGV[2] (65,536) and grows only past 2.6 million claims.
local PER_SHARD, GROW_AT = 16, 40
local MAX_SHARDS = 16777216
local prefix = KEYS[1]
local win = tonumber(ARGV[1])
local MIN_SHARDS = tonumber(ARGV[2])
-- The server's clock, not the callers': daemons whose clocks differ by a
-- second still agree on the bucket.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = math.floor(now / win)
-- Keys expire one window after their bucket ends; PEXPIRE with the time left
-- rather than PEXPIREAT, and HINCRBYFLOAT, PTTL: the commands the documented
-- ACL (docs/security.md) already allows.
local ttl = string.format('%.0f', (bucket + 2) * win - now)
local prev_meta = prefix .. string.format('%.0f', bucket - 1)
local cur_meta = prefix .. string.format('%.0f', bucket)

local function gens_of(meta)
  local out = {}
  local g = redis.call('HGET', meta, 'gens')
  if g then
    for s in string.gmatch(g, '%d+') do out[#out + 1] = tonumber(s) end
  end
  return out
end

-- The current bucket's generations; a new bucket is sized from the last one.
local function current_gens()
  local gens = gens_of(cur_meta)
  if #gens > 0 then return gens end
  local before = tonumber(redis.call('HGET', prev_meta, 'n') or '0') or 0
  local shards = MIN_SHARDS
  while shards < MAX_SHARDS and shards * PER_SHARD < before do shards = shards * 2 end
  redis.call('HSET', cur_meta, 'gens', shards, 'n', 0)
  redis.call('PEXPIRE', cur_meta, ttl)
  return {shards}
end

local function shard_key(meta, shards, h)
  return string.format('%s:%d:%d', meta, shards, h % shards)
end

-- The claim's value and key in one bucket, oldest generation first.
local function find_in(meta, gens, field, h)
  for i = 1, #gens do
    local key = shard_key(meta, gens[i], h)
    local v = redis.call('HGET', key, field)
    if v then return v, key end
  end
  return false, nil
end

-- The first claim of this id: the previous bucket's, else the current one's,
-- else (for one window after an upgrade) the string key of the layout before.
local function find(prev, cur, field, h, legacy)
  local v, key = find_in(prev_meta, prev, field, h)
  if v then return v, key end
  v, key = find_in(cur_meta, cur, field, h)
  if v then return v, key end
  if legacy ~= '' then
    v = redis.call('GET', legacy)
    if v then return v, legacy end
  end
  return false, nil
end

-- Writes the claim in the current bucket's newest generation, if no claim
-- is there. Returns the claim there: false when this one was written.
local function write(cur, field, h, value)
  local key = shard_key(cur_meta, cur[#cur], h)
  if redis.call('HSETNX', key, field, value) == 0 then
    return redis.call('HGET', key, field)
  end
  if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, ttl) end
  return false
end

-- The first claim of this id, or this one, written now (false): one HGET per
-- generation but the newest, which HSETNX both checks and writes; so two
-- commands in a bucket of one generation, three with the bucket before.
local function claim(prev, cur, field, h, value, legacy)
  local v = find_in(prev_meta, prev, field, h)
  if v then return v end
  for i = 1, #cur - 1 do
    v = redis.call('HGET', shard_key(cur_meta, cur[i], h), field)
    if v then return v end
  end
  if legacy ~= '' then
    v = redis.call('GET', legacy)
    if v then return v end
  end
  return write(cur, field, h, value)
end

-- Counts new claims; grows the bucket when its newest generation is full.
local function count(cur, added)
  if added == 0 then return end
  local n = tonumber(redis.call('HINCRBYFLOAT', cur_meta, 'n', added))
  local newest = cur[#cur]
  if n > newest * GROW_AT and newest < MAX_SHARDS then
    cur[#cur + 1] = math.min(newest * 4, MAX_SHARDS)
    redis.call('HSET', cur_meta, 'gens', table.concat(cur, ','))
  end
end

-- An entry id `ms-seq` as one integer, ms * 4096 + seq: a listpack keeps it in
-- 9 bytes instead of 15 characters. Exact while below 2^53 (until 2039);
-- anything else (an origin token) stays as it is. Mirrors claims.rs `pack`.
local function pack(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if ms then
    ms, seq = tonumber(ms), tonumber(seq)
    if seq < 4096 and ms < 2199023255552 then
      return string.format('%.0f', ms * 4096 + seq)
    end
  end
  return id
end
