"""`decide` makes the very decision it made before its per-call work was cut down
(tests/policy/decide_before.py), on random policies, counters, windows and calls: every
admission, refusal, hold, event and header figure the same."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from outlay.policy.decide import decide
from outlay.policy.decision import Call, Clamp, Counter, Grant, KeyInfo, ScopeView
from outlay.policy.model import Budget, Policy, counter_name
from outlay.policy.periods import period_bounds
from outlay.policy.windows import BUCKETS, WindowState, bucket_of
from tests.policy import decide_before

NOW = 1_710_417_600_000 + 12_345  # 2024-03-14T12:00:12.345Z
KEY = KeyInfo("key_1", "bot", "fleet", {})
SCOPES = ("key:key_1", "agent:bot", "group:fleet", "endpoint:openai:0", "vendor:openai")
PERIODS = ("hour", "day", "month", "total")
CODES = ("budget_exceeded", "rate_limit_exceeded", "token_rate_limit_exceeded",
         "concurrency_limit_exceeded", "hourly_rate_limit_exceeded")

budgets = st.builds(
    Budget, st.sampled_from((0, 1_000, 5_000, 9_000)), st.sampled_from(PERIODS),
    st.sampled_from(("hard", "soft")), st.none() | st.just(0.5),
    st.sampled_from(("enforce", "enforce", "shadow")),
    st.sampled_from(((), ("gpt-4o-mini",))), st.sampled_from(("spend", "spend", "out")))
limits = st.sampled_from((None, None, None, 0, 1, 60, 150))
policies = st.builds(
    Policy, rpm=limits, rph=limits, rpd=limits, tpm=st.sampled_from((None, None, 0, 500, 9_000)),
    max_parallel=st.sampled_from((None, None, None, 0, 2, 9)),
    budgets=st.lists(budgets, max_size=3).map(tuple),
    vendors=st.sampled_from((*(None,) * 14, ("openai",), ("stripe",))),
    on_breach=st.sampled_from(("block", "alert", "require_approval")),
    clamp_max_tokens=st.none() | st.integers(0, 500),
    hold_wait_ms=st.none() | st.integers(0, 2_000),
    enforce=st.sampled_from(("enforce", "enforce", "shadow")))


@st.composite
def views(draw: st.DrawFn, now: int) -> list[ScopeView]:
    out = []
    rates = draw(st.booleans())  # else budgets alone: most decisions reach them
    for scope in SCOPES:
        policy = draw(st.none() | policies)
        if policy is not None and not rates:
            policy = replace(policy, rpm=None, rph=None, rpd=None, tpm=None,
                             max_parallel=None, vendors=None)
        if policy is None:
            out.append(ScopeView(scope, None))
            continue
        windows = {}
        for name in ("rpm", "rph", "rpd", "tpm"):
            if draw(st.booleans()):
                lag = draw(st.integers(-2, BUCKETS + 2))
                counts = draw(st.lists(st.integers(0, 3 if name != "tpm" else 200),
                                       max_size=BUCKETS + 1))
                windows[name] = WindowState(bucket_of(name, now) - lag, tuple(counts))
        counters = {}
        for budget in policy.budgets:
            start = period_bounds(budget.period, now)[0] - draw(st.sampled_from((0, 0, 1)))
            counters[counter_name(budget.period, budget.flow)] = Counter(
                start, draw(st.sampled_from((0, 500, 2_000, 6_000))),
                draw(st.sampled_from((0, 300, 3_000))))
        out.append(ScopeView(scope, policy, windows, draw(st.integers(0, 4)), counters))
    return out


calls = st.builds(
    Call, st.sampled_from(("openai", "openai", "stripe")), st.just("gpt-4o-mini"),
    st.just("gpt-4o-mini"),
    cost_micros=st.sampled_from((0, 100, 1_500, 3_000, None)), tokens=st.integers(0, 2_000),
    clamp=st.none() | st.builds(Clamp, st.sampled_from((0, 10**8)),
                                st.sampled_from((0, 300_000, 700_000)),
                                st.sampled_from((1_000, 4_096)), st.integers(1, 2),
                                st.sampled_from((None, None, 0, 64)), st.booleans()),
    flow=st.sampled_from(("spend", "spend", "out")))
grants = st.none() | st.builds(
    Grant, st.just("apr_1"),
    st.frozensets(st.tuples(st.sampled_from(SCOPES), st.sampled_from(CODES))))


def outcome(decision_of: Any, *args: Any) -> Any:
    """A decision as plain values (an error's class, code, message and details; a hold's
    `watched` too, which its equality leaves out), or the exception it raised."""
    try:
        decision = decision_of(*args)
    except Exception as exc:  # the same failure is the same decision
        return ("raised", type(exc), str(exc))
    fields = {name: getattr(decision, name) for name in decision.__dataclass_fields__}
    error = fields.pop("error", None)
    if error is not None:
        fields["error"] = (type(error), error.code, error.message, error.details)
    if "holds" in fields:
        fields["watched"] = [hold.watched for hold in fields["holds"]]
    return type(decision), fields


@settings(max_examples=600, deadline=None)
@given(st.data(), calls, grants, st.booleans(), st.integers(0, 90 * 86_400_000))
def test_the_decision_is_the_one_made_before(data: st.DataObject, call: Call,
                                             grant: Grant | None, may_wait: bool,
                                             later: int) -> None:
    now = NOW + later
    seen = data.draw(views(now))
    assert outcome(decide, call, KEY, seen, now, None, (), grant, may_wait) == outcome(
        decide_before.decide, call, KEY, seen, now, None, (), grant, may_wait)
