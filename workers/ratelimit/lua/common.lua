-- common.lua: prepended to every limiter script (not a script of its own).
-- One limit key is one hash:
--   t          last update, integer microseconds of Redis TIME
--   r, i, o    levels of the requests, input-token and output-token buckets
--              (may be negative: debt reserved for callers already told to wait)
--   c          cooldown: no grant takes effect before this time (microseconds)
--   lr, li, lo per-minute limits the server last reported (its -limit headers)
--   lt         when they were reported, microseconds
--   qr, qi, qo the refill per minute each level was written at: a debt is time
--              to wait, so one written at another refill (workers with other
--              settings, or limits learned since) is read as the same time
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
-- microsecond, the level refilled up to `now`, and the ceiling: the largest
-- cost that can ever be granted (a minute's refill, or the capacity of a
-- bucket that never refills).
local function load_buckets(key, now, first, configured)
  local state = redis.call('HMGET', key, 't', 'r', 'i', 'o', 'c', 'lr', 'li', 'lo', 'g', 'x', 'w', 'n', 'p', 'lt', 'qr', 'qi', 'qo')
  local last = tonumber(state[1]) or now
  local elapsed = math.max(0, now - last)
  local caps, rates, levels, ceilings = {}, {}, {}, {}
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
    local level = tonumber(state[1 + b]) or cap
    local written_at = tonumber(state[14 + b])
    if level < 0 and written_at and written_at > 0 and per_minute > 0 then
      -- A debt of so many seconds stays that many seconds at this refill: a
      -- worker with a hundred times the refill must not leave one with this
      -- refill a hundred times the wait.
      level = level * per_minute / written_at
    end
    levels[b] = math.min(cap, level + rates[b] * elapsed)
  end
  return state, caps, rates, levels, ceilings
end

local function save_levels(key, now, levels, rates, ttl_ms)
  redis.call('HSET', key, 't', fmt(now), 'r', fmt(levels[1]), 'i', fmt(levels[2]), 'o', fmt(levels[3]),
    'qr', fmt(rates[1] * 60000000), 'qi', fmt(rates[2] * 60000000), 'qo', fmt(rates[3] * 60000000))
  redis.call('PEXPIRE', key, ttl_ms)
end
