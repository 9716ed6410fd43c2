"""Background responses keep their reservation until they finish: retrieved and cancelled
through the gateway by the key that created them only, polled by the worker when no client
does, and settled from the finished response."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from outlay.gateway.context import GATEWAY

from .fakes import WAIT_S, Outlay, Reply, error_of

BUDGET = {"budgets": [{"usd": 1, "period": "day"}]}
CREATE = {"model": "test-gpt", "input": "hi", "max_output_tokens": 100, "background": True}


def response(status: str, usage: tuple[int, int] | None = None) -> bytes:
    return orjson.dumps({
        "id": "resp_bg1", "object": "response", "status": status, "background": True,
        "model": "test-gpt", "output": [],
        "usage": None if usage is None else {"input_tokens": usage[0],
                                             "output_tokens": usage[1],
                                             "total_tokens": sum(usage)}})


@pytest.fixture
def polls(outlay: Outlay) -> Any:
    """The worker's own polls, quick enough for a test (1 ms, then twice as long each)."""
    background = outlay.client.app[GATEWAY].background
    background.first_poll_s, background.max_poll_s = 0.001, 0.004
    return background


@pytest.fixture
def no_polls(outlay: Outlay) -> None:
    """The worker waits an hour before its own first poll: only the test's requests ask."""
    outlay.client.app[GATEWAY].background.first_poll_s = 3600.0


async def spent_and_held(outlay: Outlay) -> tuple[str, str]:
    budget = await outlay.budget("agent:agent-a")
    return budget["spent_usd"], budget["reserved_usd"]


async def create(outlay: Outlay, key: str) -> str:
    await outlay.set_policy("agent:agent-a", BUDGET)
    outlay.upstream.script(Reply(body=response("queued")))
    resp = await outlay.post("/v1/responses", key, CREATE)
    assert resp.status == 200
    assert (await resp.json())["status"] == "queued"
    return str(resp.headers["X-Outlay-Request-Id"])


@pytest.mark.usefixtures("no_polls")
async def test_a_queued_response_holds_its_reservation_until_retrieved_finished(
        outlay: Outlay, key: dict[str, Any]) -> None:
    rid = await create(outlay, key["key"])
    spent, held = await spent_and_held(outlay)
    assert (spent, held != "0") == ("0", True)
    outlay.upstream.script(Reply(body=response("in_progress")),
                           Reply(body=response("completed", (12, 7))))
    headers = {"Authorization": f"Bearer {key['key']}"}
    first = await outlay.client.get("/v1/responses/resp_bg1", headers=headers)
    assert (await first.json())["status"] == "in_progress"
    assert outlay.upstream.last.method == "GET"
    assert outlay.upstream.last.path == "/responses/resp_bg1"
    assert (await spent_and_held(outlay))[1] == held
    done = await outlay.client.get("/v1/responses/resp_bg1", headers=headers)
    assert (await done.json())["status"] == "completed"
    await outlay.store.wait_settled(rid)
    assert await spent_and_held(outlay) == ("0.000026", "0")  # 12 + 7 x 2 micro-USD
    (entry,) = [e for e in await outlay.audit() if e["request_id"] == rid]
    assert (entry["settlement"], entry["cost_usd"]) == ("settled", "0.000026")
    # finished, it is still its key's to read, and is not charged again
    outlay.upstream.script(Reply(body=response("completed", (12, 7))))
    again = await outlay.client.get("/v1/responses/resp_bg1", headers=headers)
    assert again.status == 200
    assert await spent_and_held(outlay) == ("0.000026", "0")


@pytest.mark.usefixtures("no_polls")
async def test_another_key_gets_404_and_nothing_is_forwarded(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await create(outlay, key["key"])
    other = await outlay.mint("agent-b")
    sent = len(outlay.upstream.requests)
    for path, method in (("/v1/responses/resp_bg1", "GET"),
                         ("/v1/responses/resp_bg1/cancel", "POST"),
                         ("/v1/responses/resp_unknown", "GET")):
        resp = await outlay.client.request(
            method, path, headers={"Authorization": f"Bearer {other['key']}"})
        assert resp.status == 404
        assert error_of(await resp.json(), "openai")["code"] == "not_found"
    nobody = await outlay.client.get("/v1/responses/resp_bg1")
    assert nobody.status == 401
    assert len(outlay.upstream.requests) == sent


async def test_unpolled_the_worker_polls_it_and_settles(
        outlay: Outlay, key: dict[str, Any], polls: Any) -> None:
    outlay.upstream.default = Reply(body=response("completed", (30, 20)))
    rid = await create(outlay, key["key"])
    outlay.upstream.script(Reply(body=response("in_progress")), Reply(status=500, body=b"{}"))
    outcome = await outlay.store.wait_settled(rid)
    assert (outcome.settled, outcome.cost_micros) == ("settled", 70)
    gets = [r for r in outlay.upstream.requests if r.method == "GET"]
    assert len(gets) == 3  # in progress, an error, then finished
    assert not polls.held


@pytest.mark.usefixtures("no_polls")
async def test_a_cancelled_response_is_charged_what_it_ran_up(
        outlay: Outlay, key: dict[str, Any]) -> None:
    rid = await create(outlay, key["key"])
    outlay.upstream.script(Reply(body=response("cancelled", (12, 3))))
    resp = await outlay.client.post("/v1/responses/resp_bg1/cancel",
                                    headers={"Authorization": f"Bearer {key['key']}"})
    assert resp.status == 200
    assert outlay.upstream.last.path == "/responses/resp_bg1/cancel"
    outcome = await outlay.store.wait_settled(rid)
    assert (outcome.settled, outcome.cost_micros) == ("settled", 18)


async def test_at_the_end_of_its_lease_polling_stops_and_the_reaper_charges_it(
        outlay: Outlay, key: dict[str, Any], polls: Any) -> None:
    outlay.upstream.default = Reply(body=response("in_progress"))
    rid = await create(outlay, key["key"])
    (held,) = polls.held.values()
    outlay.clock.advance(outlay.settings.reservation_lease_s + 1)
    await asyncio.wait_for(held.poller, WAIT_S)
    assert not polls.held
    assert sum(line.charged for line in await outlay.store.reap()) == 1
    outcome = await outlay.store.wait_settled(rid)
    assert outcome.settled == "unsettled"
