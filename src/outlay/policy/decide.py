"""The decision: given a call, its key and every scope's policy and counters, admit or refuse.

Pure: the state backend reads the views inside one transaction, calls `decide`, and writes
back what an `Admit` says, in that same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from outlay.policy.access import model_matches, vendor_matches
from outlay.policy.approvals import uncovered
from outlay.policy.decision import (
    Admit,
    ApprovalNeed,
    Call,
    Counter,
    Decision,
    Event,
    Grant,
    Hold,
    KeyInfo,
    Refuse,
    ScopeView,
)
from outlay.policy.errors import (
    AuthError,
    BadRequest,
    BudgetExceeded,
    NotAllowed,
    OutlayError,
    RateLimited,
)
from outlay.policy.loop_check import LOOP_CODE, Loop, judge_loop
from outlay.policy.model import CLAMP_OFF, DEFAULT_CLAMP_FLOOR, Budget, Policy
from outlay.policy.money import ceil_div, micros_to_usd
from outlay.policy.periods import iso as iso  # re-exported: the gateway's time format
from outlay.policy.periods import period_bounds
from outlay.policy.rules import Rules, rules_of
from outlay.policy.tags import missing_tags
from outlay.policy.tightest import Tightest
from outlay.policy.vendor_checks import uncapped_money_out, vendor_refusal
from outlay.policy.windows import (
    LIMIT_CODES,
    WINDOW_SECONDS,
    WindowState,
    bucket_of,
    check,
    fits,
)

_NO_WINDOW = WindowState()

_PERIOD_WORDS = {"hour": "this hour", "day": "today", "week": "this week",
                 "month": "this month", "total": "in total"}


def authenticate(key: KeyInfo | None, now_ms: int) -> AuthError | None:
    if key is None:
        return AuthError("invalid_api_key", "Incorrect or unknown Outlay API key.")
    if key.revoked:
        return AuthError("key_revoked", f"The Outlay key {key.id} has been revoked.")
    if key.expires_at_ms is not None and key.expires_at_ms <= now_ms:
        return AuthError(
            "key_expired", f"The Outlay key {key.id} expired at {iso(key.expires_at_ms)}.",
            expired_at=iso(key.expires_at_ms),
        )
    return None


def _access(
    call: Call, views: Sequence[ScopeView], aliases: Mapping[str, str], free: Sequence[str]
) -> Refuse | None:
    for view in views:
        policy = view.policy
        if policy is None:
            continue
        if policy.vendors is not None and not vendor_matches(policy.vendors, call.vendor):
            allowed = list(policy.vendors)
            return Refuse(NotAllowed(
                "vendor_not_allowed",
                f"Vendor '{call.vendor}' is not allowed for {view.scope}. "
                f"Allowed vendors: {', '.join(allowed) or 'none'}.",
                allowed=allowed, scope=view.scope,
            ), view.scope)
        if call.model is None:
            continue
        if policy.models is not None and not model_matches(
            policy.models, call.model, call.model_resolved, aliases
        ):
            allowed = list(policy.models)
            return Refuse(NotAllowed(
                "model_not_allowed",
                f"Model '{call.model}' is not allowed for {view.scope}. "
                f"Allowed models: {', '.join(allowed) or 'none'}.",
                allowed=allowed, scope=view.scope,
            ), view.scope)
        if policy.free_models_only and not call.free:
            allowed = list(free)
            return Refuse(NotAllowed(
                "model_not_allowed",
                f"Model '{call.model}' is not free, and {view.scope} may use free models only. "
                f"Allowed models: {', '.join(allowed) or 'none'}.",
                allowed=allowed, scope=view.scope,
            ), view.scope)
    return None


def _has_hard_budget(views: Sequence[ScopeView], flow: str) -> bool:
    return any(
        b.mode == "hard" and b.flow == flow and not v.policy.shadows(b)
        for v in views if v.policy for b in v.policy.budgets
    )


def precheck(
    call: Call, views: Sequence[ScopeView], aliases: Mapping[str, str] | None = None,
    free_models: Sequence[str] = (), labels: Mapping[str, str] | None = None,
) -> Refuse | None:
    """The refusals that depend on the policies alone, not on any counter: a tag a policy
    requires and the call lacks (`labels`: the call's, when known), allow-lists (a vendor
    call's operations, accounts and destinations among them), money out under hard spend
    budgets with no money-out budget beside them, and an unpriced call under a hard
    budget."""
    if _plain(call, _ruled(views)):
        return None
    return _prechecked(call, views, aliases, free_models, labels)


def _plain(call: Call, ruled: Sequence[tuple[ScopeView, Policy, Rules]]) -> bool:
    """Whether none of precheck's checks has anything to check (the usual call)."""
    if call.operation is not None or call.flow != "spend" or call.cost_micros is None:
        return False
    for _, _, rules in ruled:  # noqa: SIM110 (all() over a generator costs more per call)
        if not rules.plain:
            return False
    return True


def _prechecked(
    call: Call, views: Sequence[ScopeView], aliases: Mapping[str, str] | None,
    free_models: Sequence[str], labels: Mapping[str, str] | None,
) -> Refuse | None:
    if labels is not None:
        missing = missing_tags(((v.scope, v.policy) for v in views if v.policy), labels)
        if missing is not None:
            return Refuse(missing, missing.details["scope"])
    refused = (_access(call, views, aliases or {}, free_models) or vendor_refusal(call, views)
               or uncapped_money_out(call, views))
    if refused:
        return refused
    # a vendor endpoint with no known price may move money out (Stripe Treasury, fee
    # refunds): a hard money-out budget refuses it too
    if call.cost_micros is None and (_has_hard_budget(views, call.flow) or (
            call.operation is not None and _has_hard_budget(views, "out"))):
        if call.flow == "out":
            return Refuse(BadRequest(
                "price_unknown", "How much money this call moves out is not known before it "
                "is made, so it cannot be reserved under a hard money-out budget.",
                flow="out"), None)
        return Refuse(BadRequest(
            "price_unknown",
            f"No price is known for {call.unpriced or f'model {call.model!r}'}, so it cannot "
            "be reserved under a hard budget. Give it a price in the `prices` section of the "
            "configuration.",
        ), None)
    return None


def decide(
    call: Call,
    key: KeyInfo,
    views: Sequence[ScopeView],
    now_ms: int,
    aliases: Mapping[str, str] | None = None,
    free_models: Sequence[str] = (),
    grant: Grant | None = None,
    may_wait: bool = False,
    labels: Mapping[str, str] | None = None,
    loop: Loop | None = None,
) -> Decision:
    """Check every limit of every scope; admit with the writes to make, or refuse with why.

    A breach that blocks refuses at once; breaches a human must approve are collected, so
    that the approval names them all, and refuse once every limit was checked. `grant`: the
    approval the call presents, which lets exactly its breaches through. `may_wait`: a call
    that would be refused by a hard budget whose settled spend has room for it, but not
    beside other calls' reservations, is not refused: the Refuse says how long it may wait
    (`hold_ms`) for them to settle before it is decided again without waiting. `loop`:
    the loop guard the call is under, with its request's admissions so far."""
    ruled = _ruled(views)
    if not _plain(call, ruled):
        refused = _prechecked(call, views, aliases, free_models, labels)
        if refused:
            return refused
    repeats, looped = None, None
    if loop is not None:  # the same request made over and over: refused before any limit
        verdict = judge_loop(loop, key, now_ms)
        if verdict.refusal is not None:
            return verdict.refusal
        repeats, looped = verdict.state, verdict.shadowed
    asked = call
    call = _clamped(call, views, ruled, now_ms, grant)
    cost = call.cost_micros or 0
    # made at the first breach only: most calls breach nothing
    breaches: _Breaches | None = None
    if looped is not None:  # only reported (enforce: shadow)
        breaches = _Breaches(key, now_ms, grant)
        breaches.shadowed.append(LOOP_CODE)
        breaches.events.append(looped)

    windows: dict[tuple[str, str], WindowState] = {}
    limits = Tightest()
    parallel: list[str] = []
    for view, policy, rules in ruled:
        for name, limit, tokens in rules.windows:
            weight = call.tokens if tokens else 1
            if weight == 0:
                continue
            kept = view.windows.get(name, _NO_WINDOW)
            allowed = fits(name, kept, limit, weight, now_ms)
            if allowed is not None:
                state, used, reset_ms = allowed
            else:
                result = check(name, kept, limit, weight, now_ms)
                retry = ceil_div(result.retry_after_ms, 1000)
                what = f"{limit} tokens" if name == "tpm" else f"{limit} requests"
                span = {60: "minute", 3600: "hour", 86400: "day"}[WINDOW_SECONDS[name]]
                breaches = breaches or _Breaches(key, now_ms, grant)
                refusal = breaches.rate(view, RateLimited(
                    LIMIT_CODES[name],
                    f"Rate limit of {what} per {span} reached for {view.scope}. "
                    f"Retry after {retry} s.",
                    scope=view.scope, limit=limit, retry_after=retry, window=name,
                    window_s=WINDOW_SECONDS[name],
                    reset_unix=ceil_div(now_ms + result.retry_after_ms, 1000),
                ))
                if refusal:
                    return refusal
                # let through, counted
                state = result.state.added(bucket_of(name, now_ms), weight)
                used, reset_ms = result.used, result.reset_ms
            windows[(view.scope, name)] = state
            if not view.scope.startswith("endpoint:"):  # a provider's key: not the agent's
                limits.window(name, limit, used, reset_ms)
        if policy.max_parallel is not None:
            if view.inflight + 1 > policy.max_parallel:
                breaches = breaches or _Breaches(key, now_ms, grant)
                refusal = breaches.rate(view, RateLimited(
                    "concurrency_limit_exceeded",
                    f"{view.scope} already has {view.inflight} calls in flight "
                    f"(limit {policy.max_parallel}).",
                    scope=view.scope, limit=policy.max_parallel, retry_after=1,
                ))
                if refusal:
                    return refusal
            parallel.append(view.scope)

    holds: dict[tuple[str, str], Hold] = {}
    flow = call.flow
    for view, _, rules in ruled:
        for rule in rules.budgets:
            if rule.flow != flow:
                continue  # money out never counts toward spend, nor spend toward money out
            start, end = period_bounds(rule.period, now_ms)
            counter = _current(view, rule.counter, start)
            committed = counter.spent + counter.reserved
            shadow, cap = rule.shadow, rule.cap
            if rule.hard:
                if committed + cost > cap:
                    budget = rule.budget
                    error = _budget_error(view.scope, budget.period, cap, counter, cost, end,
                                          budget.flow)
                    breaches = breaches or _Breaches(key, now_ms, grant)
                    if (not shadow and may_wait and counter.spent + cost <= cap
                            and breaches.may_hold(view, error)):
                        pass  # room once the calls in flight settle: wait for them
                    elif refusal := breaches.budget(view, error, budget, start,
                                                    committed, shadow):
                        if budget.downgrade_to and refusal.approval is None:
                            return replace(refusal, downgrade=budget.downgrade_to)
                        return refusal
                if not shadow:  # the headers speak of the caps that refuse
                    limits.budget(cap, cap - committed - cost, view.scope)
            held = (view.scope, rule.counter)
            earlier = holds.get(held)
            holds[held] = Hold(view.scope, rule.period, start, cost,
                               rule.watched or (earlier is not None and earlier.watched),
                               rule.flow)
    clamped_call = None if call is asked else call
    if breaches is None:
        return Admit(windows, tuple(holds.values()), tuple(parallel), limits.build(),
                     call=clamped_call, repeats=repeats)
    refusal = breaches.awaiting_approval() or breaches.holding()
    if refusal:
        return refusal
    return Admit(windows, tuple(holds.values()), tuple(parallel), limits.build(),
                 tuple(breaches.events), breaches.overage, clamped_call,
                 breaches.approved, tuple(breaches.shadowed), repeats)


def clamped(call: Call, views: Sequence[ScopeView], now_ms: int,
            grant: Grant | None = None) -> Call:
    """The call with its maximum output lowered to fit the hard budgets that would refuse
    it, named by the request or not, when the lower maximum is at least the floor: the
    highest `clamp_max_tokens` of the call's policies (DEFAULT_CLAMP_FLOOR when none sets
    one), or the request's own maximum when that is smaller. A policy with
    `clamp_max_tokens: false` keeps every call of its scopes as asked (and refused). A call
    that names its own floor (the uses of an LLM call's server-side tools, a Twilio call's
    minutes) is always clamped down to it. Otherwise the call unchanged."""
    return _clamped(call, views, _ruled(views), now_ms, grant)


def _ruled(views: Sequence[ScopeView]) -> list[tuple[ScopeView, Policy, Rules]]:
    """The views that have a policy, each with it and its rules (read by several steps)."""
    return [(view, policy, rules_of(policy)) for view in views
            if (policy := view.policy) is not None]


def _clamped(call: Call, views: Sequence[ScopeView],
             ruled: Sequence[tuple[ScopeView, Policy, Rules]], now_ms: int,
             grant: Grant | None) -> Call:
    clamp, cost = call.clamp, call.cost_micros
    if clamp is None or not cost:
        return call
    room = _hard_room(ruled, now_ms, grant)
    if room is None or cost <= room:
        return call  # fits as asked: no floor to work out
    if clamp.floor is not None:
        floor = clamp.floor
    else:
        asked = [v.policy.clamp_max_tokens for v in views
                 if v.policy is not None and v.policy.clamp_max_tokens is not None]
        if CLAMP_OFF in asked:
            return call
        floor = max(asked, default=DEFAULT_CLAMP_FLOOR)
        if clamp.named:
            floor = min(floor, clamp.limit)
    most = clamp.most_within(room)
    if most < floor or most >= clamp.limit:
        return call
    return replace(call, cost_micros=clamp.cost(most),
                   tokens=max(0, call.tokens - (clamp.limit - most) * clamp.choices),
                   clamp=None, clamped_to=most)


def _hard_room(ruled: Sequence[tuple[ScopeView, Policy, Rules]], now_ms: int,
               grant: Grant | None) -> int | None:
    """What is left under the tightest hard budget whose breach would refuse the call."""
    room: int | None = None
    for view, policy, rules in ruled:
        hard = rules.hard_spend
        if not hard or policy.on_breach == "alert" or (
                grant is not None and (view.scope, "budget_exceeded") in grant.breaches):
            continue
        for rule in hard:
            counter = _current(view, rule.counter, period_bounds(rule.period, now_ms)[0])
            left = rule.cap - counter.spent - counter.reserved
            room = left if room is None or left < room else room
    return room


def _current(view: ScopeView, name: str, start: int) -> Counter:
    """The scope's counter `name` (a budget's `counter`) if it counts the period starting
    at `start`; a fresh one otherwise (the period turned since it was written)."""
    counter = view.counters.get(name)
    return counter if counter is not None and counter.period_start == start else Counter(start)


class _Breaches:
    """What a breach does, by the breached scope's `on_breach`: block (refuse), alert (let
    through and announce), require_approval (refuse pending a human, unless the call's
    approval covers that very breach)."""

    # slotted: one is made per decision, and its fields are set and read on every one
    __slots__ = ("approved", "events", "grant", "held", "key", "needs", "now_ms", "overage",
                 "shadowed")

    def __init__(self, key: KeyInfo, now_ms: int, grant: Grant | None) -> None:
        self.key, self.now_ms, self.grant = key, now_ms, grant
        self.events: list[Event] = []
        self.overage = False
        self.approved = False  # a breach the grant covers was let through
        self.needs: list[tuple[ScopeView, OutlayError]] = []  # breaches awaiting a human
        self.held: list[tuple[ScopeView, OutlayError]] = []  # budgets full of others' holds
        self.shadowed: list[str] = []  # the codes of breaches only reported (enforce: shadow)

    def rate(self, view: ScopeView, error: RateLimited) -> Refuse | None:
        minute = self.now_ms // 60_000
        event = Event("agent.rate_limited", {
            "scope": view.scope, "agent_id": self.key.agent, "key_id": self.key.id,
            "code": error.code, "limit": error.details.get("limit"),
            "window": error.details.get("window"), "retry_after": error.details["retry_after"],
        }, f"agent.rate_limited:{self.key.id}:{minute}")
        return self._apply(view, error, event)

    def budget(
        self, view: ScopeView, error: BudgetExceeded, budget: Budget, start: int,
        committed: int, shadow: bool = False,
    ) -> Refuse | None:
        cap = budget.cap_micros
        event = Event("budget.exceeded", {
            "scope": view.scope, "agent_id": self.key.agent, "key_id": self.key.id,
            "period": budget.period, "mode": "hard", "spent_usd": micros_to_usd(committed),
            "cap_usd": micros_to_usd(cap), "percent_used": percent(committed, cap),
            "resets_at": error.details.get("resets_at"), **_flow_of(budget),
        }, f"budget.exceeded:{view.scope}:{budget.counter}:{start}")
        return self._apply(view, error, event, shadow)

    def _apply(self, view: ScopeView, error: OutlayError, event: Event, shadow: bool = False
               ) -> Refuse | None:
        assert view.policy is not None
        if shadow or view.policy.enforce == "shadow":
            # counted as if enforced, announced as `<event>.shadow`, and let through
            self.shadowed.append(error.code)
            self.events.append(Event(f"{event.type}.shadow", {
                **event.data, "code": error.code, "enforce": "shadow"},
                f"{event.coalesce}:shadow"))
            return None
        action = view.policy.on_breach
        self.events.append(event)
        if action == "alert":
            self.overage = True
            return None
        if action == "block":
            return Refuse(error, view.scope, tuple(self.events))
        if self.grant is not None and (view.scope, error.code) in self.grant.breaches:
            self.overage = self.approved = True
            return None
        self.needs.append((view, error))
        return None

    def may_hold(self, view: ScopeView, error: BudgetExceeded) -> bool:
        """Whether a budget breach that only calls in flight make may wait for them: one
        that would refuse (not alert, not approved) in a scope whose policy waits; noted."""
        policy = view.policy
        assert policy is not None
        if policy.on_breach == "alert" or policy.hold_ms <= 0 or (
                self.grant is not None and (view.scope, error.code) in self.grant.breaches):
            return False
        self.held.append((view, error))
        return True

    def holding(self) -> Refuse | None:
        """The call may wait for calls in flight (the shortest wait of the scopes holding
        it); nothing is announced: it is not refused yet."""
        if not self.held:
            return None
        view, error = self.held[0]
        wait = min(v.policy.hold_ms for v, _ in self.held if v.policy is not None)
        return Refuse(error, view.scope, hold_ms=wait)

    def awaiting_approval(self) -> Refuse | None:
        """The refusal of breaches a human must approve: the first one's, naming them all;
        or, when the call presents an approval, that it does not cover them."""
        if not self.needs:
            return None
        view, error = self.needs[0]
        assert view.policy is not None
        breaches = tuple((v.scope, e.code) for v, e in self.needs)
        events = tuple(self.events)
        if self.grant is not None:
            return Refuse(uncovered(self.grant, breaches), view.scope, events)
        need = ApprovalNeed(view.scope, error.code, error.message, view.policy.approval_wait_s,
                            breaches)
        return Refuse(error, view.scope, events, need)


def _flow_of(budget: Budget) -> dict[str, str]:
    """What an event or a refusal says of a money-out budget's flow (spend says nothing)."""
    return {} if budget.flow == "spend" else {"flow": budget.flow}


def percent(spent: int, cap: int) -> float:
    return round(100 * spent / cap, 2) if cap else 100.0


def _budget_error(
    scope: str, period: str, cap: int, counter: Counter, cost: int, end: int | None,
    flow: str = "spend",
) -> BudgetExceeded:
    """The refusal of a hard budget: what is spent (settled), what calls in flight hold
    beside it, the cap, and what this call may cost (or move out, for money out)."""
    spent, held = micros_to_usd(counter.spent), micros_to_usd(counter.reserved)
    resets = iso(end) if end is not None else None
    out = flow == "out"
    return BudgetExceeded(
        "budget_exceeded",
        f"{'Money-out budget' if out else 'Budget'} exceeded for {scope}: ${spent} "
        f"{'moved out' if out else 'spent'} of a ${micros_to_usd(cap)} hard cap "
        f"{_PERIOD_WORDS[period]}"
        + (f", ${held} more held by calls in flight" if counter.reserved else "")
        + f"; this call {'moves out' if out else 'may cost'} up to ${micros_to_usd(cost)}."
        + (f" The budget resets at {resets}." if resets else ""),
        scope=scope, period=period, spent_usd=spent, held_usd=held,
        cap_usd=micros_to_usd(cap), resets_at=resets, **({"flow": flow} if out else {}),
    )
