"""Keys, agents, policies and the admin token; how unknown, revoked and expired keys fare."""

from __future__ import annotations

import pytest

from outlay.policy.errors import AuthError
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, NotFound, StateStore
from outlay.state.keys import hash_secret

from .conftest import Backend
from .support import Clock, ticket


async def test_create_key_returns_the_secret_once(store: StateStore, clock: Clock) -> None:
    policy = parse_policy({"rpm": 5})
    record, secret = await store.create_key(NewKey(
        agent="order-processor", name="run-42", ttl_seconds=3600,
        labels={"run": "r-42", "workflow": "nightly"}, policy=policy))
    assert secret.startswith("olk_")
    assert len(secret) > 40
    assert record.id.startswith("key_")
    assert record.agent == "order-processor"
    assert record.group is None
    assert record.name == "run-42"
    assert record.labels == {"run": "r-42", "workflow": "nightly"}
    assert record.created_ms == clock.now
    assert record.expires_ms == clock.now + 3_600_000
    assert record.revoked_ms is None
    assert record.policy == policy
    # the secret appears nowhere but in what create_key returned
    assert secret not in repr(await store.get_key(record.id))
    assert secret not in repr(await store.list_keys())
    assert await store.get_policy(f"key:{record.id}") == policy


async def test_secrets_are_stored_only_hashed(store: StateStore, backend: Backend) -> None:
    minted = [await store.create_key(NewKey(agent=f"a{i}")) for i in range(3)]
    secrets = [secret for _, secret in minted]
    await store.close()  # flush everything to where the backend keeps it
    stored = backend.stored_bytes()
    for record, _ in minted:  # the bytes searched do hold the keys
        assert record.id.encode() in stored
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret.removeprefix("olk_").encode() not in stored
    await store.open()
    for secret in secrets:
        assert await store.key_by_hash(hash_secret(secret)) is not None


async def test_keys_minted_twice_differ(store: StateStore) -> None:
    one, secret_one = await store.create_key(NewKey(agent="a"))
    two, secret_two = await store.create_key(NewKey(agent="a"))
    assert one.id != two.id
    assert secret_one != secret_two


async def test_a_page_of_the_newest_usable_keys(store: StateStore, clock: Clock) -> None:
    made = []
    for n in range(4):
        record, _ = await store.create_key(NewKey(agent="bot" if n < 3 else "other",
                                                  ttl_seconds=30 if n == 0 else None))
        made.append(record.id)
        clock.advance(1)
    await store.revoke_key(made[1])
    assert [k.id for k in await store.list_keys(limit=2)] == [made[3], made[2]]
    assert [k.id for k in await store.list_keys("bot", limit=10)] == [
        made[2], made[1], made[0]]
    now = clock()
    assert [k.id for k in await store.list_keys(active_at_ms=now)] == [
        made[0], made[2], made[3]]
    later = now + 30_000  # the first key's 30 s have run out
    assert [k.id for k in await store.list_keys("bot", active_at_ms=later)] == [made[2]]
    assert [k.id for k in await store.list_keys(limit=1, active_at_ms=later)] == [made[3]]


async def test_get_list_and_key_by_hash(store: StateStore) -> None:
    await store.create_agent("bot", "fleet")
    record, secret = await store.create_key(NewKey(agent="bot", labels={"run": "r-1"}))
    other, _ = await store.create_key(NewKey(agent="other"))
    assert await store.get_key(record.id) == record
    assert record.group == "fleet"
    assert {k.id for k in await store.list_keys()} == {record.id, other.id}
    assert [k.id for k in await store.list_keys("bot")] == [record.id]
    assert await store.list_keys("nobody") == []
    info = await store.key_by_hash(hash_secret(secret))
    assert info is not None
    assert (info.id, info.agent, info.group, dict(info.labels)) == (
        record.id, "bot", "fleet", {"run": "r-1"})
    assert (info.revoked, info.expires_at_ms) == (False, None)
    assert await store.key_by_hash(hash_secret("olk_unknown")) is None
    with pytest.raises(NotFound):
        await store.get_key("key_missing")


async def test_update_key(store: StateStore) -> None:
    record, _ = await store.create_key(NewKey(agent="bot", name="old", labels={"a": "1"}))
    updated = await store.update_key(record.id, "new", None, None)
    assert (updated.name, dict(updated.labels), updated.policy) == ("new", {"a": "1"}, None)
    policy = parse_policy({"budgets": [{"usd": 1}]})
    updated = await store.update_key(record.id, None, {"b": "2"}, policy)
    assert (updated.name, dict(updated.labels), updated.policy) == ("new", {"b": "2"}, policy)
    assert await store.get_key(record.id) == updated
    with pytest.raises(NotFound):
        await store.update_key("key_missing", "x", None, None)


async def test_revoke_key(store: StateStore, clock: Clock) -> None:
    record, secret = await store.create_key(NewKey(agent="bot"))
    revoked = await store.revoke_key(record.id)
    assert revoked.revoked_ms == clock.now
    clock.advance(10)
    again = await store.revoke_key(record.id)
    assert again.revoked_ms == revoked.revoked_ms  # the first revocation stands
    info = await store.key_by_hash(hash_secret(secret))
    assert info is not None
    assert info.revoked
    with pytest.raises(NotFound):
        await store.revoke_key("key_missing")


async def refusal_of(store: StateStore, secret: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await store.reserve(ticket(secret))
    return caught.value


async def test_unknown_and_missing_keys_are_refused_and_audited(store: StateStore) -> None:
    for secret in ("olk_not-a-key", None):
        error = await refusal_of(store, secret)
        assert (error.status, error.code) == (401, "invalid_api_key")
    rows = await store.audit(None, 10)
    assert [(r["decision"], r["code"], r["status"], r["key_id"]) for r in rows] == [
        ("refused", "invalid_api_key", 401, None)] * 2


async def test_revoked_key_is_refused_and_audited(store: StateStore) -> None:
    record, secret = await store.create_key(NewKey(agent="bot"))
    await store.reserve(ticket(secret))
    await store.revoke_key(record.id)
    error = await refusal_of(store, secret)
    assert (error.status, error.code) == (401, "key_revoked")
    row = (await store.audit(f"key:{record.id}", 1))[0]
    assert (row["decision"], row["code"], row["status"], row["key_id"], row["agent"]) == (
        "refused", "key_revoked", 401, record.id, "bot")


async def test_key_expires_exactly_at_its_ttl(store: StateStore, clock: Clock) -> None:
    record, secret = await store.create_key(NewKey(agent="bot", ttl_seconds=60))
    clock.advance(59.999)
    await store.reserve(ticket(secret))
    clock.advance(0.001)
    error = await refusal_of(store, secret)
    assert (error.status, error.code) == (401, "key_expired")
    row = (await store.audit(f"key:{record.id}", 1))[0]
    assert (row["decision"], row["code"], row["status"]) == ("refused", "key_expired", 401)
    assert row["reserved_usd"] == row["cost_usd"] == "0"


async def test_a_refusal_for_an_invalid_request_is_audited(store: StateStore) -> None:
    record, secret = await store.create_key(NewKey(agent="bot"))
    await store.record_refusal(ticket(secret, request_id="req_bad"), 400, "invalid_request")
    row = (await store.audit(None, 1))[0]
    assert (row["request_id"], row["decision"], row["code"], row["status"], row["key_id"]) == (
        "req_bad", "invalid", "invalid_request", 400, record.id)


async def test_agents_and_groups(store: StateStore) -> None:
    assert await store.create_agent("order-processor", "billing-agents") == {
        "name": "order-processor", "group": "billing-agents"}
    await store.create_agent("mailer", None)
    await store.create_key(NewKey(agent="first-key-makes-me"))
    assert await store.list_agents() == [
        {"name": "first-key-makes-me", "group": None},
        {"name": "mailer", "group": None},
        {"name": "order-processor", "group": "billing-agents"},
    ]
    await store.create_agent("mailer", "billing-agents")  # an agent may join a group later
    assert await store.list_groups() == [{"name": "billing-agents", "agents": 2}]


async def test_policies(store: StateStore) -> None:
    monthly = parse_policy({"rpm": 60, "budgets": [{"usd": 50, "warn_at": 0.8}]})
    assert await store.put_policy("agent:bot", monthly) == monthly
    await store.put_policy("global", parse_policy({"vendors": ["openai"]}))
    assert await store.get_policy("agent:bot") == monthly
    assert await store.get_policy("vendor:stripe") is None
    assert set(await store.list_policies()) == {"agent:bot", "global"}
    replaced = parse_policy({"rpm": 10})
    await store.put_policy("agent:bot", replaced)
    assert await store.get_policy("agent:bot") == replaced
    await store.delete_policy("agent:bot")
    assert await store.get_policy("agent:bot") is None
    assert set(await store.list_policies()) == {"global"}
    record, _ = await store.create_key(NewKey(agent="bot", policy=parse_policy({"rpm": 1})))
    await store.put_policy("vendor:stripe", parse_policy({"rpm": 2}))
    assert set(await store.list_policies()) == {"global", "vendor:stripe", f"key:{record.id}"}
    assert set(await store.list_policies(keys=False)) == {"global", "vendor:stripe"}


async def test_admin_token(store: StateStore) -> None:
    made = await store.init_admin_token(None)
    assert made is not None
    assert await store.admin_token_ok(made)
    assert not await store.admin_token_ok(made + "x")
    assert await store.init_admin_token(None) is None  # made once, then kept
    assert await store.init_admin_token("configured-token") is None
    assert await store.admin_token_ok("configured-token")
    assert not await store.admin_token_ok(made)
