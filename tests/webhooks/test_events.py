"""The event types, endpoint URL and filter checks, and the payload shape (SPEC §5)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from outlay.webhooks.events import (
    EVENT_TYPES,
    WebhookError,
    check_events,
    check_url,
    matches,
    payload,
)


def test_the_event_types_of_the_spec() -> None:
    assert set(EVENT_TYPES) == {
        "budget.warning", "budget.exceeded", "agent.rate_limited", "key.revoked",
        "key.expired", "approval.requested", "approval.decided", "provider.unhealthy",
        "provider.recovered", "budget.exceeded.shadow", "agent.rate_limited.shadow",
        "budget.downgraded", "agent.loop_detected", "agent.loop_detected.shadow"}


@pytest.mark.parametrize("url", ["https://hooks.example.com/outlay",
                                 "http://127.0.0.1:9000/h?x=1", " https://a.b/ "])
def test_good_urls(url: str) -> None:
    assert check_url(url) == url.strip()


@pytest.mark.parametrize("url", [None, "", "   ", 5, "ftp://a.b/x", "hooks.example.com/x",
                                 "https:///nohost", "http://a.b:99999/", "http://a b/",
                                 "https://a.b/" + "x" * 3000])
def test_bad_urls(url: object) -> None:
    with pytest.raises(WebhookError) as caught:
        check_url(url)
    assert caught.value.param == "url"


def test_event_filters() -> None:
    assert check_events(None) == ["*"]
    assert check_events([]) == ["*"]
    assert check_events(["budget.warning", "*"]) == ["*"]
    assert check_events(["key.revoked", "budget.warning", "key.revoked"]) == [
        "key.revoked", "budget.warning"]
    for bad in ("budget.warning", ["budget.warnings"], [1], {"budget.warning": 1},
                ["webhook.test"]):
        with pytest.raises(WebhookError) as caught:
            check_events(bad)
        assert caught.value.param == "events"


def test_matching() -> None:
    assert matches(["*"], "key.revoked")
    assert matches([], "key.revoked")
    assert matches(["key.revoked"], "key.revoked")
    assert not matches(["key.expired"], "key.revoked")


def test_payload_shape() -> None:
    body = payload("evt_1", "budget.warning", 1_749_988_800_000,
                   {"scope": "agent:a", "spent_usd": Decimal("8.50"), "percent_used": 85})
    assert json.loads(body) == {
        "id": "evt_1", "type": "budget.warning", "created_at": "2025-06-15T12:00:00Z",
        "data": {"scope": "agent:a", "spent_usd": "8.50", "percent_used": 85}}
    assert " " not in body  # compact: the bytes signed are the bytes sent


def test_payload_refuses_what_json_cannot_say() -> None:
    with pytest.raises(TypeError, match="object"):
        payload("evt_1", "key.revoked", 0, {"x": object()})
