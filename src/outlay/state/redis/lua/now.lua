-- The store's clock of time it was alive (see beat.lua): TIME minus the skew.
--
-- KEYS[1] meta hash   ARGV[1] now in ms, or '' (TIME)
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
return now - tonumber(redis.call('HGET', KEYS[1], 'skew') or '0')
