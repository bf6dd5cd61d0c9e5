-- spend.lua: count what one call of an item spent, before the item itself ends.
-- (A vote's samples: each is a call, the item ends with the vote's fan-in.)
--
-- KEYS[1]  the batch hash
-- ARGV[1..4]  input, output, cache-write and cache-read tokens
-- ARGV[5]  its cost, micro-USD       ARGV[6]  the budget reserved for it, to release
-- ARGV[7]  API calls made            ARGV[8]  1 if answered from the result store
-- ARGV[9]  1 if its model has no price (counted in cost_unknown)
--
-- Returns 1, or 0 when the batch no longer exists.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0  -- the batch no longer exists: write nothing
end
add_spend(KEYS[1], 1)
return 1
