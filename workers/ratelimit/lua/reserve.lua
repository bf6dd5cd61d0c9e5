-- reserve.lua: atomically reserve one call's cost in the three buckets of a limit key.
--
-- KEYS[1]     the limit key's hash (see common.lua)
-- ARGV[1..3]  the cost: requests, input tokens, output tokens
-- ARGV[4..6]  each bucket's capacity
-- ARGV[7..9]  each bucket's refill per minute (0: never refills)
-- ARGV[10]    the debt bound: the longest wait a grant may carry, microseconds
-- ARGV[11]    time to live of the hash, milliseconds
--
-- Returns {status, wait_us, bucket, now_us}:
--   status  1  granted: the cost is reserved; send after wait_us
--   status  0  refused: nothing reserved; ask again after wait_us (-1: never)
--   status -1  the cost exceeds `bucket`'s capacity: it can never be granted
--   bucket     which bucket set the wait: 1 requests, 2 input, 3 output,
--              4 the cooldown, 0 none
--
-- A grant's wait puts the caller in its own future slot: every bucket is
-- back to zero or more at now + wait, after this and every earlier grant.
-- So waiters sleep exactly once, in order, with no polling and no herd.

local key = KEYS[1]
local now = now_us()
local state, caps, rates, levels = load_buckets(key, now, 4)

local costs = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
for b = 1, 3 do
  if costs[b] > caps[b] then
    return {-1, 0, b, now}
  end
end

local wait, bucket = 0, 0
for b = 1, 3 do
  if costs[b] > levels[b] then
    if rates[b] <= 0 then
      redis.call('HSET', key, 'x', (tonumber(state[10]) or 0) + 1)
      return {0, -1, b, now}
    end
    local needed = (costs[b] - levels[b]) / rates[b]
    if needed > wait then
      wait, bucket = needed, b
    end
  end
end
local cooldown_left = (tonumber(state[5]) or 0) - now
if cooldown_left > wait then
  wait, bucket = cooldown_left, 4
end
wait = math.ceil(wait)

local bound = tonumber(ARGV[10])
if wait > bound then
  redis.call('HSET', key, 'x', (tonumber(state[10]) or 0) + 1)
  return {0, wait - bound, bucket, now}
end

for b = 1, 3 do
  levels[b] = levels[b] - costs[b]
end
save_levels(key, now, levels, ARGV[11])
redis.call('HSET', key, 'g', (tonumber(state[9]) or 0) + 1, 'w', fmt((tonumber(state[11]) or 0) + wait))
return {1, wait, bucket, now}
