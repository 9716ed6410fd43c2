"""An approval approves one payment, end to end on `outlay serve --workers 2` against a mock
Stripe that counts what reaches it: the approved $0.20 payment passes once, a $5,000 one
presenting the same approval never reaches Stripe, an rpm approval clears no budget breach,
an expired approval is refused, and of calls racing on one approval exactly one passes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..harness import Gateway, micros, unique
from .conftest import MockVendors, running, vendor_config

pytestmark = pytest.mark.e2e

INTENTS = "/vendors/stripe/v1/payment_intents"
HELD = {"on_breach": "require_approval", "budgets": [{"usd": 1, "period": "day", "mode": "hard"}]}


@pytest.fixture
def http(vendor_gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vendor_gateway.url, timeout=15) as client:
        yield client


def pay(http: httpx.Client, key: str, cents: int, approval: str | None = None
        ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if approval:
        headers["X-Outlay-Approval"] = approval
    return http.post(INTENTS, data={"amount": str(cents), "currency": "usd"}, headers=headers)


# On Stripe's routes a permission refusal is a 400 (stripe-python drops a 403's code)
REFUSED = 400


def approval_of(answer: httpx.Response) -> str:
    assert answer.status_code == REFUSED, answer.text
    error = answer.json()["error"]
    assert error["code"] == "approval_required", error
    return str(error["approval_id"])


def approve(gateway: Gateway, approval_id: str) -> None:
    answer = gateway.admin.post(f"/admin/v1/approvals/{approval_id}/approve", json={})
    assert answer.status_code == 200, answer.text


def mismatch(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == REFUSED, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == "approval_mismatch", error
    return error


def spent(gateway: Gateway, agent: str) -> tuple[int, int]:
    budget = gateway.budget(f"agent:{agent}", "day")
    return micros(budget["spent_usd"]), micros(budget["reserved_usd"])


def test_twenty_cents_approved_is_twenty_cents_once(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client) -> None:
    agent = unique("approved-pay")
    vendor_gateway.set_policy(f"agent:{agent}", HELD)
    key = vendor_gateway.mint_key(agent)["key"]
    assert pay(http, key, 90).status_code == 200
    approval_id = approval_of(pay(http, key, 20))
    shown = vendor_gateway.admin.get(f"/admin/v1/approvals/{approval_id}").json()
    assert (shown["estimated_usd"], shown["request"]["method"], shown["request"]["path"]) == (
        "0.2", "POST", "/v1/payment_intents")
    approve(vendor_gateway, approval_id)

    mark = mock_vendors.mark()
    error = mismatch(pay(http, key, 500_000, approval_id))
    assert error["differs"] == ["body", "amount"]
    assert mock_vendors.since(mark) == []  # nothing forwarded
    assert spent(vendor_gateway, agent) == (900_000, 0)  # nothing reserved

    passed = pay(http, key, 20, approval_id)
    assert passed.status_code == 200, passed.text
    assert len(mock_vendors.creations(mark, "stripe", "/v1/payment_intents")) == 1
    assert spent(vendor_gateway, agent) == (1_100_000, 0)
    error = mismatch(pay(http, key, 20, approval_id))  # a second use
    assert error["state"] == "used"
    assert len(mock_vendors.since(mark)) == 1
    used = vendor_gateway.admin.get(f"/admin/v1/approvals/{approval_id}").json()
    assert (used["state"], used["used_by"]) == ("used", passed.headers["X-Outlay-Request-Id"])
    codes = [e["code"] for e in vendor_gateway.audit(f"agent:{agent}")]
    assert codes == ["approval_mismatch", "approved_overage", "approval_mismatch",
                     "approval_required", None]


def test_an_rpm_approval_does_not_clear_a_budget_breach(
        vendor_gateway: Gateway, mock_vendors: MockVendors, http: httpx.Client) -> None:
    agent = unique("rpm-approval")
    vendor_gateway.set_policy(f"agent:{agent}", HELD)
    minted = vendor_gateway.mint_key(agent, policy={"on_breach": "require_approval", "rpm": 1})
    other = vendor_gateway.mint_key(agent)["key"]
    assert pay(http, minted["key"], 50).status_code == 200
    approval_id = approval_of(pay(http, minted["key"], 20))
    shown = vendor_gateway.admin.get(f"/admin/v1/approvals/{approval_id}").json()
    assert shown["breaches"] == [{"scope": f"key:{minted['id']}",
                                  "code": "rate_limit_exceeded"}]
    approve(vendor_gateway, approval_id)
    assert pay(http, other, 40).status_code == 200  # the agent's budget now has $0.10 left
    mark = mock_vendors.mark()
    error = mismatch(pay(http, minted["key"], 20, approval_id))
    assert (error["differs"], error["breaches"]) == (
        ["breaches"], [{"scope": f"agent:{agent}", "code": "budget_exceeded"}])
    assert mock_vendors.since(mark) == []
    assert spent(vendor_gateway, agent) == (900_000, 0)


def test_calls_racing_on_one_approval_on_two_workers_pass_once(
        vendor_gateway: Gateway, mock_vendors: MockVendors) -> None:
    agent = unique("raced-approval")
    vendor_gateway.set_policy(f"agent:{agent}", HELD)
    key = vendor_gateway.mint_key(agent)["key"]
    with httpx.Client(base_url=vendor_gateway.url, timeout=15) as http:
        assert pay(http, key, 90).status_code == 200
        approval_id = approval_of(pay(http, key, 20))
    approve(vendor_gateway, approval_id)
    mark = mock_vendors.mark()
    statuses: list[int] = []
    start = threading.Barrier(8)

    def racer() -> None:
        # a connection each, so that the calls spread over both workers
        with httpx.Client(base_url=vendor_gateway.url, timeout=15) as own:
            start.wait(10)
            statuses.append(pay(own, key, 20, approval_id).status_code)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(statuses) == [200] + [REFUSED] * 7
    assert len(mock_vendors.creations(mark, "stripe", "/v1/payment_intents")) == 1
    assert spent(vendor_gateway, agent) == (1_100_000, 0)


def test_an_expired_approval_is_refused(request: pytest.FixtureRequest,
                                        tmp_path_factory: pytest.TempPathFactory,
                                        mock_vendors: MockVendors) -> None:
    directory = tmp_path_factory.mktemp("approval-ttl") / "gw"
    doc = vendor_config(mock_vendors, approval_ttl="2s")
    with running(request.config, directory, doc, workers=1) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=15) as http:
        gateway.set_policy("agent:late", HELD)
        key = gateway.mint_key("late")["key"]
        assert pay(http, key, 90).status_code == 200
        approval_id = approval_of(pay(http, key, 20))
        approve(gateway, approval_id)
        time.sleep(2.1)  # past approval_ttl
        mark = mock_vendors.mark()
        error = mismatch(pay(http, key, 20, approval_id))
        assert (error["state"], error["differs"]) == ("expired", ["state"])
        assert mock_vendors.since(mark) == []
        assert gateway.admin.get(f"/admin/v1/approvals/{approval_id}").json()[
            "state"] == "expired"
