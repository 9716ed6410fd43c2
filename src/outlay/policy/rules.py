"""What the decision reads of a policy on every call, worked out once per policy: the rate
windows it sets, its budgets with what each is (hard, shadowed, watched, its counter), the
counters they keep, and whether it has an allow-list or a required tag to check at all.

A Policy is immutable, so its rules never go stale: they are kept with the policy itself,
in its instance dictionary, as `functools.cached_property` keeps what it caches (a new
version of a policy is a new Policy, with rules of its own)."""

from __future__ import annotations

from typing import NamedTuple

from outlay.policy.model import Budget, Flow, Period, Policy
from outlay.policy.windows import REQUEST_WINDOWS


class BudgetRule(NamedTuple):
    """A budget and what the decision asks of it on every call."""

    budget: Budget
    period: Period
    counter: str  # the name its counter is kept under (Budget.counter)
    cap: int
    hard: bool
    shadow: bool  # only reported, never enforced (its own enforce, or its policy's)
    watched: bool  # warns or is soft: settling may raise an event
    flow: Flow


class Rules:
    __slots__ = ("budgets", "counters", "hard_spend", "plain", "windows")

    def __init__(self, policy: Policy) -> None:
        # (name, limit, counts tokens) of each window the policy sets, in decide's order
        self.windows: tuple[tuple[str, int, bool], ...] = tuple(
            (name, limit, name == "tpm") for name in (*REQUEST_WINDOWS, "tpm")
            if (limit := getattr(policy, name)) is not None)
        self.budgets: tuple[BudgetRule, ...] = tuple(
            BudgetRule(b, b.period, b.counter, b.cap_micros, b.mode == "hard",
                       policy.shadows(b), b.warn_at is not None or b.mode == "soft", b.flow)
            for b in policy.budgets)
        # the enforced hard spend budgets: those that may lower a call's maximum output
        self.hard_spend: tuple[BudgetRule, ...] = tuple(
            r for r in self.budgets if r.hard and not r.shadow and r.flow == "spend")
        # (period, counter) of each counter the budgets keep, once each
        self.counters: tuple[tuple[Period, str], ...] = tuple(
            dict.fromkeys((r.period, r.counter) for r in self.budgets))
        # nothing for the allow-list and required-tag checks to look at
        self.plain = (policy.vendors is None and policy.models is None
                      and not policy.free_models_only and not policy.required_tags)


def rules_of(policy: Policy) -> Rules:
    """The policy's rules, worked out on first use."""
    rules = policy.rules
    if isinstance(rules, Rules):
        return rules
    rules = Rules(policy)
    object.__setattr__(policy, "rules", rules)  # a cache beside the frozen fields
    return rules
