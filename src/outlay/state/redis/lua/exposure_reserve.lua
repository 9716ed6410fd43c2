-- reserve.lua for a call on a vendor object counted by exposure (state/exposure.py): the
-- call is decided only if the object's record is still the version it was priced on, and
-- once admitted it is counted on the object, in the same atomic step.
--
-- After reserve.lua's keys: KEYS[#KEYS - 1] the object's record (the meta hash for a
-- create, whose object its answer names), KEYS[#KEYS] the call's link to its object.
-- After reserve.lua's arguments: ARGV[11] the record's version the call was priced on
-- ('' for a create), ARGV[12] the object as read from the vendor, kept when this call
-- starts its record ('' if none), ARGV[13] what the link holds: 'o:' and the record's key,
-- or for a create 'c:' and the start of its record's key, which the object's id completes.
-- Returns {'moved'} when the record changed since, else what reserve.lua returns.

local object_record, object_link = KEYS[#KEYS - 1], KEYS[#KEYS]
if ARGV[11] ~= '' then
  local version = redis.call('HGET', object_record, 'version') or '0'
  if version ~= ARGV[11] then return {'moved'} end
end

local result = (function()
-- @reserve.lua
end)()

if result[1] == 'ok' then
  redis.call('SET', object_link, ARGV[13], 'PX', 604800000)
  if ARGV[11] ~= '' then
    if ARGV[11] == '0' and ARGV[12] ~= '' then
      redis.call('HSET', object_record, 'state', ARGV[12])
    end
    redis.call('HINCRBY', object_record, 'held', cjson.decode(ARGV[6]).amount)
    redis.call('HINCRBY', object_record, 'inflight', 1)
    redis.call('HINCRBY', object_record, 'version', 1)
  end
end
return result
