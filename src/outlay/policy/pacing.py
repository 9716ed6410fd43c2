"""Traffic shaping, pure: a provider endpoint's own limits (those of its upstream key) as one
more scope of each call, counted in the same state and the same atomic step as the policies'
windows; a pause an upstream 429 puts on an endpoint; the choice of an endpoint with room;
and which refusals a call waits out in the gateway instead (`on_rate_limit: queue`).

An endpoint's scope is `endpoint:<provider>:<n>` (its place in the provider's list); its
limits are a Policy of rpm, tpm and max_parallel, and its pause is kept beside its windows
as the window PAUSE, whose `newest` is the end of the pause in ms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from outlay.policy.decision import Admit, Decision, Refuse, ScopeView
from outlay.policy.errors import OutlayError, RateLimited
from outlay.policy.model import Policy
from outlay.policy.money import ceil_div
from outlay.policy.windows import LIMIT_CODES
from outlay.values import value

ENDPOINT_PREFIX = "endpoint:"
PAUSE = "pause"  # the window an endpoint's pause is kept as (WindowState.newest: its end)
LIMIT_FIELDS = ("rpm", "tpm", "max_parallel")
# the refusals `on_rate_limit: queue` waits out; budgets never wait here
QUEUED_CODES = frozenset({*LIMIT_CODES.values(), "concurrency_limit_exceeded",
                          "provider_rate_limited"})


@value
class Slot:
    """One endpoint a call may be sent to, and its limits (an empty Policy: none)."""

    scope: str
    policy: Policy


def endpoint_scope(provider: str, index: int) -> str:
    return f"{ENDPOINT_PREFIX}{provider}:{index}"


def is_endpoint(scope: str | None) -> bool:
    return scope is not None and scope.startswith(ENDPOINT_PREFIX)


def endpoint_index(scope: str) -> int:
    return int(scope.rsplit(":", 1)[1])


def parse_limits(raw: object, where: str) -> Policy:
    """An endpoint's `limits: {rpm, tpm, max_parallel}` (positive integers) as a Policy;
    ValueError naming the field at fault otherwise."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping like {{rpm: 500, tpm: 200000, "
                         f"max_parallel: 50}}, got {raw!r}")
    unknown = sorted(str(name) for name in set(raw) - set(LIMIT_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                         f"{', '.join(LIMIT_FIELDS)}")
    for name, limit in raw.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{where}.{name} must be a positive integer, got {limit!r}")
    return Policy(rpm=raw.get("rpm"), tpm=raw.get("tpm"), max_parallel=raw.get("max_parallel"))


def paused(view: ScopeView, now_ms: int) -> tuple[str, int] | None:
    """Why an endpoint an upstream 429 paused until after now has no room, and for how
    many seconds more."""
    pause = view.windows.get(PAUSE)
    if pause is None or pause.newest <= now_ms:
        return None
    retry = ceil_div(pause.newest - now_ms, 1000)
    return f"{view.scope} answered 429 and is paused for {retry} s", retry


def _full(error: OutlayError, scope: str) -> tuple[str, int]:
    """Why an endpoint's own limits refused a call, and when to retry."""
    retry = int(error.details.get("retry_after") or 1)
    why = error.message.split(" Retry after")[0].rstrip(".").replace(f" for {scope}", "")
    return (why if scope in why else f"{scope}: {why}"), retry


def provider_full(full: Sequence[tuple[str, tuple[str, int]]]) -> Refuse:
    """The refusal when no endpoint of the provider has room: (scope, (why, retry after))
    of each; it names the soonest to have room."""
    scope, (_, retry) = min(full, key=lambda item: item[1][1])
    provider = scope.removeprefix(ENDPOINT_PREFIX).rsplit(":", 1)[0]
    reasons = "; ".join(why for _, (why, _) in full)
    return Refuse(RateLimited(
        "provider_rate_limited",
        f"Every {provider} endpoint is at the limits of its upstream key ({reasons}). "
        f"Retry after {retry} s.", provider=provider, retry_after=retry), scope)


def queue_wait(views: Sequence[ScopeView]) -> float | None:
    """How long a rate-limited call may wait in the gateway: the shortest queue_max_wait_s
    of the call's policies that say `on_rate_limit: queue`; None when none does."""
    wait: float | None = None
    for view in views:  # asked of every call: no list made
        policy = view.policy
        if policy is not None and policy.on_rate_limit == "queue" and (
                wait is None or policy.queue_max_wait_s < wait):
            wait = policy.queue_max_wait_s
    return wait


def held(decision: Decision, views: Sequence[ScopeView], may_queue: bool) -> Decision:
    """A rate refusal the call's policies queue, marked so (nothing is announced yet)."""
    if (not may_queue or isinstance(decision, Admit) or decision.approval is not None
            or decision.hold_ms is not None or decision.error.code not in QUEUED_CODES):
        return decision
    wait = queue_wait(views)
    return decision if wait is None else Refuse(decision.error, decision.scope, queue_s=wait)


def endpoint_refused(decision: Decision, slot: ScopeView) -> tuple[str, int] | None:
    """Why an endpoint's own limits refused a decision made with its view (None: they did
    not), and when to retry."""
    if isinstance(decision, Admit) or decision.scope != slot.scope:
        return None
    return _full(decision.error, slot.scope)


def decide_paced(
    decide_on: Callable[[Sequence[ScopeView]], Decision], views: Sequence[ScopeView],
    slots: Sequence[ScopeView], now_ms: int, may_queue: bool,
) -> tuple[Decision, str | None]:
    """The decision with the first endpoint (of `slots`, in the order to try them) that has
    room, and that endpoint's scope; refused by the call's own limits as decided, or with
    provider_rate_limited when no endpoint has room. Without slots, decided as ever."""
    if not slots:
        return held(decide_on(views), views, may_queue), None
    full: list[tuple[str, tuple[str, int]]] = []
    for slot in slots:
        why = paused(slot, now_ms)
        if why is None:
            decision = decide_on([*views, slot])
            if isinstance(decision, Admit):
                return decision, slot.scope
            why = endpoint_refused(decision, slot)
            if why is None:  # refused by the call's own limits, whatever the endpoint
                return held(decision, views, may_queue), None
        full.append((slot.scope, why))
    return held(provider_full(full), views, may_queue), None


class WithSlot(Mapping[str, Policy]):
    """A call's policies with its endpoint's limits as the endpoint scope's policy: a view
    of `base`, not a copy (a store's policies hold one per key with its own; copying them
    for every call would cost in proportion to the keys)."""

    __slots__ = ("base", "slot")

    def __init__(self, base: Mapping[str, Policy], slot: Slot) -> None:
        self.base, self.slot = base, slot

    def __getitem__(self, scope: str) -> Policy:
        return self.slot.policy if scope == self.slot.scope else self.base[scope]

    def get(self, scope: str, default: Policy | None = None) -> Policy | None:  # type: ignore[override]
        return self.slot.policy if scope == self.slot.scope else self.base.get(scope, default)

    def __contains__(self, scope: object) -> bool:
        return scope == self.slot.scope or scope in self.base

    def __iter__(self) -> Iterator[str]:
        yield from (s for s in self.base if s != self.slot.scope)
        yield self.slot.scope

    def __len__(self) -> int:
        return len(self.base) + (self.slot.scope not in self.base)
