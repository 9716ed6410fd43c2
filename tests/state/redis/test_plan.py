"""The views precheck reads are kept per list of scopes, for the policies they were made
from only: new policies, or a call's own resolved ones, are never answered from the keep."""

from __future__ import annotations

from outlay.policy.decision import ScopeView
from outlay.policy.model import Policy
from outlay.state.redis.plan import PolicyViews

SCOPES = ("key:k", "agent:a", "global")


def test_the_views_of_a_list_are_made_once_under_the_same_policies() -> None:
    own = {"agent:a": Policy(rpm=5)}
    keep = PolicyViews()
    first = keep.of(SCOPES, own, own)
    assert list(first) == [ScopeView(s, own.get(s)) for s in SCOPES]
    assert keep.of(SCOPES, own, own) is first


def test_new_policies_make_new_views() -> None:
    keep = PolicyViews()
    old = {"agent:a": Policy(rpm=5)}
    keep.of(SCOPES, old, old)
    new = {"agent:a": Policy(rpm=7)}
    assert [v.policy for v in keep.of(SCOPES, new, new)] == [None, Policy(rpm=7), None]


def test_a_calls_own_resolved_policies_are_never_kept() -> None:
    own = {"agent:a": Policy(rpm=5)}
    keep = PolicyViews()
    kept = keep.of(SCOPES, own, own)
    resolved = {**own, "global": Policy(rpm=1)}
    views = keep.of(SCOPES, resolved, own)
    assert [v.policy for v in views] == [None, Policy(rpm=5), Policy(rpm=1)]
    assert keep.of(SCOPES, own, own) is kept


def test_at_most_limit_lists_are_kept() -> None:
    own: dict[str, Policy] = {}
    keep = PolicyViews()
    keep.LIMIT = 3
    for i in range(10):
        keep.of((f"key:{i}",), own, own)
        assert len(keep._views) <= 3
