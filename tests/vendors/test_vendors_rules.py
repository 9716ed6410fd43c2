"""Configured vendors: fixed cost per call or a field x factor, by method and path glob."""

from __future__ import annotations

import json
from typing import Any

import pytest

from outlay.policy.errors import BadRequest
from outlay.vendors import VendorCall, VendorPricing, pricing_for

RULES: list[dict[str, Any]] = [
    {"method": "POST", "path": "/v1/calls/*", "usd": 0.05},
    {"method": "POST", "path": "/v1/jobs", "field": "units", "factor_usd": 0.01},
    {"method": "POST", "path": "/v1/renders/**", "field": "job.frames", "factor_usd": "0.002"},
    {"method": "*", "path": "/v1/premium/*", "usd": "0.10", "field": "n", "factor_usd": "0.5"},
    {"method": "POST", "path": "/v1/calls/**", "usd": 1},
]


def acme(rules: list[dict[str, Any]] | None = None) -> VendorPricing:
    return pricing_for("acme", {"base_url": "https://api.acme.test", "rules": rules or RULES})


def call(
    path: str,
    body: object = None,
    method: str = "POST",
    content_type: str = "application/json",
) -> VendorCall:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return VendorCall("acme", method, path, content_type, raw, {})


def refused(request: VendorCall) -> str:
    with pytest.raises(BadRequest) as caught:
        acme().estimate(request)
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    param = caught.value.details["param"]
    assert isinstance(param, str)
    return param


def test_fixed_cost_per_call() -> None:
    estimate = acme().estimate(call("/v1/calls/c_1"))
    assert (estimate.cost_micros, estimate.describe) == (50_000, "acme POST /v1/calls/*: $0.05")
    assert estimate.idempotency_key is None


def test_json_field_times_factor() -> None:
    estimate = acme().estimate(call("/v1/jobs", {"units": 3}))
    assert (estimate.cost_micros, estimate.describe) == (
        30_000,
        "acme POST /v1/jobs: units=3 x $0.01",
    )


def test_form_field_times_factor() -> None:
    request = call("/v1/jobs", b"units=12&name=x", content_type="application/x-www-form-urlencoded")
    assert acme().estimate(request).cost_micros == 120_000


def test_body_without_content_type_is_sniffed() -> None:
    assert acme().estimate(call("/v1/jobs", {"units": 2}, content_type="")).cost_micros == 20_000
    assert acme().estimate(call("/v1/jobs", b"units=2", content_type="")).cost_micros == 20_000


def test_nested_json_field() -> None:
    request = call("/v1/renders/a/b", {"job": {"frames": 250}})
    assert acme().estimate(request).cost_micros == 500_000


def test_fixed_plus_field_and_any_method() -> None:
    request = call("/v1/premium/x", {"n": "2.5"}, method="PUT")
    estimate = acme().estimate(request)
    assert estimate.cost_micros == 1_350_000  # 0.10 + 2.5 x 0.5
    assert estimate.describe == "acme * /v1/premium/*: n=2.5 x $0.5 + $0.10"


def test_star_stays_within_a_segment_and_double_star_crosses() -> None:
    pricing = acme()
    assert pricing.estimate(call("/v1/calls/c_1")).cost_micros == 50_000
    # Not /v1/calls/* (two segments) but /v1/calls/**: the first matching rule wins.
    assert pricing.estimate(call("/v1/calls/c_1/recording")).cost_micros == 1_000_000


def test_first_matching_rule_wins() -> None:
    rules = [
        {"method": "POST", "path": "/v1/*", "usd": 1},
        {"method": "POST", "path": "/v1/jobs", "usd": 2},
    ]
    assert acme(rules).estimate(call("/v1/jobs")).cost_micros == 1_000_000


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/calls/c_1"), ("POST", "/v1/call/c_1"), ("POST", "/v2/jobs"), ("POST", "/")],
)
def test_no_match_has_no_price(method: str, path: str) -> None:
    request = call(path, {"units": 5}, method=method)
    estimate = acme().estimate(request)
    assert (estimate.cost_micros, estimate.body) == (None, request.body)
    assert estimate.describe.endswith("no price known")


def test_matching_ignores_case_and_path_disguises() -> None:
    pricing = acme()
    for path in ("/V1/Jobs", "/v1//jobs/", "/v1/x/../jobs", "/v1/j%6Fbs?dry=1"):
        assert pricing.estimate(call(path, {"units": 1})).cost_micros == 10_000


def test_rounds_up_once() -> None:
    rules = [{"method": "POST", "path": "/v1/jobs", "field": "units", "factor_usd": "0.0000001"}]
    assert acme(rules).estimate(call("/v1/jobs", {"units": 3})).cost_micros == 1
    assert acme(rules).estimate(call("/v1/jobs", {"units": 0})).cost_micros == 0
    assert acme(rules).estimate(call("/v1/jobs", {"units": 10.5})).cost_micros == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"units": None},
        {"units": -1},
        {"units": "many"},
        {"units": True},
        {"units": [1]},
        {"units": "1e999"},
        {"units": 1e300},
    ],
)
def test_bad_field_values_are_refused(body: dict[str, Any]) -> None:
    assert refused(call("/v1/jobs", body)) == "units"


def test_field_given_twice_is_refused() -> None:
    form = "application/x-www-form-urlencoded"
    assert refused(call("/v1/jobs", b"units=1&units=1000", content_type=form)) == "units"


def test_actual_is_none() -> None:
    request = call("/v1/calls/c_1")
    assert acme().actual(request, 200, b"{}", acme().estimate(request)) is None


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"rules": None}, r"vendors\.acme\.rules: expected a list"),
        ({"rules": {"method": "POST"}}, "expected a list"),
        ({"rules": ["POST /v1/x"]}, r"rules\[0\]: expected a mapping"),
        ({"rules": [{"method": "POST", "path": "/x", "usd": 1, "cost": 2}]}, "unknown keys"),
        ({"rules": [{"method": "PO ST", "path": "/x", "usd": 1}]}, r"rules\[0\]\.method"),
        ({"rules": [{"path": "/x", "usd": 1}]}, r"\.method"),
        ({"rules": [{"method": "POST", "path": "x", "usd": 1}]}, r"\.path"),
        ({"rules": [{"method": "POST", "path": "/x"}]}, "give `usd`"),
        ({"rules": [{"method": "POST", "path": "/x", "field": "n"}]}, "go together"),
        ({"rules": [{"method": "POST", "path": "/x", "factor_usd": 1}]}, "go together"),
        ({"rules": [{"method": "POST", "path": "/x", "field": "", "factor_usd": 1}]}, r"\.field"),
        ({"rules": [{"method": "POST", "path": "/x", "usd": -1}]}, r"\.usd"),
        ({"rules": [{"method": "POST", "path": "/x", "field": "n", "factor_usd": "a"}]}, "factor"),
    ],
)
def test_bad_rules_are_refused(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pricing_for("acme", config)


@pytest.mark.parametrize("config", [{}, {"rules": []}])
def test_without_rules_no_call_has_a_price(config: dict[str, Any]) -> None:
    assert pricing_for("acme", config).estimate(call("/v1/jobs", {"units": 5})).cost_micros is None


def test_a_rule_of_zero_frees_what_it_matches() -> None:
    pricing = acme([{"method": "GET", "path": "/**", "usd": 0}])
    assert pricing.estimate(call("/v1/jobs", method="GET")).cost_micros == 0
    assert pricing.estimate(call("/v1/jobs")).cost_micros is None
