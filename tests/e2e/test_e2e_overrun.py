"""An answer that reports more than was held, through the official `openai` SDK and a real
gateway in front of a provider on loopback: charged what the provider reported, and the
audit row, `/metrics` and the webhook all show the overrun."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest
from aiohttp import web

from .conftest import Launch
from .harness import micros, price_cost_micros, unique
from .test_e2e_webhooks import Receiver, free_port

pytestmark = pytest.mark.e2e

# far more input than "Say hello." can be: a provider whose count the bound did not foresee
USAGE = {"prompt_tokens": 150_000, "completion_tokens": 20, "total_tokens": 150_020}


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    envelope = {"id": "chatcmpl-over", "created": 1_735_689_600, "model": "gpt-4o-mini"}
    if not body.get("stream"):
        return web.json_response({**envelope, "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello."},
             "finish_reason": "stop"}], "usage": USAGE})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunks = [{**envelope, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": "Hello."}, "finish_reason": "stop"}]},
        {**envelope, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}]
    for chunk in chunks:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
    finally:
        loop.close()


def overrun_metric(url: str) -> Decimal:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('outlay_settlement_overrun_usd_total{vendor="openai",'
                           'model="gpt-4o-mini"}'):
            return Decimal(line.rsplit(" ", 1)[1])
    return Decimal(0)


def test_an_overrun_is_charged_and_shown_everywhere(launch: Launch, provider: str) -> None:
    gateway = launch({"providers": {"openai": {"endpoints": [
        {"base_url": provider, "api_key": "sk-provider"}]}}})
    receiver = Receiver(free_port())
    try:
        gateway.admin.post("/admin/v1/webhooks", json={
            "url": f"http://127.0.0.1:{receiver.server.server_port}/hooks",
            "events": ["budget.exceeded"]}).raise_for_status()
        minted = gateway.mint_key(unique("over"), policy={
            "budgets": [{"usd": "0.03", "period": "day", "mode": "hard"}]})
        scope = f"key:{minted['id']}"
        hi = [{"role": "user", "content": "Say hello."}]
        with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"],
                           max_retries=0, timeout=15) as client:
            streamed = list(client.chat.completions.create(
                model="gpt-4o-mini", messages=hi, max_tokens=50, stream=True,
                stream_options={"include_usage": True}))
            whole = client.chat.completions.create(model="gpt-4o-mini", messages=hi,
                                                   max_tokens=50)
        assert streamed[-1].usage is not None
        assert whole.usage is not None
        bill = price_cost_micros(gateway.prices()["gpt-4o-mini"], USAGE["prompt_tokens"],
                                 USAGE["completion_tokens"])
        entries = gateway.audit(scope)
        assert [micros(e["cost_usd"]) for e in entries] == [bill, bill]
        overruns = [micros(e["overrun_usd"]) for e in entries]
        assert overruns == [bill - micros(e["reserved_usd"]) for e in entries]
        assert all(over > 0 for over in overruns)
        assert micros(gateway.budget(scope)["spent_usd"]) == 2 * bill  # past the $0.03 cap
        assert overrun_metric(gateway.url) * 1_000_000 == sum(overruns)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not receiver.received:
            time.sleep(0.1)
        (_, body), *_ = receiver.received
        event = json.loads(body)
        assert event["type"] == "budget.exceeded"
        assert (event["data"]["scope"], event["data"]["mode"]) == (scope, "hard")
        assert event["data"]["request_id"] == entries[0]["request_id"]  # the newest, 2nd
        assert micros(event["data"]["overrun_usd"]) == overruns[0]
    finally:
        receiver.close()
