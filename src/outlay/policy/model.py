"""Policies (SPEC §2) and scopes (SPEC §1) as immutable values, parsed from plain dicts."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from outlay.policy.loop_guard import (
    LoopGuard,
    LoopGuardError,
    OnLoop,
    parse_loop_guard,
    parse_on_loop,
)
from outlay.policy.money import micros_to_usd, usd_to_micros
from outlay.policy.vendor_access import (
    ACCESS_FIELDS,
    AccessError,
    VendorLists,
    lists_to_dict,
    parse_lists,
)

Period = Literal["hour", "day", "week", "month", "total"]
Mode = Literal["hard", "soft"]
Breach = Literal["block", "alert", "require_approval"]
Enforce = Literal["enforce", "shadow"]
OnRateLimit = Literal["reject", "queue"]
ENFORCE: tuple[Enforce, ...] = ("enforce", "shadow")
# what a budget caps: `spend` (what calls cost) or `out` (money a vendor call moves out of
# the account: Stripe refunds, transfers, payouts); each flow counts on counters of its own
Flow = Literal["spend", "out"]
FLOWS: tuple[Flow, ...] = ("spend", "out")


def counter_name(period: str, flow: str = "spend") -> str:
    """The name a budget's counter is kept under beside its scope and period start: its
    period for spend, `<period>-out` for money out, so that the two never share one."""
    return period if flow == "spend" else f"{period}-{flow}"

PERIODS: tuple[Period, ...] = ("hour", "day", "week", "month", "total")
SCOPE_KINDS = ("key", "agent", "group", "vendor", "tag", "global")
# a tag's name and value (X-Outlay-Tags, `tag:<name>=<value>` scopes)
TAG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
TAG_VALUE = re.compile(r"[A-Za-z0-9_.:@/+-]{1,128}")
DEFAULT_MAX_VALUES = 100_000
DEFAULT_QUEUE_WAIT_S = 30.0  # on_rate_limit: queue: how long a call waits by default
MAX_QUEUE_WAIT_S = 600.0  # and at most (a client's own timeout is rarely longer)


class PolicyError(ValueError):
    """A policy or scope that cannot be accepted; the message says which field and why
    (`field`, when known, names it alone)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Budget:
    cap_micros: int
    period: Period
    mode: Mode = "hard"
    warn_at: float | None = None
    # shadow: counted and reported as if enforced, but never refuses (nor holds, nor clamps)
    enforce: Enforce = "enforce"
    # on_exceeded: {downgrade_to: …}: the cheaper models, in order, an LLM call this budget
    # would refuse is sent to instead when one of them fits
    downgrade_to: tuple[str, ...] = ()
    flow: Flow = "spend"

    @property
    def counter(self) -> str:
        return counter_name(self.period, self.flow)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "usd": micros_to_usd(self.cap_micros),
            "period": self.period,
            "mode": self.mode,
        }
        if self.flow != "spend":
            out["flow"] = self.flow
        if self.warn_at is not None:
            out["warn_at"] = self.warn_at
        if self.enforce != "enforce":
            out["enforce"] = self.enforce
        if self.downgrade_to:
            out["on_exceeded"] = {"downgrade_to": list(self.downgrade_to)}
        return out


@dataclass(frozen=True)
class Policy:
    rpm: int | None = None
    rph: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budgets: tuple[Budget, ...] = ()
    models: tuple[str, ...] | None = None
    free_models_only: bool = False
    vendors: tuple[str, ...] | None = None
    on_breach: Breach = "block"
    approval_wait_s: float = 0.0
    # an LLM call's maximum output may be lowered to fit the hard budgets down to this many
    # tokens; None: not set (DEFAULT_CLAMP_FLOOR); CLAMP_OFF (false): never, refuse instead
    clamp_max_tokens: int | None = None
    # how long a call that fits a hard budget's settled spend, but not beside the calls in
    # flight, waits for them to settle before it is refused; None: DEFAULT_HOLD_WAIT_MS
    hold_wait_ms: int | None = None
    # least privilege on vendor APIs (policy.vendor_access): per vendor, the operations the
    # scope may call, the connected accounts it may act on, the destinations it may reach
    operations: VendorLists | None = None
    accounts: VendorLists | None = None
    destinations: VendorLists | None = None
    # tags every call under this policy must carry (400 missing_tag otherwise)
    required_tags: tuple[str, ...] = ()
    # a `tag:<name>=*` policy: how many distinct values it tracks (None: DEFAULT_MAX_VALUES)
    max_values: int | None = None
    # shadow: every limit and budget of the policy is counted and its breaches reported
    # (audit, metrics, `*.shadow` webhooks) as if enforced, but calls pass
    enforce: Enforce = "enforce"
    # the same request admitted more than loop_guard.max_repeats times within its window_s
    # is refused (429 loop_detected), or its key revoked (on_loop: revoke)
    loop_guard: LoopGuard | None = None
    on_loop: OnLoop = "refuse"
    # queue: a call that would breach a rate window (or an endpoint's limits) waits in the
    # gateway, up to queue_max_wait_s, until it fits, instead of a 429 at once
    on_rate_limit: OnRateLimit = "reject"
    queue_max_wait_s: float = DEFAULT_QUEUE_WAIT_S
    # what policy.rules works out of the policy on its first use, kept with it (rules_of)
    rules: object = field(default=None, init=False, repr=False, compare=False)

    def shadows(self, budget: Budget | None = None) -> bool:
        """Whether a breach (of `budget`, when given) is only reported, never enforced."""
        return self.enforce == "shadow" or (budget is not None and budget.enforce == "shadow")

    @property
    def values_limit(self) -> int:
        return DEFAULT_MAX_VALUES if self.max_values is None else self.max_values

    @property
    def hold_ms(self) -> int:
        return DEFAULT_HOLD_WAIT_MS if self.hold_wait_ms is None else self.hold_wait_ms

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("rpm", "rph", "rpd", "tpm", "max_parallel"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.budgets:
            out["budgets"] = [b.to_dict() for b in self.budgets]
        if self.models is not None:
            out["models"] = list(self.models)
        if self.free_models_only:
            out["free_models_only"] = True
        if self.vendors is not None:
            out["vendors"] = list(self.vendors)
        out["on_breach"] = self.on_breach
        if self.approval_wait_s:
            out["approval_wait_s"] = self.approval_wait_s
        if self.clamp_max_tokens == CLAMP_OFF:
            out["clamp_max_tokens"] = False
        elif self.clamp_max_tokens is not None:
            out["clamp_max_tokens"] = self.clamp_max_tokens
        if self.hold_wait_ms is not None:
            out["hold_wait_ms"] = self.hold_wait_ms
        for name in ACCESS_FIELDS:
            lists = getattr(self, name)
            if lists is not None:
                out[name] = lists_to_dict(lists)
        if self.required_tags:
            out["required_tags"] = list(self.required_tags)
        if self.max_values is not None:
            out["max_values"] = self.max_values
        if self.enforce != "enforce":
            out["enforce"] = self.enforce
        if self.loop_guard is not None:
            out["loop_guard"] = self.loop_guard.to_dict()
        if self.on_loop != "refuse":
            out["on_loop"] = self.on_loop
        if self.on_rate_limit != "reject":
            out["on_rate_limit"] = self.on_rate_limit
        if self.queue_max_wait_s != DEFAULT_QUEUE_WAIT_S:
            out["queue_max_wait_s"] = self.queue_max_wait_s
        return out


_POLICY_FIELDS = {
    "rpm", "rph", "rpd", "tpm", "max_parallel", "budgets", "models",
    "free_models_only", "vendors", "on_breach", "approval_wait_s", "clamp_max_tokens",
    "hold_wait_ms", "required_tags", "max_values", "enforce", "loop_guard", "on_loop",
    "on_rate_limit", "queue_max_wait_s", *ACCESS_FIELDS,
}
# `clamp_max_tokens: true` or unset: the least output worth sending a call with
DEFAULT_CLAMP_FLOOR = 256
# `clamp_max_tokens: false`: a call that does not fit is refused, never lowered
CLAMP_OFF = 0
# how long a call waits for calls in flight to settle when only their holds leave no room
DEFAULT_HOLD_WAIT_MS = 2_000
MAX_HOLD_WAIT_MS = 600_000  # a call may not wait longer than its client would (ten minutes)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _str_list(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{name} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def parse_budget(raw: object, index: int = 0) -> Budget:
    where = f"budgets[{index}]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be an object like {{usd: 50, period: month}}")
    unknown = set(raw) - {"usd", "period", "mode", "warn_at", "enforce", "on_exceeded", "flow"}
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {sorted(unknown)}")
    if "usd" not in raw:
        raise PolicyError(f"{where}.usd is required")
    try:
        cap = usd_to_micros(raw["usd"])
    except ValueError as exc:
        raise PolicyError(f"{where}.usd: {exc}") from None
    period = raw.get("period", "month")
    if period not in PERIODS:
        raise PolicyError(f"{where}.period must be one of {list(PERIODS)}, got {period!r}")
    mode = raw.get("mode", "hard")
    if mode not in ("hard", "soft"):
        raise PolicyError(f"{where}.mode must be 'hard' or 'soft', got {mode!r}")
    flow = _flow(raw.get("flow", "spend"), f"{where}.flow")
    warn_at = raw.get("warn_at")
    if warn_at is not None and (
        isinstance(warn_at, bool) or not isinstance(warn_at, int | float) or not 0 < warn_at <= 1
    ):
        raise PolicyError(f"{where}.warn_at must be a fraction in (0, 1], got {warn_at!r}")
    budget = Budget(cap, period, mode, None if warn_at is None else float(warn_at),
                    _enforce(raw.get("enforce"), f"{where}.enforce"),
                    _downgrade_to(raw.get("on_exceeded"), f"{where}.on_exceeded"), flow)
    if budget.downgrade_to and (mode != "hard" or budget.enforce == "shadow"):
        raise PolicyError(f"{where}.on_exceeded applies to an enforced hard budget only")
    if budget.downgrade_to and flow == "out":
        raise PolicyError(f"{where}.on_exceeded applies to a spend budget only", where)
    return budget


def _flow(value: object, where: str) -> Flow:
    """`flow`: what a budget caps, `spend` (the default) or `out`."""
    if value == "spend" or value == "out":
        return value
    raise PolicyError(f"{where} must be 'spend' or 'out', got {value!r}", where)


def _downgrade_to(value: object, where: str) -> tuple[str, ...]:
    """`on_exceeded: {downgrade_to: model | [models]}`: the models, in order."""
    if value is None:
        return ()
    if not isinstance(value, dict) or set(value) != {"downgrade_to"}:
        raise PolicyError(f"{where} must be {{downgrade_to: <model or list of models>}}, "
                          f"got {value!r}")
    models = value["downgrade_to"]
    if isinstance(models, str):
        models = [models]
    if (not isinstance(models, list) or not models
            or not all(isinstance(m, str) and m for m in models)):
        raise PolicyError(f"{where}.downgrade_to must be a model or a non-empty list of "
                          f"models, got {models!r}")
    return tuple(models)


def _enforce(value: object, where: str) -> Enforce:
    if value is None or value == "enforce":
        return "enforce"
    if value == "shadow":
        return "shadow"
    raise PolicyError(f"{where} must be 'enforce' or 'shadow', got {value!r}")


def parse_policy(raw: object, known_vendors: Collection[str] | None = None) -> Policy:
    """Validate a policy dict (SPEC §2); unknown fields and bad values raise PolicyError.
    `known_vendors`: the vendor names the gateway knows, which `operations`, `accounts` and
    `destinations` may name (None: any, for a policy already stored)."""
    if raw is None:
        return Policy()
    if not isinstance(raw, dict):
        raise PolicyError("a policy must be an object")
    unknown = set(raw) - _POLICY_FIELDS
    if unknown:
        first = sorted(map(str, unknown))[0]
        close = difflib.get_close_matches(first, sorted(_POLICY_FIELDS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise PolicyError(f"unknown policy field(s): {sorted(map(str, unknown))}{hint}; known: "
                          f"{', '.join(sorted(_POLICY_FIELDS))}")
    limits = {
        name: _positive_int(name, raw[name])
        for name in ("rpm", "rph", "rpd", "tpm", "max_parallel")
        if raw.get(name) is not None
    }
    budgets_raw = raw.get("budgets")
    if budgets_raw is None:
        budgets_raw = []
    if not isinstance(budgets_raw, list):
        raise PolicyError("budgets must be a list")
    budgets = tuple(parse_budget(b, i) for i, b in enumerate(budgets_raw))
    models = None if raw.get("models") is None else _str_list("models", raw["models"])
    vendors = None if raw.get("vendors") is None else _str_list("vendors", raw["vendors"])
    free_only = raw.get("free_models_only", False)
    if not isinstance(free_only, bool):
        raise PolicyError("free_models_only must be true or false")
    on_breach = raw.get("on_breach", "block")
    if on_breach not in ("block", "alert", "require_approval"):
        raise PolicyError(
            f"on_breach must be 'block', 'alert' or 'require_approval', got {on_breach!r}"
        )
    wait = raw.get("approval_wait_s", 0)
    if (isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0
            or not math.isfinite(wait)):
        raise PolicyError("approval_wait_s must be a non-negative number of seconds")
    try:
        access = {name: parse_lists(name, raw.get(name), known_vendors) for name in ACCESS_FIELDS}
    except AccessError as exc:
        raise PolicyError(str(exc), exc.field) from None
    try:
        loop_guard, on_loop = parse_loop_guard(raw.get("loop_guard")), parse_on_loop(
            raw.get("on_loop"))
    except LoopGuardError as err:
        raise PolicyError(str(err), err.field) from None
    return Policy(
        rpm=limits.get("rpm"),
        rph=limits.get("rph"),
        rpd=limits.get("rpd"),
        tpm=limits.get("tpm"),
        max_parallel=limits.get("max_parallel"),
        budgets=budgets,
        models=models,
        free_models_only=free_only,
        vendors=vendors,
        on_breach=on_breach,
        approval_wait_s=float(wait),
        clamp_max_tokens=_clamp_floor(raw.get("clamp_max_tokens")),
        hold_wait_ms=_hold_wait(raw.get("hold_wait_ms")),
        operations=access["operations"],
        accounts=access["accounts"],
        destinations=access["destinations"],
        required_tags=_required_tags(raw.get("required_tags")),
        max_values=_max_values(raw.get("max_values")),
        enforce=_enforce(raw.get("enforce"), "enforce"),
        loop_guard=loop_guard,
        on_loop=on_loop,
        on_rate_limit=_on_rate_limit(raw.get("on_rate_limit")),
        queue_max_wait_s=_queue_wait(raw.get("queue_max_wait_s")),
    )


def _on_rate_limit(value: object) -> OnRateLimit:
    if value is None or value == "reject":
        return "reject"
    if value == "queue":
        return "queue"
    raise PolicyError(f"on_rate_limit must be 'reject' or 'queue', got {value!r}",
                      "on_rate_limit")


def _queue_wait(value: object) -> float:
    if value is None:
        return DEFAULT_QUEUE_WAIT_S
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not 0 < value <= MAX_QUEUE_WAIT_S):
        raise PolicyError(f"queue_max_wait_s must be a number of seconds above 0 and at most "
                          f"{MAX_QUEUE_WAIT_S:g}, got {value!r}", "queue_max_wait_s")
    return float(value)


def _required_tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(v, str) and TAG_NAME.fullmatch(v) for v in value):
        raise PolicyError(f"required_tags must be a list of tag names, got {value!r}")
    return tuple(dict.fromkeys(value))


def _max_values(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"max_values must be a whole number >= 1, got {value!r}")
    return value


def check_scope_policy(scope: str, policy: Policy) -> None:
    """What a policy may say depends on its scope: `max_values` only on `tag:<name>=*`."""
    if policy.max_values is not None and not (
            scope.startswith("tag:") and scope.endswith("=*")):
        raise PolicyError(
            f"max_values applies only to a tag:<name>=* policy, not to {scope}")


def _hold_wait(value: object) -> int | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 0 <= value <= MAX_HOLD_WAIT_MS):
        raise PolicyError(
            f"hold_wait_ms must be a whole number of milliseconds from 0 to "
            f"{MAX_HOLD_WAIT_MS}, got {value!r}")
    return value


def _clamp_floor(value: object) -> int | None:
    """`clamp_max_tokens`: absent (None: the default floor), false (CLAMP_OFF), true (a floor
    of DEFAULT_CLAMP_FLOOR tokens) or the least maximum output, in tokens, a clamped call may
    be sent with."""
    if value is None:
        return None
    if value is False:
        return CLAMP_OFF
    if value is True:
        return DEFAULT_CLAMP_FLOOR
    if isinstance(value, int) and value >= 1:
        return value
    raise PolicyError(
        "clamp_max_tokens must be true, false or the least maximum output in tokens (an "
        f"integer >= 1), got {value!r}")


def parse_scope(text: str) -> str:
    """Normalise and validate a scope string: `key:<id>`, `agent:<name>`, …, `global`."""
    if text == "global":
        return text
    kind, sep, name = text.partition(":")
    if not sep or kind not in SCOPE_KINDS or kind == "global" or not name:
        raise PolicyError(
            f"invalid scope {text!r}: use key:<id>, agent:<name>, group:<name>, "
            "vendor:<name>, tag:<name>=<value>, tag:<name>=* or global"
        )
    if kind == "tag":
        tag, eq, value = name.partition("=")
        if not eq or not TAG_NAME.fullmatch(tag) or not (
                value == "*" or TAG_VALUE.fullmatch(value)):
            raise PolicyError(
                f"invalid scope {text!r}: a tag scope is tag:<name>=<value> or "
                "tag:<name>=* (one bucket per value)")
    elif "*" in name:
        raise PolicyError(
            f"invalid scope {text!r}: only a tag scope may name every value (tag:<name>=*)")
    return text
