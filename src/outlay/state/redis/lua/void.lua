-- The first half of voiding a call whose decision was lost in transit (a timeout, a reset):
-- if its reservation script ran, say so (the caller then settles it as void); if it has
-- not run yet (still in a paused Redis's buffer), leave a marker that makes it refuse when
-- it does. Either way the call holds no money once both halves are done; both are
-- idempotent.
--
-- KEYS[1] the reservation hash   ARGV[1] how long the marker is kept, ms
-- Returns 1 when the reservation exists, 0 when the marker was left.

if redis.call('HEXISTS', KEYS[1], 'rec') == 1 then return 1 end
redis.call('HSET', KEYS[1], 'void', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
