-- A worker's heartbeat, on the store's own clock of time it was alive. A gap between two
-- heartbeats (of any worker) longer than ARGV[3] means no worker reached the store: it was
-- paused (SIGSTOP, a long fork) or unreachable. Such a gap beyond ARGV[3] is added to the
-- skew, and every time the store keeps (heartbeats, leases) is its TIME minus the skew: a
-- pause does not age anyone's heartbeat or lease.
--
-- KEYS[1] meta hash   KEYS[2] workers zset   KEYS[3] reaped zset
-- ARGV[1] now in ms, or '' (TIME)   ARGV[2] this worker   ARGV[3] the longest gap, ms
-- Returns {ready (1 or 0, as fence.lua), the store's now, 1 if this worker was reaped}.

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local meta = redis.call('HMGET', KEYS[1], 'ready', 'run', 'alive', 'skew')
local ready = 0
if meta[1] then
  if meta[2] == run then
    ready = 1
  else
    redis.call('HDEL', KEYS[1], 'ready')
    redis.call('HSET', KEYS[1], 'stale', meta[2] or 'unknown')
  end
end
local skew = tonumber(meta[4] or '0')
local alive = tonumber(meta[3] or '0')
if alive == 0 then
  redis.call('HSET', KEYS[1], 'alive', string.format('%d', now))
elseif now > alive then
  local gap = now - alive
  if gap > tonumber(ARGV[3]) then skew = skew + gap - tonumber(ARGV[3]) end
  redis.call('HSET', KEYS[1], 'alive', string.format('%d', now),
    'skew', string.format('%d', skew))
end
local store_now = now - skew
redis.call('ZADD', KEYS[2], store_now, ARGV[2])
local reaped = 0
if redis.call('ZREM', KEYS[3], ARGV[2]) == 1 then reaped = 1 end
return {ready, store_now, reaped}
