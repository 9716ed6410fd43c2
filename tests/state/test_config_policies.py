"""Configuration and the admin API never overwrite each other: the file's policies are the
file's (admin changes refused), every other scope's are the API's (never written at start),
and a scope the file drops keeps its last policy, the API's from then on."""

from __future__ import annotations

import pytest

from outlay.policy.errors import BudgetExceeded
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, StateStore
from outlay.state.config_policies import ConfigPolicies, PolicyManaged

from .conftest import OpenStore
from .support import Clock, ticket

FILE = "/etc/outlay/outlay.yaml"
HUNDRED = parse_policy({"budgets": [{"usd": 100, "period": "day"}]})
TEN = parse_policy({"budgets": [{"usd": 10, "period": "day"}]})


async def test_the_files_policies_are_the_files(store: StateStore) -> None:
    record, _ = await store.create_key(NewKey(agent="r"))
    key_scope = f"key:{record.id}"
    assert await store.config_policies() == ConfigPolicies()
    assert await store.apply_config_policies(FILE, {"agent:r": HUNDRED,
                                                    key_scope: TEN}) == []
    assert await store.config_policies() == ConfigPolicies(
        FILE, frozenset({"agent:r", key_scope}))
    with pytest.raises(PolicyManaged) as refused:
        await store.put_policy("agent:r", TEN)
    assert (refused.value.scope, refused.value.file) == ("agent:r", FILE)
    assert FILE in str(refused.value)
    with pytest.raises(PolicyManaged):
        await store.delete_policy("agent:r")
    with pytest.raises(PolicyManaged):
        await store.update_key(record.id, None, None, HUNDRED)
    await store.update_key(record.id, "renamed", None, None)  # not its policy: the API's
    assert await store.get_policy("agent:r") == HUNDRED
    assert await store.get_policy(key_scope) == TEN


async def test_an_api_policy_survives_every_start(open_store: OpenStore, clock: Clock) -> None:
    store = await open_store(clock)
    await store.apply_config_policies(FILE, {"agent:r": HUNDRED})
    await store.put_policy("agent:api", TEN)
    # a restart with the same file, on another worker
    again = await open_store(clock)
    assert await again.apply_config_policies(FILE, {"agent:r": HUNDRED}) == []
    assert await again.get_policy("agent:api") == TEN
    await again.put_policy("agent:api", HUNDRED)  # still the API's
    assert await store.get_policy("agent:api") == HUNDRED


async def test_a_scope_dropped_from_the_file_keeps_its_policy_for_the_api(
        store: StateStore) -> None:
    await store.apply_config_policies(FILE, {"agent:r": HUNDRED, "global": TEN})
    assert await store.apply_config_policies("/srv/other.yaml", {"global": TEN}) == ["agent:r"]
    assert await store.get_policy("agent:r") == HUNDRED
    await store.put_policy("agent:r", TEN)  # the API's now
    assert await store.get_policy("agent:r") == TEN
    with pytest.raises(PolicyManaged) as refused:
        await store.put_policy("global", HUNDRED)
    assert refused.value.file == "/srv/other.yaml"
    # no file at all: nothing is managed, nothing is lost
    assert await store.apply_config_policies(None, {}) == ["global"]
    assert await store.get_policy("global") == TEN
    await store.delete_policy("global")


async def test_the_files_policy_is_in_force_at_once(store: StateStore) -> None:
    _, secret = await store.create_key(NewKey(agent="r"))
    await store.reserve(ticket(secret, 50_000_000))  # no policy yet
    await store.apply_config_policies(FILE, {"agent:r": parse_policy(
        {"budgets": [{"usd": 60, "period": "day"}]})})
    with pytest.raises(BudgetExceeded):  # the $50 held counts under the new budget
        await store.reserve(ticket(secret, 20_000_000))
    await store.reserve(ticket(secret, 10_000_000))
