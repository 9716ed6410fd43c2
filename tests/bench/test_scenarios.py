"""The scenarios' table (bench/scenarios.py): which gateways a run starts, with which names.
Nothing is started here."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.bench.test_measure import BENCH, _load

sys.path.insert(0, str(BENCH))  # scenarios imports its neighbours by name
scenarios = _load("scenarios")


def _keys(baselines: list[Path]) -> list[str]:
    return [s.key for s in scenarios.table(quick=True, baselines=baselines)]


def test_no_baseline_adds_no_scenario() -> None:
    assert not [k for k in _keys([]) if "baseline" in k]


def test_one_baseline_runs_beside_each_store() -> None:
    table = scenarios.table(quick=True, baselines=[Path("checkouts/base")])
    named = {s.key: s.title for s in table if "baseline" in s.key}
    assert named == {"outlay-baseline": "Outlay, embedded, baseline",
                     "outlay-redis-pg-baseline": "Outlay, Redis + PostgreSQL, baseline"}


def test_several_baselines_are_numbered_and_named_by_their_folder() -> None:
    table = scenarios.table(quick=True, baselines=[Path("checkouts/a1"), Path("checkouts/b2")])
    named = {s.key: s.title for s in table if "baseline" in s.key}
    assert named["outlay-baseline-1"] == "Outlay, embedded, baseline 1 (a1)"
    assert named["outlay-baseline-2"] == "Outlay, embedded, baseline 2 (b2)"
    assert named["outlay-redis-pg-baseline-2"] == "Outlay, Redis + PostgreSQL, baseline 2 (b2)"
    assert len(named) == 4
