"""Which loop guard a call is under, and what it says of the call: the tightest guard of
its scopes' policies (the fewest repeats over the longest window), and a refusal with its
`agent.loop_detected` event once the same request was admitted `max_repeats` times. Pure:
the stores read the request's count and write it back in the decision's atomic step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field

from outlay.policy.approvals import RequestShape
from outlay.policy.decision import Event, KeyInfo, Refuse
from outlay.policy.errors import RateLimited
from outlay.policy.loop_guard import LoopGuard, OnLoop, count_repeat, fingerprint
from outlay.policy.model import Policy
from outlay.policy.money import ceil_div
from outlay.policy.windows import WindowState
from outlay.values import value

LOOP_CODE = "loop_detected"


@value
class Loop:
    """The guard a call is under, the request it counts, and that request's admissions."""

    guard: LoopGuard
    on_loop: OnLoop
    scope: str  # the scope whose policy sets the fewest repeats
    shadow: bool  # every guard of the call is only reported (enforce: shadow)
    fingerprint: str
    route: str  # the gateway's route: openai.chat, vendor.stripe, …
    request: str  # method and path: "POST /chat/completions"
    state: WindowState = field(default_factory=WindowState)


@value
class LoopVerdict:
    refusal: Refuse | None
    state: WindowState  # what to store when the call is admitted
    shadowed: Event | None = None  # a repeat past the guard, only reported


@value
class LoopRule:
    """The loop guard a set of scopes' policies puts their calls under, whatever the request:
    the same for every call of a key while its policies hold (kept with them by a store)."""

    guard: LoopGuard
    on_loop: OnLoop
    scope: str  # the scope whose policy sets the fewest repeats
    shadow: bool  # every guard of the call is only reported (enforce: shadow)


def loop_rule(policies: Iterable[tuple[str, Policy | None]]) -> LoopRule | None:
    """The tightest guard of these scopes' policies (the fewest repeats, the first scope of
    those, over the longest window of any); None when no policy sets one."""
    guarded = [(scope, p) for scope, p in policies if p is not None]
    tight = [(p.loop_guard.max_repeats, scope, p) for scope, p in guarded
             if p.loop_guard is not None]
    if not tight:
        return None
    repeats, scope, _ = min(tight, key=lambda entry: entry[0])
    window = max(p.loop_guard.window_s for _, _, p in tight if p.loop_guard is not None)
    on_loop: OnLoop = "revoke" if any(p.on_loop == "revoke" for _, p in guarded) else "refuse"
    return LoopRule(LoopGuard(repeats, window), on_loop, scope,
                    all(p.enforce == "shadow" for _, _, p in tight))


def loop_under(rule: LoopRule, key_id: str, route: str, shape: RequestShape,
               digest: bytes | None = None, state: WindowState | None = None,
               fingerprinted: str | None = None) -> Loop:
    """The call's Loop under `rule`: its request's fingerprint (`fingerprinted`: made
    already) and admissions so far (`state`)."""
    return Loop(rule.guard, rule.on_loop, rule.scope, rule.shadow,
                fingerprinted or fingerprint(key_id, shape.method, f"{route} {shape.path}",
                                             shape.body, digest),
                route, f"{shape.method} {shape.path}",
                WindowState() if state is None else state)


def with_state(loop: Loop, state: WindowState) -> Loop:
    """`loop` with its request's admissions `state` (dataclasses.replace, made directly)."""
    return Loop(loop.guard, loop.on_loop, loop.scope, loop.shadow, loop.fingerprint,
                loop.route, loop.request, state)


def judge_loop(loop: Loop, key: KeyInfo, now_ms: int) -> LoopVerdict:
    seen = count_repeat(loop.guard, loop.state, now_ms)
    if seen.allowed:
        return LoopVerdict(None, seen.state)
    guard, retry = loop.guard, ceil_div(seen.retry_after_ms, 1000)
    revoke = loop.on_loop == "revoke"
    error = RateLimited(
        LOOP_CODE,
        f"The same request ({loop.request} on {loop.route}, same body) was made "
        f"{seen.repeats} times within {guard.window_s} s, the most {loop.scope} allows "
        "(loop_guard); "
        + ("the key has been revoked." if revoke else f"retry after {retry} s."),
        scope=loop.scope, repeats=seen.repeats, max_repeats=guard.max_repeats,
        window_s=guard.window_s, retry_after=retry, on_loop=loop.on_loop)
    event = Event("agent.loop_detected", {
        "scope": loop.scope, "agent_id": key.agent, "key_id": key.id, "code": LOOP_CODE,
        "route": loop.route, "request": loop.request, "repeats": seen.repeats,
        "max_repeats": guard.max_repeats, "window_s": guard.window_s, "retry_after": retry,
        "on_loop": loop.on_loop,
    }, f"agent.loop_detected:{key.id}:{now_ms // guard.window_ms}")
    if loop.shadow:
        return LoopVerdict(None, seen.state, Event(
            f"{event.type}.shadow", {**event.data, "enforce": "shadow"},
            f"{event.coalesce}:shadow"))
    return LoopVerdict(Refuse(error, loop.scope, (event,)), seen.state)
