"""Provider endpoints' own limits and pauses, and queued rate refusals, as every store keeps
them: one more scope of the call, checked in the same atomic step as the policies."""

from __future__ import annotations

from dataclasses import replace

import pytest

from outlay.policy.errors import BudgetExceeded, RateHeld, RateLimited
from outlay.policy.model import Policy, parse_policy
from outlay.policy.pacing import Slot
from outlay.state.base import NewKey, Outcome, StateStore, Ticket

from .conftest import OpenStore
from .support import Clock, ticket

E0, E1 = "endpoint:openai:0", "endpoint:openai:1"


async def new_key(store: StateStore, policy: dict[str, object] | None = None) -> str:
    _, secret = await store.create_key(NewKey(agent="bot", policy=parse_policy(policy or {})))
    return secret


def paced(secret: str, *slots: Slot, tokens: int = 0, may_queue: bool = False) -> Ticket:
    return replace(ticket(secret, 0, tokens=tokens), endpoints=slots, may_queue=may_queue)


async def codes(store: StateStore) -> list[str]:
    return [r["code"] or r["decision"] for r in reversed(await store.audit(None, 100))]


async def test_a_full_endpoint_passes_calls_to_the_next_then_the_provider_refuses(
    store: StateStore, open_store: OpenStore, clock: Clock,
) -> None:
    secret = await new_key(store)
    other = await open_store(clock)  # another worker: the endpoints' windows are shared
    slots = (Slot(E0, Policy(rpm=2)), Slot(E1, Policy(rpm=2)))
    chosen = [(await worker.reserve(paced(secret, *slots))).endpoint
              for worker in (store, other, store, other)]
    assert chosen == [E0, E0, E1, E1]
    with pytest.raises(RateLimited) as caught:
        await other.reserve(paced(secret, *slots))
    error = caught.value
    assert (error.status, error.code) == (429, "provider_rate_limited")
    assert error.details["provider"] == "openai"
    assert 1 <= error.details["retry_after"] <= 60
    assert "endpoint:openai:0" in error.message
    assert "endpoint:openai:1" in error.message
    # recorded once, by the worker that refused it (with two workers, the ledger's order is
    # the order each worker's rows reached it, not the order of the decisions)
    assert sorted(await codes(store)) == ["allowed"] * 4 + ["provider_rate_limited"]
    clock.advance(60)
    assert (await store.reserve(paced(secret, *slots))).endpoint == E0


async def test_an_endpoints_limits_are_not_the_agents_headers(store: StateStore) -> None:
    secret = await new_key(store, {"rpm": 100})
    reservation = await store.reserve(paced(secret, Slot(E0, Policy(rpm=3))))
    assert reservation.limits.requests_limit == 100
    assert reservation.limits.requests_remaining == 99


async def test_the_agents_own_limit_refuses_as_ever_whatever_the_endpoints(
    store: StateStore,
) -> None:
    secret = await new_key(store, {"rpm": 1})
    slots = (Slot(E0, Policy(rpm=10)),)
    await store.reserve(paced(secret, *slots))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(paced(secret, *slots))
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.details["scope"].startswith("key:")


async def test_max_parallel_of_an_endpoint_frees_when_its_calls_settle(
    store: StateStore, open_store: OpenStore, clock: Clock,
) -> None:
    secret = await new_key(store)
    other = await open_store(clock)
    slots = (Slot(E0, Policy(max_parallel=1)), Slot(E1, Policy(max_parallel=1)))
    first = await store.reserve(paced(secret, *slots))
    second = await other.reserve(paced(secret, *slots))
    assert (first.endpoint, second.endpoint) == (E0, E1)
    with pytest.raises(RateLimited) as caught:
        await store.reserve(paced(secret, *slots))
    assert caught.value.code == "provider_rate_limited"
    assert await other.settle(Outcome(first.id, 200))
    assert (await store.reserve(paced(secret, *slots))).endpoint == E0


async def test_an_endpoints_tpm_counts_the_tokens_of_its_calls(store: StateStore) -> None:
    secret = await new_key(store)
    slots = (Slot(E0, Policy(tpm=1_000)), Slot(E1, Policy(tpm=1_000)))
    assert (await store.reserve(paced(secret, *slots, tokens=800))).endpoint == E0
    assert (await store.reserve(paced(secret, *slots, tokens=800))).endpoint == E1
    assert (await store.reserve(paced(secret, *slots, tokens=200))).endpoint == E0
    with pytest.raises(RateLimited):
        await store.reserve(paced(secret, *slots, tokens=300))


async def test_a_paused_endpoint_takes_no_call_on_any_worker_until_its_pause_ends(
    store: StateStore, open_store: OpenStore, clock: Clock,
) -> None:
    secret = await new_key(store)
    other = await open_store(clock)
    slots = (Slot(E0, Policy()), Slot(E1, Policy()))
    await store.pause_endpoint(E0, clock() + 5_000)
    await store.pause_endpoint(E0, clock() + 1_000)  # an earlier end does not shorten it
    assert (await other.reserve(paced(secret, *slots))).endpoint == E1
    with pytest.raises(RateLimited) as caught:
        await other.reserve(paced(secret, slots[0]))
    assert caught.value.code == "provider_rate_limited"
    assert caught.value.details["retry_after"] == 5
    assert "paused" in caught.value.message
    clock.advance(5)
    assert (await other.reserve(paced(secret, *slots))).endpoint == E0


async def test_a_rate_refusal_its_policy_queues_is_held_and_recorded_only_at_the_end(
    store: StateStore,
) -> None:
    secret = await new_key(store, {"rpm": 1, "on_rate_limit": "queue",
                                   "queue_max_wait_s": 5})
    await store.reserve(paced(secret))
    with pytest.raises(RateHeld) as caught:
        await store.reserve(paced(secret, may_queue=True))
    held = caught.value
    assert (held.code, held.wait_s, held.agent) == ("rate_limit_exceeded", 5.0, "bot")
    assert held.scope is not None
    assert held.scope.startswith("key:")
    assert await codes(store) == ["allowed"]  # nothing recorded while it may wait
    with pytest.raises(RateLimited) as final:
        await store.reserve(paced(secret))
    assert not isinstance(final.value, RateHeld)
    assert await codes(store) == ["allowed", "rate_limit_exceeded"]


async def test_full_endpoints_are_queued_and_budgets_never_are(store: StateStore) -> None:
    secret = await new_key(store, {"on_rate_limit": "queue",
                                   "budgets": [{"usd": 0.001, "period": "day"}]})
    slots = (Slot(E0, Policy(rpm=1)),)
    await store.reserve(paced(secret, *slots))
    with pytest.raises(RateHeld) as caught:
        await store.reserve(paced(secret, *slots, may_queue=True))
    assert (caught.value.code, caught.value.wait_s) == ("provider_rate_limited", 30.0)
    with pytest.raises(BudgetExceeded) as over:
        await store.reserve(replace(ticket(secret, 5_000), may_queue=True))
    assert not isinstance(over.value, RateHeld)
    assert await codes(store) == ["allowed", "budget_exceeded"]


async def test_without_a_queueing_policy_a_rate_refusal_is_answered_at_once(
    store: StateStore,
) -> None:
    secret = await new_key(store, {"rpm": 1})
    await store.reserve(paced(secret, may_queue=True))
    with pytest.raises(RateLimited) as caught:
        await store.reserve(paced(secret, may_queue=True))
    assert not isinstance(caught.value, RateHeld)
