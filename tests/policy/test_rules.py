"""A policy's rules: worked out once per policy, from that policy alone."""

from __future__ import annotations

from dataclasses import replace

from outlay.policy.model import parse_policy
from outlay.policy.rules import rules_of


def test_the_windows_a_policy_sets_in_the_decisions_order() -> None:
    rules = rules_of(parse_policy({"tpm": 9000, "rpd": 500, "rpm": 10}))
    assert rules.windows == (("rpm", 10, False), ("rpd", 500, False), ("tpm", 9000, True))
    assert rules_of(parse_policy({})).windows == ()


def test_budgets_and_their_counters() -> None:
    policy = parse_policy({"budgets": [
        {"usd": 5, "period": "day"},
        {"usd": 1, "period": "day", "mode": "soft"},
        {"usd": 9, "period": "month", "enforce": "shadow"},
        {"usd": 2, "period": "day", "flow": "out", "warn_at": 0.5},
    ]})
    rules = rules_of(policy)
    assert [(r.counter, r.cap, r.hard, r.shadow, r.watched, r.flow) for r in rules.budgets] == [
        ("day", 5_000_000, True, False, False, "spend"),
        ("day", 1_000_000, False, False, True, "spend"),
        ("month", 9_000_000, True, True, False, "spend"),
        ("day-out", 2_000_000, True, False, True, "out"),
    ]
    assert [r.cap for r in rules.hard_spend] == [5_000_000]
    assert rules.counters == (("day", "day"), ("month", "month"), ("day", "day-out"))


def test_a_shadowed_policy_shadows_every_budget() -> None:
    rules = rules_of(parse_policy({"enforce": "shadow", "budgets": [{"usd": 5}]}))
    assert rules.budgets[0].shadow
    assert rules.hard_spend == ()


def test_plain_means_no_allow_list_and_no_required_tag() -> None:
    assert rules_of(parse_policy({"rpm": 5, "budgets": [{"usd": 5}]})).plain
    for raw in ({"vendors": ["openai"]}, {"models": ["gpt-4o"]}, {"free_models_only": True},
                {"required_tags": ["team"]}):
        assert not rules_of(parse_policy(raw)).plain, raw


def test_worked_out_once_per_policy_and_again_for_a_new_version() -> None:
    policy = parse_policy({"rpm": 5})
    assert rules_of(policy) is rules_of(policy)
    changed = replace(policy, rpm=7)
    assert rules_of(changed).windows == (("rpm", 7, False),)
    assert rules_of(policy).windows == (("rpm", 5, False),)
    assert changed == parse_policy({"rpm": 7})  # what is kept is no part of the value
    assert hash(policy) == hash(parse_policy({"rpm": 5}))
