-- control.lua: the producer stops a batch, or lets it go again.
--
-- KEYS     every key of the batch (keys.batch_keys)
-- ARGV[1]  'cancel'    stop sending: workers end the items they reach as
--                      cancelled (a batch that is done stays done)
--          'resume'    lift a stop or a pause: a paused or cancelled batch runs again
--          'resubmit'  its input was submitted again: lift any stop, keep its
--                      keys, and it is enqueuing again
-- ARGV[2..] for 'resubmit': field, value pairs to set (model, queue, updated_at,
--           max_cost_micros)
--
-- Returns the batch's state after, or '' when the batch no longer exists.

local batch = KEYS[1]
if redis.call('EXISTS', batch) == 0 then
  return ''
end
local action = ARGV[1]
local state = redis.call('HGET', batch, 'state')
if action == 'cancel' then
  if state ~= 'done' then
    redis.call('HSET', batch, 'stop', 'cancelled', 'state', 'cancelled')
  end
elseif action == 'resume' then
  redis.call('HDEL', batch, 'stop', 'pause_message')
  if state == 'paused' or state == 'cancelled' then
    redis.call('HSET', batch, 'state', 'running')
  end
elseif action == 'resubmit' then
  redis.call('HDEL', batch, 'stop', 'pause_message', 'ended_at')
  for i = 1, #KEYS do
    redis.call('PERSIST', KEYS[i])
  end
  redis.call('HSET', batch, 'state', 'enqueuing')
  for i = 2, #ARGV, 2 do
    redis.call('HSET', batch, ARGV[i], ARGV[i + 1])
  end
else
  return redis.error_reply('control.lua: unknown action ' .. tostring(action))
end
return redis.call('HGET', batch, 'state')
