-- The last step of a rebuild: the state is ready, written on this Redis process (its run
-- id, which fence.lua checks), under a new version and a new epoch (the one PostgreSQL
-- records too). The time the store was not alive starts again from nothing.
--
-- KEYS[1] meta hash   ARGV[1] version   ARGV[2] epoch   ARGV[3] now in ms, or '' (TIME)
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
return run
