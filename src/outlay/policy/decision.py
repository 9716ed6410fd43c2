"""The values a decision is made from and the decision itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from outlay.policy.errors import OutlayError
from outlay.policy.model import TAG_NAME, TAG_VALUE, Flow, Period, Policy, counter_name
from outlay.policy.money import ceil_div
from outlay.policy.windows import WindowState
from outlay.values import value


@value
class Clamp:
    """How an LLM call's cost shrinks with a bound Outlay sets for it (its maximum output, or
    the uses of its server-side tools), lowered from the request's own or the model's:
    cost(n) = ceil((base + n * per_token) / 10^6) micro-USD."""

    base: int  # micro-USD per million tokens of everything but the output maximum
    per_token: int  # micro-USD per million tokens for each unit of the maximum
    limit: int  # the maximum set when no budget asks for less (the model's)
    choices: int = 1  # tokens billed per unit of the maximum (n completions)
    # the least maximum the call may be sent with, when the call itself says (the uses of
    # an LLM call's server-side tools, a Twilio call's minutes): it is then always clamped,
    # whatever the policies' `clamp_max_tokens` (a floor in tokens) say; None: only where a
    # policy's `clamp_max_tokens` allows it
    floor: int | None = None
    # the request named `limit` itself: it is never lowered below the policies' floor or
    # its own maximum, whichever is smaller
    named: bool = False

    def cost(self, n: int) -> int:
        return ceil_div(self.base + n * self.per_token, 1_000_000)

    def most_within(self, micros: int) -> int:
        """The largest maximum output whose cost is at most `micros` (negative: none)."""
        if self.per_token <= 0:
            return self.limit if self.base <= micros * 1_000_000 else -1
        return min(self.limit, (micros * 1_000_000 - self.base) // self.per_token)


@value
class Call:
    """What one agent request asks for, as the gateway knows it before forwarding."""

    vendor: str
    model: str | None = None  # as requested (may be an alias)
    model_resolved: str | None = None  # canonical price-table name, None when unknown
    free: bool = False
    cost_micros: int | None = 0  # the most the call can cost; None when the price is unknown
    tokens: int = 0  # tokens reserved against tpm windows
    clamp: Clamp | None = None  # the maximum output may be lowered to fit a budget
    clamped_to: int | None = None  # the maximum output it was lowered to
    unpriced: str | None = None  # what has no price, when cost_micros is None ("model 'x'")
    # a vendor call (policy.vendor_access): the method and the path the vendor acts on, the
    # connected accounts it names (Stripe-Account, Stripe-Context), whether the configuration
    # lets any account be named, and where it sends (countries, e-mail recipients)
    operation: tuple[str, str] | None = None
    accounts: tuple[str, ...] = ()
    any_account: bool = False
    destinations: tuple[str, ...] = ()
    # what the call's cost is: spend (what it costs), or money it moves out of the account
    # (a Stripe refund, transfer or payout); only the budgets of its flow count it
    flow: Flow = "spend"


@dataclass(frozen=True)
class KeyInfo:
    id: str
    agent: str
    group: str | None
    labels: Mapping[str, str]
    expires_at_ms: int | None = None
    revoked: bool = False

    @cached_property  # named on every call of the key: made once (a KeyInfo is immutable)
    def scopes(self) -> tuple[str, ...]:
        group = (f"group:{self.group}",) if self.group else ()
        return (f"key:{self.id}", f"agent:{self.agent}", *group)


def call_scopes(key: KeyInfo, vendor: str, labels: Mapping[str, str] | None = None
                ) -> tuple[str, ...]:
    """Every scope a call is charged to, narrowest first: its key, agent and group, its tag
    scopes (`tag:<name>=<value>`, one per label of the call: its key's and its tags), its
    vendor and everything."""
    tags = () if not labels else tuple(
        f"tag:{n}={v}" for n in sorted(labels)
        if TAG_NAME.fullmatch(n) and TAG_VALUE.fullmatch(v := labels[n]))
    return (*key.scopes, *tags, f"vendor:{vendor}", "global")


@value
class Counter:
    """Spend of one scope in one budget period."""

    period_start: int
    spent: int = 0
    reserved: int = 0


# what a view has of windows or counters where it has none: one mapping for all (made per
# scope per call, an empty dict each cost more than the rest of a scope's view), never changed
NOTHING: Mapping[str, Any] = MappingProxyType({})


@value
class ScopeView:
    """A scope's policy and live counters, read inside the decision's transaction."""

    scope: str
    policy: Policy | None
    windows: Mapping[str, WindowState] = field(default_factory=dict)
    inflight: int = 0
    # by counter name (model.counter_name: a budget's period, `<period>-out` for money out)
    counters: Mapping[str, Counter] = field(default_factory=dict)


@value
class Hold:
    """Money a reservation holds on one budget counter."""

    scope: str
    period: Period
    period_start: int
    amount: int
    # a budget here warns or is soft, so settling may raise an event (not part of the money)
    watched: bool = field(default=False, compare=False)
    flow: Flow = "spend"

    @property
    def counter(self) -> str:
        """The name its counter is kept under (model.counter_name)."""
        return counter_name(self.period, self.flow)


@dataclass(frozen=True)
class Event:
    """Something webhooks announce (SPEC §5). Events with the same `coalesce` mark are
    announced once: a runaway loop must not become a webhook storm."""

    type: str
    data: Mapping[str, object]
    coalesce: str


Breach = tuple[str, str]  # (scope, code): a limit of a scope that a call breaches


@dataclass(frozen=True)
class ApprovalNeed:
    """Breaches in scopes whose policy says `on_breach: require_approval`: the first one's
    scope, code and wording, and every one of them, which the approval records."""

    scope: str
    code: str  # the breach: budget_exceeded, rate_limit_exceeded, …
    reason: str
    wait_s: float
    breaches: tuple[Breach, ...] = ()


@value
class Grant:
    """What an approved approval lets a call through: exactly the breaches it was opened for."""

    approval_id: str
    breaches: frozenset[Breach]


@value
class Limits:
    """The tightest limits in force, for the response headers of SPEC §4."""

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_ms: int | None = None
    requests_window: str | None = None  # which window is the tightest: rpm, rph or rpd
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_ms: int | None = None
    budget_cap: int | None = None
    budget_remaining: int | None = None
    budget_scope: str | None = None  # the scope of the tightest hard budget


@value
class Admit:
    windows: Mapping[tuple[str, str], WindowState]  # (scope, window) -> state to store
    holds: tuple[Hold, ...]
    parallel_scopes: tuple[str, ...]  # scopes whose in-flight count goes up
    limits: Limits
    events: tuple[Event, ...] = ()
    overage: bool = False  # a breach was let through (on_breach alert, or an approval)
    call: Call | None = None  # the call as admitted, when its maximum output was clamped
    approved: bool = False  # a breach the approval covers was let through: it is used
    shadowed: tuple[str, ...] = ()  # codes of breaches only reported (enforce: shadow)
    # the admissions of the call's request, this one counted, when a loop guard applies
    repeats: WindowState | None = None


@value
class Refuse:
    error: OutlayError
    scope: str | None
    events: tuple[Event, ...] = ()
    approval: ApprovalNeed | None = None
    # not refused yet: the call fits every hard budget's settled spend, not beside the
    # calls in flight; it may wait this many ms for them to settle and be decided again
    hold_ms: int | None = None
    # the refusing budget's on_exceeded.downgrade_to: the models to try the call on instead
    downgrade: tuple[str, ...] = ()
    # not refused yet: a rate refusal the call's policies queue (`on_rate_limit: queue`);
    # it may wait this many seconds in the gateway and be decided again (policy/pacing.py)
    queue_s: float | None = None


Decision = Admit | Refuse
