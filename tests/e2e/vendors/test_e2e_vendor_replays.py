"""A replayed payment is one payment, whichever Outlay key sends it: two run keys of one agent
sending the same $30 Stripe payment with one Idempotency-Key are charged $30 once, the second
answer marked as a replay of the first; another connected account is another payment; a
different body under the same key is the vendor's 400 and costs nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ..harness import Gateway, micros, unique
from .conftest import MockVendors

pytestmark = pytest.mark.e2e

INTENTS = "/vendors/stripe/v1/payment_intents"


@pytest.fixture
def http(vendor_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vendor_gateway.url, timeout=15) as client:
        yield client


def pay(http: httpx.Client, key: str, cents: int, idem: str, **headers: str) -> httpx.Response:
    return http.post(INTENTS, data={"amount": str(cents), "currency": "usd"}, headers={
        "Authorization": f"Bearer {key}", "Idempotency-Key": idem, **headers})


def test_one_payment_retried_from_another_run_key_is_charged_once(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client) -> None:
    agent = unique("replayed-run")
    vendor_gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 100, "period": "day", "mode": "hard"}]})
    first_run = vendor_gateway.mint_key(agent, labels={"run": "r-1"})
    second_run = vendor_gateway.mint_key(agent, labels={"run": "r-2"})
    idem = unique("order")
    mark = mock_vendors.mark()

    first = pay(http, first_run["key"], 3_000, idem)
    again = pay(http, second_run["key"], 3_000, idem)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["id"] == first.json()["id"]  # Stripe replayed its first answer
    assert again.headers["X-Outlay-Replay-Of"] == first.headers["X-Outlay-Request-Id"]
    assert "X-Outlay-Replay-Of" not in first.headers
    assert "X-Outlay-Reserved-USD" not in again.headers
    budget = vendor_gateway.budget(f"agent:{agent}", "day")
    assert (micros(budget["spent_usd"]), micros(budget["reserved_usd"])) == (30_000_000, 0)
    (row,) = vendor_gateway.audit(f"key:{second_run['id']}")
    assert (row["code"], row["replay_of"], row["cost_usd"]) == (
        "idempotent_replay", first.headers["X-Outlay-Request-Id"], "0")
    (original,) = vendor_gateway.audit(f"key:{first_run['id']}")
    assert (original["cost_usd"], original["replay_of"]) == ("30", None)
    # the $100 cap has its $70 left: a $50 payment passes
    assert pay(http, second_run["key"], 5_000, unique("order")).status_code == 200
    assert len(mock_vendors.creations(mark, "stripe", "/v1/payment_intents")) == 3


def test_another_connected_account_is_another_payment(
        vendor_gateway: Gateway, http: httpx.Client) -> None:
    agent = unique("connected")
    vendor_gateway.set_policy(f"agent:{agent}", {"accounts": {"stripe": ["acct_one",
                                                                        "acct_two"]}})
    key = vendor_gateway.mint_key(agent)["key"]
    other = vendor_gateway.mint_key(agent)["key"]
    idem = unique("order")
    first = pay(http, key, 1_000, idem, **{"Stripe-Account": "acct_one"})
    second = pay(http, other, 1_000, idem, **{"Stripe-Account": "acct_two"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert "X-Outlay-Replay-Of" not in second.headers
    assert second.headers["X-Outlay-Reserved-USD"] == "10"


def test_the_same_key_with_another_body_costs_nothing(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client) -> None:
    agent = unique("reused-key")
    first_key = vendor_gateway.mint_key(agent)["key"]
    second = vendor_gateway.mint_key(agent)
    idem = unique("order")
    assert pay(http, first_key, 1_000, idem).status_code == 200
    changed = pay(http, second["key"], 900_000, idem)
    assert changed.status_code == 400  # Stripe's idempotency_error, passed through
    assert changed.json()["error"]["type"] == "idempotency_error"
    (row,) = vendor_gateway.audit(f"key:{second['id']}")
    assert (row["settlement"], row["cost_usd"], row["replay_of"]) == (
        "void", "0", changed.headers["X-Outlay-Replay-Of"])
    assert sum(micros(e["cost_usd"]) for e in vendor_gateway.audit(f"agent:{agent}")) == (
        10_000_000)
