-- start.lua: a worker is about to work on one item of a batch.
--
-- KEYS[1]  the batch hash    KEYS[2]  its items hash
-- ARGV[1]  the item's index
--
-- Returns {verdict, detail}:
--   {'go', max_cost_micros}   work on it (0: no budget)
--   {'done', state}           it already ended (a duplicate): do nothing
--   {'stop', reason}          the batch is cancelled, paused or out of budget:
--                             do not send it (finish.lua records why)
--   {'gone', ''}              the batch no longer exists (removed, expired, or
--                             its Redis restarted empty): do nothing

local batch, items, index = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', batch) == 0 then
  return {'gone', ''}
end
local state = redis.call('HGET', items, index)
if state and TERMINAL[state] then
  return {'done', state}
end
local meta = redis.call('HMGET', batch, 'stop', 'max_cost_micros', 'started_at')
local stop = meta[1]
if stop then
  return {'stop', stop}
end
if not meta[3] then
  redis.call('HSET', batch, 'started_at', now_ms())
end
if not ACTIVE[state] then
  move(batch, items, index, state, 'r')
end
return {'go', meta[2] or '0'}
