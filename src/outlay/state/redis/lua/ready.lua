-- The last step of a rebuild: the state is ready, written on this Redis process (its run
-- id, which fence.lua checks), under a new version and a new epoch (the one PostgreSQL
-- records too). The time the store was not alive starts again from nothing, and every
-- worker whose calls the rebuild put back in flight counts as heard from now, the moment
-- the state is ready (not when the rebuild began: reading the ledger may take a while).
--
-- KEYS[1] meta hash   KEYS[2] workers zset
-- ARGV[1] version   ARGV[2] epoch   ARGV[3] now in ms, or '' (TIME)   ARGV[4…] workers
-- Returns the run id.

local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[3])
end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
redis.call('HDEL', KEYS[1], 'stale')
redis.call('HSET', KEYS[1], 'ready', '1', 'run', run, 'version', ARGV[1], 'epoch', ARGV[2],
  'skew', '0', 'alive', string.format('%d', now))
for i = 4, #ARGV do
  redis.call('ZADD', KEYS[2], 'GT', string.format('%d', now), ARGV[i])
end
return run
