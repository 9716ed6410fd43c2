"""The waiting calls' order: arrival order within an agent, round-robin across agents, a
bound on how many wait, and calls that leave."""

from __future__ import annotations

import pytest

from outlay.policy.fair_queue import FairQueue


def drain(queue: FairQueue[str], owner: dict[str, str]) -> list[str]:
    """Serve the first turn each time until nothing waits: the order calls get room in."""
    order = []
    while turns := queue.turns():
        first = turns[0]
        queue.served(owner[first], first)
        order.append(first)
    return order


def test_a_busy_agent_does_not_starve_the_others() -> None:
    queue: FairQueue[str] = FairQueue(100)
    owner = {}
    for i in range(5):  # agent a queues five calls before b and c queue one each
        owner[f"a{i}"] = "a"
        assert queue.join("a", f"a{i}")
    for name in ("b0", "c0"):
        owner[name] = name[0]
        assert queue.join(name[0], name)
    assert drain(queue, owner) == ["a0", "b0", "c0", "a1", "a2", "a3", "a4"]


def test_round_robin_keeps_arrival_order_within_each_agent() -> None:
    queue: FairQueue[str] = FairQueue(100)
    owner = {}
    for i in range(3):
        for agent in ("x", "y"):
            owner[f"{agent}{i}"] = agent
            queue.join(agent, f"{agent}{i}")
    assert drain(queue, owner) == ["x0", "y0", "x1", "y1", "x2", "y2"]


def test_turns_are_each_agents_first_call_only() -> None:
    queue: FairQueue[str] = FairQueue(10)
    queue.join("a", "a0")
    queue.join("a", "a1")
    queue.join("b", "b0")
    assert queue.turns() == ["a0", "b0"]


def test_the_queue_is_bounded() -> None:
    queue: FairQueue[str] = FairQueue(2)
    assert queue.join("a", "1")
    assert queue.join("b", "2")
    assert not queue.join("c", "3")
    assert len(queue) == 2
    queue.leave("a", "1")
    assert queue.join("c", "3")


def test_a_call_that_leaves_frees_its_place_and_keeps_the_others_order() -> None:
    queue: FairQueue[str] = FairQueue(10)
    for name in ("a0", "a1", "a2"):
        queue.join("a", name)
    assert queue.leave("a", "a1")
    assert not queue.leave("a", "a1")  # once
    assert not queue.leave("nobody", "a0")
    assert len(queue) == 2
    assert drain(queue, {"a0": "a", "a2": "a"}) == ["a0", "a2"]
    assert len(queue) == 0
    assert queue.turns() == []


def test_an_agent_whose_last_call_leaves_rejoins_at_the_end_of_the_round() -> None:
    queue: FairQueue[str] = FairQueue(10)
    queue.join("a", "a0")
    queue.join("b", "b0")
    queue.leave("a", "a0")
    queue.join("a", "a1")
    assert queue.turns() == ["b0", "a1"]


def test_a_zero_limit_queues_nothing_and_a_negative_one_is_refused() -> None:
    assert not FairQueue[str](0).join("a", "x")
    with pytest.raises(ValueError, match="limit"):
        FairQueue[str](-1)
