"""The worker's queue of rate-limited calls (gateway/queue.py) over a scripted store: turns
across agents, wake-ups on settlements instead of tight polling, its bound, its deadline, a
client that hangs up, a shutdown, and a reservation made for a call that left."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from outlay.gateway.queue import RateQueue
from outlay.policy.decision import Call, KeyInfo, Limits
from outlay.policy.errors import RateHeld, RateLimited
from outlay.state.base import Outcome, Reservation, StateStore, Ticket

KEY = KeyInfo("k1", "bot", None, {})


def held(code: str = "concurrency_limit_exceeded", scope: str = "endpoint:openai:0",
         wait_s: float = 5.0, agent: str = "a", **details: Any) -> RateHeld:
    return RateHeld(RateLimited(code, "full", retry_after=1, **details), wait_s, scope, agent)


def ticket(name: str) -> Ticket:
    return Ticket(name, "hash", Call("openai"), "openai.chat")


class ScriptedStore:
    """Refuses the first `refusals` decisions (RateHeld), admits the rest."""

    def __init__(self, refusals: int = 0, refusal: RateHeld | None = None,
                 pause: asyncio.Event | None = None) -> None:
        self.left, self.refusal, self.pause = refusals, refusal or held(), pause
        self.asked: list[Ticket] = []
        self.voided: list[str] = []

    async def reserve(self, ticket: Ticket) -> Reservation:
        self.asked.append(ticket)
        if self.pause is not None:
            await self.pause.wait()
        if self.left > 0:
            self.left -= 1
            raise self.refusal
        return Reservation(ticket.request_id, KEY, Limits(), 0, 0)

    async def settle(self, outcome: Outcome) -> bool:
        self.voided.append(outcome.reservation_id)
        return True


def store_of(fake: ScriptedStore) -> StateStore:
    return cast(StateStore, fake)


async def test_a_settlement_of_the_worker_lets_a_waiting_call_go_at_once() -> None:
    queue, fake = RateQueue(10), ScriptedStore()
    started = time.monotonic()
    waiting = asyncio.ensure_future(queue.wait(store_of(fake), ticket("r1"), held(), "a"))
    await asyncio.sleep(0.01)
    assert queue.depth == 1
    queue.released()
    answer = await waiting
    assert isinstance(answer, Reservation)
    assert time.monotonic() - started < 0.2  # not at the next poll (0.25 s)
    assert answer.queued_ms >= 1
    asked = fake.asked[0]
    assert asked.may_queue
    assert not asked.may_wait
    assert queue.depth == 0


async def test_waiting_calls_take_turns_across_agents() -> None:
    queue, fake = RateQueue(10), ScriptedStore()
    calls = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c")]
    waits = [queue.wait(store_of(fake), ticket(name), held(agent=agent), agent)
             for name, agent in calls]
    answers = await asyncio.gather(*waits)
    assert all(isinstance(a, Reservation) for a in answers)
    assert [t.request_id for t in fake.asked] == ["a1", "b1", "c1", "a2", "a3"]


async def test_the_queue_is_bounded_and_a_shutdown_answers_every_call() -> None:
    queue, fake = RateQueue(2), ScriptedStore(refusals=100)
    waits = [asyncio.ensure_future(queue.wait(store_of(fake), ticket(f"r{i}"), held(), "a"))
             for i in range(2)]
    await asyncio.sleep(0.01)
    assert await queue.wait(store_of(fake), ticket("r3"), held(), "a") is None  # full
    queue.close()
    assert await asyncio.gather(*waits) == [None, None]  # decided now, without queueing
    assert await queue.wait(store_of(fake), ticket("r4"), held(), "a") is None  # closed
    assert queue.depth == 0


async def test_a_call_whose_wait_is_over_is_decided_again_and_the_store_is_not_polled_hot(
) -> None:
    # a window that frees in a minute: asked at its reset, not before
    queue = RateQueue(10)
    fake = ScriptedStore(refusals=100, refusal=held(
        "rate_limit_exceeded", "key:k1", reset_unix=int(time.time()) + 60))
    answer = await queue.wait(store_of(fake), ticket("r1"), held(
        "rate_limit_exceeded", "key:k1", wait_s=0.3, reset_unix=int(time.time()) + 60), "a")
    assert answer is None
    assert fake.asked == []


async def test_a_full_shared_scope_ends_each_round() -> None:
    queue, fake = RateQueue(10), ScriptedStore(refusals=1000)
    waits = [queue.wait(store_of(fake), ticket(f"r{i}"), held(wait_s=0.6, agent=str(i)),
                        str(i)) for i in range(10)]
    assert await asyncio.gather(*waits) == [None] * 10
    # ten agents wait 0.6 s for an endpoint shared by all: one decision per round, a round
    # every 0.25 s at most
    assert 1 <= len(fake.asked) <= 4


async def test_a_client_that_hangs_up_leaves_the_queue_unrecorded() -> None:
    queue, fake = RateQueue(10), ScriptedStore(refusals=100)
    gone = False
    refusal = held(wait_s=10)
    waiting = asyncio.ensure_future(queue.wait(store_of(fake), ticket("r1"), refusal, "a",
                                               lambda: gone))
    await asyncio.sleep(0.05)
    gone = True
    answer = await asyncio.wait_for(waiting, 2)
    assert answer is refusal
    assert queue.depth == 0


async def test_a_reservation_made_for_a_call_that_left_is_voided() -> None:
    pause = asyncio.Event()
    queue, fake = RateQueue(10), ScriptedStore(pause=pause)
    waiting = asyncio.ensure_future(queue.wait(store_of(fake), ticket("r1"),
                                               held(wait_s=0.2), "a"))
    await asyncio.sleep(0.01)
    queue.released()  # the decision starts, and takes longer than the call's wait
    assert await waiting is None
    pause.set()
    for _ in range(100):
        if fake.voided:
            break
        await asyncio.sleep(0.01)
    assert fake.voided == ["r1"]
