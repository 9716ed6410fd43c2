"""A Stripe payment is counted once, for what it can still move or has moved: the official
`stripe` SDK against a real gateway of two workers, on SQLite and on Redis + PostgreSQL,
whose Stripe is a mock keeping each payment intent's state as Stripe does."""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe

from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer

from ..harness import Gateway, micros, unique
from ..replicas import Replica
from .conftest import MockVendors, running_replica, vendor_config

pytestmark = pytest.mark.e2e

USD = 1_000_000
CARD = "pm_card_visa"
HOLD = {"amount": 2000, "currency": "usd", "capture_method": "manual", "confirm": "true",
        "payment_method": CARD}  # $20 authorized, not yet captured


@pytest.fixture(scope="module", params=["sqlite", "redis+postgres"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            mock_vendors: MockVendors) -> Iterator[Replica]:
    """`outlay serve --workers 2` on the state the parameter names."""
    directory = tmp_path_factory.mktemp(f"exposure-{request.param.replace('+', '-')}")
    if request.param == "sqlite":
        with running_replica(request.config, directory, vendor_config(mock_vendors),
                             f"sqlite:///{directory / 'state.db'}", None) as gw:
            yield gw
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    database = postgres.new_database()
    try:
        with running_replica(request.config, directory, vendor_config(mock_vendors),
                             f"{redis.url}?tenant=t_{secrets.token_hex(8)}", database) as gw:
            yield gw
    finally:
        postgres.drop_database(database)


@pytest.fixture
def stripe_http() -> Iterator[stripe.HTTPClient]:
    http = stripe.RequestsClient()
    yield http
    http.close()


def client(gateway: Gateway, key: str, http: stripe.HTTPClient) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=key, http_client=http, max_network_retries=0,
                               base_addresses={"api": f"{gateway.url}/vendors/stripe"})


def capped(gateway: Gateway, prefix: str, usd: int, period: str = "month") -> tuple[str, str]:
    agent = unique(prefix)
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": usd, "period": period, "mode": "hard"}]})
    return agent, gateway.mint_key(agent)["key"]


def spent(gateway: Gateway, agent: str, period: str = "month") -> tuple[int, int]:
    budget = gateway.budget(f"agent:{agent}", period)
    return micros(budget["spent_usd"]), micros(budget["reserved_usd"])


def credits(gateway: Gateway, agent: str) -> list[int]:
    return [micros(e["cost_usd"]) for e in gateway.audit(f"agent:{agent}")
            if e["decision"] == "credit"]


def test_raising_the_amount_past_the_cap_is_refused_before_stripe_sees_it(
        gateway: Replica, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "raise", 1_000)
    sdk = client(gateway, key, stripe_http)
    intent = sdk.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    assert spent(gateway, agent) == (USD, 0)
    mark = mock_vendors.mark()

    with pytest.raises(stripe.StripeError) as refused:
        sdk.v1.payment_intents.update(intent.id, params={"amount": 500_000})

    assert refused.value.http_status == 400  # a budget refusal, never a declined card's 402
    assert not isinstance(refused.value, stripe.CardError)
    assert refused.value.code == "budget_exceeded"
    assert mock_vendors.since(mark) == []  # the update never reached Stripe
    confirmed = sdk.v1.payment_intents.confirm(intent.id, params={"payment_method": CARD})
    assert (confirmed.status, confirmed.amount_received) == ("succeeded", 100)
    assert spent(gateway, agent) == (USD, 0)  # the $1 that moved, counted once


def test_an_update_within_the_cap_reserves_the_increase(
        gateway: Replica, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "raise-ok", 1_000)
    sdk = client(gateway, key, stripe_http)
    intent = sdk.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    updated = sdk.v1.payment_intents.update(intent.id, params={"amount": 70_000})
    assert updated.amount == 70_000
    assert spent(gateway, agent) == (700 * USD, 0)
    lowered = sdk.v1.payment_intents.update(intent.id, params={"amount": 5_000})
    assert lowered.amount == 5_000
    assert spent(gateway, agent) == (50 * USD, 0)
    assert credits(gateway, agent) == [-650 * USD]


def test_a_manual_capture_is_counted_once(
        gateway: Replica, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "manual", 100)
    sdk = client(gateway, key, stripe_http)
    held = sdk.v1.payment_intents.create(params=HOLD)
    assert held.status == "requires_capture"
    assert spent(gateway, agent) == (20 * USD, 0)

    captured = sdk.v1.payment_intents.capture(held.id)

    assert (captured.status, captured.amount_received) == ("succeeded", 2000)
    assert spent(gateway, agent) == (20 * USD, 0)
    assert credits(gateway, agent) == []


def test_a_partial_capture_counts_what_was_captured(
        gateway: Replica, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "partial", 100)
    sdk = client(gateway, key, stripe_http)
    held = sdk.v1.payment_intents.create(params=HOLD)

    captured = sdk.v1.payment_intents.capture(held.id, params={"amount_to_capture": 500})

    assert captured.amount_received == 500
    assert spent(gateway, agent) == (5 * USD, 0)
    assert credits(gateway, agent) == [-15 * USD]


@pytest.mark.parametrize("authorized", [True, False])
def test_a_canceled_intent_returns_the_budget_to_where_it_was(
        gateway: Replica, stripe_http: stripe.HTTPClient, authorized: bool) -> None:
    agent, key = capped(gateway, "cancel", 100)
    sdk = client(gateway, key, stripe_http)
    sdk.v1.payment_intents.create(params={"amount": 300, "currency": "usd", "confirm": "true",
                                          "payment_method": CARD})
    before = spent(gateway, agent)
    params: dict[str, Any] = HOLD if authorized else {"amount": 2000, "currency": "usd"}
    intent = sdk.v1.payment_intents.create(params=params)
    assert spent(gateway, agent)[0] == before[0] + 20 * USD

    canceled = sdk.v1.payment_intents.cancel(intent.id)

    assert canceled.status == "canceled"
    assert spent(gateway, agent) == before
    assert credits(gateway, agent) == [-20 * USD]


def test_a_charge_captured_in_part_counts_what_was_captured(
        gateway: Replica, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "charge", 100)
    sdk = client(gateway, key, stripe_http)
    charge = sdk.v1.charges.create(params={"amount": 4000, "currency": "usd",
                                           "source": "tok_visa", "capture": "false"})
    assert spent(gateway, agent) == (40 * USD, 0)
    captured = sdk.v1.charges.capture(charge.id, params={"amount": 1000})
    assert captured.amount_captured == 1000
    assert spent(gateway, agent) == (10 * USD, 0)


def test_20_concurrent_updates_admit_exactly_what_fits(
        gateway: Replica, mock_vendors: MockVendors) -> None:
    assert gateway.workers == 2
    agent, key = capped(gateway, "race", 50)
    with contextlib.closing(stripe.RequestsClient()) as http:
        sdk = client(gateway, key, http)
        ids = [sdk.v1.payment_intents.create(params={"amount": 100, "currency": "usd"}).id
                for _ in range(20)]
    assert spent(gateway, agent) == (20 * USD, 0)
    mark = mock_vendors.mark()
    start = threading.Barrier(20)

    def update(intent_id: str) -> tuple[int, str | None]:
        with contextlib.closing(stripe.RequestsClient()) as own:
            sdk = client(gateway, key, own)
            start.wait(timeout=30)
            try:
                sdk.v1.payment_intents.update(intent_id, params={"amount": 1000})
            except stripe.StripeError as refused:
                return refused.http_status or 0, refused.code
            return 200, None

    with mock_vendors.slow(0.2), ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(update, ids))

    assert sorted(statuses, key=str) == [(200, None)] * 3 + [(400, "budget_exceeded")] * 17
    reached = [c for c in mock_vendors.since(mark, "stripe") if c.method == "POST"]
    assert len(reached) == 3  # $30 left, $9 each: three fit, the fourth would pass the cap
    assert spent(gateway, agent) == (47 * USD, 0)


def test_a_confirm_of_an_intent_made_elsewhere_is_priced_from_stripe(
        gateway: Replica, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "elsewhere", 50)
    sdk = client(gateway, key, stripe_http)
    with httpx.Client(base_url=mock_vendors.base_url("stripe"), timeout=15) as direct:
        made = [direct.post("/v1/payment_intents", data={
            "amount": amount, "currency": "usd", "payment_method": CARD}).json()["id"]
            for amount in (3000, 6000)]
    mark = mock_vendors.mark()

    confirmed = sdk.v1.payment_intents.confirm(made[0])

    assert confirmed.status == "succeeded"
    assert [(c.method, c.path) for c in mock_vendors.since(mark, "stripe")] == [
        ("GET", f"/v1/payment_intents/{made[0]}"),
        ("POST", f"/v1/payment_intents/{made[0]}/confirm")]
    assert spent(gateway, agent) == (30 * USD, 0)
    mark = mock_vendors.mark()
    with pytest.raises(stripe.StripeError) as refused:
        sdk.v1.payment_intents.confirm(made[1])  # $60 does not fit in the $20 left
    assert refused.value.http_status == 400
    assert refused.value.code == "budget_exceeded"
    assert [(c.method, c.path) for c in mock_vendors.since(mark, "stripe")] == [
        ("GET", f"/v1/payment_intents/{made[1]}")]
    assert spent(gateway, agent) == (30 * USD, 0)


def test_a_count_survives_a_restart(
        gateway: Replica, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "restart", 100)
    held = client(gateway, key, stripe_http).v1.payment_intents.create(params=HOLD)
    gateway.restart()
    with contextlib.closing(stripe.RequestsClient()) as http:
        sdk = client(gateway, key, http)
        sdk.v1.payment_intents.capture(held.id, params={"amount_to_capture": 700})
    assert spent(gateway, agent) == (7 * USD, 0)


BAD = {
    "capture-amount-not-integer": ("/v1/payment_intents/{id}/capture",
                                   {"amount_to_capture": "12.5"}, "amount_to_capture"),
    "negative-update": ("/v1/payment_intents/{id}", {"amount": "-500"}, "amount"),
    "id-outside-the-alphabet": ("/v1/payment_intents/pi_a%20b/capture", {}, "id"),
    "id-with-a-nul": ("/v1/payment_intents/pi_a%00b", {"amount": "100"}, "id"),
    "id-with-unicode": ("/v1/charges/ch_%C3%A9/capture", {}, "id"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_before_anything_is_reserved_or_sent(
        gateway: Replica, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient,
        case: str) -> None:
    agent, key = capped(gateway, "bad", 100)
    held = client(gateway, key, stripe_http).v1.payment_intents.create(params=HOLD)
    before, rows = spent(gateway, agent), len(gateway.audit(f"agent:{agent}"))
    path, form, param = BAD[case]
    mark = mock_vendors.mark()

    answer = httpx.post(f"{gateway.url}/vendors/stripe{path.format(id=held.id)}", data=form,
                        headers={"Authorization": f"Bearer {key}"}, timeout=15)

    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert mock_vendors.since(mark) == []
    assert spent(gateway, agent) == before
    entries = gateway.audit(f"agent:{agent}")
    assert len(entries) == rows + 1
    assert (entries[0]["decision"], entries[0]["status"], Decimal(entries[0]["cost_usd"])) == (
        "invalid", 400, 0)


def test_a_read_stripe_cannot_answer_refuses_the_call(
        gateway: Replica, mock_vendors: MockVendors) -> None:
    agent, key = capped(gateway, "unreadable", 100)
    with httpx.Client(base_url=mock_vendors.base_url("stripe"), timeout=15) as direct:
        made = direct.post("/v1/payment_intents", data={
            "amount": 100, "currency": "usd", "payment_method": CARD}).json()["id"]
    mark = mock_vendors.mark()

    with mock_vendors.faulty("error-503"):
        answer = httpx.post(f"{gateway.url}/vendors/stripe/v1/payment_intents/{made}/confirm",
                            headers={"Authorization": f"Bearer {key}"}, timeout=15)

    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["code"] == "upstream_unavailable"
    assert [c.method for c in mock_vendors.since(mark, "stripe")] == ["GET"]
    assert spent(gateway, agent) == (0, 0)


def test_an_unknown_key_never_makes_outlay_read(
        gateway: Replica, mock_vendors: MockVendors) -> None:
    mark = mock_vendors.mark()
    answer = httpx.post(f"{gateway.url}/vendors/stripe/v1/payment_intents/pi_123/confirm",
                        headers={"Authorization": "Bearer olk_not_a_key"}, timeout=15)
    assert answer.status_code == 401
    assert mock_vendors.since(mark) == []


def test_an_object_stripe_does_not_know_fails_there_and_costs_nothing(
        gateway: Replica, mock_vendors: MockVendors, stripe_http: stripe.HTTPClient) -> None:
    agent, key = capped(gateway, "unknown-object", 100)
    sdk = client(gateway, key, stripe_http)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.payment_intents.update("pi_nothere", params={"amount": 700})
    assert missing.value.http_status == 404
    assert spent(gateway, agent) == (0, 0)
