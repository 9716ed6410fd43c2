"""Through the gateway, a call that only other calls' reservations keep from a hard budget
waits for them to settle (hold_wait_ms) and then passes, or is refused once its wait is
over; the wait is in its audit row and in /metrics, and at most so many calls wait."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from outlay.gateway.context import GATEWAY, Gateway
from outlay.gateway.holds import Holds, Wait

from .fakes import WAIT_S, Outlay, Reply, error_of, openai_answer

SETTLED = 20  # micro-USD: what openai_answer() reports (10 input + 5 output tokens)


def gateway_of(outlay: Outlay) -> Gateway:
    return outlay.client.server.app[GATEWAY]


def micros(usd: str) -> int:
    return int(Decimal(usd) * 1_000_000)


async def one_call_in_flight(outlay: Outlay, key: dict[str, Any], **policy: Any
                             ) -> tuple[int, int, asyncio.Task[Any]]:
    """A cap with room for the settled spend and one call, not for two calls in flight, and
    one call in flight; (what a call reserves, the cap, that call)."""
    assert (await outlay.chat(key["key"])).status == 200
    reserved = micros((await outlay.audit())[0]["reserved_usd"])
    cap = SETTLED + 2 * reserved - 1
    await outlay.set_policy("agent:agent-a", {
        "budgets": [{"usd": str(Decimal(cap) / 1_000_000), "period": "day"}], **policy})
    outlay.upstream.script(Reply(body=openai_answer(), pause_after=0))
    first = asyncio.ensure_future(outlay.chat(key["key"]))
    async with asyncio.timeout(WAIT_S):
        await outlay.upstream.paused.wait()
    return reserved, cap, first


async def until_waiting(gw: Gateway, n: int) -> None:
    for _ in range(int(WAIT_S / 0.005)):  # bounded: WAIT_S at most
        if gw.holds.waiting == n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{gw.holds.waiting} calls wait, not {n}")


async def metric(outlay: Outlay, name: str) -> float:
    text = await (await outlay.client.get("/metrics")).text()
    found = [line for line in text.splitlines() if line.startswith((name + " ", name + "{"))]
    return sum(float(line.rsplit(" ", 1)[1]) for line in found)


async def test_a_call_waits_for_the_call_in_flight_then_passes(
        outlay: Outlay, key: dict[str, Any]) -> None:
    gw = gateway_of(outlay)
    _, _, first = await one_call_in_flight(outlay, key)
    second = asyncio.ensure_future(outlay.chat(key["key"]))
    await until_waiting(gw, 1)
    assert len(outlay.upstream.requests) == 2  # the probe and the first: the second waits
    await asyncio.sleep(0.02)  # a wait long enough to count in whole milliseconds
    outlay.upstream.release.set()
    async with asyncio.timeout(WAIT_S):
        answers = await asyncio.gather(first, second)
    assert [a.status for a in answers] == [200, 200]
    assert gw.holds.waiting == 0
    row = next(e for e in await outlay.audit()
               if e["request_id"] == answers[1].headers["X-Outlay-Request-Id"])
    assert (row["decision"], row["waited_ms"] > 0) == ("allowed", True)
    assert await metric(outlay, 'outlay_hold_waits_total{outcome="admitted"}') == 1
    assert await metric(outlay, "outlay_hold_wait_seconds_total") > 0


async def test_a_call_whose_wait_is_over_is_refused_showing_the_holds(
        outlay: Outlay, key: dict[str, Any]) -> None:
    reserved, cap, first = await one_call_in_flight(outlay, key, hold_wait_ms=60)
    refused = await outlay.chat(key["key"])
    assert refused.status == 402
    error = error_of(await refused.json(), "openai")
    assert (micros(error["spent_usd"]), micros(error["held_usd"])) == (SETTLED, reserved)
    row = (await outlay.audit())[0]
    assert row["request_id"] == refused.headers["X-Outlay-Request-Id"]
    assert row["waited_ms"] >= 60
    assert (micros(row["spent_usd"]), micros(row["held_usd"]),
            micros(row["estimated_usd"]), micros(row["cap_usd"])) == (
        SETTLED, reserved, reserved, cap)
    assert await metric(outlay, 'outlay_hold_waits_total{outcome="refused"}') == 1
    outlay.upstream.release.set()
    async with asyncio.timeout(WAIT_S):
        assert (await first).status == 200


async def test_no_more_than_so_many_calls_wait(outlay: Outlay, key: dict[str, Any]) -> None:
    gw = gateway_of(outlay)
    gw.holds.limit = 0
    _, _, first = await one_call_in_flight(outlay, key)
    refused = await outlay.chat(key["key"])
    assert refused.status == 402
    assert (await outlay.audit())[0]["waited_ms"] == 0
    assert await metric(outlay, "outlay_hold_waits_total") == 0
    outlay.upstream.release.set()
    async with asyncio.timeout(WAIT_S):
        assert (await first).status == 200


async def test_a_call_spend_has_no_room_for_is_refused_at_once(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {
        "budgets": [{"usd": "0.000001", "period": "day"}]})
    refused = await outlay.chat(key["key"])
    assert refused.status == 402
    assert (await outlay.audit())[0]["waited_ms"] == 0
    assert gateway_of(outlay).holds.waiting == 0


def test_polls_double_up_to_a_bound_and_end_with_the_wait() -> None:
    wait = Wait(until=time.monotonic() + 10)
    assert [wait.next_poll() for _ in range(6)] == [0.005, 0.01, 0.02, 0.04, 0.05, 0.05]
    assert Wait(until=time.monotonic() - 1).next_poll() == 0
    holds = Holds(limit=1)
    assert holds.enter()
    assert not holds.enter()
    holds.leave()
    assert holds.enter()
