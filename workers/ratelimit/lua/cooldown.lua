-- cooldown.lua: after a 429, hold every caller of a limit key back.
--
-- KEYS[1]     the limit key's hash (see common.lua)
-- ARGV[1]     how long, microseconds (the 429's retry-after)
-- ARGV[2..4]  each bucket's capacity
-- ARGV[5..7]  each bucket's refill per minute
-- ARGV[8]     time to live of the hash, milliseconds
-- ARGV[9]     1 if the user set these limits, 0 if they are chorus's guess
--
-- Returns the cooldown's end, microseconds of Redis TIME.
--
-- The buckets are also drained to zero (debt is kept): the server says it is
-- out of capacity, so after the cooldown calls resume at the refill rate
-- instead of in one burst that would earn the next 429.

local key = KEYS[1]
local now = now_us()
local state, caps, rates, levels, _, stated, held = load_buckets(key, now, 2, ARGV[9] == '1')
for b = 1, 3 do
  levels[b] = math.min(levels[b], 0)
end
local until_us = math.max(tonumber(state[5]) or 0, now + tonumber(ARGV[1]))
save_levels(key, now, levels, caps, rates, stated, held, now, {0, 0, 0}, ARGV[8])
redis.call('HSET', key, 'c', fmt(until_us), 'n', (tonumber(state[12]) or 0) + 1)
return fmt(until_us)
