"""Money-out budgets (`flow: out`) through the official `stripe` SDK against a counting mock
Stripe: concurrent refunds on two workers (SQLite) and on two replicas (Redis + PostgreSQL)
stop exactly at the cap, the rest refused before reaching Stripe; a spend budget is untouched
by refunds; bad input is refused whole."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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

CALLS = 20
REFUND_CENTS = 500  # $5
CAP_USD = 50
POLICY = {"budgets": [{"usd": CAP_USD, "period": "day", "flow": "out"},
                      {"usd": 20, "period": "day"}]}


@pytest.fixture(scope="module")
def replicas(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             mock_vendors: MockVendors, redis_server: RedisServer,
             postgres_server: PostgresServer) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas of one installation, `outlay serve --workers 2` each, on Redis beside
    PostgreSQL."""
    directory: Path = tmp_path_factory.mktemp("money-out-replicas")
    database = postgres_server.new_database()
    state = f"{redis_server.url}?tenant=t_{secrets.token_hex(8)}"
    config = vendor_config(mock_vendors)
    try:
        with running_replica(request.config, directory / "a", config, state, database) as a, \
                running_replica(request.config, directory / "b", config, state, database) as b:
            yield a, b
    finally:
        postgres_server.drop_database(database)


def client(url: str, key: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=key, http_client=stripe.RequestsClient(),
                               max_network_retries=0,
                               base_addresses={"api": f"{url}/vendors/stripe"})


def refund_all(urls: list[str], key: str, charges: list[str]
               ) -> list[stripe.Refund | stripe.StripeError]:
    """CALLS refunds of $5 at once, one of each charge, spread over `urls`, each from a
    client of its own."""

    def one(i: int) -> stripe.Refund | stripe.StripeError:
        try:
            return client(urls[i % len(urls)], key).v1.refunds.create(params={
                "charge": charges[i], "amount": REFUND_CENTS, "currency": "usd"})
        except stripe.StripeError as error:
            return error

    with ThreadPoolExecutor(CALLS) as pool:
        return list(pool.map(one, range(CALLS)))


def made_charges(mock_vendors: MockVendors) -> list[str]:
    """CALLS charges of $5 made on the account, not through the gateway."""
    return [mock_vendors.made_elsewhere("/v1/charges", amount=str(REFUND_CENTS),
                                        currency="usd", source="tok_visa")["id"]
            for _ in range(CALLS)]


def check_exactly_the_cap(gateway: Gateway, mock_vendors: MockVendors, agent: str,
                          results: list[stripe.Refund | stripe.StripeError], mark: int) -> None:
    refunds = [r for r in results if isinstance(r, stripe.Refund)]
    refused = [r for r in results if isinstance(r, stripe.StripeError)]
    assert len(refunds) == CAP_USD * 100 // REFUND_CENTS == 10
    assert len(refused) == CALLS - 10
    for error in refused:
        assert error.http_status == 400  # Stripe-shaped: never a 402 (a CardError)
        body = error.json_body
        assert isinstance(body, dict)
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "budget_exceeded"
        assert body["error"]["flow"] == "out"
        assert body["error"]["scope"] == f"agent:{agent}"
    # exactly the admitted refunds reached Stripe, each once; beside them, only the reads
    # of the charges refunded (the currency a refund moves is its charge's)
    created = mock_vendors.creations(mark, "stripe", "/v1/refunds")
    assert len(created) == 10
    assert {(c.method, c.path.split("/")[2]) for c in mock_vendors.since(mark, "stripe")
            if c not in created} == {("GET", "charges")}
    assert Counter(c.form()["charge"][0] for c in created) == Counter(r.charge for r in refunds)
    lines = {b["flow"]: b for b in gateway.usage(f"agent:{agent}")["budgets"]}
    out, spend = lines["out"], lines["spend"]
    assert micros(out["spent_usd"]) == CAP_USD * 1_000_000  # never a cent past the cap
    assert micros(out["reserved_usd"]) == 0
    assert micros(spend["spent_usd"]) == micros(spend["reserved_usd"]) == 0  # untouched
    rows = gateway.audit(f"agent:{agent}")
    assert sum(micros(r["cost_usd"]) for r in rows) == CAP_USD * 1_000_000
    assert Counter(r["code"] for r in rows if r["decision"] != "allowed") == {
        "budget_exceeded": 10}


def test_twenty_concurrent_refunds_on_two_workers_stop_at_the_cap(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    assert vendor_gateway.workers == 2
    agent = unique("refunder")
    vendor_gateway.set_policy(f"agent:{agent}", POLICY)
    key = vendor_gateway.mint_key(agent)["key"]
    charges = made_charges(mock_vendors)
    mark = mock_vendors.mark()
    with mock_vendors.slow(0.2):
        results = refund_all([vendor_gateway.url], key, charges)
    check_exactly_the_cap(vendor_gateway, mock_vendors, agent, results, mark)
    # money out is not spend: the spend budget still lets a payment through, and the
    # reports keep the two apart
    intent = client(vendor_gateway.url, key).v1.payment_intents.create(
        params={"amount": 700, "currency": "usd"})
    assert intent.amount == 700
    usage = vendor_gateway.usage(f"agent:{agent}")
    assert usage["spend_by_vendor"] == {"stripe": "7"}
    report = vendor_gateway.admin.get("/admin/v1/reports", params={"group_by": "agent"})
    assert report.status_code == 200, report.text
    (line,) = [r for r in report.json()["rows"] if r["agent"] == agent]
    assert (line["cost_usd"], line["out_usd"]) == ("7", "50")


def test_twenty_concurrent_refunds_on_two_replicas_stop_at_the_cap(
        replicas: tuple[Replica, Replica], mock_vendors: MockVendors) -> None:
    first, second = replicas
    agent = unique("refunder")
    first.set_policy(f"agent:{agent}", POLICY)
    key = first.mint_key(agent)["key"]
    charges = made_charges(mock_vendors)
    mark = mock_vendors.mark()
    with mock_vendors.slow(0.2):
        results = refund_all([first.url, second.url], key, charges)
    check_exactly_the_cap(second, mock_vendors, agent, results, mark)


def test_transfers_and_payouts_count_toward_money_out(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    agent = unique("payer")
    vendor_gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 10, "period": "day", "flow": "out"}]})
    stripe_ = client(vendor_gateway.url, vendor_gateway.mint_key(agent)["key"])
    mark = mock_vendors.mark()
    stripe_.v1.transfers.create(params={"amount": 600, "currency": "usd",
                                        "destination": "acct_1"})
    stripe_.v1.payouts.create(params={"amount": 400, "currency": "usd"})
    with pytest.raises(stripe.StripeError) as caught:
        stripe_.v1.payouts.create(params={"amount": 1, "currency": "usd"})
    assert caught.value.json_body["error"]["code"] == "budget_exceeded"  # type: ignore[index]
    assert len(mock_vendors.since(mark, "stripe")) == 2
    assert vendor_gateway.budget(f"agent:{agent}")["spent_usd"] == "10"


def test_a_refund_by_a_charges_own_route_counts_as_money_out(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    """A hostile agent may refund through Stripe's older routes: they count just the same."""
    agent = unique("refunder")
    vendor_gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 5, "period": "day", "flow": "out"}]})
    key = vendor_gateway.mint_key(agent)["key"]
    mark = mock_vendors.mark()
    for path in ("/v1/charges/ch_1/refunds", "/v1/charges/ch_1/refund", "/v1/refunds"):
        answer = httpx.post(f"{vendor_gateway.url}/vendors/stripe{path}",
                            data={"amount": "600", "currency": "usd", "charge": "ch_1"},
                            headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["code"] == "budget_exceeded"
        assert answer.json()["error"]["flow"] == "out"
    # nor may it move more than it was counted for through the query string
    answer = httpx.post(f"{vendor_gateway.url}/vendors/stripe/v1/refunds?amount=100000",
                        data={"amount": "100", "currency": "usd", "charge": "ch_1"},
                        headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert (answer.json()["error"]["code"], answer.json()["error"]["param"]) == (
        "invalid_request", "query")
    # Stripe knows no ch_1: each refund was bounded by the dearest currency (more than $5),
    # and only read of, never sent
    assert {(c.method, c.path) for c in mock_vendors.since(mark, "stripe")} == {
        ("GET", "/v1/charges/ch_1")}


def test_a_refund_without_amount_of_an_unknown_charge_is_refused_under_a_money_out_budget(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    agent = unique("refunder")
    vendor_gateway.set_policy(f"agent:{agent}", POLICY)
    key = vendor_gateway.mint_key(agent)["key"]
    mark = mock_vendors.mark()
    with pytest.raises(stripe.StripeError) as caught:
        client(vendor_gateway.url, key).v1.refunds.create(params={"charge": "ch_1"})
    error: dict[str, Any] = caught.value.json_body["error"]  # type: ignore[index]
    assert caught.value.http_status == 400
    assert (error["code"], error["param"], error["flow"]) == ("price_unknown", "amount", "out")
    # Outlay asked Stripe what the refund would move; Stripe knows no such charge, so
    # nothing can be reserved, and the refund itself never reaches Stripe
    assert [(c.method, c.path) for c in mock_vendors.since(mark, "stripe")] == [
        ("GET", "/v1/charges/ch_1")]


def test_a_refund_without_amount_reserves_the_remainder_stripe_reports(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    agent = unique("refunder")
    vendor_gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": 20, "period": "day", "flow": "out"}]})
    stripe_ = client(vendor_gateway.url, vendor_gateway.mint_key(agent)["key"])
    charge = stripe_.v1.charges.create(params={"amount": 1200, "currency": "usd",
                                               "source": "tok_visa"})
    mark = mock_vendors.mark()
    refund = stripe_.v1.refunds.create(params={"charge": charge.id})
    assert refund.amount == 1200
    read, made = mock_vendors.since(mark, "stripe")
    assert (read.method, read.path) == ("GET", f"/v1/charges/{charge.id}")
    assert (made.method, made.path) == ("POST", "/v1/refunds")
    line = vendor_gateway.budget(f"agent:{agent}")
    assert (line["flow"], line["spent_usd"], line["reserved_usd"]) == ("out", "12", "0")
    # nothing is left: Stripe refuses the second, which moves (and is charged) nothing
    with pytest.raises(stripe.StripeError) as caught:
        stripe_.v1.refunds.create(params={"charge": charge.id})
    error = caught.value.json_body["error"]  # type: ignore[index]
    assert error["code"] == "charge_already_refunded"
    assert [c.method for c in mock_vendors.since(mark, "stripe")] == ["GET", "POST"] * 2
    assert vendor_gateway.budget(f"agent:{agent}")["spent_usd"] == "12"


@pytest.mark.parametrize(("budget", "named"), [
    ({"usd": 5, "flow": "in"}, "budgets[0].flow"),
    ({"usd": 5, "flow": ["out"]}, "budgets[0].flow"),
    ({"usd": 5, "flow": None}, "budgets[0].flow"),
])
def test_a_bad_flow_is_refused_naming_the_field_and_nothing_is_stored(
        vendor_gateway: Gateway, budget: dict[str, Any], named: str) -> None:
    scope = f"agent:{unique('flow')}"
    answer = vendor_gateway.admin.put(f"/admin/v1/policies/{scope}",
                                      json={"budgets": [budget]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_policy"
    assert named in answer.json()["error"]["message"]
    assert vendor_gateway.admin.get(f"/admin/v1/policies/{scope}").status_code == 404
