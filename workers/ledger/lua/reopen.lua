-- reopen.lua: send items again (retry, resume, resubmit): back to pending.
--
-- KEYS[1]  the batch hash    KEYS[2]  its items hash    KEYS[3]  its results hash
-- KEYS[4..] every key of the batch, kept now that it has work again
-- ARGV     pairs: an item's index, and its error type when it failed ('' otherwise)
--
-- Returns how many items were reopened. A complete item is never reopened.

local batch, items, results = KEYS[1], KEYS[2], KEYS[3]
local reopened = 0
for i = 1, #ARGV, 2 do
  local index, error_type = ARGV[i], ARGV[i + 1]
  local state = redis.call('HGET', items, index)
  if state ~= 'c' then
    if state == 'f' and error_type ~= '' then
      redis.call('HINCRBY', batch, 'err:' .. error_type, -1)
    end
    if state ~= 'p' then
      move(batch, items, index, state, 'p')
    end
    redis.call('HDEL', results, index)
    reopened = reopened + 1
  end
end
if reopened > 0 then
  redis.call('HSET', batch, 'state', 'running')
  redis.call('HDEL', batch, 'ended_at')
  for i = 1, #KEYS do
    redis.call('PERSIST', KEYS[i])
  end
end
return reopened
