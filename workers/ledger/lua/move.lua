-- move.lua: an item in work starts or stops waiting.
--
-- KEYS[1]  the batch hash    KEYS[2]  its items hash
-- ARGV[1]  the item's index
-- ARGV[2]  the new state: r (sending), w (waiting on the rate limit), t (waiting to retry)
-- ARGV[3]  why it waits: an error type for t ('' otherwise)
-- ARGV[4]  how long it will wait, milliseconds
--
-- Returns 1 if the item moved, 0 if it was not in work (ended, or never started).

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0  -- the batch no longer exists: write nothing
end
local batch, items, index, to = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local state = redis.call('HGET', items, index)
if not ACTIVE[state] then
  return 0
end
if state ~= to then
  move(batch, items, index, state, to)
end
if to == 't' and ARGV[3] ~= '' then
  redis.call('HINCRBY', batch, 'retry:' .. ARGV[3], 1)
end
if to == 'w' then
  redis.call('HINCRBY', batch, 'wait_ms:rate_limit', tonumber(ARGV[4]))
end
return 1
