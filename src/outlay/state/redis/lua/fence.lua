-- Run on every new connection before its first command, and by every heartbeat: the hot
-- state is only good on the Redis process that wrote it. A Redis restarted (from a
-- snapshot, an AOF, or nothing) or failed over to a replica is another process, whose
-- counters may be older than the ledger: its state stops being ready, so every script
-- refuses until a worker has rebuilt it from PostgreSQL.
--
-- KEYS[1] meta hash (ready, run: the run id of the process the state was written on)
-- Returns 1 when the state is ready on this process, else 0.

local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local meta = redis.call('HMGET', KEYS[1], 'ready', 'run')
if not meta[1] then return 0 end
if meta[2] == run then return 1 end
redis.call('HDEL', KEYS[1], 'ready')
-- why, for the log of the worker that rebuilds: the process the state was written on
redis.call('HSET', KEYS[1], 'stale', meta[2] or 'unknown')
return 0
