"""The delivery worker against real receivers on loopback: every delivery verifies with the
reference Standard Webhooks implementation; failures are retried on the schedule until the
receiver is back; 410 disables; the outbox survives a restart; sending is bounded and never
holds up the store."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from outlay.state.sqlite.store import SqliteStore
from outlay.webhooks.backoff import Backoff
from outlay.webhooks.delivery import USER_AGENT, Deliverer, DeliverySettings

from .receiver import Receiver, closed_port, eventually

FAST = DeliverySettings(poll_s=0.02, timeout_s=2.0, lease_s=5.0,
                        backoff=Backoff(base_s=0.05, cap_s=0.1, horizon_s=30))
DATA = {"scope": "agent:a", "agent_id": "a", "spent_usd": "8", "cap_usd": "10"}

OpenStore = Callable[[], Awaitable[SqliteStore]]
Start = Callable[..., Awaitable[Deliverer]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[OpenStore]:
    stores: list[SqliteStore] = []

    async def open_() -> SqliteStore:
        store = SqliteStore(str(tmp_path / "outlay.db"))
        await store.open()
        stores.append(store)
        return store

    yield open_
    for store in stores:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> SqliteStore:
    return await open_store()


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    started: list[Deliverer] = []

    async def start_(store: SqliteStore, settings: DeliverySettings = FAST) -> Deliverer:
        deliverer = Deliverer(store, settings, rng=random.Random(0))
        await deliverer.start()
        started.append(deliverer)
        return deliverer

    yield start_
    for deliverer in started:
        await deliverer.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def delivered(store: SqliteStore, event_id: str) -> bool:
    return all(d["state"] == "delivered" for d in await store.list_deliveries(
        event_id=event_id)) and bool(await store.list_deliveries(event_id=event_id))


async def test_every_delivery_is_signed_and_verifies(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    endpoint = await store.add_webhook(receiver.url, ["budget.warning", "key.revoked"])
    receiver.secrets = [endpoint["secret"]]
    sent = [await store.emit(kind, {**DATA, "n": n}) for n, kind in enumerate(
        ["budget.warning", "key.revoked", "provider.unhealthy", "budget.warning"])]
    await start(store)
    await eventually(lambda: len(receiver.got) == 3)
    await asyncio.sleep(0.1)  # and nothing more comes
    assert len(receiver.got) == 3
    assert all(r.verified_with == [0] for r in receiver.got)
    by_id = {r.payload["id"]: r for r in receiver.got}
    assert set(by_id) == {sent[0], sent[1], sent[3]}  # the filter left provider.unhealthy out
    for event_id, got in by_id.items():
        assert got.headers["webhook-id"] == event_id
        assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"] == USER_AGENT
        assert got.payload["data"]["scope"] == "agent:a"
        assert set(got.payload) == {"id", "type", "created_at", "data"}
    for event_id in by_id:
        (d,) = await store.list_deliveries(event_id=event_id)
        assert (d["state"], d["attempts"], d["last_status"]) == ("delivered", 1, 200)
        assert d["attempt_log"][0]["status_code"] == 200


async def test_a_receiver_that_is_down_gets_the_event_when_it_comes_back(
    store: SqliteStore, start: Start
) -> None:
    port = closed_port()
    down = Receiver(port=port)
    endpoint = await store.add_webhook(down.url, [])
    down.secrets = [endpoint["secret"]]
    event_id = await store.emit("budget.exceeded", DATA)
    await start(store)

    async def failed_twice() -> bool:
        (d,) = await store.list_deliveries(event_id=event_id)
        return len(d["attempt_log"]) >= 2

    await eventually(failed_twice)
    (d,) = await store.list_deliveries(event_id=event_id)
    assert d["state"] == "pending"
    assert d["attempt_log"][0]["status_code"] is None
    assert "Connect" in d["attempt_log"][0]["error"]
    up = await down.start()  # the receiver is back, on the same port
    try:
        await eventually(lambda: delivered(store, event_id))
    finally:
        await up.stop()
    assert [r.payload["id"] for r in up.got] == [event_id]
    assert up.got[0].verified_with == [0]
    (d,) = await store.list_deliveries(event_id=event_id)
    assert d["attempt_log"][-1]["status_code"] == 200
    assert all(a["status_code"] is None for a in d["attempt_log"][:-1])


async def test_errors_are_retried_and_retry_after_is_honoured(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    answers = iter([web.Response(status=503, headers={"Retry-After": "1"}),
                    web.Response(status=500)])

    async def answer(_: web.Request) -> web.Response:
        return next(answers, web.Response(status=204))

    receiver.answer = answer
    endpoint = await store.add_webhook(receiver.url, [])
    receiver.secrets = [endpoint["secret"]]
    event_id = await store.emit("key.revoked", DATA)
    await start(store)
    await eventually(lambda: delivered(store, event_id))
    (d,) = await store.list_deliveries(event_id=event_id)
    assert [a["status_code"] for a in d["attempt_log"]] == [503, 500, 204]
    assert d["attempt_log"][0]["error"] == "HTTP 503 Service Unavailable"
    assert len(receiver.got) == 3
    assert len({r.headers["webhook-id"] for r in receiver.got}) == 1  # one id, every retry
    assert all(r.verified_with == [0] for r in receiver.got)
    # Retry-After: 1 held the retry back a second, longer than the 0.05 s backoff
    gap = int(receiver.got[1].headers["webhook-timestamp"]) - int(
        receiver.got[0].headers["webhook-timestamp"])
    assert gap >= 1


async def test_a_retry_after_that_is_not_one_is_ignored_and_the_attempts_recorded(
    store: SqliteStore, start: Start, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # '²' passes str.isdigit() and fails float(): it raised in the worker, whose attempt
    # was then never recorded
    odd = ["²", "٣", "1e3", "-1", "1.5", "Mon, 99 Jan 2030 00:00:00 GMT"]
    answers = iter([web.Response(status=503, headers={"Retry-After": v}) for v in odd])

    async def answer(_: web.Request) -> web.Response:
        return next(answers, web.Response(status=204))

    receiver.answer = answer
    endpoint = await store.add_webhook(receiver.url, [])
    receiver.secrets = [endpoint["secret"]]
    event_id = await store.emit("key.revoked", DATA)
    began = time.monotonic()
    await start(store)
    await eventually(lambda: delivered(store, event_id))
    # each retry came after the normal backoff (at most 0.1 s), none after 1000 s or a day
    assert time.monotonic() - began < 5
    (d,) = await store.list_deliveries(event_id=event_id)
    assert [a["status_code"] for a in d["attempt_log"]] == [503] * len(odd) + [204]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_410_disables_the_endpoint(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    async def gone(_: web.Request) -> web.Response:
        return web.Response(status=410)

    receiver.answer = gone
    endpoint = await store.add_webhook(receiver.url, [])
    ids = [await store.emit("key.revoked", DATA) for _ in range(3)]
    await start(store, replace(FAST, concurrency=1))
    await eventually(lambda: receiver.got)

    async def disabled() -> bool:
        return (await store.get_webhook(endpoint["id"]))["disabled_at"] is not None

    await eventually(disabled)
    await asyncio.sleep(0.1)
    assert len(receiver.got) == 1  # the first 410 stopped the rest
    states = [d["state"] for d in await store.list_deliveries(endpoint_id=endpoint["id"])]
    assert states == ["disabled"] * 3
    assert {d["event_id"] for d in await store.list_deliveries()} == set(ids)


async def test_gives_up_after_the_horizon(store: SqliteStore, start: Start) -> None:
    endpoint = await store.add_webhook(f"http://127.0.0.1:{closed_port()}/x", [])
    quick = replace(FAST, backoff=Backoff(base_s=0.05, cap_s=0.05, horizon_s=0.6))
    await start(store, quick)
    # the horizon runs from the event's creation: emitted once the deliverer runs, so a
    # slow start on a loaded machine does not spend it before the first attempt
    event_id = await store.emit("provider.unhealthy", {"provider": "openai"})

    async def failed() -> bool:
        (d,) = await store.list_deliveries(event_id=event_id)
        return d["state"] == "failed"

    await eventually(failed)
    (d,) = await store.list_deliveries(endpoint_id=endpoint["id"])
    assert d["attempts"] >= 3
    assert len(d["attempt_log"]) == d["attempts"]


async def test_a_slow_receiver_times_out_and_is_retried(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    calls = 0

    async def slow_once(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.5)
        return web.Response(status=200)

    receiver.answer = slow_once
    await store.add_webhook(receiver.url, [])
    event_id = await store.emit("key.revoked", DATA)
    await start(store, replace(FAST, timeout_s=0.2))
    await eventually(lambda: delivered(store, event_id))
    (d,) = await store.list_deliveries(event_id=event_id)
    assert d["attempt_log"][0]["error"] == "no answer within 0.2 s"
    assert d["attempt_log"][1]["status_code"] == 200


async def test_the_outbox_is_delivered_after_a_restart(
    open_store: OpenStore, start: Start, receiver: Receiver
) -> None:
    before = await open_store()
    endpoint = await before.add_webhook(receiver.url, [])
    receiver.secrets = [endpoint["secret"]]
    event_id = await before.emit("budget.exceeded", DATA)
    await before.close()  # the gateway stops before it sent anything

    after = await open_store()
    await start(after)
    await eventually(lambda: delivered(after, event_id))
    assert [r.payload["id"] for r in receiver.got] == [event_id]


async def test_a_rotated_endpoint_verifies_with_either_secret(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    endpoint = await store.add_webhook(receiver.url, [])
    rotated = await store.rotate_webhook_secret(endpoint["id"], overlap_s=60)
    receiver.secrets = [endpoint["secret"], rotated["secret"]]
    event_id = await store.emit("key.revoked", DATA)
    await start(store)
    await eventually(lambda: delivered(store, event_id))
    assert receiver.got[0].verified_with == [0, 1]
    assert len(receiver.got[0].headers["webhook-signature"].split(" ")) == 2


async def test_sending_is_bounded_and_never_holds_up_the_store(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    release = asyncio.Event()
    in_flight = peak = 0

    async def stuck(_: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return web.Response(status=200)

    receiver.answer = stuck
    await store.add_webhook(receiver.url, [])
    ids = [await store.emit("agent.rate_limited", {**DATA, "n": n}) for n in range(6)]
    deliverer = await start(store, replace(FAST, concurrency=2))
    deliverer.poke()
    await eventually(lambda: in_flight == 2)
    # while every slot hangs on the receiver, the store answers as fast as ever
    started = time.perf_counter()
    for _ in range(20):
        await store.emit("agent.rate_limited", DATA)
        await store.list_webhooks()
    assert time.perf_counter() - started < 1.0
    await asyncio.sleep(0.1)
    assert peak == 2
    release.set()
    for event_id in ids:
        await eventually(lambda e=event_id: delivered(store, e))
    assert peak == 2


async def test_a_poke_sends_without_waiting_for_the_poll(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    await store.add_webhook(receiver.url, [])
    deliverer = await start(store, replace(FAST, poll_s=30))
    await asyncio.sleep(0.05)  # the worker is now asleep for 30 s
    event_id = await store.emit("key.revoked", DATA)
    deliverer.poke()
    await eventually(lambda: delivered(store, event_id), within=2)
    assert json.loads(receiver.got[0].body)["id"] == event_id


async def test_stop_is_quick_with_a_send_hanging(
    store: SqliteStore, start: Start, receiver: Receiver
) -> None:
    hang = asyncio.Event()

    async def forever(_: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(status=200)

    receiver.answer = forever
    await store.add_webhook(receiver.url, [])
    await store.emit("key.revoked", DATA)
    deliverer = await start(store, replace(FAST, shutdown_grace_s=0.1))
    try:
        await eventually(lambda: receiver.got)
        started = time.monotonic()
        await deliverer.stop()
        assert time.monotonic() - started < 1.0
        assert not deliverer.running
    finally:
        hang.set()


@pytest.mark.timeout(10)
async def test_stop_right_after_a_poke_stops(store: SqliteStore, start: Start) -> None:
    # the wake-up and the cancellation land in the same loop turn: the cancellation wins
    deliverer = await start(store, replace(FAST, poll_s=30))
    await asyncio.sleep(0.05)  # the worker is now asleep, waiting to be poked
    deliverer.poke()
    await deliverer.stop()  # not wrapped in a task: it cancels in this very turn
    assert not deliverer.running
