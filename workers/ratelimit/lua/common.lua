-- common.lua: prepended to every limiter script (not a script of its own).
-- One limit key is one hash:
--   t          last update, integer microseconds of Redis TIME
--   r, i, o    levels of the requests, input-token and output-token buckets,
--              each as of its own time below (may be negative: debt)
--   tr, ti, to the time each level is stated at: the latest slot granted, or
--              the last update if none is ahead. A level stated at the slot of
--              the calls waiting for it is in tokens the API will see then,
--              and the time until then is read at each reader's own refill:
--              workers with other settings, or limits learned since, agree on
--              the wait
--   hr, hi, ho what the calls at that time take from each bucket then: a
--              refund cannot fill the bucket past what it can hold before them
--   c          cooldown: no grant takes effect before this time (microseconds)
--   lr, li, lo per-minute limits the server last reported (its -limit headers)
--   lt         when they were reported, microseconds
--   p          a probe in flight until this time: the one call that learns the
--              server's limits before any other goes (keys with no limits set)
--   g, x, w, n grants, refusals, total wait granted (us), cooldowns set
-- Numbers are written with %.17g: Lua's default %.14g would round a
-- microsecond timestamp (~1.7e15) and over-admit.

local function fmt(x)
  return string.format('%.17g', x)
end

local function now_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- ARGV[first..first+2]: capacities; ARGV[first+3..first+5]: per-minute refill.
-- configured: the limits were set by the user (a cap the server's figures may
-- only lower), not chorus's built-in guess (which the server's figures replace).
-- Returns the hash's fields and, per bucket, the capacity, the refill per
-- microsecond, the level at `now` (refilled, or less the refill until the time
-- it is stated at), the ceiling: the largest cost that can ever be granted (a
-- minute's refill, or the capacity of a bucket that never refills), and the
-- time the level was stated at and what calls take then (save_levels).
local function load_buckets(key, now, first, configured)
  local state = redis.call('HMGET', key, 't', 'r', 'i', 'o', 'c', 'lr', 'li', 'lo', 'g', 'x', 'w', 'n', 'p', 'lt', 'tr', 'ti', 'to', 'hr', 'hi', 'ho')
  local last = tonumber(state[1]) or now
  local caps, rates, levels, ceilings = {}, {}, {}, {}
  local stated, held = {}, {}
  for b = 1, 3 do
    local cap = tonumber(ARGV[first + b - 1])
    local per_minute = tonumber(ARGV[first + b + 2])
    local server = tonumber(state[5 + b])
    if server and (server < per_minute or not configured) then
      -- The server states the account's limit: believe it (the burst, in
      -- seconds of refill, stays as configured).
      if per_minute > 0 then
        cap = cap * server / per_minute
      end
      per_minute = server
    end
    caps[b] = cap
    rates[b] = per_minute / 60000000
    ceilings[b] = per_minute > 0 and math.max(cap, per_minute) or cap
    -- A level written without its time (a worker of an older chorus, which
    -- states every level at its update) is read as of that update.
    stated[b] = math.max(tonumber(state[14 + b]) or last, last)
    held[b] = stated[b] == last and 0 or (tonumber(state[17 + b]) or 0)
    local level = tonumber(state[1 + b]) or cap
    levels[b] = math.min(cap, level + rates[b] * (now - stated[b]))
  end
  return state, caps, rates, levels, ceilings, stated, held
end

-- Levels at `now` are stored as of the latest of `now`, the time each was
-- stated at, and `slot` (where a grant of `costs` goes; `now` and nothing for
-- the other scripts): projected at the bucket's refill, and no fuller then
-- than a full bucket less what the calls at that time take. A grant before
-- the stated time counts as taken at it (a little early, never late).
local function save_levels(key, now, levels, caps, rates, stated, held, slot, costs, ttl_ms)
  local at, level, taken = {}, {}, {}
  for b = 1, 3 do
    at[b] = math.max(now, stated[b], slot)
    if at[b] > stated[b] then
      taken[b] = slot == at[b] and costs[b] or 0
    else
      taken[b] = held[b] + costs[b]
    end
    level[b] = math.min(caps[b] - taken[b], levels[b] + rates[b] * (at[b] - now))
  end
  redis.call('HSET', key, 't', fmt(now),
    'r', fmt(level[1]), 'i', fmt(level[2]), 'o', fmt(level[3]),
    'tr', fmt(at[1]), 'ti', fmt(at[2]), 'to', fmt(at[3]),
    'hr', fmt(taken[1]), 'hi', fmt(taken[2]), 'ho', fmt(taken[3]))
  redis.call('PEXPIRE', key, ttl_ms)
end
