"""Background responses through the official `openai` SDK against a real gateway: the
reservation is held until the response finishes, the creating key retrieves and cancels it,
another key gets 404, and an unpolled one is polled and settled by the gateway itself."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from .conftest import Launch
from .harness import Gateway, micros, price_cost_micros, unique

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"
WAIT_S = 15.0  # the gateway polls after 1 s, then 2 s: the simulator finishes at the second


def client_for(gateway: Gateway) -> tuple[openai.OpenAI, str]:
    minted = gateway.mint_key(unique("bg"), policy={"budgets": [{"usd": 1, "period": "day"}]})
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"], max_retries=0,
                         timeout=15), f"key:{minted['id']}"


def settled(gateway: Gateway, scope: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        (entry,) = gateway.audit(scope)
        if entry["settlement"] != "pending":
            return entry
        time.sleep(0.1)
    pytest.fail(f"{scope}: not settled in {WAIT_S} s")


def test_a_background_response_is_charged_its_usage_when_it_finishes(gateway: Gateway) -> None:
    client, scope = client_for(gateway)
    with client:
        queued = client.responses.create(model=MODEL, input="Say hello.", background=True,
                                         max_output_tokens=64)
        assert (queued.status, queued.usage) == ("queued", None)
        assert micros(gateway.budget(scope)["reserved_usd"]) > 0  # held while it runs
        (entry,) = gateway.audit(scope)
        assert entry["settlement"] == "pending"
        response = client.responses.retrieve(queued.id)
        while response.status in ("queued", "in_progress"):
            response = client.responses.retrieve(queued.id)
    assert response.status == "completed"
    assert response.usage is not None
    expected = price_cost_micros(gateway.prices()[MODEL], response.usage.input_tokens,
                                 response.usage.output_tokens)
    entry = settled(gateway, scope)
    assert (entry["settlement"], micros(entry["cost_usd"])) == ("settled", expected)
    assert micros(gateway.budget(scope)["reserved_usd"]) == 0


def test_only_the_creating_key_sees_it(gateway: Gateway) -> None:
    client, _ = client_for(gateway)
    other, _ = client_for(gateway)
    with client, other:
        queued = client.responses.create(model=MODEL, input="hi", background=True)
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(queued.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.cancel(queued.id)
        assert client.responses.retrieve(queued.id).status == "in_progress"


def test_an_unpolled_response_is_settled_by_the_gateway(gateway: Gateway) -> None:
    client, scope = client_for(gateway)
    with client:
        client.responses.create(model=MODEL, input="Say hello.", background=True,
                                max_output_tokens=64)
    entry = settled(gateway, scope)
    assert entry["settlement"] == "settled"
    assert 0 < micros(entry["cost_usd"]) < micros(entry["reserved_usd"])


def test_a_cancelled_response_is_charged_what_it_ran_up(gateway: Gateway) -> None:
    client, scope = client_for(gateway)
    with client:
        queued = client.responses.create(model=MODEL, input="Say hello.", background=True,
                                         max_output_tokens=64)
        cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert cancelled.usage is not None
    expected = price_cost_micros(gateway.prices()[MODEL], cancelled.usage.input_tokens,
                                 cancelled.usage.output_tokens)
    entry = settled(gateway, scope)
    assert (entry["settlement"], micros(entry["cost_usd"])) == ("settled", expected)


def test_any_worker_answers_the_creating_key(launch: Launch) -> None:
    pool = launch({"simulated": {"latency_ms": 0}}, workers=2)
    client, _ = client_for(pool)
    with client:
        queued = client.responses.create(model=MODEL, input="hi", background=True)
    answered = set()
    for _ in range(12):  # a new connection each time: the workers take turns at random
        got = httpx.get(f"{pool.url}/v1/responses/{queued.id}", timeout=15,
                        headers={"Authorization": f"Bearer {client.api_key}"})
        # each worker runs a simulator of its own, which knows only the responses it made:
        # its 404 is not the gateway's refusal (code `not_found`)
        if got.status_code == 404:
            assert got.json()["error"]["code"] != "not_found", got.text
        else:
            assert got.json()["id"] == queued.id
        answered.add(got.status_code)
    assert 200 in answered
