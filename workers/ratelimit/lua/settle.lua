-- settle.lua: correct a grant to what the call used, and heed the server's headers.
--
-- KEYS[1]       the limit key's hash (see common.lua)
-- ARGV[1..3]    what to give back per bucket (reserved - used; negative charges more)
-- ARGV[4..6]    each bucket's capacity
-- ARGV[7..9]    each bucket's refill per minute
-- ARGV[10..12]  the server's remaining per bucket, or -1 when it did not say
-- ARGV[13..15]  the server's per-minute limit per bucket, or -1
-- ARGV[16]      time to live of the hash, milliseconds
--
-- Returns the three levels after settling, as strings.
--
-- The server's figures only ever pull our view down: a remaining lower than
-- our level becomes our level, a limit lower than ours becomes our limit.

local key = KEYS[1]
local now = now_us()
for b = 1, 3 do
  local limit = tonumber(ARGV[12 + b])
  if limit >= 0 then
    redis.call('HSET', key, ({'lr', 'li', 'lo'})[b], fmt(limit))
  end
end
local state, caps, rates, levels = load_buckets(key, now, 4)
for b = 1, 3 do
  levels[b] = math.min(caps[b], levels[b] + tonumber(ARGV[b]))
  local remaining = tonumber(ARGV[9 + b])
  if remaining >= 0 and remaining < levels[b] then
    levels[b] = remaining
  end
end
save_levels(key, now, levels, ARGV[16])
return {fmt(levels[1]), fmt(levels[2]), fmt(levels[3])}
