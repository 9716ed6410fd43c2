"""The loop guard on every store: the same request of a key is admitted exactly
`max_repeats` times within its window, by any worker, then refused with loop_detected and
announced once; a different body, a replay under the same Idempotency-Key, and the same
request once its admissions left the window pass."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest

from outlay.policy.approvals import request_shape
from outlay.policy.errors import RateLimited
from outlay.policy.model import parse_policy
from outlay.state.base import NewKey, StateStore, Ticket

from .conftest import OpenStore
from .support import Clock, ticket

CHAT = "/v1/chat/completions"


@pytest.fixture(autouse=True)
async def listener(store: StateStore) -> None:
    """An endpoint that takes every event: the outbox keeps only events someone wants."""
    await store.add_webhook("http://127.0.0.1:9/hook", ["*"])  # type: ignore[attr-defined]


async def events(store: StateStore) -> Counter[str]:
    await store.audit(None, 1)  # reading the ledger brings every decision's writes in
    jobs = await store.claim_deliveries(1_000, 0)  # type: ignore[attr-defined]
    return Counter(json.loads(job.body)["type"] for job in jobs)


def same(secret: str, body: bytes = b'{"model": "gpt-4o-mini", "n": 1}', **fields: object
         ) -> Ticket:
    t = ticket(secret, 1_000, **fields)  # type: ignore[arg-type]
    return replace(t, shape=request_shape("POST", t.route, body))


async def guarded(store: StateStore, scope: str = "agent:bot", **policy: object) -> str:
    await store.put_policy(scope, parse_policy(
        {"loop_guard": {"max_repeats": 3, "window_s": 60}, **policy}))
    return (await store.create_key(NewKey(agent="bot")))[1]


async def test_two_workers_admit_exactly_max_repeats_then_refuse(
        store: StateStore, open_store: OpenStore, clock: Clock) -> None:
    other = await open_store(clock)
    secret = await guarded(store)
    for i in range(3):
        await (store, other)[i % 2].reserve(same(secret))
        clock.advance(1)
    for worker in (store, other, store):
        with pytest.raises(RateLimited) as refused:
            await worker.reserve(same(secret, b'{"n":1,\n "model":"gpt-4o-mini"}'))
        error = refused.value
        assert (error.status, error.code) == (429, "loop_detected")
        assert (error.details["repeats"], error.details["window_s"]) == (3, 60)
        assert error.headers["Retry-After"] == str(error.details["retry_after"])
    # the first admission leaves the window 60 s after its second began: 57 s from now
    assert error.details["retry_after"] == 57
    await other.reserve(same(secret, b'{"model": "gpt-4o-mini", "n": 2}'))  # another body
    assert (await events(store))["agent.loop_detected"] == 1  # once per key per window
    rows = await store.audit(None, 100)
    assert sum(r["code"] == "loop_detected" for r in rows) == 3
    assert sum(r["decision"] == "allowed" for r in rows) == 4


async def test_refused_repeats_are_not_counted(store: StateStore, clock: Clock) -> None:
    secret = await guarded(store)
    for _ in range(3):
        await store.reserve(same(secret))
    for _ in range(5):
        with pytest.raises(RateLimited):
            await store.reserve(same(secret))
    clock.advance(60)  # the three admissions leave the window; the refusals never counted
    for _ in range(3):
        await store.reserve(same(secret))
    with pytest.raises(RateLimited):
        await store.reserve(same(secret))


async def test_any_scope_of_the_call_may_set_the_guard(store: StateStore) -> None:
    secret = await guarded(store, "global")
    for _ in range(3):
        await store.reserve(same(secret))
    with pytest.raises(RateLimited, match="global"):
        await store.reserve(same(secret))
    other = (await store.create_key(NewKey(agent="bot")))[1]
    await store.reserve(same(other))  # another key: another request


async def test_a_vendor_retry_under_its_idempotency_key_is_not_a_repeat(
        store: StateStore) -> None:
    secret = await guarded(store)
    form = b"amount=500&currency=usd&source=tok_visa"
    path = "/vendors/stripe/v1/charges"

    def charge(idem: str, body: bytes = form) -> Ticket:
        t = ticket(secret, 1_000, vendor="stripe", model=None, idempotency_key=idem)
        return replace(t, shape=request_shape("POST", path, body))

    for n in range(3):
        await store.reserve(charge(f"idem-{n}"))
    replayed = await store.reserve(charge("idem-0"))  # the SDK's retry of the first charge
    assert replayed.replay_of is not None
    with pytest.raises(RateLimited, match="loop_guard"):  # a new charge, same body
        await store.reserve(charge("idem-9", b"currency=usd&source=tok_visa&amount=500"))


async def test_a_shadow_guard_reports_the_loop_and_lets_it_through(
        store: StateStore) -> None:
    secret = await guarded(store, enforce="shadow")
    for _ in range(5):
        held = await store.reserve(same(secret))
    assert held.shadowed == ("loop_detected",)
    seen = await events(store)
    assert seen["agent.loop_detected.shadow"] == 1
    assert "agent.loop_detected" not in seen


async def test_a_call_without_a_guard_is_never_counted(store: StateStore) -> None:
    await store.put_policy("agent:bot", parse_policy({"rpm": 1000}))
    secret = (await store.create_key(NewKey(agent="bot")))[1]
    for _ in range(5):
        await store.reserve(same(secret))
    await store.put_policy("agent:bot", parse_policy(
        {"loop_guard": {"max_repeats": 1, "window_s": 60}}))
    await store.reserve(same(secret))  # the five before were not counted
    with pytest.raises(RateLimited):
        await store.reserve(same(secret))
