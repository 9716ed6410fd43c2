"""The runaway-loop guard through real `outlay serve` processes: on SQLite with 2 workers, on
Redis with 2 workers, and across 2 replicas sharing Redis and PostgreSQL, the same request
(keys in any order) is admitted exactly `max_repeats` times, then refused with 429
loop_detected; another body still passes; `agent.loop_detected` reaches a webhook receiver
once, signed. `on_loop: revoke` revokes the key everywhere, with `key.revoked`. A bad
`loop_guard` is refused naming its field, and nothing is stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.webhooks.receiver import Receiver

from .harness import Gateway, Launch, unique
from .replicas import Replicas

pytestmark = pytest.mark.e2e

REPEATS = 5
CALLS = 12
BODY = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
# the same request, its keys in another order and spaced otherwise
REORDERED = ('{"messages": [{"content": "hi", "role": "user"}],\n "max_tokens": 5, '
             '"model": "gpt-4o-mini"}')
StartReplicas = Callable[..., Replicas]


async def _calls(urls: list[str], key: str, bodies: list[str]) -> list[httpx.Response]:
    """Every body at once, round-robin over `urls`, each on a connection of its own."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as http:
        return await asyncio.gather(*(
            http.post(f"{urls[n % len(urls)]}/v1/chat/completions", content=body)
            for n, body in enumerate(bodies)))


async def _events(receiver: Receiver, kind: str, count: int) -> list[dict[str, Any]]:
    """The verified payloads of `kind` once `count` arrived (20 s at most), and a moment
    more for any that should not."""
    def got() -> list[dict[str, Any]]:
        return [r.payload for r in receiver.got if r.payload and r.payload["type"] == kind]

    for _ in range(200):
        if len(got()) >= count:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    return got()


def loop_refusals(urls: list[str]) -> int:
    """`outlay_decisions_total`'s loop_detected refusals, summed over the servers."""
    total = 0
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            if line.startswith("outlay_decisions_total{") and 'code="loop_detected"' in line:
                assert 'decision="refused"' in line
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def check_loop_guard(admin: Gateway, urls: list[str], *, revoke: bool = False) -> None:
    receiver = await Receiver().start()
    try:
        hook = admin._ok(admin.admin.post("/admin/v1/webhooks", json={
            "url": receiver.url, "events": ["agent.loop_detected", "key.revoked"]}), 201)
        receiver.secrets.append(hook["secret"])
        agent = unique("looping")
        admin.set_policy(f"agent:{agent}", {
            "loop_guard": {"max_repeats": REPEATS, "window_s": 600},
            **({"on_loop": "revoke"} if revoke else {})})
        key = admin.mint_key(agent)
        bodies = [json.dumps(BODY) if n % 2 else REORDERED for n in range(CALLS)]
        if revoke:
            # the revocation cuts the key's calls in flight: the admitted ones go first
            answers = await _calls(urls, key["key"], bodies[:REPEATS])
            assert [a.status_code for a in answers] == [200] * REPEATS
            answers = await _calls(urls, key["key"], bodies[REPEATS:])
            codes = [a.json()["error"]["code"] for a in answers]
            assert set(codes) <= {"loop_detected", "key_revoked"}, codes
            refused = [a for a in answers if a.status_code == 429]
            assert refused
        else:
            answers = await _calls(urls, key["key"], bodies)
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200] * REPEATS + [429] * (CALLS - REPEATS), statuses
            refused = [a for a in answers if a.status_code == 429]
        for answer in refused:
            error = answer.json()["error"]
            assert error["code"] == "loop_detected"
            assert (error["repeats"], error["window_s"]) == (REPEATS, 600)
            assert answer.headers["Retry-After"] == str(error["retry_after"])
        other = {**BODY, "messages": [{"role": "user", "content": "something else"}]}
        (after,) = await _calls(urls[-1:], key["key"], [json.dumps(other)])
        events = await _events(receiver, "agent.loop_detected", 1)
        assert len(events) == 1  # once per key per window, whatever replica or worker
        assert all(r.verified_with == [0] for r in receiver.got)  # every delivery signed
        data = events[0]["data"]
        assert (data["key_id"], data["agent_id"], data["repeats"]) == (
            key["id"], agent, REPEATS)
        assert (data["route"], data["request"]) == ("openai.chat", "POST /chat/completions")
        if not revoke:
            assert after.status_code == 200
            assert loop_refusals(sorted(set(urls))) == CALLS - REPEATS
            return
        assert after.status_code == 401
        assert after.json()["error"]["code"] == "key_revoked"
        revoked = await _events(receiver, "key.revoked", 1)
        assert [e["data"]["key_id"] for e in revoked] == [key["id"]]
        assert admin.admin.get(f"/admin/v1/keys/{key['id']}").json()["revoked_at"]
    finally:
        await receiver.stop()


async def test_sqlite_two_workers(launch: Launch) -> None:
    gateway = launch({"simulated": {"latency_ms": 50}}, workers=2, name="loops")
    await check_loop_guard(gateway, [gateway.url])


async def test_sqlite_two_workers_revoke(launch: Launch) -> None:
    gateway = launch({"simulated": {"latency_ms": 50}}, workers=2, name="loops-revoke")
    await check_loop_guard(gateway, [gateway.url], revoke=True)


async def test_redis_two_workers(start_replicas: StartReplicas, redis_url: str,
                                 postgres_dsn: str) -> None:
    group = start_replicas(1, state_url=redis_url, database=postgres_dsn, workers=2,
                           config_doc={"simulated": {"latency_ms": 50}})
    await check_loop_guard(group[0], group.urls)


async def test_redis_two_replicas(start_replicas: StartReplicas, redis_url: str,
                                  postgres_dsn: str) -> None:
    group = start_replicas(2, state_url=redis_url, database=postgres_dsn,
                           config_doc={"simulated": {"latency_ms": 50}})
    await check_loop_guard(group[0], group.urls)


async def test_redis_two_replicas_revoke(start_replicas: StartReplicas, redis_url: str,
                                         postgres_dsn: str) -> None:
    group = start_replicas(2, state_url=redis_url, database=postgres_dsn,
                           config_doc={"simulated": {"latency_ms": 50}})
    await check_loop_guard(group[0], group.urls, revoke=True)


@pytest.mark.parametrize(("guard", "field"), [
    ({"max_repeats": 0, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": -3, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": 5, "window_s": 0}, "loop_guard.window_s"),
    ({"max_repeats": 5, "window_s": -1}, "loop_guard.window_s"),
    ({"max_repeats": "20", "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": 20, "window_s": 1.5}, "loop_guard.window_s"),
    ({"max_repeats": 20, "window_s": 60, "per": "key"}, "loop_guard.per"),
    ("20/60", "loop_guard"),
])
def test_a_bad_loop_guard_is_refused_naming_its_field(
        gateway: Gateway, guard: object, field: str) -> None:
    scope = f"agent:{unique('bad-loop')}"
    answer = gateway.admin.put(f"/admin/v1/policies/{scope}", json={"loop_guard": guard})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_policy", field)
    assert field in error["message"]
    assert gateway.admin.get(f"/admin/v1/policies/{scope}").status_code == 404
    bad_on_loop = gateway.admin.put(f"/admin/v1/policies/{scope}", json={
        "loop_guard": {"max_repeats": 2, "window_s": 2}, "on_loop": "ban"})
    assert bad_on_loop.json()["error"]["param"] == "on_loop"
    assert gateway.admin.get(f"/admin/v1/policies/{scope}").status_code == 404


def test_a_key_with_a_bad_loop_guard_is_not_made(gateway: Gateway) -> None:
    agent = unique("bad-loop-key")
    answer = gateway.admin.post("/admin/v1/keys", json={
        "agent": agent, "policy": {"loop_guard": {"max_repeats": 0, "window_s": 60}}})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "loop_guard.max_repeats"
    keys = gateway.admin.get("/admin/v1/keys", params={"agent": agent})
    assert keys.status_code == 200
    assert keys.json()["keys"] == []
