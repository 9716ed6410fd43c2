"""The one Protocol every state backend implements, and the values that cross it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from outlay.policy.approvals import RequestShape
from outlay.policy.decision import Call, Event, KeyInfo, Limits
from outlay.policy.errors import OutlayError
from outlay.policy.model import Policy
from outlay.policy.money import usd_to_micros
from outlay.policy.pacing import Slot
from outlay.policy.series import SeriesQuery, Sums
from outlay.policy.tags import merged
from outlay.state.config_policies import ConfigPolicies
from outlay.state.exposure import ExposureClaim, ExposureReport, ObjectRecord
from outlay.values import value

# settled: at the usage the provider reported; settled_estimate: at what Outlay counted of an
# answer that reported none (a stream whose agent hung up and whose usage never came)
Settled = Literal["settled", "settled_estimate", "void", "unsettled"]


def charged(settled: Settled, cost: int, amount: int) -> int:
    """What a settlement charges of a reservation of `amount`: nothing when void, all of it
    when what was used is unknown, else the reported cost, even above what was held: the
    ledger records the bill (a cost above its reservation is an overrun, see `overrun`).
    A reservation of nothing is charged nothing: it is a call that moves no money (a free
    model, a vendor read) or repeats one already charged (an idempotent replay)."""
    if settled == "void" or amount == 0:
        return 0
    return amount if settled == "unsettled" else cost


def overrun(settled: Settled, cost: int, amount: int) -> int:
    """How much a settlement charges above its reservation (0 when within it): a bound that
    was wrong, shown in the audit, the metrics and the budget events."""
    return max(0, charged(settled, cost, amount) - amount)


def unpriced(call: Call) -> str | None:
    """The code an admitted call's ledger row carries when no price was known for it (no
    hard budget applied, so it was let through without a reservation)."""
    return "unpriced" if call.cost_micros is None else None


# the ledger code of a call a shadow limit or budget would have refused (enforce: shadow)
SHADOW_CODE = "shadow_refusal"


DOWNGRADED_CODE = "downgraded"  # the ledger code of a call sent to a cheaper model


class StateError(Exception):
    """The state store cannot be reached or failed; the gateway fails closed (503)."""


class NotFound(LookupError):
    """An admin lookup named something that does not exist."""


@dataclass(frozen=True)
class KeyRecord:
    id: str
    agent: str
    group: str | None
    name: str | None
    labels: Mapping[str, str]
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None
    policy: Policy | None = None


@dataclass(frozen=True)
class NewKey:
    agent: str
    name: str | None = None
    ttl_seconds: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    policy: Policy | None = None


@value
class Ticket:
    """One agent request, as the store needs it to decide and reserve."""

    request_id: str
    key_hash: str | None  # None: no key presented
    call: Call
    route: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    free_models: tuple[str, ...] = ()
    # a vendor retry carrying the same key (Stripe's Idempotency-Key) on the same vendor
    # account, whichever Outlay key sends it, reserves and is charged once: the retry is
    # recorded as a replay of the first call and holds nothing
    idempotency_key: str | None = None
    idempotency_account: str = ""  # the vendor account the key belongs to (its fingerprint)
    replay_of: str | None = None  # set by the store: the admitted call this one repeats
    approval_id: str | None = None  # X-Outlay-Approval: lets an approved breach through once
    # a call that fits a hard budget's settled spend but not beside the calls in flight may
    # be held back (BudgetHeld) instead of refused; the gateway then asks again, saying how
    # long it has waited, and finally without may_wait
    may_wait: bool = False
    waited_ms: int = 0
    # method, path and body hash: what an approval records, and what a call presenting one
    # must match (with the call's vendor and model)
    shape: RequestShape | None = None
    # X-Outlay-Tags: the call's tags, joined to its key's labels (theirs win on a clash)
    tags: Mapping[str, str] = field(default_factory=dict)
    # a call a budget would refuse, priced on the models its on_exceeded.downgrade_to names
    # (None: not priced yet: the store raises DowngradeAsked instead of refusing)
    downgrades: Mapping[str, Call] | None = None
    downgraded_from: str | None = None  # set by the store: the model the call asked for
    downgrade_event: Event | None = None  # set by the store: budget.downgraded, once admitted
    # the provider endpoints the call may be sent to, in the order to try them, each with
    # the limits of its upstream key (policy/pacing.py): the store admits it on the first
    # with room, in the same atomic step
    endpoints: tuple[Slot, ...] = ()
    # a rate refusal its policies queue (on_rate_limit: queue) is raised as RateHeld,
    # nothing recorded; the gateway waits and asks again, finally without may_queue
    may_queue: bool = False

    def labels(self, key: KeyInfo) -> dict[str, str]:
        """The call's labels: its tags under its key's labels."""
        return merged(self.tags, key.labels)


@value
class RefusalFigures:
    """What a refusal's ledger row says of money: for a budget refusal the settled spend,
    cap and others' holds that refused it; for any refusal the most the call may cost."""

    spent: int | None = None
    cap: int | None = None
    held: int | None = None
    estimated: int | None = None


def refusal_figures(error: OutlayError | None, ticket: Ticket) -> RefusalFigures:
    estimated = ticket.call.cost_micros
    if error is None or error.code != "budget_exceeded":
        return RefusalFigures(estimated=estimated)
    details = error.details
    return RefusalFigures(usd_to_micros(details["spent_usd"]), usd_to_micros(details["cap_usd"]),
                          usd_to_micros(details.get("held_usd", "0")), estimated)


@value
class Reservation:
    id: str
    key: KeyInfo
    limits: Limits
    amount: int
    started_ms: int
    clamped_to: int | None = None  # the maximum output the call must be sent with
    replay_of: str | None = None  # the call this one repeats (an idempotent replay)
    shadowed: tuple[str, ...] = ()  # the codes of breaches only reported (enforce: shadow)
    downgraded_to: str | None = None  # the model the call must be sent to (on_exceeded)
    endpoint: str | None = None  # the endpoint's scope the call must be sent to (pacing)
    queued_ms: int = 0  # how long the call waited in the gateway's queue for room
    queues: bool = False  # a policy of the call says on_rate_limit: queue


@value
class RetryCounts:
    """Settlements that met a failing store, as one worker kept them (`state/retries.py`)."""

    waiting: int  # kept now, to be applied again
    retried: int  # attempts to apply a kept settlement again, since the worker started
    abandoned: int  # not kept, the queue being full: left to the reaper


@value
class BudgetLine:
    """One budget of a scope in its current period, for monitoring."""

    scope: str
    period: str
    mode: str
    cap: int  # micro-USD
    spent: int
    reserved: int
    flow: str = "spend"  # what the budget caps: spend, or money out


@value
class Reaped:
    """What the reaper settled of one worker's reservations: those charged in full (the
    worker stopped heartbeating, or the lease ran out) and what that charged, and those
    voided (their decision never reached the worker, which answered 503)."""

    worker: str
    charged: int = 0
    micros: int = 0
    voided: int = 0


@value
class Outcome:
    """How a reserved call ended: its actual cost, and whether that cost is known."""

    reservation_id: str
    status: int
    cost_micros: int = 0
    tokens: int = 0
    settled: Settled = "settled"
    model: str | None = None


class StateStore(Protocol):
    """Keys, policies, counters, reservations and the ledger of one installation."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # administration
    async def admin_token_ok(self, token: str) -> bool: ...
    async def init_admin_token(self, configured: str | None) -> str | None: ...
    async def create_agent(self, name: str, group: str | None) -> dict[str, Any]: ...
    async def list_agents(self) -> list[dict[str, Any]]: ...
    async def list_groups(self) -> list[dict[str, Any]]: ...
    async def create_key(self, new: NewKey) -> tuple[KeyRecord, str]: ...
    async def get_key(self, key_id: str) -> KeyRecord: ...
    async def list_keys(
        self, agent: str | None = None, *, limit: int | None = None,
        active_at_ms: int | None = None,
    ) -> list[KeyRecord]:
        """Every key (of `agent`), oldest first; with `limit`, the newest that many, newest
        first; with `active_at_ms`, only keys neither revoked nor expired then."""
    async def update_key(
        self, key_id: str, name: str | None, labels: Mapping[str, str] | None,
        policy: Policy | None,
    ) -> KeyRecord: ...
    async def revoke_key(self, key_id: str) -> KeyRecord: ...
    async def revoke_keys(self, agent: str | None = None, group: str | None = None
                          ) -> list[str]: ...
    async def key_by_hash(self, key_hash: str) -> KeyInfo | None: ...
    async def revoked_among(self, key_ids: list[str]) -> set[str]: ...
    async def put_policy(self, scope: str, policy: Policy) -> Policy: ...
    async def get_policy(self, scope: str) -> Policy | None: ...
    async def delete_policy(self, scope: str) -> None: ...
    async def list_policies(self, *, keys: bool = True) -> dict[str, Policy]:
        """Every policy by scope; `keys=False` leaves out keys' own."""
    async def config_policies(self) -> ConfigPolicies:
        """The scopes whose policy the configuration file manages, and the file; an admin
        change to one of them (put_policy, delete_policy, a key's policy by update_key)
        raises PolicyManaged."""
    async def apply_config_policies(
        self, file: str | None, policies: Mapping[str, Policy]
    ) -> list[str]:
        """Write the file's policies, each replacing its scope's, and make `file` their
        manager, in one step; the scopes a file managed before and this one no longer names,
        which keep their policies and are managed through the admin API from now on."""

    # the request path: one atomic call each
    async def reserve(self, ticket: Ticket) -> Reservation: ...
    async def settle(self, outcome: Outcome) -> bool:
        """Apply the actual cost once; False if the reservation was already settled or
        reaped. StateError when it could not be applied now: the store keeps it and applies
        it again until it lands (`settlement_retries`)."""
    def queue_settlement(self, outcome: Outcome) -> bool:
        """settle() without waiting, if this backend can: True when queued (applied within
        milliseconds, and before this store's own usage, audit and report reads; one that
        fails is kept and applied again, as settle()'s), False when the caller must await
        settle()."""
    def settlement_retries(self) -> RetryCounts:
        """The settlements this worker keeps because the store failed to apply them (a
        settle() that raised StateError, or a queued one that failed), to apply them again
        until they land."""
    async def record_refusal(self, ticket: Ticket, status: int, code: str) -> None: ...
    async def pause_endpoint(self, scope: str, until_ms: int) -> None:
        """An endpoint answered 429: no call is admitted on it until `until_ms` (a later
        pause already kept stays), by any worker or replica sharing this state."""
    async def forwarding(self, reservation_id: str) -> bool:
        """Mark a reservation's call as about to be sent, just before it is (the reaper
        voids, rather than charges, a call its dead worker never marked); False when the
        reservation is no longer held (reaped meanwhile): the call must not be sent."""

    # vendor objects counted by exposure (state.exposure): Stripe payment intents, charges
    async def vendor_object(self, vendor: str, object_id: str) -> ObjectRecord | None:
        """The record a call on the object is priced on; None when none is counted."""
    async def reserve_exposure(self, ticket: Ticket, claim: ExposureClaim) -> Reservation:
        """reserve(), in the same atomic step counting the call on its object: raises
        ObjectMoved when the record is no longer the version the call was priced on."""
    async def settle_exposure(self, outcome: Outcome, report: ExposureReport | None
                              ) -> int | None:
        """settle() a reserve_exposure() call and apply what its answer shows of the object;
        the micro-USD given back, or None when the reservation was already settled."""

    # approvals (SPEC §2 on_breach: require_approval)
    async def list_approvals(self, state: str | None = None) -> list[dict[str, Any]]: ...
    async def get_approval(self, approval_id: str) -> dict[str, Any]: ...
    async def decide_approval(
        self, approval_id: str, approve: bool, note: str | None = None
    ) -> dict[str, Any]: ...

    # upkeep and reporting
    async def renew(self, reservation_ids: list[str]) -> int:
        """Give these reservations of this worker, if still held, a whole lease from now
        (calls still in flight past half their lease); the number renewed."""
    async def heartbeat(self) -> None: ...
    async def reap(self) -> list[Reaped]:
        """Settle the reservations whose worker died or whose lease ran out; what was
        settled, by the worker that held them."""
    async def usage(self, scope: str, values_limit: int = 100) -> dict[str, Any]:
        """A scope's windows, budgets and month's spend; for a `tag:<name>=*` scope also the
        values it tracks this period, the `values_limit` that spent most with their spend."""
    async def budgets(self) -> list[BudgetLine]:
        """Every budget of every scope but keys' (per-run keys come and go by the
        thousand), as it stands in its current period."""
    async def audit(self, scope: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def report(self, group_by: str, since_ms: int | None) -> list[dict[str, Any]]:
        """The ledger's calls since `since_ms` by a column (`key`, `agent`, `group`, `vendor`,
        `model`) or by the value of a label (`label:<name>`), dearest first."""
    async def series(self, query: SeriesQuery) -> list[Sums]:
        """The sums of a scope's calls by interval (and by the split's column) in a range,
        from the hourly rollups (intervals with no call are left out)."""

