"""The Redis backend's pure half: key names, and the plan of checks a reservation script runs,
built from the scopes' policies; then the script's snapshot turned back into the views that
`decide` reads, so refusals, headers and events are the embedded store's, word for word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from outlay.policy.decision import NOTHING, Call, Counter, Grant, ScopeView
from outlay.policy.loop_check import Loop, LoopRule, loop_rule, loop_under, with_state
from outlay.policy.loop_guard import from_buckets
from outlay.policy.model import Policy
from outlay.policy.pacing import PAUSE, WithSlot, is_endpoint
from outlay.policy.periods import HOUR_MS, period_bounds
from outlay.policy.rules import rules_of
from outlay.policy.tags import tracking_period
from outlay.policy.windows import LIMIT_CODES, WindowState, bucket_ms
from outlay.state.base import Ticket
from outlay.state.fingerprints import Fingerprints
from outlay.state.redis.windows import seen_window
from outlay.values import value

# what a breach of a check does (the script's `block` value)
# on_breach alert; refuse; an approval covers it; only reported (enforce: shadow)
LET_THROUGH, BLOCK, GRANTED, SHADOW = 0, 1, 2, 3


@dataclass(frozen=True)
class Names:
    """Every key of one installation shares the hash tag `{tenant}`, so all of them live in
    one Redis Cluster slot and every script may touch any of them. The fixed names are
    made once (every decision and settlement names several)."""

    tenant: str

    @cached_property
    def prefix(self) -> str:
        return f"outlay:{{{self.tenant}}}:"

    @cached_property
    def meta(self) -> str:
        return self.prefix + "meta"

    @cached_property
    def leases(self) -> str:
        return self.prefix + "leases"

    @cached_property
    def workers(self) -> str:
        return self.prefix + "workers"

    @cached_property
    def reaped(self) -> str:
        """Workers the reaper declared dead, for each to learn it if it was not."""
        return self.prefix + "reaped"

    @cached_property
    def rebuild_lock(self) -> str:
        return self.prefix + "rebuild"

    def reservation(self, request_id: str) -> str:
        return self.prefix + "r:" + request_id

    def wal(self, worker: str) -> str:
        return self.prefix + "wal:" + worker

    def idempotency(self, vendor: str, account: str, idem: str) -> str:
        """A vendor account's idempotency key, whichever Outlay key sends it."""
        return f"{self.prefix}i:{vendor}:{account}:{idem}"

    def window(self, scope: str, name: str) -> str:
        return f"{self.prefix}w:{scope}:{name}"

    def repeats(self, mark: str) -> str:
        """A request's admissions under the loop guard (bucket -> count)."""
        return f"{self.prefix}l:{mark}"

    def inflight(self, scope: str) -> str:
        return self.prefix + "p:" + scope

    def pause(self, scope: str) -> str:
        """Until when (ms) an endpoint that answered 429 takes no call (policy/pacing.py)."""
        return self.prefix + "z:" + scope

    def tag_values(self, name: str, start: int) -> str:
        """The set of the values a `tag:<name>=*` policy tracks in the period from `start`."""
        return f"{self.prefix}tv:{name}:{start}"

    def counter(self, scope: str, period: str, start: int) -> str:
        return f"{self.prefix}c:{scope}:{period}:{start}"

    def counter_of(self, key: str) -> tuple[str, str, int]:
        """(scope, period, start) of a counter's key name (a scope may hold colons; a
        period and a start never do)."""
        scope, period, start = key.removeprefix(self.prefix + "c:").rsplit(":", 2)
        return scope, period, int(start)


class Check(NamedTuple):
    """One check of a decision's plan (a tuple: a plan makes several per call, and a frozen
    dataclass's construction cost more than the check's use)."""

    scope: str
    kind: str  # w (window), p (parallel), b (budget), t (tag value), l (loop guard)
    key: str
    name: str  # window name, or budget period
    a: int  # bucket width ms | max in flight | cap (-1 soft)
    b: int  # limit | 0 | amount
    c: int  # weight | 0 | holds its counter: 0 no, -1 yes, n > 0 yes and it expires in n ms
    block: int  # LET_THROUGH, BLOCK or GRANTED
    start: int = 0  # budget period start


def check_args(checks: Sequence[Check]) -> str:
    """The script's argument for the checks: five space-separated values each (one string
    costs the client far less to send than five arguments per check)."""
    return " ".join([_arg(c, c.b, c.c) for c in checks])


def _arg(check: Check, b: object, c: object) -> str:
    return f"{check.kind} {check.a} {b} {c} {check.block}"


def blocks(policy: Policy, scope: str, code: str, grant: Grant | None) -> int:
    """What a breach of `code` in a scope with this policy does (see decide._Breaches): let
    through (alert), refuse, or let through as the call's approval says (GRANTED)."""
    if policy.enforce == "shadow":
        return SHADOW
    if policy.on_breach == "alert":
        return LET_THROUGH
    if policy.on_breach == "require_approval" and grant is not None and (
            (scope, code) in grant.breaches):
        return GRANTED
    return BLOCK


class PolicyViews:
    """The views `precheck` reads (each scope's policy, no counters) of a list of scopes,
    kept per list while the worker's policies are the mapping they were made from (a new
    mapping, at a new version, empties them): a worker meets the same few lists call after
    call, and making a list's views cost more than the check itself. At most LIMIT lists."""

    LIMIT = 4096

    def __init__(self) -> None:
        self._of: Mapping[str, Policy] | None = None
        self._views: dict[tuple[str, ...], tuple[ScopeView, ...]] = {}

    def of(self, scopes: tuple[str, ...], policies: Mapping[str, Policy],
           own: Mapping[str, Policy]) -> Sequence[ScopeView]:
        """`policies`: the call's (with its tag scopes' resolved, made per call: never
        kept); `own`: the worker's, the only ones kept."""
        if policies is not own:
            return [ScopeView(s, policies.get(s)) for s in scopes]
        if own is not self._of:
            self._of, self._views = own, {}
        views = self._views.get(scopes)
        if views is None:
            if len(self._views) >= self.LIMIT:
                self._views.clear()
            views = self._views[scopes] = tuple(ScopeView(s, own.get(s)) for s in scopes)
        return views


# a counter outlives its period by a day (the ledger can rebuild it any time after that)
_COUNTER_TTL_MS = {"hour": 25 * 3_600_000, "day": 2 * 86_400_000, "week": 8 * 86_400_000,
                   "month": 32 * 86_400_000}


def counter_ttl_ms(period: str) -> int:
    return _COUNTER_TTL_MS.get(period, -1)  # 'total' never expires


@value  # one per call: a frozen dataclass's construction costs three times as much
class Holder:
    """Who holds a reservation: its key and agent, the idempotency key it registered (its
    Redis key name, or ""), and the worker that settles it."""

    key_id: str
    agent: str
    idem: str
    worker: str


class Template(NamedTuple):
    """What `plan` works out of the scopes' policies alone, for one flow in one hour (every
    budget period turns on the hour): the checks with the call's amount and token weight
    left at 0 and where those go, the script's argument for the checks with `{0}` for the
    amount and `{1}` for the tokens, and the record's lists (never changed once made)."""

    checks: tuple[Check, ...]
    costs: tuple[int, ...]  # the budget checks: their `b` is the call's amount
    weighed: tuple[int, ...]  # the token windows' checks: their `c` is the call's tokens
    args: str
    holds: list[list[Any]]
    watched: list[list[Any]]
    tpm: list[list[str]]
    parallel: list[str]
    scopes: list[str]
    loop: LoopRule | None  # the loop guard the scopes' policies set


class Planned(NamedTuple):
    checks: tuple[Check, ...]
    record: dict[str, Any]
    args: str  # check_args(checks)
    loop: LoopRule | None


def plan(
    names: Names, call: Call, scopes: Sequence[str], policies: Mapping[str, Policy],
    now_ms: int, grant: Grant | None, holder: Holder,
) -> tuple[tuple[Check, ...], dict[str, Any]]:
    """The checks of every scope, in `decide`'s order, and the reservation's record: what
    it holds (so settling can release it) and who holds it."""
    planned = filled(template(names, call, scopes, policies, now_ms, grant), call, holder)
    return planned.checks, planned.record


def filled(made: Template, call: Call, holder: Holder) -> Planned:
    """The plan of a call from its template: its amount and tokens put in."""
    cost, tokens = call.cost_micros or 0, call.tokens
    checks = made.checks
    if made.costs or made.weighed:
        out = list(checks)
        for i in made.costs:
            c = out[i]
            out[i] = Check(c.scope, "b", c.key, c.name, c.a, cost, c.c, c.block, c.start)
        for i in made.weighed:
            c = out[i]
            out[i] = Check(c.scope, "w", c.key, c.name, c.a, c.b, tokens, c.block)
        checks = tuple(out)
    record = {
        "amount": str(cost), "tokens": str(tokens), "holds": made.holds,
        "watched": made.watched, "tpm": made.tpm, "parallel": made.parallel,
        "key_id": holder.key_id, "agent": holder.agent, "idem": holder.idem,
        "worker": holder.worker, "scopes": made.scopes, "flow": call.flow,
    }
    return Planned(checks, record, made.args.format(cost, tokens), made.loop)


def template(
    names: Names, call: Call, scopes: Sequence[str], policies: Mapping[str, Policy],
    now_ms: int, grant: Grant | None,
) -> Template:
    """The template of the plans of the calls of `call`'s flow, with tokens or without
    (a token window does not count a call of none), in the hour of `now_ms`."""
    checks: list[Check] = []
    costs: list[int] = []
    weighed: list[int] = []
    holds: list[tuple[str, int, str, str, int]] = []  # key, watched, scope, period, start
    tpm: list[tuple[str, str]] = []
    parallel: list[str] = []
    for scope in scopes:
        policy = policies.get(scope)
        if policy is None:
            continue
        if is_endpoint(scope):  # an upstream 429 may have paused it
            checks.append(Check(scope, "z", names.pause(scope), PAUSE, 0, 0, 0, BLOCK))
        for name, limit, tokens in rules_of(policy).windows:
            if tokens and call.tokens == 0:
                continue  # weighs nothing
            key = names.window(scope, name)
            width = bucket_ms(name)
            block = blocks(policy, scope, LIMIT_CODES[name], grant)
            if tokens:
                weighed.append(len(checks))
                tpm.append((key, str(width)))
            checks.append(Check(scope, "w", key, name, width, limit, 0 if tokens else 1, block))
        if policy.max_parallel is not None:
            key = names.inflight(scope)
            block = blocks(policy, scope, "concurrency_limit_exceeded", grant)
            checks.append(Check(scope, "p", key, "", policy.max_parallel, 0, 0, block))
            parallel.append(key)
    for scope in scopes:
        policy = policies.get(scope)
        if policy is None:
            continue
        budgets = rules_of(policy).budgets
        if not budgets:
            continue
        block = blocks(policy, scope, "budget_exceeded", grant)
        held: dict[str, int] = {}
        for rule in budgets:
            if rule.flow != call.flow:
                continue  # money out never counts toward spend, nor spend toward money out
            start = period_bounds(rule.period, now_ms)[0]
            key = names.counter(scope, rule.counter, start)
            cap = rule.cap if rule.hard else -1
            watched = rule.watched
            first = key not in held
            if first:
                held[key] = len(holds)
                holds.append((key, int(watched), scope, rule.counter, start))
            elif watched:
                k, _, s, p, st = holds[held[key]]
                holds[held[key]] = (k, 1, s, p, st)
            hold = counter_ttl_ms(rule.period) if first else 0
            costs.append(len(checks))
            # a shadowed budget, or any of a shadowed policy (whose `block` says so already)
            checks.append(Check(scope, "b", key, rule.counter, cap, 0, hold,
                                SHADOW if rule.shadow else block, start))
    # the argument's template: the amount and tokens as format fields (no check's value
    # holds a brace: kinds are letters, the rest integers)
    args = " ".join([_arg(c, "{0}" if i in costs else c.b, "{1}" if i in weighed else c.c)
                     for i, c in enumerate(checks)])
    return Template(
        tuple(checks), tuple(costs), tuple(weighed), args,
        [[h[0], h[1]] for h in holds], [[h[2], h[3], h[4]] for h in holds if h[1]],
        [list(t) for t in tpm], parallel, list(scopes),
        loop_rule((s, policies.get(s)) for s in scopes))


class Plans:
    """The templates of the calls' plans, kept per list of scopes, flow, tokens or none and
    hour, while the worker's policies are the mapping they were made from (with an
    endpoint's limits added, while they are the endpoint's) and the call presents no
    approval (which changes what a breach does); at most LIMIT of them."""

    LIMIT = 4096

    def __init__(self, names: Names) -> None:
        self.names = names
        self._of: Mapping[str, Policy] | None = None
        # the template, and the endpoint's limits it was made with (None: no endpoint)
        self._made: dict[tuple[tuple[str, ...], str, bool, int],
                         tuple[Template, Policy | None]] = {}

    def planned(self, call: Call, scopes: tuple[str, ...], policies: Mapping[str, Policy],
                own: Mapping[str, Policy], now_ms: int, grant: Grant | None,
                holder: Holder) -> Planned:
        """`policies`: the call's (its tag scopes' resolved: made per call, never kept; or
        the worker's with an endpoint's added, `WithSlot`); `own`: the worker's, the only
        ones kept."""
        slot = policies.slot.policy if isinstance(policies, WithSlot) else None
        base = policies.base if isinstance(policies, WithSlot) else policies
        if base is not own or grant is not None:
            return filled(template(self.names, call, scopes, policies, now_ms, grant), call,
                          holder)
        if own is not self._of:
            self._of, self._made = own, {}
        kept = (scopes, call.flow, call.tokens != 0, now_ms // HOUR_MS)
        made = self._made.get(kept)
        if made is None or made[1] is not slot:  # an endpoint's limits changed with settings
            if len(self._made) >= self.LIMIT:
                self._made.clear()
            made = self._made[kept] = (
                template(self.names, call, scopes, policies, now_ms, None), slot)
        return filled(made[0], call, holder)


def tag_value_checks(names: Names, tracked: Sequence[tuple[str, str]],
                     policies: Mapping[str, Policy], now_ms: int, record: dict[str, Any]
                     ) -> list[Check]:
    """The checks of the values `tag:<name>=*` policies track (`tracked`: (name, value) of
    each); the values go in the record's `tv` list, which the checks index from 1."""
    if not tracked:  # the usual call: no tag value to track
        return []
    checks = []
    values: list[str] = []
    for name, tag_value in tracked:
        policy = policies[f"tag:{name}=*"]
        period = tracking_period(policy)
        start = period_bounds(period, now_ms)[0]
        values.append(tag_value)
        checks.append(Check(f"tag:{name}=*", "t", names.tag_values(name, start), name,
                            policy.values_limit, len(values), counter_ttl_ms(period), BLOCK))
    record["tv"] = values
    return checks


def views(
    checks: Sequence[Check], snapshot: Sequence[Sequence[Any]], scopes: Sequence[str],
    policies: Mapping[str, Policy], now_ms: int,
) -> list[ScopeView]:
    """What the script saw, before its writes, as `decide`'s input."""
    windows: dict[str, dict[str, WindowState]] = {}
    inflight: dict[str, int] = {}
    counters: dict[str, dict[str, Counter]] = {}
    for (scope, kind, _, name, _, _, _, _, start), seen in zip(checks, snapshot, strict=True):
        if kind == "w":  # the window's string as the script saw it
            state = seen_window(seen[0])
            if scope in windows:
                windows[scope][name] = state
            else:
                windows[scope] = {name: state}
        elif kind == "b":
            counter = Counter(start, int(seen[0]), int(seen[1]))
            if scope in counters:
                counters[scope][name] = counter
            else:
                counters[scope] = {name: counter}
        elif kind == "p":
            inflight[scope] = int(seen[0])
        elif kind == "z":
            windows.setdefault(scope, {})[PAUSE] = WindowState(int(seen[0]), ())
        # t, l: a value tracked, a request's repeats: no view of their own
    return [
        ScopeView(scope, policies.get(scope), windows.get(scope, NOTHING),
                  inflight.get(scope, 0), counters.get(scope, NOTHING))
        for scope in scopes
    ]


def loop_plan(names: Names, ticket: Ticket, key_id: str, rule: LoopRule | None,
              fingerprints: Fingerprints) -> tuple[Loop | None, tuple[Check, ...]]:
    """The loop guard of the call and its check (none when no policy of its scopes sets a
    guard (`rule`: the one they set, from the plan's template), the request is not known,
    or the call replays an admitted one): `l`, bucket width, max_repeats, window ms."""
    shape = ticket.shape
    if ticket.replay_of is not None or rule is None or shape is None:
        return None, ()
    guard = rule.guard
    route = ticket.route
    made, row = fingerprints.of(key_id, shape.method, f"{route} {shape.path}", shape.body,
                                None, guard.bucket_ms)
    loop = loop_under(rule, key_id, route, shape, fingerprinted=made)
    return loop, (Check(loop.scope, "l", names.repeats(row), "", guard.bucket_ms,
                        guard.max_repeats, guard.window_ms, SHADOW if loop.shadow else BLOCK),)


def loop_seen(checks: Sequence[Check], snapshot: Sequence[Sequence[Any]], loop: Loop) -> Loop:
    """The loop guard with the admissions of its request the script saw."""
    for check, seen in zip(checks, snapshot, strict=True):
        if check.kind == "l":
            counts = dict(zip(map(int, seen[::2]), map(int, seen[1::2]), strict=True))
            return with_state(loop, from_buckets(counts))
    return loop
