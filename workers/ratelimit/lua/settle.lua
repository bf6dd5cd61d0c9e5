-- settle.lua: correct a grant to what the call used, and heed the server's headers.
--
-- KEYS[1]       the limit key's hash (see common.lua)
-- ARGV[1..3]    what to give back per bucket (reserved - used; negative charges more)
-- ARGV[4..6]    each bucket's capacity
-- ARGV[7..9]    each bucket's refill per minute
-- ARGV[10..12]  the server's remaining per bucket, or -1 when it did not say
-- ARGV[13..15]  the server's per-minute limit per bucket, or -1
-- ARGV[16]      time to live of the hash, milliseconds
-- ARGV[17]      1 if the user set these limits, 0 if they are chorus's guess
--
-- Returns the three levels after settling, as strings.
--
-- A remaining lower than our level becomes our level. A limit becomes our
-- limit when it is lower than a limit the user set, and whatever it is when
-- chorus only guessed (common.lua); it is remembered with when it was told,
-- which ends a probe (reserve.lua). Any settle ends a probe: its call is over.

local key = KEYS[1]
local now = now_us()
local told = false
for b = 1, 3 do
  local limit = tonumber(ARGV[12 + b])
  if limit >= 0 then
    redis.call('HSET', key, ({'lr', 'li', 'lo'})[b], fmt(limit))
    told = true
  end
end
if told then
  redis.call('HSET', key, 'lt', fmt(now))
end
redis.call('HDEL', key, 'p')
local state, caps, rates, levels, _, stated, held = load_buckets(key, now, 4, ARGV[17] == '1')
for b = 1, 3 do
  -- Given back now, but stored as of the latest slot granted: no fuller than
  -- the bucket can be when that call arrives (save_levels).
  levels[b] = math.min(caps[b], levels[b] + tonumber(ARGV[b]))
  local remaining = tonumber(ARGV[9 + b])
  if remaining >= 0 and remaining < levels[b] then
    levels[b] = remaining
  end
end
save_levels(key, now, levels, caps, rates, stated, held, now, {0, 0, 0}, ARGV[16])
return {fmt(levels[1]), fmt(levels[2]), fmt(levels[3])}
