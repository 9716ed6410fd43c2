"""The loop guard's pure parts: its fields, the request fingerprint and the rolling count."""

from __future__ import annotations

from dataclasses import replace

import pytest

from outlay.policy.approvals import RequestShape, request_shape
from outlay.policy.decide import decide
from outlay.policy.decision import Admit, Call, KeyInfo, Refuse, ScopeView
from outlay.policy.loop_check import Loop, loop_rule, loop_under
from outlay.policy.loop_guard import (
    LoopGuard,
    canonical_body,
    count_repeat,
    fingerprint,
    from_buckets,
)
from outlay.policy.model import Policy, PolicyError, parse_policy
from outlay.policy.windows import WindowState

KEY = KeyInfo("key_1", "bot", None, {})
NOW = 1_700_000_000_000


def test_key_order_and_whitespace_do_not_change_the_fingerprint() -> None:
    a = fingerprint("k", "POST", "/v1/chat/completions",
                    b'{"model": "m", "n": [1, {"b": 2, "a": 1}]}')
    b = fingerprint("k", "post", "/v1/chat/completions",
                    b'{ "n":[1,{"a":1,"b":2}] ,\n "model":"m"}')
    assert a == b


@pytest.mark.parametrize("other", [
    ("k", "POST", "/v1/chat/completions", b'{"model":"m","n":[1,{"a":1,"b":3}]}'),  # a value
    ("k", "POST", "/v1/chat/completions", b'{"model":"m","n":[{"a":1,"b":2},1]}'),  # order
    ("k2", "POST", "/v1/chat/completions", b'{"model":"m","n":[1,{"a":1,"b":2}]}'),  # key
    ("k", "POST", "/v1/responses", b'{"model":"m","n":[1,{"a":1,"b":2}]}'),  # path
    ("k", "PUT", "/v1/chat/completions", b'{"model":"m","n":[1,{"a":1,"b":2}]}'),  # method
])
def test_a_different_value_key_or_route_changes_it(other: tuple[str, str, str, bytes]) -> None:
    base = fingerprint("k", "POST", "/v1/chat/completions", b'{"model":"m","n":[1,{"a":1,"b":2}]}')
    assert fingerprint(*other) != base


def test_form_bodies_compare_by_their_sorted_fields() -> None:
    one = canonical_body(b"amount=500&currency=usd&metadata%5Bx%5D=1")
    two = canonical_body(b"currency=usd&metadata[x]=1&amount=500")
    assert one == two
    assert canonical_body(b"amount=501&currency=usd&metadata[x]=1") != one
    # a name's repeated values keep their order: the list they make differs
    assert canonical_body(b"e[]=a&e[]=b") != canonical_body(b"e[]=b&e[]=a")
    assert canonical_body(b"") == b""
    assert canonical_body(b"\xff\xfe") == b"r\xff\xfe"  # neither JSON nor a form: as sent


def test_exactly_max_repeats_are_admitted_then_refused_until_the_oldest_leaves() -> None:
    guard = LoopGuard(3, 60)
    state, now = WindowState(), NOW
    for _ in range(3):
        seen = count_repeat(guard, state, now)
        assert seen.allowed
        state = seen.state
        now += 1_000
    refused = count_repeat(guard, state, now)
    assert (refused.allowed, refused.repeats) == (False, 3)
    # the first counts from the start of its bucket (1 s wide) for 60 s
    first_bucket_start = NOW // 1000 * 1000
    assert refused.retry_after_ms == first_bucket_start + 60_000 - now
    later = count_repeat(guard, state, now + refused.retry_after_ms)
    assert later.allowed
    assert later.repeats == 2


def test_an_admission_never_counts_longer_than_the_window() -> None:
    guard = LoopGuard(1, 7)  # a bucket of 117 ms: 60 of them span more than the window
    seen = count_repeat(guard, WindowState(), NOW)
    assert count_repeat(guard, seen.state, NOW + 7_000).allowed
    assert not count_repeat(guard, seen.state, NOW + 6_000).allowed


def test_buckets_read_from_a_hash_are_a_window_state() -> None:
    assert from_buckets({}) == WindowState()
    assert from_buckets({5: 2, 7: 1}) == WindowState(7, (2, 0, 1))


@pytest.mark.parametrize(("raw", "field"), [
    ({"max_repeats": 0, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": -1, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": 5, "window_s": 0}, "loop_guard.window_s"),
    ({"max_repeats": 5, "window_s": -60}, "loop_guard.window_s"),
    ({"max_repeats": "5", "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": 5.5, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": True, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": 100_001, "window_s": 60}, "loop_guard.max_repeats"),
    ({"max_repeats": 5, "window_s": 86_401}, "loop_guard.window_s"),
    ({"max_repeats": 5}, "loop_guard.window_s"),
    ({"max_repeats": 5, "window_s": 60, "window": 1}, "loop_guard.window"),
    ([5, 60], "loop_guard"),
    ("20/60", "loop_guard"),
])
def test_a_bad_loop_guard_names_its_field(raw: object, field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"loop_guard": raw})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_on_loop_is_refuse_or_revoke() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"on_loop": "block"})
    assert caught.value.field == "on_loop"
    policy = parse_policy({"loop_guard": {"max_repeats": 20, "window_s": 60},
                           "on_loop": "revoke"})
    assert policy.loop_guard == LoopGuard(20, 60)
    assert policy.to_dict()["loop_guard"] == {"max_repeats": 20, "window_s": 60}
    assert policy.to_dict()["on_loop"] == "revoke"
    assert parse_policy(policy.to_dict()) == policy
    assert "on_loop" not in parse_policy({"loop_guard": {"max_repeats": 1,
                                                         "window_s": 1}}).to_dict()


SHAPE = request_shape("POST", "/v1/chat/completions", b'{"model":"m"}')


def loop_in_force(policies: list[tuple[str, Policy | None]], key_id: str, route: str,
                  shape: RequestShape | None) -> Loop | None:
    """The call's loop guard as the stores work it out: the rule of its scopes' policies,
    then the request under it (None without a rule, or for a request not read)."""
    rule = loop_rule(policies)
    if rule is None or shape is None:
        return None
    return loop_under(rule, key_id, route, shape)


def test_the_tightest_guard_of_the_scopes_applies() -> None:
    policies = [
        ("key:key_1", parse_policy({"loop_guard": {"max_repeats": 10, "window_s": 10}})),
        ("agent:bot", None),
        ("global", parse_policy({"loop_guard": {"max_repeats": 50, "window_s": 600},
                                 "on_loop": "revoke"})),
    ]
    loop = loop_in_force(policies, "key_1", "openai.chat", SHAPE)
    assert loop is not None
    assert (loop.guard, loop.on_loop, loop.scope, loop.shadow) == (
        LoopGuard(10, 600), "revoke", "key:key_1", False)
    assert (loop.route, loop.request) == ("openai.chat", "POST /v1/chat/completions")
    assert loop_in_force([("global", Policy())], "key_1", "openai.chat", SHAPE) is None
    assert loop_in_force(policies, "key_1", "openai.chat", None) is None


def _decide(loop: Loop) -> Admit | Refuse:
    views = [ScopeView("key:key_1", parse_policy({"loop_guard": loop.guard.to_dict()}))]
    return decide(Call("openai", "m", "m"), KEY, views, NOW, loop=loop)


def test_decide_refuses_a_loop_with_its_event_and_counts_an_admission() -> None:
    loop = loop_in_force([("key:key_1", parse_policy(
        {"loop_guard": {"max_repeats": 2, "window_s": 60}}))], "key_1", "openai.chat", SHAPE)
    assert loop is not None
    first = _decide(loop)
    assert isinstance(first, Admit)
    assert first.repeats is not None
    second = _decide(replace(loop, state=first.repeats))
    assert isinstance(second, Admit)
    assert second.repeats is not None
    third = _decide(replace(loop, state=second.repeats))
    assert isinstance(third, Refuse)
    assert (third.error.status, third.error.code) == (429, "loop_detected")
    details = third.error.details
    assert (details["repeats"], details["window_s"], details["max_repeats"]) == (2, 60, 2)
    assert 1 <= details["retry_after"] <= 60
    assert third.error.headers["Retry-After"] == str(details["retry_after"])
    (event,) = third.events
    assert event.type == "agent.loop_detected"
    assert event.data["key_id"] == "key_1"
    assert event.data["repeats"] == 2
    assert event.coalesce == f"agent.loop_detected:key_1:{NOW // 60_000}"


def test_a_shadow_guard_lets_the_loop_through_and_reports_it() -> None:
    policy = parse_policy({"loop_guard": {"max_repeats": 1, "window_s": 60},
                           "enforce": "shadow"})
    loop = loop_in_force([("key:key_1", policy)], "key_1", "openai.chat", SHAPE)
    assert loop is not None
    assert loop.shadow
    state = count_repeat(loop.guard, WindowState(), NOW).state
    again = decide(Call("openai", "m", "m"), KEY, [ScopeView("key:key_1", policy)], NOW,
                   loop=replace(loop, state=state))
    assert isinstance(again, Admit)
    assert again.shadowed == ("loop_detected",)
    assert [e.type for e in again.events] == ["agent.loop_detected.shadow"]
    assert again.repeats is not None
    assert again.repeats.used == 2
