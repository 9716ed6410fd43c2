"""The webhook outbox in the state store: events enqueued inside a decision's transaction to
the endpoints whose filter takes them, leased to one worker at a time, every attempt kept,
410 disabling an endpoint, and all of it surviving a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from outlay.state.base import NotFound, StateStore
from outlay.state.sqlite.outbox import enqueue
from outlay.state.sqlite.store import SqliteStore
from outlay.webhooks.events import WebhookError
from outlay.webhooks.outbox import WebhookStore

from .conftest import OpenStore
from .support import Clock

LEASE_MS = 30_000
DATA = {"scope": "agent:a", "agent_id": "a", "spent_usd": "8", "cap_usd": "10"}


def outbox(store: StateStore) -> WebhookStore:
    assert isinstance(store, WebhookStore)
    return store


@pytest.fixture
def hooks(store: StateStore) -> WebhookStore:
    return outbox(store)


@pytest.fixture
async def embedded(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    """The embedded store, for the tests of enqueueing inside its decision's transaction
    (the replicated store's way, through its ledger log, is tested in test_postgres_*)."""
    store = SqliteStore(str(tmp_path / "embedded.db"), clock=clock)
    await store.open()
    yield store
    await store.close()


def in_tx(store: SqliteStore, clock: Clock, event_type: str, data: Any = DATA) -> str:
    """Enqueue as the embedded store's decisions do: inside its own transaction."""
    with store.tx() as c:
        return enqueue(c, clock.now, event_type, data)


async def targets(store: WebhookStore, event_id: str) -> set[str]:
    return {d["endpoint_id"] for d in await store.list_deliveries(event_id=event_id)}


async def test_add_returns_the_secret_once(hooks: WebhookStore, clock: Clock) -> None:
    added = await hooks.add_webhook("https://hooks.example.com/x", ["budget.warning"])
    assert added["id"].startswith("wh_")
    assert added["secret"].startswith("whsec_")
    assert added["events"] == ["budget.warning"]
    assert added["url"] == "https://hooks.example.com/x"
    assert added["disabled_at"] is None
    assert added["created_at"] == "2024-03-14T12:00:00Z"
    listed = await hooks.list_webhooks()
    assert [e["id"] for e in listed] == [added["id"]]
    assert added["secret"] not in repr(listed)
    assert added["secret"] not in repr(await hooks.get_webhook(added["id"]))
    assert {**listed[0], "secret": added["secret"]} == added


async def test_add_checks_the_url_and_events(hooks: WebhookStore) -> None:
    with pytest.raises(WebhookError):
        await hooks.add_webhook("ftp://example.com/x", [])
    with pytest.raises(WebhookError):
        await hooks.add_webhook("https://example.com/x", ["budget.warnings"])
    assert (await hooks.add_webhook("https://example.com/x", []))["events"] == ["*"]
    assert len(await hooks.list_webhooks()) == 1


async def test_enqueue_reaches_the_endpoints_whose_filter_takes_the_event(
    embedded: SqliteStore, clock: Clock
) -> None:
    every = (await embedded.add_webhook("https://a.example/h", ["*"]))["id"]
    budget = (await embedded.add_webhook("https://b.example/h", ["budget.warning",
                                                              "budget.exceeded"]))["id"]
    keys = (await embedded.add_webhook("https://c.example/h", ["key.revoked"]))["id"]
    assert await targets(embedded, in_tx(embedded, clock, "budget.warning")) == {every, budget}
    assert await targets(embedded, in_tx(embedded, clock, "key.revoked")) == {every, keys}
    assert await targets(embedded, in_tx(embedded, clock, "provider.unhealthy")) == {every}


async def test_the_payload_is_stored_as_sent(embedded: SqliteStore, clock: Clock) -> None:
    await embedded.add_webhook("https://a.example/h", [])
    event_id = in_tx(embedded, clock, "budget.warning")
    assert event_id.startswith("evt_")
    (job,) = await embedded.claim_deliveries(10, LEASE_MS)
    assert json.loads(job.body) == {"id": event_id, "type": "budget.warning",
                                    "created_at": "2024-03-14T12:00:00Z", "data": DATA}
    assert (job.event_id, job.url, job.attempts, job.created_ms) == (
        event_id, "https://a.example/h", 0, clock.now)


async def test_an_event_no_endpoint_wants_is_not_kept(embedded: SqliteStore,
                                                      clock: Clock) -> None:
    await embedded.add_webhook("https://a.example/h", ["key.revoked"])
    event_id = in_tx(embedded, clock, "budget.warning")
    assert await embedded.list_deliveries(event_id=event_id) == []
    assert embedded.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


async def test_an_event_rolled_back_with_its_decision_is_never_sent(
    embedded: SqliteStore, clock: Clock
) -> None:
    await embedded.add_webhook("https://a.example/h", [])

    def failing_decision() -> None:
        with embedded.tx() as c:
            enqueue(c, clock.now, "budget.exceeded", DATA)
            raise RuntimeError("the decision failed")

    with pytest.raises(RuntimeError):
        failing_decision()
    assert await embedded.claim_deliveries(10, LEASE_MS) == []
    assert await embedded.list_deliveries() == []


async def test_unknown_event_types_are_a_bug(embedded: SqliteStore, clock: Clock) -> None:
    with pytest.raises(ValueError, match="unknown webhook event type"):
        in_tx(embedded, clock, "budget.warned")


async def test_emit_to_one_endpoint_only(hooks: WebhookStore) -> None:
    first = (await hooks.add_webhook("https://a.example/h", ["key.revoked"]))["id"]
    await hooks.add_webhook("https://b.example/h", [])
    event_id = await hooks.emit("webhook.test", {"test": True}, endpoint_id=first)
    assert await targets(hooks, event_id) == {first}
    with pytest.raises(NotFound):
        await hooks.emit("webhook.test", {}, endpoint_id="wh_nope")


async def test_a_claim_leases_the_delivery_until_it_runs_out(
    open_store: OpenStore, clock: Clock
) -> None:
    one, two = outbox(await open_store(clock)), outbox(await open_store(clock))
    await one.add_webhook("https://a.example/h", [])
    await one.emit("key.revoked", DATA)
    (job,) = await one.claim_deliveries(10, LEASE_MS)
    assert await one.claim_deliveries(10, LEASE_MS) == []
    assert await two.claim_deliveries(10, LEASE_MS) == []
    clock.advance(LEASE_MS / 1000)  # the worker holding it died mid-send
    (again,) = await two.claim_deliveries(10, LEASE_MS)
    assert again.event_id == job.event_id
    assert again.attempts == 0


async def test_two_workers_never_claim_the_same_delivery(
    open_store: OpenStore, clock: Clock
) -> None:
    stores = [outbox(await open_store(clock)) for _ in range(3)]
    for n in range(4):
        await stores[0].add_webhook(f"https://{n}.example/h", [])
    for _ in range(30):
        await stores[0].emit("agent.rate_limited", DATA)

    def drain(store: WebhookStore) -> list[tuple[str, str]]:
        # each worker in its own thread with its own connection: truly concurrent claims
        async def run() -> list[tuple[str, str]]:
            got: list[tuple[str, str]] = []
            while jobs := await store.claim_deliveries(3, LEASE_MS):
                got += [(j.event_id, j.endpoint_id) for j in jobs]
            return got

        return asyncio.run(run())

    claimed = await asyncio.gather(*(asyncio.to_thread(drain, s) for s in stores))
    everything = [pair for got in claimed for pair in got]
    assert len(everything) == 120
    assert len(set(everything)) == 120


async def test_attempts_are_recorded_and_retries_come_due(
    hooks: WebhookStore, clock: Clock
) -> None:
    endpoint = (await hooks.add_webhook("https://a.example/h", []))["id"]
    event_id = await hooks.emit("key.expired", DATA)
    (job,) = await hooks.claim_deliveries(10, LEASE_MS)
    clock.advance(1)
    await hooks.record_attempt(job, 503, "HTTP 503 Service Unavailable", 12,
                               clock.now + 5_000, None)
    (pending,) = await hooks.list_deliveries(endpoint_id=endpoint)
    assert pending["state"] == "pending"
    assert pending["attempts"] == 1
    assert pending["last_status"] == 503
    assert pending["next_attempt_at"] == "2024-03-14T12:00:06Z"
    assert await hooks.claim_deliveries(10, LEASE_MS) == []  # not due yet
    clock.advance(5)
    (retry,) = await hooks.claim_deliveries(10, LEASE_MS)
    assert retry.attempts == 1
    await hooks.record_attempt(retry, None, "ClientConnectorError: refused", 3,
                               clock.now + 9_000, None)
    clock.advance(9)
    (third,) = await hooks.claim_deliveries(10, LEASE_MS)
    await hooks.record_attempt(third, 204, None, 7, None, "delivered")
    (done,) = await hooks.list_deliveries(event_id=event_id)
    assert done["state"] == "delivered"
    assert done["attempts"] == 3
    assert done["next_attempt_at"] is None
    assert [(a["status_code"], a["error"], a["duration_ms"]) for a in done["attempt_log"]] == [
        (503, "HTTP 503 Service Unavailable", 12), (None, "ClientConnectorError: refused", 3),
        (204, None, 7)]
    assert [a["at"] for a in done["attempt_log"]] == [
        "2024-03-14T12:00:01Z", "2024-03-14T12:00:06Z", "2024-03-14T12:00:15Z"]
    assert await hooks.claim_deliveries(10, LEASE_MS) == []


async def test_giving_up_marks_the_delivery_failed(hooks: WebhookStore) -> None:
    endpoint = (await hooks.add_webhook("https://a.example/h", []))["id"]
    await hooks.emit("key.expired", DATA)
    (job,) = await hooks.claim_deliveries(10, LEASE_MS)
    await hooks.record_attempt(job, 500, "HTTP 500", 1, None, "failed")
    (failed,) = await hooks.list_deliveries(endpoint_id=endpoint)
    assert failed["state"] == "failed"
    assert (await hooks.get_webhook(endpoint))["failed"] == 1
    assert await hooks.claim_deliveries(10, LEASE_MS) == []
    with pytest.raises(ValueError, match="final"):
        await hooks.record_attempt(job, 500, "HTTP 500", 1, None, None)


async def test_410_disables_the_endpoint_and_its_pending_deliveries(
    hooks: WebhookStore, clock: Clock
) -> None:
    gone = (await hooks.add_webhook("https://gone.example/h", []))["id"]
    other = (await hooks.add_webhook("https://other.example/h", []))["id"]
    for _ in range(3):
        await hooks.emit("key.revoked", DATA)
    jobs = await hooks.claim_deliveries(1, LEASE_MS)
    job = next(j for j in jobs + await hooks.claim_deliveries(10, LEASE_MS)
               if j.endpoint_id == gone)
    await hooks.record_attempt(job, 410, "HTTP 410 Gone", 2, None, "disabled")
    endpoint = await hooks.get_webhook(gone)
    assert endpoint["disabled_at"] == "2024-03-14T12:00:00Z"
    assert "410" in endpoint["disabled_reason"]
    states = {d["state"] for d in await hooks.list_deliveries(endpoint_id=gone)}
    assert states == {"disabled"}
    # new events skip it; the other endpoint carries on
    later = await hooks.emit("key.revoked", DATA)
    assert await targets(hooks, later) == {other}
    clock.advance(LEASE_MS / 1000)
    assert {j.endpoint_id for j in await hooks.claim_deliveries(10, LEASE_MS)} == {other}
    # enabled again: the next events reach it; what was cut off stays disabled
    assert (await hooks.enable_webhook(gone))["disabled_at"] is None
    assert gone in await targets(hooks, await hooks.emit("key.revoked", DATA))
    assert [d["state"] for d in await hooks.list_deliveries(endpoint_id=gone)].count(
        "disabled") == 3


async def test_an_attempt_after_the_lease_was_lost_does_not_overwrite(
    open_store: OpenStore, clock: Clock
) -> None:
    one, two = outbox(await open_store(clock)), outbox(await open_store(clock))
    await one.add_webhook("https://a.example/h", [])
    event_id = await one.emit("key.revoked", DATA)
    (slow,) = await one.claim_deliveries(10, LEASE_MS)
    clock.advance(LEASE_MS / 1000 + 1)
    (fast,) = await two.claim_deliveries(10, LEASE_MS)
    await one.record_attempt(slow, 500, "HTTP 500", 40_000, clock.now + 5_000, None)
    (delivery,) = await one.list_deliveries(event_id=event_id)
    assert delivery["attempts"] == 0  # still the second worker's
    assert len(delivery["attempt_log"]) == 1  # but the attempt is on record
    await two.record_attempt(fast, 200, None, 5, None, "delivered")
    (delivery,) = await one.list_deliveries(event_id=event_id)
    assert (delivery["state"], delivery["attempts"], len(delivery["attempt_log"])) == (
        "delivered", 1, 2)


async def test_the_outbox_survives_a_restart(open_store: OpenStore, clock: Clock) -> None:
    first = outbox(await open_store(clock))
    endpoint = await first.add_webhook("https://a.example/h", [])
    events = {await first.emit("budget.exceeded", DATA), await first.emit("key.revoked", DATA)}
    (leased,) = await first.claim_deliveries(1, LEASE_MS)  # then the process is killed
    assert leased.event_id in events
    await first.close()

    clock.advance(LEASE_MS / 1000)
    second = outbox(await open_store(clock))
    jobs = await second.claim_deliveries(10, LEASE_MS)
    assert sorted(j.event_id for j in jobs) == sorted(events)  # the waiting and the leased
    assert all(j.secrets == (endpoint["secret"],) for j in jobs)


async def test_rotation_signs_with_both_secrets_until_the_overlap_ends(
    hooks: WebhookStore, clock: Clock
) -> None:
    added = await hooks.add_webhook("https://a.example/h", [])
    rotated = await hooks.rotate_webhook_secret(added["id"], overlap_s=3600)
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != added["secret"]
    assert rotated["previous_secret_expires_at"] == "2024-03-14T13:00:00Z"
    assert (await hooks.get_webhook(added["id"]))["previous_secret_expires_at"] == (
        "2024-03-14T13:00:00Z")
    await hooks.emit("key.revoked", DATA)
    (job,) = await hooks.claim_deliveries(10, LEASE_MS)
    assert job.secrets == (rotated["secret"], added["secret"])
    await hooks.record_attempt(job, 500, "HTTP 500", 1, clock.now + 3_600_000, None)
    clock.advance(3600)
    (later,) = await hooks.claim_deliveries(10, LEASE_MS)
    assert later.secrets == (rotated["secret"],)
    assert (await hooks.get_webhook(added["id"]))["previous_secret_expires_at"] is None


async def test_rotation_without_overlap_and_twice(hooks: WebhookStore) -> None:
    added = await hooks.add_webhook("https://a.example/h", [])
    second = await hooks.rotate_webhook_secret(added["id"])
    third = await hooks.rotate_webhook_secret(added["id"], overlap_s=60)
    await hooks.emit("key.revoked", DATA)
    (job,) = await hooks.claim_deliveries(10, LEASE_MS)
    assert job.secrets == (third["secret"], second["secret"])  # only the last two
    now = await hooks.rotate_webhook_secret(added["id"], overlap_s=0)
    assert now["previous_secret_expires_at"] is None
    with pytest.raises(ValueError, match="negative"):
        await hooks.rotate_webhook_secret(added["id"], overlap_s=-1)


async def test_unknown_endpoints(hooks: WebhookStore) -> None:
    for call in (hooks.get_webhook("wh_nope"), hooks.remove_webhook("wh_nope"),
                 hooks.rotate_webhook_secret("wh_nope"), hooks.enable_webhook("wh_nope"),
                 hooks.list_deliveries(endpoint_id="wh_nope")):
        with pytest.raises(NotFound, match="wh_nope"):
            await call


async def test_remove_forgets_the_endpoint_and_its_deliveries(hooks: WebhookStore) -> None:
    gone = (await hooks.add_webhook("https://a.example/h", []))["id"]
    kept = (await hooks.add_webhook("https://b.example/h", []))["id"]
    event_id = await hooks.emit("key.revoked", DATA)
    await hooks.remove_webhook(gone)
    assert [e["id"] for e in await hooks.list_webhooks()] == [kept]
    assert await targets(hooks, event_id) == {kept}
    assert {j.endpoint_id for j in await hooks.claim_deliveries(10, LEASE_MS)} == {kept}


async def test_list_deliveries_newest_first_and_limited(
    hooks: WebhookStore, clock: Clock
) -> None:
    await hooks.add_webhook("https://a.example/h", [])
    ids = []
    for _ in range(5):
        ids.append(await hooks.emit("key.revoked", DATA))
        clock.advance(1)
    assert [d["event_id"] for d in await hooks.list_deliveries(limit=3)] == ids[::-1][:3]


async def test_prune_forgets_finished_old_events(hooks: WebhookStore, clock: Clock) -> None:
    await hooks.add_webhook("https://a.example/h", [])
    done = await hooks.emit("key.revoked", DATA)
    waiting = await hooks.emit("key.revoked", DATA)
    jobs = {j.event_id: j for j in await hooks.claim_deliveries(10, LEASE_MS)}
    await hooks.record_attempt(jobs[done], 200, None, 1, None, "delivered")
    await hooks.record_attempt(jobs[waiting], 500, "HTTP 500", 1, clock.now + 10**9, None)
    clock.advance(10)
    assert await hooks.prune_deliveries(clock.now) == 1
    assert [d["event_id"] for d in await hooks.list_deliveries()] == [waiting]
    assert await hooks.prune_deliveries(clock.now) == 0


async def test_a_disabled_endpoint_gets_no_targeted_event_either(
    hooks: WebhookStore, clock: Clock
) -> None:
    endpoint = (await hooks.add_webhook("https://a.example/h", []))["id"]
    await hooks.emit("key.revoked", DATA)
    (job,) = await hooks.claim_deliveries(10, LEASE_MS)
    await hooks.record_attempt(job, 410, "HTTP 410 Gone", 1, None, "disabled")
    event_id = await hooks.emit("webhook.test", {"test": True}, endpoint_id=endpoint)
    assert await hooks.list_deliveries(event_id=event_id) == []
