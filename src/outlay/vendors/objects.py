"""Vendor objects whose money is counted by exposure rather than per call (Stripe's payment
intents and charges): what a call on one asks, what an answer says the object holds.

An object's exposure is what it has moved plus what it can still move. The cost of a call on
the object is the change it makes to that exposure: the gateway reserves the increase the
call may cause (`ObjectPricing.target` minus what is already counted), and settles to the
exposure the vendor's answer shows, giving back what will no longer move. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from outlay.vendors.base import VendorCall


@dataclass(frozen=True)
class ObjectCall:
    """A call that creates or acts on a payment-like object."""

    kind: str  # e.g. "payment_intent", "charge"
    action: str  # "create", "update", "confirm", "capture", "cancel", …
    object_id: str | None  # the name Outlay counts it under; None for a create
    read_path: str | None  # where the object is read from the vendor, if not yet counted
    read_headers: tuple[tuple[str, str], ...]  # what the read must carry (Stripe-Account)
    amount: int | None  # the amount the call asks the object to hold, when it names one
    currency: str | None
    idempotency_key: str | None
    describe: str


@dataclass(frozen=True)
class ObjectSeen:
    """An object as a vendor's answer shows it."""

    object_id: str | None  # None when the answer names no object Outlay can count
    state: str  # what the pricing needs of it later, as compact JSON
    exposure: int  # micro-USD moved plus still able to move


@runtime_checkable
class ObjectPricing(Protocol):
    def object_call(self, call: VendorCall) -> ObjectCall | None:
        """The object call `call` is, or None; raises BadRequest for one that cannot be read."""
        ...

    def seen(self, call: ObjectCall, answer: bytes) -> ObjectSeen | None:
        """The object in a successful answer (or a read), None when it shows none."""
        ...

    def target(self, call: ObjectCall, state: str | None) -> int:
        """The most the object's exposure can be once `call` is done, in micro-USD, given
        its last known state (None: the vendor does not know the object)."""
        ...
