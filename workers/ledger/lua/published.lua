-- published.lua: the producer has published a batch's items up to an index.
--
-- KEYS     every key of the batch (keys.batch_keys)
-- ARGV[1]  how many items, from the first, are now in the queue or answered
-- ARGV[2]  1 when that is all of them: an "enqueuing" batch becomes "running"
--          (not over a pause), and "done" if every item has already ended
-- ARGV[3]  seconds to keep the batch once it is done
--
-- Returns 1, or 0 when the batch no longer exists.

local batch = KEYS[1]
if redis.call('EXISTS', batch) == 0 then
  return 0
end
local upto = tonumber(ARGV[1])
if upto > (tonumber(redis.call('HGET', batch, 'enqueued')) or 0) then
  redis.call('HSET', batch, 'enqueued', upto)
end
if ARGV[2] == '1' then
  if redis.call('HGET', batch, 'state') == 'enqueuing' then
    redis.call('HSET', batch, 'state', 'running')
  end
  done_if_ended(batch, tonumber(ARGV[3]))
end
return 1
