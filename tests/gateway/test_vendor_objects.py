"""Calls on Stripe payments in process, with a scripted Stripe: every way pricing one on its
object can fail refuses the call before anything is reserved or sent, a record that keeps
changing is priced again (a bounded number of times), and a settlement the store cannot
take leaves the money held."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from outlay.gateway import vendor_objects
from outlay.gateway.app import create_app
from outlay.settings import Settings
from outlay.state.base import StateError
from outlay.state.exposure import ObjectMoved

from .conftest import AsServed
from .fakes import ADMIN, ADMIN_TOKEN, FakeUpstream, ManualClock, Reply, WatchedStore, price_table

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def intent(amount: int = 2000, status: str = "requires_capture", received: int = 0,
           object_id: str = "pi_1") -> bytes:
    return json.dumps({"object": "payment_intent", "id": object_id, "amount": amount,
                       "currency": "usd", "amount_received": received,
                       "status": status}).encode()


class Harness:
    def __init__(self, client: TestClient[Any, Any], store: WatchedStore,
                 stripe: FakeUpstream) -> None:
        self.client, self.store, self.stripe = client, store, stripe

    async def key(self, usd: int = 100) -> str:
        await self.client.put("/admin/v1/policies/agent:payer", headers=ADMIN, json={
            "budgets": [{"usd": usd, "period": "total", "mode": "hard"}]})
        answer = await self.client.post("/admin/v1/keys", headers=ADMIN,
                                        json={"agent": "payer"})
        minted: dict[str, Any] = await answer.json()
        return str(minted["key"])

    async def post(self, key: str, path: str, form: str = "") -> Any:
        return await self.client.post(f"/vendors/stripe{path}", data=form,
                                      headers={"Authorization": f"Bearer {key}", **FORM})

    async def spent(self) -> tuple[Decimal, Decimal]:
        answer = await self.client.get("/admin/v1/usage/agent:payer", headers=ADMIN)
        (budget,) = (await answer.json())["budgets"]
        return Decimal(budget["spent_usd"]), Decimal(budget["reserved_usd"])

    async def audit(self) -> list[dict[str, Any]]:
        answer = await self.client.get("/admin/v1/audit?scope=agent:payer", headers=ADMIN)
        entries: list[dict[str, Any]] = (await answer.json())["entries"]
        return entries


@pytest.fixture
async def gw(aiohttp_client: AiohttpClient, tmp_path: Path) -> Harness:
    settings = Settings(state=f"sqlite:///{tmp_path / 'outlay.db'}", admin_token=ADMIN_TOKEN,
                        vendors={"stripe": {"secret": "sk_test_gw", "accounts": "any"}})
    clock = ManualClock()
    store = WatchedStore(str(tmp_path / "outlay.db"), clock=clock)
    stripe = FakeUpstream()
    app = create_app(settings, store=store, upstream=FakeUpstream(), vendors=stripe,
                     prices=price_table(), clock=clock)
    client = await aiohttp_client(AsServed(app))
    await store.init_admin_token(settings.admin_token)
    return Harness(client, store, stripe)


@pytest.mark.parametrize(
    "read",
    [Reply(unreachable=True), Reply(broken=True), Reply(status=503, body=b"{}"),
     Reply(body=b"not json"), Reply(body=b'{"object": "customer", "id": "cus_1"}'),
     Reply(status=302, body=b"")],
    ids=["unreachable", "broken", "5xx", "not-json", "not-an-intent", "redirect"])
async def test_an_object_whose_read_fails_is_refused_before_the_call(
        gw: Harness, read: Reply) -> None:
    key = await gw.key()
    gw.stripe.script(read)
    answer = await gw.post(key, "/v1/payment_intents/pi_1/capture")
    assert answer.status == 502, await answer.text()
    error = (await answer.json())["error"]
    assert error["code"] == "upstream_unavailable"
    assert "pi_1" in error["message"]
    assert [(r.method, r.path) for r in gw.stripe.requests] == [
        ("GET", "/v1/payment_intents/pi_1")]
    assert "Authorization" not in gw.stripe.requests[0].headers  # the upstream adds its own
    assert await gw.spent() == (0, 0)
    (entry,) = await gw.audit()
    assert (entry["decision"], entry["status"]) == ("invalid", 502)


async def test_the_read_carries_the_connected_account(gw: Harness) -> None:
    key = await gw.key()
    gw.stripe.script(Reply(body=intent()), Reply(body=intent()))
    answer = await gw.client.post("/vendors/stripe/v1/payment_intents/pi_1/capture", headers={
        "Authorization": f"Bearer {key}", "Stripe-Account": "acct_9"})
    assert answer.status == 200
    read, call = gw.stripe.requests
    assert (read.method, read.headers) == ("GET", {"Stripe-Account": "acct_9"})
    assert call.headers["Stripe-Account"] == "acct_9"
    assert await gw.store.vendor_object("stripe", "acct_9/pi_1") is not None
    assert await gw.store.vendor_object("stripe", "pi_1") is None


async def test_a_store_that_fails_refuses_the_call_503(
        gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await gw.key()

    async def failing(*args: Any) -> None:
        raise StateError("disk gone")

    monkeypatch.setattr(gw.store, "vendor_object", failing)
    answer = await gw.post(key, "/v1/payment_intents/pi_1/cancel")
    assert answer.status == 503
    assert (await answer.json())["error"]["code"] == "enforcement_unavailable"
    assert gw.stripe.requests == []


async def test_a_key_the_store_cannot_look_up_is_never_read_for(
        gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await gw.key()

    async def failing(*args: Any) -> None:
        raise StateError("disk gone")

    monkeypatch.setattr(gw.store, "key_by_hash", failing)
    answer = await gw.post(key, "/v1/payment_intents/pi_1/cancel")
    assert answer.status == 503
    assert gw.stripe.requests == []


async def test_a_record_that_changed_is_priced_again(
        gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await gw.key()
    gw.stripe.script(Reply(body=intent(status="requires_payment_method")))
    created = await gw.post(key, "/v1/payment_intents", "amount=2000&currency=usd")
    assert created.status == 200
    real = gw.store.reserve_exposure
    tries: list[int] = []

    async def moved_once(ticket: Any, claim: Any) -> Any:
        tries.append(claim.version)
        if len(tries) == 1:
            raise ObjectMoved(claim.object_id)
        return await real(ticket, claim)

    monkeypatch.setattr(gw.store, "reserve_exposure", moved_once)
    gw.stripe.script(Reply(body=intent(amount=3000, status="requires_payment_method")))
    answer = await gw.post(key, "/v1/payment_intents/pi_1", "amount=3000")
    assert answer.status == 200
    assert len(tries) == 2
    assert await gw.spent() == (30, 0)


async def test_a_record_that_never_settles_down_is_refused_503(
        gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await gw.key()
    gw.stripe.default = Reply(body=intent())  # each pricing reads the object again
    tries = 0

    async def always_moved(ticket: Any, claim: Any) -> Any:
        nonlocal tries
        tries += 1
        raise ObjectMoved(claim.object_id)

    monkeypatch.setattr(gw.store, "reserve_exposure", always_moved)
    answer = await gw.post(key, "/v1/payment_intents/pi_1/capture")
    assert answer.status == 503
    assert "kept changing" in (await answer.json())["error"]["message"]
    assert tries == vendor_objects.MAX_PRICINGS
    assert [r.method for r in gw.stripe.requests] == ["GET"] * vendor_objects.MAX_PRICINGS


async def test_a_settlement_the_store_cannot_take_leaves_the_money_held(
        gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await gw.key()

    async def failing(*args: Any) -> None:
        raise StateError("disk gone")

    monkeypatch.setattr(gw.store, "settle_exposure", failing)
    gw.stripe.script(Reply(body=intent(status="requires_payment_method")))
    answer = await gw.post(key, "/v1/payment_intents", "amount=2000&currency=usd")
    assert answer.status == 200
    assert "X-Outlay-Cost-USD" not in answer.headers
    assert await gw.spent() == (0, 20)  # held, for the reaper to charge


@pytest.mark.parametrize(
    ("reply", "settled", "spent"),
    [(Reply(broken=True), "unsettled", 20), (Reply(unreachable=True), "void", 0),
     (Reply(status=500, body=b"{}"), "unsettled", 20),
     (Reply(status=402, body=b"{}"), "void", 0), (Reply(body=b"{}"), "settled", 20)],
    ids=["broken", "unreachable", "5xx", "4xx", "2xx-showing-nothing"])
async def test_a_create_settles_as_stripe_answers(
        gw: Harness, reply: Reply, settled: str, spent: int) -> None:
    key = await gw.key()
    gw.stripe.script(reply)
    await gw.post(key, "/v1/payment_intents", "amount=2000&currency=usd")
    assert await gw.spent() == (spent, 0)
    (entry,) = await gw.audit()
    assert entry["settlement"] == settled


async def test_a_partial_capture_says_what_it_gave_back(gw: Harness) -> None:
    key = await gw.key()
    gw.stripe.script(Reply(body=intent()))
    created = await gw.post(key, "/v1/payment_intents",
                            "amount=2000&currency=usd&capture_method=manual")
    assert created.headers["X-Outlay-Cost-USD"] == "20"
    gw.stripe.script(Reply(body=intent(status="succeeded", received=500)))
    captured = await gw.post(key, "/v1/payment_intents/pi_1/capture", "amount_to_capture=500")
    assert captured.status == 200
    assert (captured.headers["X-Outlay-Cost-USD"], captured.headers["X-Outlay-Returned-USD"]) == (
        "0", "15")
    assert "X-Outlay-Reserved-USD" not in captured.headers
    assert await gw.spent() == (5, 0)
    metrics = await (await gw.client.get("/metrics")).text()
    assert 'outlay_vendor_returned_usd_total{vendor="stripe"} 15' in metrics
