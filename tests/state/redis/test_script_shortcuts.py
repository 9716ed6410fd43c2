"""The reservation, forwarded mark and settlement scripts run directly, where they take
shortcuts: a window's expiry is set when a bucket is first counted and outlasts it, a
budget counter's when it is made; a budget's snapshot is its counter as stored; a call
reserved with no vendor object looks for no link when settled; the forwarded mark is one
write, and makes no reservation it did not find."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from outlay.policy.decision import Call, KeyInfo, call_scopes
from outlay.policy.model import parse_policy
from outlay.state.base import Ticket
from outlay.state.redis.exposure import exposure_scripts
from outlay.state.redis.plan import Check, Holder, Names, check_args, counter_ttl_ms, plan
from outlay.state.redis.scripts import script_text
from outlay.state.redis.wal import ledger_row

from ...servers.redis import RedisServer

NOW = 1_764_547_200_000 + 30_500  # 30.5 s into a minute
KEY = KeyInfo("key01", "bench", None, {})
POLICIES = {"key:key01": parse_policy({"rpm": 1000, "tpm": 1_000_000,
                                       "budgets": [{"usd": 100_000, "period": "month"}]})}


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self.redis, self.names = redis, Names(f"t_{secrets.token_hex(8)}")
        self.reserve = redis.register_script(script_text("reserve.lua"))
        self.settle = redis.register_script(exposure_scripts()[1])
        self.n = 0

    async def ready(self) -> None:
        await self.redis.hset(self.names.meta, mapping={"ready": "1", "version": "v"})

    async def reserved(self, now: int) -> tuple[str, list[Check], Any]:
        self.n += 1
        rid, names = f"req_{self.n}", self.names
        call = Call("openai", "gpt-4o-mini", "gpt-4o-mini", cost_micros=1_000, tokens=120)
        checks, record = plan(names, call, call_scopes(KEY, call.vendor, {}), POLICIES, now,
                              None, Holder(KEY.id, KEY.agent, "", "w0"))
        row = ledger_row(Ticket(rid, "hash", call, "openai.chat"), KEY, now, "w0",
                         decision="allowed", code=None, scope=None, status=None,
                         reserved=1_000, settlement="pending")
        reply = await self.reserve(
            keys=[names.meta, names.leases, names.reservation(rid), names.wal("w0"),
                  names.meta, names.workers, *(c.key for c in checks)],
            args=[now, "v", 900_000, rid, "0", orjson.dumps(record), orjson.dumps(row),
                  len(checks), "w0", check_args(checks)])
        assert reply[0] == "ok"
        return rid, list(checks), reply

    async def settled(self, rid: str) -> Any:
        names = self.names
        return await self.settle(
            keys=[names.reservation(rid), names.leases, names.wal("w0"), names.meta],
            args=[rid, "settled", 800, 100, 200, "gpt-4o-mini"])


async def test_a_window_expires_62_buckets_after_its_newest_bucket_began(redis: Redis) -> None:
    scripts = Scripts(redis)
    await scripts.ready()
    _, checks, _ = await scripts.reserved(NOW)
    windows = [c.key for c in checks if c.kind == "w"]
    assert len(windows) == 2  # rpm and tpm, of one-second buckets
    for key in windows:
        assert 61_000 < await redis.pttl(key) <= 62_000
        await redis.pexpire(key, 5_000)  # as if time had passed since the bucket began
    await scripts.reserved(NOW + 400)  # the same bucket: its expiry stands
    for key in windows:
        assert 0 < await redis.pttl(key) <= 5_000
    await scripts.reserved(NOW + 1_000)  # a new bucket: 62 buckets from now
    for key in windows:
        assert 61_000 < await redis.pttl(key) <= 62_000
        one = 1 if key.endswith("rpm") else 120  # a call's weight
        assert await redis.hgetall(key) == {  # see window.lua
            "b": str(NOW // 1000 + 1), "c": str(one), "s": str(2 * one),
            "t": " ".join(map(str, (2 * one, *[0] * 58)))}


async def test_a_budget_counter_is_given_its_expiry_when_made(redis: Redis) -> None:
    scripts = Scripts(redis)
    await scripts.ready()
    _, checks, _ = await scripts.reserved(NOW)
    counter = next(c.key for c in checks if c.kind == "b")
    month = counter_ttl_ms("month")
    assert month - 1_000 < await redis.pttl(counter) <= month
    await redis.pexpire(counter, 5_000_000)  # as if the period had gone on since
    await scripts.reserved(NOW + 1_000)  # counted: its expiry stands
    assert 0 < await redis.pttl(counter) <= 5_000_000


async def test_a_budgets_snapshot_is_its_counter_as_stored(redis: Redis) -> None:
    scripts = Scripts(redis)
    await scripts.ready()
    _, checks, first = await scripts.reserved(NOW)
    at = next(i for i, c in enumerate(checks) if c.kind == "b")
    assert first[-1][at] == ["0", "0"]
    await redis.hincrby(checks[at].key, "spent", 12_345_678_901)
    _, _, second = await scripts.reserved(NOW)
    assert second[-1][at] == ["12345678901", "1000"]
    # the tightest budget: what it holds with this call, and its cap
    assert second[4:6] == ["12345680901", "100000000000"]


async def test_a_call_reserved_without_an_object_looks_for_no_link(redis: Redis) -> None:
    scripts = Scripts(redis)
    await scripts.ready()
    rid, checks, _ = await scripts.reserved(NOW)
    assert await redis.hget(scripts.names.reservation(rid), "ln") == "0"
    stray = f"{scripts.names.prefix}ol:{rid}"
    await redis.set(stray, "o:" + scripts.names.prefix + "o:vendor:obj")
    reply = await scripts.settled(rid)
    assert reply[0] == 1
    assert "__x" not in reply
    assert reply[1] == "800"
    assert reply[2] == "100"
    assert await redis.get(stray) is not None  # not looked up, so not taken
    budget = next(c.key for c in checks if c.kind == "b")
    assert await redis.hgetall(budget) == {"spent": "800", "reserved": "0"}


async def test_a_reservation_from_before_the_link_flag_looks_for_its_link(
        redis: Redis) -> None:
    scripts = Scripts(redis)
    await scripts.ready()
    rid, _, _ = await scripts.reserved(NOW)
    await redis.hdel(scripts.names.reservation(rid), "ln")  # as an older reserve.lua left it
    link = f"{scripts.names.prefix}ol:{rid}"
    await redis.set(link, "c:" + scripts.names.prefix + "o:vendor:")
    reply = await scripts.settled(rid)  # a create whose answer named no object
    assert reply[0] == 1
    assert await redis.get(link) is None  # looked up, and taken


async def test_the_forwarded_mark_is_one_write_and_leaves_no_reservation_it_did_not_find(
        redis: Redis) -> None:
    scripts = Scripts(redis)
    await scripts.ready()
    forward = redis.register_script(script_text("forward.lua"))
    rid, _, _ = await scripts.reserved(NOW)
    held = scripts.names.reservation(rid)
    assert await forward(keys=[held]) == 1
    assert await redis.hget(held, "fwd") == "1"
    assert await forward(keys=[held]) == 1  # marked again: still held
    older, _, _ = await scripts.reserved(NOW)
    await redis.hdel(scripts.names.reservation(older), "fwd")  # as written before `fwd`
    assert await forward(keys=[scripts.names.reservation(older)]) == 1
    assert await redis.hget(scripts.names.reservation(older), "fwd") == "1"
    await scripts.settled(rid)
    assert await forward(keys=[held]) == 0  # settled (or reaped): not to be sent
    assert await redis.exists(held) == 0
    voided = scripts.names.reservation("req_voided")  # void.lua's marker: left as it was
    await redis.hset(voided, "void", "1")
    await redis.pexpire(voided, 60_000)
    assert await forward(keys=[voided]) == 0
    assert await redis.hgetall(voided) == {"void": "1"}
    assert 0 < await redis.pttl(voided) <= 60_000
