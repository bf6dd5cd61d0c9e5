-- common.lua: prepended to every ledger script (not a script of its own).
-- A batch is a few keys (see workers/keys.py), in this order (keys.batch_keys):
-- the batch hash, items, results, ids, requests, and the ended list.
--   batch hash   meta (name, total, enqueued, state, stop, max_cost_micros, ...)
--                and counters: n:<state>, tok:*, cost_micros, reserved_micros,
--                calls, from_store, err:<type>, retry:<type>, wait_ms:rate_limit
--   items hash   index -> one state letter:
--                p pending, r running, w waiting on the rate limit,
--                t waiting to retry, c complete, f failed, x cancelled,
--                b skipped for the budget, z paused (the key was refused)
--   results hash index -> the item's result, JSON
-- Every transition moves one item from its current state to another and the
-- counters with it, so a redelivered or duplicated task never counts twice.

local TERMINAL = {c = true, f = true, x = true, b = true}
local ACTIVE = {r = true, w = true, t = true}

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function move(batch, items, index, from, to)
  if from then
    redis.call('HINCRBY', batch, 'n:' .. from, -1)
  end
  redis.call('HINCRBY', batch, 'n:' .. to, 1)
  redis.call('HSET', items, index, to)
  -- When the batch last moved: a batch that stops moving with items pending
  -- and nothing queued has lost messages (orchestration/batch.py, heal()).
  redis.call('HSET', batch, 'updated_at', now_ms())
end

-- ARGV[first..first+8]: input, output, cache-write and cache-read tokens,
-- cost (micro-USD), budget reserved to release, API calls, from the store (0 or 1),
-- and 1 if the call's model has no price (counted in cost_unknown).
local function add_spend(batch, first)
  local fields = {'tok:in', 'tok:out', 'tok:cache_write', 'tok:cache_read', 'cost_micros'}
  for i = 1, 5 do
    local n = tonumber(ARGV[first + i - 1])
    if n ~= 0 then
      redis.call('HINCRBY', batch, fields[i], n)
    end
  end
  local reserved = tonumber(ARGV[first + 5])
  if reserved ~= 0 then
    redis.call('HINCRBY', batch, 'reserved_micros', -reserved)
  end
  redis.call('HINCRBY', batch, 'calls', tonumber(ARGV[first + 6]))
  redis.call('HINCRBY', batch, 'from_store', tonumber(ARGV[first + 7]))
  if ARGV[first + 8] == '1' then
    redis.call('HINCRBY', batch, 'cost_unknown', 1)
  end
end

-- The batch is done once every item was published and every item ended: mark
-- it, wake the producers waiting on it (its ended list, KEYS[6]), and let all
-- of its keys (KEYS) expire in expires_s. Returns true if it became done now.
local function done_if_ended(batch, expires_s)
  local meta = redis.call('HMGET', batch, 'total', 'enqueued', 'state', 'n:c', 'n:f', 'n:x', 'n:b')
  local total = tonumber(meta[1]) or -1
  if tonumber(meta[2]) ~= total or meta[3] == 'done' then
    return false
  end
  local ended = 0
  for i = 4, 7 do
    ended = ended + (tonumber(meta[i]) or 0)
  end
  if ended ~= total then
    return false
  end
  redis.call('HSET', batch, 'state', 'done', 'ended_at', now_ms())
  redis.call('RPUSH', KEYS[6], 1)
  for i = 1, #KEYS do
    redis.call('EXPIRE', KEYS[i], expires_s)
  end
  return true
end
