"""A rate window kept as its newest bucket, that bucket's count and the 59 counts before it
in one string (`lua/window.lua`) counts exactly as the hash of bucket -> count it replaced:
on thousands of random calls and settlements, in buckets that go on by one, by a few or by
more than the window, and now and then back, the sum a call meets and the counts it sees
are those of the hash; a hash an earlier version left is read as it counted, then written
anew; and the Python side (the rebuild's windows, the usage report's reading) agrees with
the script."""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from outlay.policy.windows import BUCKETS, WindowState
from outlay.state.redis.scripts import script_text
from outlay.state.redis.windows import seen_window, stored_window, window_fields

from ...servers.redis import RedisServer

WIDTH = 1_000
# window_seen, then the write reserve.lua makes of an admitted call; or window_corrected
DRIVER = script_text("window.lua") + """
if ARGV[1] == 'add' then
  local seen, used, write, turned = window_seen(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
  if write == true then
    redis.call('HINCRBY', KEYS[1], 'c', ARGV[3])
  else
    if turned == 'hash' then redis.call('DEL', KEYS[1]) end
    redis.call('HSET', KEYS[1], unpack(write))
    if turned then redis.call('PEXPIRE', KEYS[1], 62000) end
  end
  return {seen, string.format('%d', used)}
end
window_corrected(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 0
"""


class Hash:
    """The earlier version's window, as reserve.lua and settle.lua kept it in a hash."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, bucket: int, weight: int) -> tuple[int, tuple[int, ...]]:
        # buckets that left the window were deleted; those newer than `bucket` (a clock
        # that went back) are kept but do not count
        self.counts = {b: n for b, n in self.counts.items() if b > bucket - BUCKETS}
        seen = tuple(self.counts.get(b, 0) for b in range(bucket - BUCKETS + 1, bucket + 1))
        self.counts[bucket] = self.counts.get(bucket, 0) + weight
        return sum(seen), seen

    def correct(self, bucket: int, delta: int) -> None:
        if bucket in self.counts:
            self.counts[bucket] = max(self.counts[bucket] + delta, 0)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


class Window:
    def __init__(self, redis: Redis) -> None:
        self.redis, self.key = redis, f"t:{secrets.token_hex(8)}:w:key:k:tpm"
        self.script = redis.register_script(DRIVER)

    async def add(self, bucket: int, weight: int) -> tuple[int, WindowState]:
        seen, used = await self.script(keys=[self.key], args=["add", bucket, weight])
        return int(used), seen_window(seen)

    async def correct(self, bucket: int, delta: int) -> None:
        await self.script(keys=[self.key], args=["correct", bucket, delta])


def check_seen(used: int, state: WindowState, bucket: int,
               expected: tuple[int, tuple[int, ...]]) -> None:
    assert (used, state.newest, state.counts) == (expected[0], bucket, expected[1])
    assert state.used == used == sum(state.counts)


@pytest.mark.parametrize("seed", range(6))
async def test_a_window_counts_as_the_hash_it_replaced(redis: Redis, seed: int) -> None:
    rng = random.Random(seed)
    window, model = Window(redis), Hash()
    bucket = newest = 1_764_547_200
    added: list[int] = []
    for _ in range(600):
        step = rng.random()
        if step < 0.55:
            pass  # the same bucket: the usual call under load
        elif step < 0.8:
            bucket += 1
        elif step < 0.9:
            bucket += rng.randint(2, 70)
        elif step < 0.95:  # the clock went back (to a bucket the window still holds)
            bucket = rng.randint(max(bucket - 59, newest - 59), bucket)
        newest = max(newest, bucket)
        if rng.random() < 0.75:
            weight = rng.choice([1, 120, rng.randint(0, 10**6)])
            used, state = await window.add(bucket, weight)
            check_seen(used, state, bucket, model.add(bucket, weight))
            added.append(bucket)
        else:  # a settlement corrects the bucket a call was counted in, if still kept
            at = rng.choice(added[-50:]) if added else bucket
            delta = rng.randint(-10**6, 10**6)
            await window.correct(at, delta)
            model.correct(at, delta)
    # what the usage report reads is what the next call would see
    state = stored_window(await redis.hgetall(window.key), WIDTH, (bucket + 3) * WIDTH)
    expected = tuple(model.counts.get(b, 0) for b in range(bucket + 3 - BUCKETS + 1, bucket + 4))
    assert state.counts == expected


async def test_a_clock_back_past_the_whole_window_starts_it_again(redis: Redis) -> None:
    window = Window(redis)
    await window.add(1_000, 5)
    used, state = await window.add(900, 1)  # every count it holds is newer
    assert (used, state.counts) == (0, (0,) * BUCKETS)
    used, state = await window.add(901, 1)
    assert (used, state.counts[-2:]) == (1, (1, 0))


async def test_a_hash_left_by_an_earlier_version_is_read_as_it_counted(redis: Redis) -> None:
    window, model = Window(redis), Hash()
    now = 5_000
    fields = {now - 70: 9, now - 59: 2, now - 30: 7, now: 4, now + 3: 8}  # stale, …, newer
    await redis.hset(window.key, mapping={str(b): str(n) for b, n in fields.items()})
    model.counts = dict(fields)
    await window.correct(now - 30, -5)  # a settlement on the hash corrects it in place
    model.correct(now - 30, -5)
    assert await redis.hget(window.key, str(now - 30)) == "2"
    stored = stored_window(await redis.hgetall(window.key), WIDTH, now * WIDTH)
    assert stored.counts == tuple(model.counts.get(b, 0) for b in range(now - 59, now + 1))
    used, state = await window.add(now, 3)  # read as it counted, then written anew
    model_used, model_seen = model.add(now, 3)
    assert (used, state.counts) == (model_used, model_seen)
    assert sorted(await redis.hkeys(window.key)) == ["b", "c", "s", "t"]
    assert 61_000 < await redis.pttl(window.key) <= 62_000
    used, state = await window.add(now + 1, 1)
    assert used == 2 + 4 + 3  # bucket now - 59 left; the stale and the newer were not kept


async def test_the_rebuilds_window_is_read_by_the_script(redis: Redis) -> None:
    window = Window(redis)
    counts = {100: 3, 120: 5, 159: 7, 40: 11}  # 40 is older than the window of 159
    fields = window_fields(159, counts)
    assert (fields["b"], fields["c"], fields["s"]) == ("159", "7", "8")
    await redis.hset(window.key, mapping=fields)
    used, state = await window.add(160, 1)  # bucket 100 leaves the window here
    assert used == 5 + 7
    assert state.counts == (0,) * 19 + (5,) + (0,) * 38 + (7, 0)


def test_a_window_read_at_a_later_time() -> None:
    fields = window_fields(10, {10: 4, 9: 1, 1: 2})
    assert stored_window(fields, WIDTH, 10 * WIDTH).counts == (0,) * 50 + (2,) + (0,) * 7 + (1, 4)
    assert stored_window(fields, WIDTH, 12 * WIDTH).counts == (0,) * 48 + (2,) + (0,) * 7 + (
        1, 4, 0, 0)
    assert stored_window(fields, WIDTH, 70 * WIDTH).counts == (0,) * 60
    assert stored_window({}, WIDTH, 70 * WIDTH).counts == (0,) * 60
