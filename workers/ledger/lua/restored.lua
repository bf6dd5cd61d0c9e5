-- restored.lua: the sweeper put one of the batch's messages back in its queue
-- (its worker died); chorus status shows the count.
--
-- KEYS[1]  the batch hash
--
-- Returns the new count, or 0 when the batch no longer exists.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 'restored', 1)
end
return 0
