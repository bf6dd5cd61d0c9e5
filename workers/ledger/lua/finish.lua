-- finish.lua: an item ended; store its result and count it, once.
--
-- KEYS[1]  the batch hash    KEYS[2]  its items hash    KEYS[3]  its results hash
-- KEYS[4..] every key of the batch, to expire together when it is done;
--           KEYS[6] the list a token is pushed to then, for waiting producers
-- ARGV[1]  the item's index
-- ARGV[2]  its final state: c, f, x, b or z
-- ARGV[3]  its result, JSON
-- ARGV[4..12]  its own call's spend, as spend.lua takes it: input, output,
--              cache-write and cache-read tokens, cost (micro-USD), budget
--              reserved (to release), API calls, 1 if from the result store,
--              1 if its model has no price (counted in cost_unknown)
-- ARGV[13] the error type ('' when it succeeded)
-- ARGV[14] a message to pause the batch with ('' for none): the first 401
-- ARGV[15] seconds to keep the batch once it is done
--
-- Returns 1 if counted, 0 if the item had already ended (a duplicate) or the
-- batch no longer exists.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0  -- the batch no longer exists: write nothing
end
local batch, items, results, index, to = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local state = redis.call('HGET', items, index)
if state and TERMINAL[state] then
  return 0
end
move(batch, items, index, state, to)
redis.call('HSET', results, index, ARGV[3])
add_spend(batch, 4)
if ARGV[13] ~= '' then
  redis.call('HINCRBY', batch, 'err:' .. ARGV[13], 1)
end
if ARGV[14] ~= '' and redis.call('HSETNX', batch, 'pause_message', ARGV[14]) == 1 then
  redis.call('HSET', batch, 'stop', 'paused', 'state', 'paused')
end
done_if_ended(batch, tonumber(ARGV[15]))
return 1
