"""Several workers on one installation's state never exceed a hard cap together."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from outlay.policy.errors import BudgetExceeded, NotAllowed, RateLimited
from outlay.policy.model import parse_policy
from outlay.policy.money import usd_to_micros
from outlay.state.base import NewKey, Outcome, StateStore
from outlay.state.open import store_from_url

from .conftest import Backend, OpenStore
from .support import Clock, budget_line, charged, ledger_cost, sent, ticket


async def test_two_workers_reserving_alternately_stay_under_the_cap(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    other = await open_store(clock)
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}]}))
    held = []
    for i in range(20):
        worker = (store, other)[i % 2]
        with contextlib.suppress(BudgetExceeded):
            held.append((worker, await worker.reserve(ticket(secret, 700))))
    assert len(held) == 14  # 14 x 700 = 9_800; a 15th would pass 10_000
    line = await budget_line(other, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0", "0.0098")
    # settled in full, by the other worker than the one that reserved
    for i, (worker, reservation) in enumerate(held):
        settler = other if worker is store else store
        assert await settler.settle(Outcome(reservation.id, 200, cost_micros=700 - i % 2 * 100))
    line = await budget_line(store, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.0091", "0")
    assert await ledger_cost(store) == 9_100


CAP_MICROS = 10_000  # $0.01
RESERVE_MICROS = 100
WORKERS = 4
WORKER_TIMEOUT_S = 45

_start_together: Any = None  # a Barrier, set in each worker process by `_init_worker`


def _init_worker(barrier: Any) -> None:
    global _start_together  # per-process state, handed over when the worker spawns
    _start_together = barrier


def spend_in_a_loop(url: str, secret: str, worker: int, rounds: int) -> tuple[int, int, int]:
    """One worker process: reserve, then settle at a random cost up to the reservation."""

    async def run() -> tuple[int, int, int]:
        store = store_from_url(url)
        await store.open()
        if _start_together is not None:
            _start_together.wait(timeout=30)  # all processes open, then all start at once
        rng = random.Random(worker)
        spent = admitted = refused = 0
        try:
            for i in range(rounds):
                try:
                    held = await store.reserve(ticket(
                        secret, RESERVE_MICROS, request_id=f"w{worker}-{i}"))
                except BudgetExceeded:
                    refused += 1
                    continue
                cost = rng.randint(RESERVE_MICROS // 2, RESERVE_MICROS)
                assert await store.settle(Outcome(held.id, 200, cost_micros=cost))
                spent += cost
                admitted += 1
        finally:
            await store.close()
        return spent, admitted, refused

    async def bounded() -> tuple[int, int, int]:
        # a worker that stops making progress fails the test (with what every task of it was
        # waiting for) instead of leaving the process pool to wait for it for ever
        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(WORKER_TIMEOUT_S - 5, _print_tasks)
        try:
            return await asyncio.wait_for(run(), WORKER_TIMEOUT_S)
        finally:
            watchdog.cancel()

    return asyncio.run(bounded())


def _print_tasks() -> None:
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def test_worker_processes_never_exceed_a_hard_cap(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # spawned children import this module by name: give them the directory it is found from
    # (pytest imports tests with --import-mode=importlib, which leaves sys.path alone)
    monkeypatch.syspath_prepend(str(Path(__file__).parents[__name__.count(".")]))
    store = backend.make()  # these processes share real time, not a fake clock
    await store.open()
    try:
        _, secret = await store.create_key(NewKey(agent="bot"))
        await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}]}))
        spawn = multiprocessing.get_context("spawn")
        barrier = spawn.Barrier(WORKERS)
        with ProcessPoolExecutor(WORKERS, mp_context=spawn, initializer=_init_worker,
                                 initargs=(barrier,)) as pool:
            futures = [pool.submit(spend_in_a_loop, backend.url, secret, worker, 60)
                       for worker in range(WORKERS)]
            results = [future.result(timeout=60) for future in futures]
        spent = sum(r[0] for r in results)
        admitted = sum(r[1] for r in results)
        refused = sum(r[2] for r in results)
        assert refused > 0  # the cap was reached
        assert admitted >= CAP_MICROS // RESERVE_MICROS
        assert spent <= CAP_MICROS
        assert await ledger_cost(store) == spent
        line = await budget_line(store, "global", "month")
        assert line["reserved_usd"] == "0"
        assert usd_to_micros(line["spent_usd"]) == spent
        rows = await store.audit(None, 1_000)
        assert sum(r["decision"] == "allowed" for r in rows) == admitted
        assert sum(r["code"] == "budget_exceeded" for r in rows) == refused
    finally:
        await store.close()


async def test_state_survives_a_restart_and_a_closed_workers_calls_are_charged(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    record, secret = await store.create_key(NewKey(agent="bot"))
    await store.put_policy("global", parse_policy({"budgets": [{"usd": 0.01}], "rpm": 3}))
    await sent(store, await store.reserve(ticket(secret, 1_000)))
    held = await sent(store, await store.reserve(ticket(secret, 2_000)))
    await store.close()  # the worker stops with a call in flight
    restarted = await open_store(clock)
    assert (await restarted.get_key(record.id)).agent == "bot"
    assert await restarted.get_policy("global") is not None
    assert charged(await restarted.reap()) == 2  # nobody can settle them now: charged in full
    line = await budget_line(restarted, "global", "month")
    assert (line["spent_usd"], line["reserved_usd"]) == ("0.003", "0")
    assert not await restarted.settle(Outcome(held.id, 200, cost_micros=1))
    await restarted.reserve(ticket(secret, 7_000))
    with pytest.raises(RateLimited):  # the window outlived the restart too
        await restarted.reserve(ticket(secret, 0))
    await store.open()  # so the fixture can close it


async def test_a_policy_changed_by_another_worker_applies_at_the_next_call(
    store: StateStore, open_store: OpenStore, clock: Clock
) -> None:
    other = await open_store(clock)
    _, secret = await store.create_key(NewKey(agent="bot"))
    await store.reserve(ticket(secret, 0))  # this worker has seen the key and the policies
    await other.put_policy("agent:bot", parse_policy({"models": ["gpt-4o"]}))
    with pytest.raises(NotAllowed):  # tightened elsewhere
        await store.reserve(ticket(secret, 0))
    await other.put_policy("agent:bot", parse_policy({"models": ["gpt-4o", "gpt-4o-mini"]}))
    await store.reserve(ticket(secret, 0))  # and loosened elsewhere
    await other.delete_policy("agent:bot")
    await other.put_policy("global", parse_policy({"vendors": ["anthropic"]}))
    with pytest.raises(NotAllowed):
        await store.reserve(ticket(secret, 0))
    await other.delete_policy("global")
    await store.reserve(ticket(secret, 0))
