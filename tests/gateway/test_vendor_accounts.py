"""Which vendor account a call's idempotency key belongs to: the configured credential's
(never the credential itself), and Stripe's connected account."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from outlay.gateway.context import Gateway
from outlay.gateway.vendors import vendor_account
from outlay.gateway.wiring import SIMULATED_ACCOUNT, vendor_accounts
from outlay.settings import Settings


def accounts(**vendors: Any) -> dict[str, str]:
    return vendor_accounts(Settings(vendors=vendors))


def test_the_account_is_a_fingerprint_of_the_credential() -> None:
    one = accounts(stripe={"secret": "sk_live_one"}, resend={"api_key": "re_1"})
    assert set(one) == {"stripe", "resend"}
    assert "sk_live_one" not in one["stripe"]
    assert one["stripe"] != accounts(stripe={"secret": "sk_live_two"})["stripe"]
    # the same key at another address is the same account
    assert one["stripe"] == accounts(stripe={"secret": "sk_live_one",
                                             "base_url": "https://proxy.example"})["stripe"]


def test_twilio_is_its_account_sid_and_a_vendor_without_credentials_is_simulated() -> None:
    first = accounts(twilio={"account_sid": "AC1", "auth_token": "t1"})["twilio"]
    rotated = accounts(twilio={"account_sid": "AC1", "auth_token": "t2"})["twilio"]
    assert first == rotated
    assert accounts() == {}
    gw = cast(Gateway, SimpleNamespace(vendor_accounts={}))
    assert vendor_account(gw, "stripe", {}) == SIMULATED_ACCOUNT


def test_a_connected_account_is_an_account_of_its_own() -> None:
    gw = cast(Gateway, SimpleNamespace(vendor_accounts=accounts(stripe={"secret": "sk"})))
    platform = vendor_account(gw, "stripe", {})
    one = vendor_account(gw, "stripe", {"Stripe-Account": "acct_1"})
    assert len({platform, one, vendor_account(gw, "stripe", {"Stripe-Account": "acct_2"})}) == 3
    assert one.startswith(platform)
    assert "acct_1" not in one
    # bytes that are not UTF-8 (aiohttp hands them on as surrogates) are fingerprinted too
    assert vendor_account(gw, "stripe", {"Stripe-Account": "acct_\udcff"}) != platform
    # only Stripe has connected accounts
    assert vendor_account(gw, "resend", {"Stripe-Account": "acct_1"}) == SIMULATED_ACCOUNT
