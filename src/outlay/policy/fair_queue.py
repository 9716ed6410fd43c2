"""The order calls waiting for room are served in (`on_rate_limit: queue`), pure: arrival
order within an agent, round-robin across agents, so one busy agent cannot starve the
others; bounded, so a flood of waiting calls is refused at once rather than held.

Only the first waiting call of each agent may be tried (`turns`), in the order of the round;
an agent served (`served`) goes to the end of the round. A call that leaves (its wait over,
its client gone) leaves no trace."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class FairQueue(Generic[T]):
    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("a queue's limit must not be negative")
        self.limit = limit
        # each agent's waiting calls in arrival order; the agents in the order of the round
        self._lines: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def join(self, agent: str, item: T) -> bool:
        """Queue `item` behind the agent's earlier calls; False when `limit` wait already."""
        if self._size >= self.limit:
            return False
        line = self._lines.get(agent)
        if line is None:  # an agent with no call waiting joins at the end of the round
            line = self._lines[agent] = deque()
        line.append(item)
        self._size += 1
        return True

    def leave(self, agent: str, item: T) -> bool:
        """Take `item` out, wherever it stands; False when it was not waiting."""
        line = self._lines.get(agent)
        if line is None or item not in line:
            return False
        line.remove(item)
        self._size -= 1
        if not line:
            del self._lines[agent]
        return True

    def served(self, agent: str, item: T) -> None:
        """`item` got its room: out of the queue, and its agent to the end of the round."""
        if self.leave(agent, item) and agent in self._lines:
            self._lines.move_to_end(agent)

    def waiting(self) -> list[T]:
        """Every waiting call, agent by agent."""
        return [item for line in self._lines.values() for item in line]

    def turns(self) -> list[T]:
        """The calls that may be tried now, in order: each agent's first, round by round."""
        return [line[0] for line in self._lines.values()]
