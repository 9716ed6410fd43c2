"""The Redis plan's pure half: the views precheck reads, kept per list of scopes for the
policies they were made from only (new policies, or a call's own resolved ones, are never
answered from the keep), and a window's counts read from the reservation script's reply."""

from __future__ import annotations

from outlay.policy.decision import ScopeView
from outlay.policy.model import Policy
from outlay.state.redis.plan import PolicyViews
from outlay.state.redis.windows import integers, seen_window

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


def test_a_window_read_from_the_scripts_string() -> None:
    # bucket 1000, the sum of the 59 before it, its count, then those 59 newest first:
    # 7 in bucket 1000, 1 in bucket 941
    window = seen_window(" ".join(["1000", "1", "7", *["0"] * 58, "1"]))
    assert window.newest == 1000
    assert window.counts == (1,) + (0,) * 58 + (7,)
    assert window.used == 8
    assert seen_window(b"5 0 3 " + b"0 " * 58 + b"0").counts == (0,) * 59 + (3,)


def test_integers_past_64_bits_are_read_exactly() -> None:
    assert integers(f"1 {2**64} 2") == [1, 2**64, 2]
    assert integers(f"{2**70} -{2**66}") == [2**70, -(2**66)]


def test_integers_json_would_refuse_are_read_as_integers() -> None:
    assert integers("007 1") == [7, 1]
