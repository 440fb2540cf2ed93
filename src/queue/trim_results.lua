-- Trims one partition's results stream by the retention rule (issue 20): an
-- event goes only once it is older than the retention AND every required
-- consumer group (the operator's `results_groups` and the profile updater's)
-- has acknowledged it. The bound is `XTRIM MINID`, so every path that wrote an
-- event (finish, reactions, webhooks, the CLI) is trimmed by the same rule.
-- KEYS: results
-- ARGV: age bound (ms: events with an id below `<bound>-0` are old enough),
--       max_len (0: none), held-back count cap, then the required groups
-- Returns {trimmed, held back, the group holding the most back or ''}
local results = KEYS[1]
local bound, max_len, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', results) == 0 then
  return {0, 0, ''}
end

-- Stream ids as {ms, seq}; both stay below 2^53 in practice (ms since 1970,
-- a sequence within one millisecond), where Lua's numbers are exact.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return {tonumber(ms), tonumber(seq)}
end
local function less(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end
local function text(id)
  return string.format('%.0f-%.0f', id[1], id[2])
end

local groups = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', results)) do
  local fields = {}
  for j = 1, #g, 2 do fields[g[j]] = g[j + 1] end
  groups[fields['name']] = fields
end

-- The oldest event some required group has not acknowledged bounds the trim.
local minid, blocker = {bound, 0}, ''
for k = 4, #ARGV do
  local name, oldest = ARGV[k], {0, 0}
  local g = groups[name]
  if g ~= nil then
    local pending = redis.call('XPENDING', results, name)
    if pending[1] > 0 then
      -- Delivered and not acknowledged.
      oldest = parse(pending[2])
    else
      -- Nothing pending: everything up to what it was last given is acknowledged.
      local last = parse(g['last-delivered-id'])
      oldest = {last[1], last[2] + 1}
    end
  end
  -- A group that does not exist yet has read nothing: {0, 0} keeps everything.
  if less(oldest, minid) then
    minid, blocker = oldest, name
  end
end

local trimmed = redis.call('XTRIM', results, 'MINID', text(minid))

-- How many old-enough events a group holds back, counted up to `cap`.
local held = 0
if blocker ~= '' then
  local from = text(minid)
  while held < cap do
    local batch = redis.call('XRANGE', results, from, '(' .. text({bound, 0}), 'COUNT', math.min(1000, cap - held))
    if #batch == 0 then break end
    held = held + #batch
    from = '(' .. batch[#batch][1]
  end
end

-- The operator's hard cap, which may drop events nobody has read.
if max_len > 0 and redis.call('XLEN', results) > max_len then
  trimmed = trimmed + redis.call('XTRIM', results, 'MAXLEN', '~', max_len)
end
return {trimmed, held, blocker}
