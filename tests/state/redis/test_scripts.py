"""The Redis scripts against `decide`: on thousands of random calls, the reservation script
admits exactly when `decide`, reading the snapshot the script returns, admits; and settling
returns every counter to what was actually spent."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from outlay.policy.decide import decide
from outlay.policy.decision import Admit, Call, KeyInfo, Refuse, call_scopes
from outlay.policy.errors import OutlayError
from outlay.policy.model import Policy, parse_policy
from outlay.state.base import NewKey, Outcome, Ticket
from outlay.state.keys import hash_secret
from outlay.state.redis.plan import Holder, Names, check_args, plan, views
from outlay.state.redis.scripts import script_text
from outlay.state.sqlite.store import SqliteStore

from ...servers.redis import RedisServer
from ..support import Clock

START_MS = 1_710_417_600_000  # 2024-03-14T12:00:00Z


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with RedisServer(Path(tmp_path_factory.mktemp("redis"))) as running:
        yield running


@pytest.fixture
async def redis(server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(server.url, decode_responses=True)
    await client.flushall()
    await client.hset("outlay:{t}:meta", mapping={"ready": "1", "version": "v1"})
    yield client
    await client.aclose()


def _script(redis: Redis, name: str) -> Any:
    return redis.register_script(script_text(name))


def random_policy(rng: random.Random) -> Policy:
    raw: dict[str, Any] = {"on_breach": rng.choice(["block", "block", "alert"])}
    if rng.random() < 0.6:
        raw["rpm"] = rng.randint(1, 6)
    if rng.random() < 0.3:
        raw["rph"] = rng.randint(3, 12)
    if rng.random() < 0.4:
        raw["tpm"] = rng.randint(50, 400)
    if rng.random() < 0.4:
        raw["max_parallel"] = rng.randint(1, 4)
    budgets = []
    for period in rng.sample(["hour", "day", "month"], rng.randint(0, 2)):
        budgets.append({"usd": rng.choice([0.001, 0.002, 0.005]), "period": period,
                        "mode": rng.choice(["hard", "hard", "soft"])})
    if budgets:
        raw["budgets"] = budgets
    return parse_policy(raw)


@pytest.mark.parametrize("seed", range(8))
async def test_the_script_decides_as_the_embedded_store(
    redis: Redis, tmp_path: Path, seed: int
) -> None:
    """The same random calls, clock moves and settlements against the embedded store and
    against the scripts: every verdict is the same, and `decide` reading the script's
    snapshot gives that verdict too."""
    rng = random.Random(seed)
    clock = Clock(START_MS)
    embedded = SqliteStore(str(tmp_path / "ref.db"), clock=clock)
    await embedded.open()
    await embedded.create_agent("bot", "team")
    record, secret = await embedded.create_key(NewKey(agent="bot"))
    names = Names("t")
    reserve, settle = _script(redis, "reserve.lua"), _script(redis, "settle.lua")
    key = KeyInfo(record.id, "bot", "team", {})
    scopes = call_scopes(key, "openai")
    policies = {s: random_policy(rng) for s in scopes if rng.random() < 0.7}
    for scope, policy in policies.items():
        await embedded.put_policy(scope, policy)
    in_flight: list[tuple[str, int, int]] = []
    verdicts = {"ok": 0, "refused": 0}
    for step in range(300):
        clock.advance(rng.choice([0, 0.05, 0.4, 1, 1.5, 20, 59, 60, 400]))
        now = clock.now
        if in_flight and rng.random() < 0.45:
            rid, amount, tokens = in_flight.pop(rng.randrange(len(in_flight)))
            outcome = Outcome(rid, 200, cost_micros=rng.randint(0, amount),
                              tokens=rng.randint(0, tokens))
            done = await settle(keys=[names.reservation(rid), names.leases, names.wal("w"),
                                      names.meta],
                                args=[rid, "settled", outcome.cost_micros, outcome.tokens,
                                      200, ""])
            assert done[0] == 1
            assert int(done[1]) == outcome.cost_micros
            assert await embedded.settle(outcome)
            continue
        call = Call("openai", "m", "m", cost_micros=rng.choice([0, 100, 400, 900]),
                    tokens=rng.choice([0, 10, 80]))
        rid = f"r{step}"
        try:
            await embedded.reserve(Ticket(rid, hash_secret(secret), call, "/v1/x"))
            expected = "ok"
        except OutlayError:
            expected = "refused"
        checks, plan_record = plan(names, call, scopes, policies, now, False,
                                   Holder(key.id, key.agent, "", "w"))
        args: list[Any] = [now, "v1", 900_000, rid, "0", orjson.dumps(plan_record), b"{}",
                           len(checks)]
        result = await reserve(
            keys=[names.meta, names.leases, names.reservation(rid), names.wal("w"),
                  names.meta, names.workers, *(c.key for c in checks)],
            args=[*args, "w", check_args(checks)])
        assert result[0] == expected, (step, result[0])
        decision = decide(call, key, views(checks, result[-1], scopes, policies, now), now)
        verdicts[result[0]] += 1
        if result[0] == "ok":
            assert isinstance(decision, Admit), decision
            assert int(result[3]) == int(decision.overage)
            in_flight.append((rid, call.cost_micros or 0, call.tokens))
        else:
            assert isinstance(decision, Refuse), decision
    assert verdicts["ok"] > 20, verdicts
    assert verdicts["refused"] > 5, verdicts
    for rid, _, _ in in_flight:  # what is left is charged at its reservation
        await settle(keys=[names.reservation(rid), names.leases, names.wal("w"), names.meta],
                     args=[rid, "unsettled", 0, 0, "", ""])
    for counter in await redis.keys("outlay:{t}:c:*"):
        assert await redis.hget(counter, "reserved") == "0"
    for key_name in await redis.keys("outlay:{t}:p:*"):
        assert await redis.get(key_name) == "0"
    assert await redis.zcard(names.leases) == 0
    await embedded.close()


async def test_a_settlement_applies_once(redis: Redis) -> None:
    names = Names("t")
    reserve, settle = _script(redis, "reserve.lua"), _script(redis, "settle.lua")
    key = KeyInfo("k1", "bot", None, {})
    scopes = call_scopes(key, "openai")
    policies = {"global": parse_policy({"budgets": [{"usd": 1}], "max_parallel": 5})}
    call = Call("openai", "m", "m", cost_micros=500)
    checks, record = plan(names, call, scopes, policies, START_MS, False,
                          Holder("k1", "bot", "", "w"))
    args: list[Any] = [START_MS, "v1", 1000, "r1", "0", orjson.dumps(record), b"{}",
                       len(checks), "w", check_args(checks)]
    keys = [names.meta, names.leases, names.reservation("r1"), names.wal("w"), names.meta,
            names.workers, *(c.key for c in checks)]
    assert (await reserve(keys=keys, args=args))[0] == "ok"
    settle_keys = [names.reservation("r1"), names.leases, names.wal("w"), names.meta]
    first = await settle(keys=settle_keys, args=["r1", "settled", 300, 0, 200, ""])
    again = await settle(keys=settle_keys, args=["r1", "unsettled", 0, 0, "", ""])
    assert first[0] == 1
    assert again == [0]
    counter = checks[-1].key
    assert await redis.hgetall(counter) == {"spent": "300", "reserved": "0"}
    assert await redis.get(names.inflight("global")) == "0"
    # the stream holds the reservation's row, then its settlement, once
    kinds = [fields["k"] for _, fields in await redis.xrange(names.wal("w"))]
    assert kinds == ["r", "s"]


async def test_nothing_is_decided_on_an_empty_or_newer_state(redis: Redis) -> None:
    names = Names("t")
    reserve = _script(redis, "reserve.lua")
    keys = [names.meta, names.leases, names.reservation("r1"), names.wal("w"), names.meta,
            names.workers]
    args = [START_MS, "v0", 1000, "r1", "0", b"{}", b"{}", 0, "w", ""]
    assert await reserve(keys=keys, args=args) == ["stale", "v1"]
    await redis.delete(names.meta)
    assert await reserve(keys=keys, args=args) == ["not_ready"]
    assert await redis.exists(names.reservation("r1")) == 0
