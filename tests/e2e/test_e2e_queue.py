"""The queue of one `outlay serve` worker (on_rate_limit: queue): bounded by
`server.queue_max_waiting` (past it, 429 at once), left by a client that hangs up, and
emptied by a shutdown, which answers its calls with their 429 rather than leaving them
hanging; /metrics counts what waits."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import Launch
from .harness import Gateway, outlay_bin, server_env, unique
from .traffic import error_code

pytestmark = pytest.mark.e2e

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8}


def waiting(gateway: Gateway) -> float:
    for line in httpx.get(f"{gateway.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("outlay_queue_waiting "):
            return float(line.split()[1])
    raise AssertionError("no outlay_queue_waiting in /metrics")


async def until_waiting(gateway: Gateway, n: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := await asyncio.to_thread(waiting, gateway)) != n:
        assert time.monotonic() < deadline, f"{seen} calls wait, not {n}"
        await asyncio.sleep(0.05)


def test_the_queue_is_bounded_left_by_a_client_that_hangs_up_and_answered_at_shutdown(
        launch: Launch) -> None:
    gateway = launch({"simulated": {"latency_ms": 0}, "server": {"queue_max_waiting": 1}})
    minted = gateway.mint_key(unique("queue"), policy={
        "rpm": 1, "on_rate_limit": "queue", "queue_max_wait_s": 120})
    headers = {"Authorization": f"Bearer {minted['key']}"}
    url = f"{gateway.url}/v1/chat/completions"

    async def scenario() -> tuple[httpx.Response, httpx.Response, float]:
        async with httpx.AsyncClient(timeout=60) as client:
            assert (await client.post(url, json=BODY, headers=headers)).status_code == 200
            # a call over the rpm waits; the next finds the queue full: 429 at once
            hung = asyncio.ensure_future(client.post(url, json=BODY, headers=headers))
            await until_waiting(gateway, 1)
            full = await client.post(url, json=BODY, headers=headers)
            # its client hangs up: it leaves the queue
            hung.cancel()
            await until_waiting(gateway, 0)
            last = asyncio.ensure_future(client.post(url, json=BODY, headers=headers))
            await until_waiting(gateway, 1)
            rows = await asyncio.to_thread(gateway.audit, f"key:{minted['id']}")
            assert [r["decision"] for r in rows].count("refused") == 1  # the full queue's
            stopping = time.monotonic()
            await asyncio.to_thread(gateway.stop)
            return full, await last, time.monotonic() - stopping

    full, last, stop_s = asyncio.run(scenario())
    assert full.status_code == 429
    assert error_code(full) == "rate_limit_exceeded"
    assert "x-outlay-queued-ms" not in full.headers  # it never waited
    # a shutdown answers the waiting call with the 429 it would have had, not after 120 s
    assert last.status_code == 429
    assert error_code(last) == "rate_limit_exceeded"
    assert int(last.headers["retry-after"]) >= 1
    assert int(last.headers["x-outlay-queued-ms"]) > 0
    assert stop_s < 10


@pytest.mark.parametrize(("policy", "field"), [
    ({"on_rate_limit": "queue", "queue_max_wait_s": -1}, "queue_max_wait_s"),
    ({"on_rate_limit": "queue", "queue_max_wait_s": 601}, "queue_max_wait_s"),
    ({"on_rate_limit": "later"}, "on_rate_limit"),
])
def test_bad_queue_fields_are_refused_naming_the_field_and_nothing_is_stored(
        gateway: Gateway, policy: dict[str, object], field: str) -> None:
    scope = f"agent:{unique('bad-queue')}"
    answer = gateway.admin.put(f"/admin/v1/policies/{scope}", json=policy)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["message"]
    assert gateway.admin.get(f"/admin/v1/policies/{scope}").status_code == 404


@pytest.mark.parametrize(("limits", "named"), [
    ({"rpm": "sixty"}, "providers.openai.endpoints[0].limits.rpm must be a positive integer"),
    ({"max_parallel": 0}, "providers.openai.endpoints[0].limits.max_parallel must be a "
                          "positive integer"),
    ([60], "providers.openai.endpoints[0].limits must be a mapping"),
])
def test_bad_endpoint_limits_stop_the_start_with_one_line_naming_the_field(
        tmp_path: Path, limits: object, named: str) -> None:
    path = tmp_path / "outlay.yaml"
    path.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", "providers": {"openai": {
        "endpoints": [{"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x",
                       "limits": limits}]}}}), encoding="utf-8")
    done = subprocess.run(
        [outlay_bin(), "serve", "--config", str(path), "--state",
         f"sqlite:///{tmp_path / 'state.db'}"], cwd=tmp_path, env=server_env(),
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert named in lines[0]
    assert not (tmp_path / "state.db").exists()  # nothing stored


def test_a_vendor_call_is_queued_too_and_says_how_long_it_waited(gateway: Gateway) -> None:
    agent = unique("vendor-queue")
    minted = gateway.mint_key(agent, policy={
        "rpm": 1, "on_rate_limit": "queue", "queue_max_wait_s": 1})
    url = f"{gateway.url}/vendors/stripe/v1/customers"
    headers = {"Authorization": f"Bearer {minted['key']}"}
    assert httpx.get(url, headers=headers, timeout=30).status_code == 200
    started = time.monotonic()
    refused = httpx.get(url, headers=headers, timeout=30)
    assert refused.status_code == 429
    assert time.monotonic() - started >= 0.9  # it waited for its whole wait first
    assert int(refused.headers["x-outlay-queued-ms"]) >= 900
    assert int(refused.headers["retry-after"]) >= 1
