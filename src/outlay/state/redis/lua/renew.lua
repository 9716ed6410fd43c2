-- Extend the leases of reservations still held: each member of the leases zset named is
-- given a lease of ARGV[2] ms from now; one already settled or reaped (gone from the zset)
-- stays gone. Leases are on the store's clock of time it was alive (beat.lua).
--
-- KEYS[1] leases zset   KEYS[2] meta hash   ARGV[1] now in ms, or '' for the server's clock
-- (TIME)
-- ARGV[2] lease in ms   ARGV[3…] members ("<worker> <request id>")
-- Returns the number of leases extended.

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
now = now - tonumber(redis.call('HGET', KEYS[2], 'skew') or '0')
local lease = string.format('%d', now + tonumber(ARGV[2]))
local renewed = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', lease, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
