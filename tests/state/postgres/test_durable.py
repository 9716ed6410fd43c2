"""What is particular to the PostgreSQL durable store: approvals opened, claimed and released
on the request path, administration shared by replicas, deliveries leased across replicas,
and StateError whenever the server cannot be reached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from outlay.policy.decision import ApprovalNeed, Call, KeyInfo
from outlay.policy.errors import ApprovalRequired
from outlay.policy.model import Budget, Policy
from outlay.state.base import NewKey, NotFound, StateError, Ticket
from outlay.state.keys import hash_secret
from outlay.state.postgres.durable import PostgresDurable
from tests.servers.postgres import PostgresServer, free_port

from ..support import Clock

NEED = ApprovalNeed("agent:a", "budget_exceeded", "The daily budget of agent:a is spent.", 30.0)
TTL_MS = 3_600_000


@pytest.fixture
async def durable(postgres_dsn: str, clock: Clock) -> AsyncIterator[PostgresDurable]:
    store = PostgresDurable(postgres_dsn, clock=clock)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def replica(postgres_dsn: str, clock: Clock) -> AsyncIterator[PostgresDurable]:
    """A second gateway replica on the same database."""
    store = PostgresDurable(postgres_dsn, clock=clock)
    await store.open()
    yield store
    await store.close()


def ticket(request_id: str, approval_id: str | None = None) -> Ticket:
    return Ticket(request_id, "hash", Call("openai", "gpt-4o", "gpt-4o", cost_micros=2_500_000),
                  "/v1/chat/completions", approval_id=approval_id)


async def key_of(store: PostgresDurable, agent: str = "a") -> KeyInfo:
    _, secret = await store.create_key(NewKey(agent))
    info = await store.key_by_hash(hash_secret(secret))
    assert info is not None
    return info


async def event_types(store: PostgresDurable) -> list[str]:
    return [d["type"] for d in reversed(await store.list_deliveries())]


# -- approvals ----------------------------------------------------------------------------
async def test_opening_an_approval_records_it_and_announces_it_once(
    durable: PostgresDurable, clock: Clock,
) -> None:
    await durable.add_webhook("https://hooks.example.com/a", ["approval.requested"])
    key = await key_of(durable)
    refusal = await durable.open_approval(clock.now, ticket("req_1"), key, NEED, TTL_MS)
    assert isinstance(refusal, ApprovalRequired)
    approval_id = refusal.details["approval_id"]
    assert f"X-Outlay-Approval: {approval_id}" in str(refusal)
    shown = await durable.get_approval(approval_id)
    assert shown["state"] == "pending"
    assert shown["estimated_usd"] == "2.5"
    assert shown["request"] == {"route": "/v1/chat/completions", "vendor": "openai",
                                "model": "gpt-4o", "request_id": "req_1", "method": None,
                                "path": None, "body_sha256": None}
    assert shown["breaches"] == [{"scope": "agent:a", "code": "budget_exceeded"}]
    assert shown["expires_at"] == "2024-03-14T13:00:00Z"
    # the agent retries naming the pending approval: the same one, announced once
    again = await durable.open_approval(clock.now, ticket("req_2", approval_id), key, NEED,
                                        TTL_MS)
    assert again.details["approval_id"] == approval_id
    assert [a["id"] for a in await durable.list_approvals()] == [approval_id]
    assert await event_types(durable) == ["approval.requested"]
    # naming an approval of another key opens a new one
    other = await key_of(durable, "b")
    third = await durable.open_approval(clock.now, ticket("req_3", approval_id), other, NEED,
                                        TTL_MS)
    assert third.details["approval_id"] != approval_id


async def test_an_approved_approval_is_claimed_by_one_call(
    durable: PostgresDurable, replica: PostgresDurable, clock: Clock,
) -> None:
    key = await key_of(durable)
    approval_id = (await durable.open_approval(clock.now, ticket("r0"), key, NEED, TTL_MS)
                   ).details["approval_id"]
    # still pending
    assert not await durable.claim_approval(approval_id, key.id, "r1", clock.now)
    await durable.decide_approval(approval_id, True, "once")
    assert not await durable.claim_approval(approval_id, "key_other", "r1", clock.now)
    claims = await asyncio.gather(*(
        store.claim_approval(approval_id, key.id, f"r{i}", clock.now)
        for i in range(8) for store in (durable, replica)))
    assert claims.count(True) == 1
    used = await durable.get_approval(approval_id)
    assert used["state"] == "used"
    assert used["used_by"] is not None
    assert await durable.list_approvals("used") == [used]


async def test_a_released_approval_can_be_claimed_again(
    durable: PostgresDurable, clock: Clock,
) -> None:
    key = await key_of(durable)
    approval_id = (await durable.open_approval(clock.now, ticket("r0"), key, NEED, TTL_MS)
                   ).details["approval_id"]
    await durable.decide_approval(approval_id, True)
    assert await durable.claim_approval(approval_id, key.id, "r1", clock.now)
    await durable.release_approval(approval_id, "r2")  # not the claimant: nothing
    assert (await durable.get_approval(approval_id))["used_by"] == "r1"
    await durable.release_approval(approval_id, "r1")
    released = await durable.get_approval(approval_id)
    assert (released["state"], released["used_by"]) == ("approved", None)
    assert await durable.claim_approval(approval_id, key.id, "r3", clock.now)
    assert (await durable.get_approval(approval_id))["used_by"] == "r3"


async def test_an_expired_approval_is_never_claimed(
    durable: PostgresDurable, clock: Clock,
) -> None:
    key = await key_of(durable)
    approval_id = (await durable.open_approval(clock.now, ticket("r0"), key, NEED, TTL_MS)
                   ).details["approval_id"]
    await durable.decide_approval(approval_id, True)
    clock.advance(3600)
    assert not await durable.claim_approval(approval_id, key.id, "r1", clock.now)
    assert (await durable.get_approval(approval_id))["state"] == "expired"
    assert [a["id"] for a in await durable.list_approvals("expired")] == [approval_id]
    assert await durable.list_approvals("approved") == []


async def test_deciding_an_approval(durable: PostgresDurable, clock: Clock) -> None:
    await durable.add_webhook("https://hooks.example.com/a", ["approval.decided"])
    key = await key_of(durable)
    approval_id = (await durable.open_approval(clock.now, ticket("r0"), key, NEED, TTL_MS)
                   ).details["approval_id"]
    clock.advance(60)
    denied = await durable.decide_approval(approval_id, False, "too dear")
    assert (denied["state"], denied["note"]) == ("denied", "too dear")
    assert denied["decided_at"] == "2024-03-14T12:01:00Z"
    with pytest.raises(ValueError, match="already denied"):
        await durable.decide_approval(approval_id, True)
    with pytest.raises(NotFound):
        await durable.decide_approval("apr_nope", True)
    with pytest.raises(NotFound):
        await durable.get_approval("apr_nope")
    assert not await durable.claim_approval(approval_id, key.id, "r1", clock.now)
    assert await event_types(durable) == ["approval.decided"]


# -- administration -----------------------------------------------------------------------
async def test_keys_are_stored_hashed(durable: PostgresDurable, postgres_dsn: str) -> None:
    record, secret = await durable.create_key(NewKey("a", "ci", labels={"team": "x"}))
    with psycopg.connect(postgres_dsn) as conn:
        dumped = repr(conn.execute("SELECT * FROM keys").fetchall())
    assert secret not in dumped
    assert hash_secret(secret) in dumped
    info = await durable.key_by_hash(hash_secret(secret))
    assert info == KeyInfo(record.id, "a", None, {"team": "x"}, None, False)
    assert await durable.key_by_hash(hash_secret("olk_nope")) is None


async def test_keys_list_in_creation_order_and_carry_their_policy(
    durable: PostgresDurable,
) -> None:
    policy = Policy(rpm=5, budgets=(Budget(1_000_000, "day"),))
    made = [(await durable.create_key(NewKey("a", f"k{i}", policy=policy if i == 1 else None)))[0]
            for i in range(4)]  # all at the same millisecond: the test clock stands still
    assert [k.id for k in await durable.list_keys()] == [k.id for k in made]
    assert [k.policy for k in await durable.list_keys("a")] == [None, policy, None, None]
    assert await durable.list_keys("nobody") == []
    assert await durable.get_policy(f"key:{made[1].id}") == policy
    updated = await durable.update_key(made[0].id, "renamed", {"env": "prod"}, policy)
    assert (updated.name, dict(updated.labels), updated.policy) == ("renamed", {"env": "prod"},
                                                                    policy)
    with pytest.raises(NotFound):
        await durable.update_key("key_nope", "x", None, None)
    with pytest.raises(NotFound):
        await durable.get_key("key_nope")


async def test_revoking_announces_once_per_key(durable: PostgresDurable, clock: Clock) -> None:
    await durable.add_webhook("https://hooks.example.com/a", ["key.revoked"])
    await durable.create_agent("a", "ops")
    await durable.create_agent("b", "ops")
    ka, kb = (await durable.create_key(NewKey("a")))[0], (await durable.create_key(NewKey("b")))[0]
    revoked = await durable.revoke_key(ka.id)
    assert revoked.revoked_ms == clock.now
    await durable.revoke_key(ka.id)  # again: still revoked, not announced again
    assert await durable.revoke_keys(group="ops") == [kb.id]
    assert await durable.revoke_keys(agent="a") == []
    assert await durable.revoked_among([ka.id, kb.id, "key_nope"]) == {ka.id, kb.id}
    assert await durable.revoked_among([]) == set()
    assert await event_types(durable) == ["key.revoked", "key.revoked"]
    with pytest.raises(NotFound):
        await durable.revoke_key("key_nope")


async def test_agents_groups_and_policies(durable: PostgresDurable) -> None:
    assert await durable.create_agent("b", None) == {"name": "b", "group": None}
    assert await durable.create_agent("a", "ops") == {"name": "a", "group": "ops"}
    assert await durable.create_agent("b", "ops") == {"name": "b", "group": "ops"}
    assert await durable.list_agents() == [{"name": "a", "group": "ops"},
                                           {"name": "b", "group": "ops"}]
    assert await durable.list_groups() == [{"name": "ops", "agents": 2}]
    policy = Policy(budgets=(Budget(5_000_000, "month", "soft", 0.8),))
    assert await durable.put_policy("group:ops", policy) == policy
    await durable.put_policy("global", Policy(rpm=100))
    assert await durable.list_policies() == {"global": Policy(rpm=100), "group:ops": policy}
    assert await durable.load_policies() == await durable.list_policies()
    await durable.delete_policy("global")
    assert await durable.get_policy("global") is None


async def test_replicas_starting_together_make_one_admin_token(
    durable: PostgresDurable, replica: PostgresDurable,
) -> None:
    tokens = await asyncio.gather(*(s.init_admin_token(None) for s in (durable, replica) * 3))
    made = [t for t in tokens if t is not None]
    assert len(made) == 1
    assert await replica.admin_token_ok(made[0])
    assert not await replica.admin_token_ok("oladm_wrong")
    assert await durable.init_admin_token("configured") is None
    assert await replica.admin_token_ok("configured")
    assert not await replica.admin_token_ok(made[0])


# -- webhooks across replicas -------------------------------------------------------------
async def test_replicas_claim_each_delivery_once_per_lease(
    durable: PostgresDurable, replica: PostgresDurable, clock: Clock,
) -> None:
    for i in range(3):
        await durable.add_webhook(f"https://hooks.example.com/{i}", ["*"])
    for i in range(10):
        await durable.emit("provider.unhealthy", {"provider": f"p{i}"})
    claims = await asyncio.gather(*(s.claim_deliveries(4, 30_000)
                                    for _ in range(6) for s in (durable, replica)))
    claimed = [(j.event_id, j.endpoint_id) for jobs in claims for j in jobs]
    assert len(claimed) == len(set(claimed)) == 30
    assert await durable.claim_deliveries(100, 30_000) == []
    clock.advance(30)  # the leases ran out: claimable again, once
    again = await asyncio.gather(replica.claim_deliveries(100, 30_000),
                                 durable.claim_deliveries(100, 30_000))
    reclaimed = [(j.event_id, j.endpoint_id) for jobs in again for j in jobs]
    assert sorted(reclaimed) == sorted(claimed)


async def test_events_due_together_are_claimed_in_the_order_they_were_made(
    durable: PostgresDurable,
) -> None:
    await durable.add_webhook("https://hooks.example.com/a", ["*"])
    made = [await durable.emit("provider.unhealthy", {"provider": f"p{i}"}) for i in range(20)]
    assert [j.event_id for j in await durable.claim_deliveries(100, 0)] == made


async def test_an_attempt_after_the_lease_moved_on_records_but_does_not_overwrite(
    durable: PostgresDurable, replica: PostgresDurable, clock: Clock,
) -> None:
    await durable.add_webhook("https://hooks.example.com/a", ["*"])
    await durable.emit("provider.recovered", {"provider": "openai"})
    (slow,) = await durable.claim_deliveries(10, 1_000)
    clock.advance(2)
    (fast,) = await replica.claim_deliveries(10, 1_000)
    await replica.record_attempt(fast, 200, None, 12, None, "delivered")
    await durable.record_attempt(slow, None, "timed out", 1_000, clock.now + 5_000, None)
    (delivery,) = await durable.list_deliveries()
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 1)
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200, None]


# -- an unreachable server ----------------------------------------------------------------
async def test_opening_against_a_closed_port_is_a_state_error() -> None:
    dsn = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/outlay"
    store = PostgresDurable(dsn, timeout_s=1)
    with pytest.raises(StateError) as raised:
        await store.open()
    assert f"127.0.0.1:{dsn.rsplit(':', 1)[1].split('/')[0]}" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    assert not store.opened
    await store.close()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop under the store."""
    server = PostgresServer().start()
    yield server
    server.stop()


async def test_a_stopped_server_is_a_state_error_and_a_restarted_one_serves_again(
    own_server: PostgresServer, clock: Clock,
) -> None:
    store = PostgresDurable(own_server.new_database(), clock=clock, timeout_s=0.5,
                            reconnect_s=1.0)
    await store.open()
    try:
        record, secret = await store.create_key(NewKey("a"))
        own_server.stop(remove=False, mode="immediate")
        with pytest.raises(StateError):
            await store.key_by_hash(hash_secret(secret))
        with pytest.raises(StateError):
            await store.create_key(NewKey("b"))
        with pytest.raises(StateError):
            await store.apply_wal([{"t": "event", "type": "key.revoked", "mark": "m",
                                    "ts_ms": clock.now, "data": {}}])
        with pytest.raises(StateError):
            await store.claim_deliveries(10, 1_000)
        own_server.start()  # on the same port, its data recovered
        deadline = time.monotonic() + 10
        while True:  # the pool reconnects, backing off for at most reconnect_s
            try:
                info = await store.key_by_hash(hash_secret(secret))
                break
            except StateError:
                if time.monotonic() > deadline:
                    raise
        assert info is not None
        assert info.id == record.id
    finally:
        await store.close()
