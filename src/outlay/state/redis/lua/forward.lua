-- A call is about to be sent upstream: its reservation, if still held, is marked forwarded.
-- Until then a worker that dies leaves a call that was never sent, which the reaper voids
-- (settle.lua); from then on it is charged in full, as it may have been served.
--
-- KEYS[1] the reservation hash
-- Returns 1 when marked, 0 when the reservation is no longer held (the reaper settled it:
-- the call must not be sent).

-- One command for a held reservation: every one has its `fwd` field (reserve.lua writes 0, a
-- rebuild 1), so marking it adds no field. A field added means the hash lacked it: written
-- before `fwd` was, or no reservation (none, or void.lua's marker), which the field is taken
-- back from, leaving it as it was (none stays none: Redis drops an empty hash).
if redis.call('HSET', KEYS[1], 'fwd', '1') == 1 and redis.call('HEXISTS', KEYS[1], 'rec') == 0
then
  redis.call('HDEL', KEYS[1], 'fwd')
  return 0
end
return 1
