-- budget.lua: may this item be sent? Reserve its worst-case cost against the budget.
--
-- KEYS[1]  the batch hash
-- ARGV[1]  the call's worst-case cost, micro-USD (estimated input, max_tokens output)
--
-- Returns 'ok' (reserved), or why not: 'cancelled', 'paused', 'budget' or 'gone'.
-- Once the spent plus the reserved plus this call would pass the budget, the
-- batch stops sending: what is in flight finishes, nothing new goes out.

local batch = KEYS[1]
if redis.call('EXISTS', batch) == 0 then
  return 'gone'  -- the batch no longer exists: send nothing
end
local meta = redis.call('HMGET', batch, 'stop', 'max_cost_micros', 'cost_micros', 'reserved_micros')
if meta[1] then
  return meta[1]
end
local limit = tonumber(meta[2]) or 0
if limit > 0 then
  local committed = (tonumber(meta[3]) or 0) + (tonumber(meta[4]) or 0)
  if committed + tonumber(ARGV[1]) > limit then
    redis.call('HSET', batch, 'stop', 'budget')
    return 'budget'
  end
  redis.call('HINCRBY', batch, 'reserved_micros', tonumber(ARGV[1]))
end
return 'ok'
