"""Vendor objects counted by exposure (Stripe's payment intents and charges): the values that
cross the store's Protocol, and the arithmetic of an object's record.

The embedded store applies `reserved` and `settled` in Python; the Redis store's scripts
(`redis/lua/exposure_*.lua`) do the same, step for step, in Lua. A record keeps:

- `held`: micro-USD counted on the object: what its calls were charged and not given back,
  plus what the calls in flight on it reserved;
- `charges`: each charge still counted, newest last, with the budget counters it went to
  and who made it, so a give-back reaches every scope that was charged;
- `seen`: the most any answer showed the object holds since no call was in flight on it
  (UNKNOWN once an answer showed nothing), so that concurrent calls, whose answers may
  arrive in any order, give back only what no answer says could still move;
- `version`, changed by every write, so a call priced on a record can be admitted only if
  the record is still the one it was priced on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from outlay.values import value

UNKNOWN = -1  # `seen` once some answer did not show what the object holds


@value
class ExposureClaim:
    """A call on a vendor object, as priced: the record it was priced on."""

    vendor: str
    object_id: str | None  # None: a create, whose object its answer names
    version: int  # the record's version when priced (0: none yet)
    # the object as read from the vendor, kept when this call starts its record
    state: str | None = None


@value
class ExposureReport:
    """What a vendor's answer says of the object a call acted on."""

    object_id: str | None = None  # the object shown (names a create's object)
    exposure: int | None = None  # micro-USD it holds; None when the answer does not show it
    state: str | None = None


@value
class ObjectRecord:
    """An object as a call is priced on it."""

    version: int
    held: int
    inflight: int
    state: str | None


class ObjectMoved(Exception):
    """The object's record changed since the call was priced on it: price it again."""


@dataclass
class Record:
    version: int = 0
    held: int = 0
    inflight: int = 0
    seen: int | None = None
    state: str | None = None
    # [request id, amount, holds (the store's names of the counters), who made it]
    charges: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Credit:
    """Money given back to the counters of one earlier charge."""

    request_id: str  # the charge's call
    amount: int
    holds: list[Any]
    who: list[Any]  # [key id, agent, group, labels, vendor, ms of the charge]


def reserved(record: Record, amount: int) -> None:
    """A call on the object was admitted holding `amount`."""
    record.held += amount
    record.inflight += 1
    record.version += 1


def settled(
    record: Record, *, linked: bool, request_id: str, settlement: str, reserved_amount: int,
    cost: int, holds: list[Any], who: list[Any], report: ExposureReport | None,
) -> list[Credit]:
    """A call on the object (`linked`: admitted on it, else a create) was settled to `cost`
    of `reserved_amount`; returns what is given back, newest charges first."""
    if linked:
        record.held -= reserved_amount - cost
        record.inflight = max(0, record.inflight - 1)
    else:
        record.held += cost
    if cost > 0:
        record.charges.append([request_id, cost, holds, who])
    if settlement != "void":  # a refused call changed nothing
        shown = None if report is None else report.exposure
        if settlement == "unsettled" or shown is None:
            record.seen = UNKNOWN
        elif record.seen is None:
            record.seen = shown
        elif record.seen != UNKNOWN:
            record.seen = max(record.seen, shown)
        if settlement == "settled" and report is not None and report.state is not None:
            record.state = report.state
    credits: list[Credit] = []
    if record.inflight == 0:
        if record.seen is not None and record.seen != UNKNOWN and record.seen < record.held:
            credits = _give_back(record, record.held - record.seen)
        record.seen = None
    record.version += 1
    return credits


def forgotten(record: Record) -> bool:
    """Whether nothing is left to count of an object (one the vendor did not know): its
    record is then removed."""
    return (record.held == 0 and record.inflight == 0 and not record.charges
            and record.state is None)


def _give_back(record: Record, amount: int) -> list[Credit]:
    credits = []
    while amount > 0 and record.charges:
        charge = record.charges[-1]
        take = min(amount, charge[1])
        credits.append(Credit(charge[0], take, charge[2], charge[3]))
        charge[1] -= take
        if charge[1] == 0:
            record.charges.pop()
        amount -= take
        record.held -= take
    return credits
