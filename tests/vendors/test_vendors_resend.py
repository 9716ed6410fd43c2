"""Resend: the price per email x every recipient, for one email or a batch."""

from __future__ import annotations

import json

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, VendorPricing, pricing_for

JSON = "application/json"


def resend(**config: object) -> VendorPricing:
    return pricing_for("resend", {"usd_per_email": "0.001", **config})


def call(
    payload: object = None,
    path: str = "/emails",
    method: str = "POST",
    content_type: str = JSON,
    headers: dict[str, str] | None = None,
) -> VendorCall:
    body = b"" if payload is None else json.dumps(payload).encode()
    return VendorCall("resend", method, path, content_type, body, headers or {})


def email(**fields: object) -> dict[str, object]:
    return {"from": "Acme <ops@acme.test>", "subject": "Hi", "html": "<p>Hi</p>", **fields}


def refused(request: VendorCall) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        resend().estimate(request)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    return caught.value


def test_to_as_a_string_is_one_recipient() -> None:
    estimate = resend().estimate(call(email(to="a@example.com")))
    assert (estimate.cost_micros, estimate.describe) == (1_000, "email to 1 recipient")


def test_to_cc_and_bcc_all_count() -> None:
    payload = email(to=["a@x.test", "b@x.test"], cc="c@x.test", bcc=["d@x.test", "e@x.test"])
    estimate = resend().estimate(call(payload))
    assert (estimate.cost_micros, estimate.describe) == (5_000, "email to 5 recipients")


def test_null_cc_and_bcc_count_nothing() -> None:
    assert resend().estimate(call(email(to="a@x.test", cc=None, bcc=[]))).cost_micros == 1_000


def test_shipped_price_per_email() -> None:
    pricing = pricing_for("resend", {})
    assert pricing.estimate(call(email(to=["a@x.test", "b@x.test"]))).cost_micros == 1_800


def test_comma_separated_string_counts_each_address() -> None:
    assert resend().estimate(call(email(to="a@x.test, b@x.test,c@x.test"))).cost_micros == 3_000
    quoted = email(to='"Doe, Jane" <jane@x.test>', cc="Ops <ops@x.test>, <b@x.test>")
    assert resend().estimate(call(quoted)).cost_micros == 3_000


def test_batch_counts_every_email_and_every_recipient() -> None:
    batch = [
        email(to="a@x.test"),
        email(to="b@x.test", cc=["c@x.test"]),
        email(to=["d@x.test", "e@x.test"], bcc="f@x.test"),
    ]
    estimate = resend().estimate(call(batch, path="/emails/batch"))
    assert estimate.cost_micros == 6_000
    assert estimate.describe == "email batch of 3, 6 recipients"


def test_batch_of_100_is_accepted_and_101_refused() -> None:
    hundred = [email(to="a@x.test")] * 100
    assert resend().estimate(call(hundred, path="/emails/batch")).cost_micros == 100_000
    error = refused(call([*hundred, email(to="a@x.test")], path="/emails/batch"))
    assert "at most 100" in error.message


@pytest.mark.parametrize("payload", [[], {"to": "a@x.test"}, "a@x.test"])
def test_batch_must_be_a_non_empty_array(payload: object) -> None:
    refused(call(payload, path="/emails/batch"))


def test_batch_errors_name_the_email() -> None:
    error = refused(call([email(to="a@x.test"), "nope"], path="/emails/batch"))
    assert error.details["param"] == "[1]"
    error = refused(call([email(to="a@x.test"), email(to="b@x.test"), email()], "/emails/batch"))
    assert error.details["param"] == "[2].to"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({}, "to"),
        ({"to": []}, "to"),
        ({"to": [""]}, "to"),
        ({"to": [1]}, "to"),
        ({"to": 5}, "to"),
        ({"to": "a@x.test", "cc": {"a": 1}}, "cc"),
        ({"to": "a@x.test", "bcc": [None]}, "bcc"),
    ],
)
def test_bad_recipients_are_refused(fields: dict[str, object], param: str) -> None:
    assert refused(call(email(**fields))).details["param"] == param


def test_bodies_that_are_not_one_json_email_are_refused() -> None:
    refused(call([email(to="a@x.test")]))
    refused(VendorCall("resend", "POST", "/emails", JSON, b"{bad", {}))
    refused(VendorCall("resend", "POST", "/emails", JSON, b'{"to": "a@x.test", "to": "b"}', {}))
    refused(call(email(to="a@x.test"), content_type="application/x-www-form-urlencoded"))


def test_idempotency_key_is_surfaced() -> None:
    request = call(email(to="a@x.test"), headers={"idempotency-key": "welcome/42"})
    assert resend().estimate(request).idempotency_key == "welcome/42"
    batch = call([email(to="a@x.test")], path="/emails/batch", headers={"idempotency-key": "b"})
    assert resend().estimate(batch).idempotency_key == "b"
    too_long = call(email(to="a@x.test"), headers={"idempotency-key": "k" * 257})
    assert refused(too_long).details["param"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/emails/4ef9a417"),
        ("GET", "/emails"),
        ("PATCH", "/emails/4ef9a417"),
        ("POST", "/emails/4ef9a417/cancel"),
        ("POST", "/domains"),
        ("POST", "/api-keys"),
    ],
)
def test_other_endpoints_are_free(method: str, path: str) -> None:
    request = call({"name": "x"}, path=path, method=method)
    estimate = resend().estimate(request)
    assert (estimate.cost_micros, estimate.body, estimate.idempotency_key) == (
        0,
        request.body,
        None,
    )


def test_paths_are_normalised_before_matching() -> None:
    for path in ("/emails/", "/Emails", "/emails/batch/", "//emails"):
        payload = [email(to="a@x.test")] if "batch" in path else email(to="a@x.test")
        assert resend().estimate(call(payload, path=path)).cost_micros == 1_000


def test_actual_is_none() -> None:
    request = call(email(to="a@x.test"))
    estimate = resend().estimate(request)
    assert resend().actual(request, 200, b'{"id": "4ef9a417"}', estimate) is None


@pytest.mark.parametrize("price", [-0.001, "free", True])
def test_bad_price_config_is_refused(price: object) -> None:
    with pytest.raises(ValueError, match=r"vendors\.resend\.usd_per_email"):
        pricing_for("resend", {"usd_per_email": price})


@pytest.mark.parametrize(("body", "cost"), [
    (b'{"segment_id": "s", "from": "a@b.co", "subject": "x"}', 0),
    (b'{"segment_id": "s", "from": "a@b.co", "subject": "x", "send": false}', 0),
    (b"", 0),
    (b'{"segment_id": "s", "from": "a@b.co", "subject": "x", "send": true}', None),
])
def test_a_broadcast_is_free_as_a_draft_and_unpriced_when_sent(
        body: bytes, cost: int | None) -> None:
    request = VendorCall("resend", "POST", "/broadcasts", "application/json", body, {})
    assert pricing_for("resend", {}).estimate(request).cost_micros == cost


@pytest.mark.parametrize("body", [b'{"send": "yes"}', b"[]"])
def test_a_broadcast_whose_sending_cannot_be_read_is_refused(body: bytes) -> None:
    request = VendorCall("resend", "POST", "/broadcasts", "application/json", body, {})
    with pytest.raises(BadRequest):
        pricing_for("resend", {}).estimate(request)
