-- reserve.lua: atomically reserve one call's cost in the three buckets of a limit key.
--
-- KEYS[1]     the limit key's hash (see common.lua)
-- ARGV[1..3]  the cost: requests, input tokens, output tokens
-- ARGV[4..6]  each bucket's capacity
-- ARGV[7..9]  each bucket's refill per minute (0: never refills)
-- ARGV[10]    the debt bound: the longest wait a grant may carry, microseconds
-- ARGV[11]    time to live of the hash, milliseconds
-- ARGV[12]    1 if the user set these limits, 0 if they are chorus's guess
-- ARGV[13]    how long one probe may hold the others back, microseconds
-- ARGV[14]    the jitter allowance, microseconds (see below)
--
-- Returns {status, wait_us, bucket, now_us}:
--   status  1  granted: the cost is reserved; send after wait_us
--   status  0  refused: nothing reserved; ask again after wait_us (-1: never)
--   status -1  the cost exceeds what `bucket` grants in a minute: never granted
--   bucket     which bucket set the wait: 1 requests, 2 input, 3 output,
--              4 the cooldown, 5 learning the limits, 0 none
--
-- A grant's wait puts the caller in its own future slot: every bucket is
-- back to zero or more at now + wait, after this and every earlier grant.
-- So waiters sleep exactly once, in order, with no polling and no herd.
-- A cost above a bucket's capacity (its burst) waits for a full bucket, and
-- the jitter allowance more, then leaves it in debt: one big call at the pace
-- of the refill. The API admits such a call only on a full bucket of its own,
-- with nothing to spare, so one that arrives a little sooner after the last
-- than it was reserved would be refused; the allowance absorbs that.
--
-- Learning: a key whose limits the user did not set, and whose server figures
-- are not known (never seen, or forgotten with the idle hash), sends one call
-- alone; the others ask again every PROBE_POLL_US until its response has told
-- the limits (settle.lua), so a fresh fleet never bursts at a guessed limit.

local PROBE_POLL_US = 250000

local key = KEYS[1]
local now = now_us()
local configured = ARGV[12] == '1'
local state, caps, rates, levels, ceilings, stated, held = load_buckets(key, now, 4, configured)

local costs = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
for b = 1, 3 do
  if costs[b] > ceilings[b] then
    return {-1, 0, b, now}
  end
end

if not configured and not state[6] then
  local probe = tonumber(state[13]) or 0
  if probe > now then
    return {0, math.min(probe - now, PROBE_POLL_US), 5, now}
  end
  redis.call('HSET', key, 'p', fmt(now + tonumber(ARGV[13])))
end

local jitter = tonumber(ARGV[14])
local wait, bucket = 0, 0
for b = 1, 3 do
  local wanted = costs[b]
  if costs[b] > caps[b] then
    wanted = caps[b] + rates[b] * jitter
  end
  if wanted > levels[b] then
    if rates[b] <= 0 then
      redis.call('HSET', key, 'x', (tonumber(state[10]) or 0) + 1)
      return {0, -1, b, now}
    end
    local needed = (wanted - levels[b]) / rates[b]
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
  -- Debit every bucket at the slot, not now: a bucket that is not the one
  -- making this call wait must not lend, meanwhile, the room the call will
  -- take from it then (the API counts the request when it arrives). What a
  -- full bucket would have lost to its cap by then is gone either way.
  local at_slot = math.min(caps[b], levels[b] + rates[b] * wait)
  levels[b] = at_slot - costs[b] - rates[b] * wait
end
save_levels(key, now, levels, caps, rates, stated, held, now + wait, costs, ARGV[11])
redis.call('HSET', key, 'g', (tonumber(state[9]) or 0) + 1, 'w', fmt((tonumber(state[11]) or 0) + wait))
return {1, wait, bucket, now}
