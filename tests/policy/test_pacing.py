"""Traffic shaping's pure half: the endpoint a call is admitted on, the provider's refusal
when none has room, a pause, and which refusals are queued; the policy fields that ask."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.policy.decide import decide
from outlay.policy.decision import Admit, Call, KeyInfo, Refuse, ScopeView
from outlay.policy.model import Policy, PolicyError, parse_policy
from outlay.policy.pacing import (
    PAUSE,
    Slot,
    WithSlot,
    decide_paced,
    held,
    parse_limits,
    queue_wait,
)
from outlay.policy.windows import WindowState, check

KEY = KeyInfo("k1", "bot", None, {})
NOW = 1_700_000_000_000
CALL = Call("openai", "gpt-4o-mini", "gpt-4o-mini", cost_micros=0)


def agent(policy: dict[str, Any] | None = None) -> list[ScopeView]:
    return [ScopeView("key:k1", parse_policy(policy) if policy else None)]


def endpoint(n: int, used_rpm: int = 0, rpm: int = 2, pause_until: int | None = None
             ) -> ScopeView:
    windows = {}
    if used_rpm:
        windows["rpm"] = check("rpm", WindowState(), 10**6, used_rpm, NOW).state
    if pause_until is not None:
        windows[PAUSE] = WindowState(pause_until, ())
    return ScopeView(f"endpoint:openai:{n}", Policy(rpm=rpm), windows)


def paced(views: list[ScopeView], slots: list[ScopeView], may_queue: bool = False
          ) -> tuple[Any, str | None]:
    return decide_paced(lambda v: decide(CALL, KEY, v, NOW), views, slots, NOW, may_queue)


def test_the_first_endpoint_with_room_is_chosen_and_counted() -> None:
    decision, chosen = paced(agent(), [endpoint(0, used_rpm=2), endpoint(1)])
    assert isinstance(decision, Admit)
    assert chosen == "endpoint:openai:1"
    assert ("endpoint:openai:1", "rpm") in decision.windows
    assert ("endpoint:openai:0", "rpm") not in decision.windows
    assert decision.limits.requests_limit is None  # the provider's key is not the agent's


def test_no_endpoint_with_room_is_the_providers_refusal_naming_the_soonest() -> None:
    decision, chosen = paced(agent(), [endpoint(0, used_rpm=2),
                                       endpoint(1, pause_until=NOW + 3_500)])
    assert isinstance(decision, Refuse)
    assert chosen is None
    error = decision.error
    assert (error.status, error.code) == (429, "provider_rate_limited")
    assert error.details == {"provider": "openai", "retry_after": 4}
    assert decision.scope == "endpoint:openai:1"
    assert "paused" in error.message
    assert "60 requests" not in error.message
    assert not decision.events  # the agent did nothing wrong: no agent.rate_limited


def test_a_pause_that_ended_is_no_pause() -> None:
    _, chosen = paced(agent(), [endpoint(0, pause_until=NOW), endpoint(1)])
    assert chosen == "endpoint:openai:0"


def test_the_agents_own_refusal_comes_first() -> None:
    views = agent({"rpm": 1})
    views[0] = ScopeView("key:k1", views[0].policy,
                         {"rpm": check("rpm", WindowState(), 1, 1, NOW).state})
    decision, chosen = paced(views, [endpoint(0)])
    assert isinstance(decision, Refuse)
    assert decision.error.code == "rate_limit_exceeded"
    assert chosen is None


def test_without_endpoints_the_decision_is_made_as_ever() -> None:
    decision, chosen = paced(agent({"rpm": 5}), [])
    assert isinstance(decision, Admit)
    assert chosen is None
    assert decision.limits.requests_limit == 5


def test_a_queueing_policy_holds_rate_refusals_with_its_shortest_wait() -> None:
    views = [ScopeView("key:k1", parse_policy({"on_rate_limit": "queue",
                                               "queue_max_wait_s": 12})),
             ScopeView("agent:bot", parse_policy({"on_rate_limit": "queue",
                                                  "queue_max_wait_s": 5})),
             ScopeView("global", parse_policy({"queue_max_wait_s": 1}))]  # rejects
    assert queue_wait(views) == 5
    decision, _ = paced(views, [endpoint(0, used_rpm=2)], may_queue=True)
    assert isinstance(decision, Refuse)
    assert decision.queue_s == 5
    decision, _ = paced(views, [endpoint(0, used_rpm=2)], may_queue=False)
    assert isinstance(decision, Refuse)
    assert decision.queue_s is None
    assert queue_wait(agent()) is None


def test_only_rate_refusals_are_held() -> None:
    views = agent({"on_rate_limit": "queue", "budgets": [{"usd": 0.000001}]})
    refused = decide(Call("openai", "m", "m", cost_micros=5), KEY, views, NOW)
    assert isinstance(refused, Refuse)
    assert refused.error.code == "budget_exceeded"
    assert held(refused, views, True) is refused


def test_endpoint_limits_parse_to_a_policy() -> None:
    assert parse_limits({"rpm": 1, "tpm": 2, "max_parallel": 3}, "x") == Policy(
        rpm=1, tpm=2, max_parallel=3)
    assert parse_limits({}, "x") == Policy()


@pytest.mark.parametrize(("raw", "field"), [
    ({"on_rate_limit": "wait"}, "on_rate_limit"),
    ({"queue_max_wait_s": -1}, "queue_max_wait_s"),
    ({"queue_max_wait_s": 0}, "queue_max_wait_s"),
    ({"queue_max_wait_s": 601}, "queue_max_wait_s"),
    ({"queue_max_wait_s": "30"}, "queue_max_wait_s"),
    ({"queue_max_wait_s": True}, "queue_max_wait_s"),
    ({"queue_max_wait_s": float("nan")}, "queue_max_wait_s"),
])
def test_bad_queue_fields_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError, match=field) as caught:
        parse_policy(raw)
    assert caught.value.field == field


def test_queue_fields_default_round_trip_and_accept_the_bound() -> None:
    assert parse_policy({}).on_rate_limit == "reject"
    assert parse_policy({}).queue_max_wait_s == 30
    policy = parse_policy({"on_rate_limit": "queue", "queue_max_wait_s": 600})
    assert policy.to_dict()["on_rate_limit"] == "queue"
    assert parse_policy(policy.to_dict()) == policy
    assert "queue_max_wait_s" not in parse_policy({"queue_max_wait_s": 30}).to_dict()
    assert parse_policy({"queue_max_wait_s": 0.5}).queue_max_wait_s == 0.5


def test_withslot_is_a_view_of_the_policies_with_the_endpoints_limits() -> None:
    own = {"key:k": Policy(rpm=5), "global": Policy(rpm=9)}
    slot = Slot("endpoint:openai:0", Policy(rpm=60))
    seen = WithSlot(own, slot)
    assert seen.get("endpoint:openai:0") is slot.policy
    assert seen["key:k"] is own["key:k"]
    assert seen.get("vendor:openai") is None
    assert "vendor:openai" not in seen
    assert "endpoint:openai:0" in seen
    assert "global" in seen
    assert dict(seen) == {**own, slot.scope: slot.policy}
    assert len(seen) == 3
    with pytest.raises(KeyError):
        seen["vendor:openai"]
    own["agent:a"] = Policy(rpm=1)  # a view: not a copy made per call
    assert seen.get("agent:a") is own["agent:a"]
    # an endpoint scope the policies name too: the endpoint's limits are what counts
    both = WithSlot({slot.scope: Policy(rpm=1)}, slot)
    assert both[slot.scope] is slot.policy
    assert len(both) == 1
    assert list(both) == [slot.scope]
