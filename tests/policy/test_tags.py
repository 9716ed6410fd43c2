"""X-Outlay-Tags parsing, tag scopes and the policies in force on them (pure)."""

from __future__ import annotations

import pytest

from outlay.policy.errors import BadRequest
from outlay.policy.model import PolicyError, check_scope_policy, parse_policy, parse_scope
from outlay.policy.tags import (
    merged,
    missing_tags,
    parse_tags,
    resolve,
    tracked,
    tracking_period,
    with_wildcards,
)


def test_tags_parse_as_name_value_pairs() -> None:
    assert parse_tags(None) == parse_tags("") == parse_tags("  ") == {}
    assert parse_tags("workflow=nightly-billing, customer=acme") == {
        "workflow": "nightly-billing", "customer": "acme"}
    assert parse_tags("run=r-1,email=a+b@x.io,path=a/b:c") == {
        "run": "r-1", "email": "a+b@x.io", "path": "a/b:c"}
    assert len(parse_tags(",".join(f"t{i}=v" for i in range(8)))) == 8


@pytest.mark.parametrize("header", [
    "x", "x=", "=y", "x=y z", "x=y,x=z", "-x=y", "x=*", "x=é",
    ",".join(f"t{i}=v" for i in range(9)), "n" * 65 + "=v", "x=" + "v" * 129, "x=y,,",
])
def test_malformed_tags_name_the_header(header: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_tags(header)
    assert caught.value.code == "invalid_request"
    assert caught.value.details["param"] == "X-Outlay-Tags"


def test_the_key_s_labels_win() -> None:
    assert merged({"customer": "x", "run": "r"}, {"customer": "acme"}) == {
        "customer": "acme", "run": "r"}


def test_a_value_falls_back_on_its_star_policy() -> None:
    star, own = parse_policy({"rpm": 1}), parse_policy({"rpm": 5})
    policies = {"tag:customer=*": star, "tag:customer=big": own}
    scopes = ("agent:a", "tag:customer=big", "tag:customer=small", "tag:run=r1")
    assert with_wildcards(scopes)[-3:] == ("tag:customer=*", "tag:customer=*", "tag:run=*")
    assert resolve(scopes, policies) == {"tag:customer=big": own, "tag:customer=small": star}
    assert tracked(scopes, policies) == [("customer", "small")]


def test_the_tracking_period_is_the_longest_budget_period() -> None:
    assert tracking_period(parse_policy({"rpm": 1})) == "day"
    assert tracking_period(parse_policy({"budgets": [
        {"usd": 1, "period": "hour"}, {"usd": 5, "period": "month"}]})) == "month"
    assert tracking_period(parse_policy({"budgets": [{"usd": 1, "period": "total"}]})) == "total"


def test_required_tags() -> None:
    policy = parse_policy({"required_tags": ["customer", "run"]})
    assert policy.to_dict()["required_tags"] == ["customer", "run"]
    assert missing_tags([("key:k", policy)], {"customer": "a", "run": "b"}) is None
    refusal = missing_tags([("key:k", policy)], {"customer": "a"})
    assert refusal is not None
    assert (refusal.code, refusal.status, refusal.details) == (
        "missing_tag", 400, {"tag": "run", "scope": "key:k"})


@pytest.mark.parametrize(("scope", "words"), [
    ("agent:*", "only a tag scope"), ("tag:x", "tag:<name>=<value>"),
    ("tag:=v", "tag:<name>=<value>"), ("tag:x=a b", "tag:<name>=<value>"),
    ("tags:x=y", "invalid scope"),
])
def test_bad_tag_scopes(scope: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        parse_scope(scope)


def test_max_values_only_on_a_star_scope() -> None:
    assert parse_scope("tag:customer=*") == "tag:customer=*"
    policy = parse_policy({"max_values": 10})
    assert (policy.values_limit, parse_policy({}).values_limit) == (10, 100_000)
    check_scope_policy("tag:customer=*", policy)
    for scope in ("tag:customer=acme", "agent:a", "key:"):
        with pytest.raises(PolicyError, match="max_values applies only"):
            check_scope_policy(scope, policy)
    for bad in (0, -1, True, "5"):
        with pytest.raises(PolicyError, match="max_values"):
            parse_policy({"max_values": bad})
