"""The Redis store's events of its decisions, written to this worker's WAL once each: the
ledger's marks coalesce them across workers, and this worker's memory of the marks it
wrote keeps a runaway loop from writing a mark per call."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from outlay.policy.decision import Event

if TYPE_CHECKING:
    from outlay.state.redis.wal import Wal

MARKS_KEPT = 4096


class RedisAnnouncer:
    if TYPE_CHECKING:
        _marks: OrderedDict[str, None]

        @property
        def wal(self) -> Wal: ...

    def _event_entries(self, events: Iterable[Event], now: int) -> list[dict[str, Any]]:
        """Events not yet announced by this worker."""
        out = []
        for event in events:
            if event.coalesce in self._marks:
                continue
            self._marks[event.coalesce] = None
            if len(self._marks) > MARKS_KEPT:
                self._marks.popitem(last=False)
            out.append({"t": "event", "type": event.type, "data": dict(event.data),
                        "mark": event.coalesce, "ts_ms": now})
        return out

    async def _announce(self, events: Iterable[Event], now: int) -> None:
        entries = self._event_entries(events, now)
        if entries:
            await self.wal.append(entries)
