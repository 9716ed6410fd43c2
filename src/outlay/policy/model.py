"""Policies (SPEC §2) and scopes (SPEC §1) as immutable values, parsed from plain dicts."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Literal

from outlay.policy.money import micros_to_usd, usd_to_micros

Period = Literal["hour", "day", "week", "month", "total"]
Mode = Literal["hard", "soft"]
Breach = Literal["block", "alert", "require_approval"]

PERIODS: tuple[Period, ...] = ("hour", "day", "week", "month", "total")
SCOPE_KINDS = ("key", "agent", "group", "vendor", "global")


class PolicyError(ValueError):
    """A policy or scope that cannot be accepted; the message says which field and why."""


@dataclass(frozen=True)
class Budget:
    cap_micros: int
    period: Period
    mode: Mode = "hard"
    warn_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "usd": micros_to_usd(self.cap_micros),
            "period": self.period,
            "mode": self.mode,
        }
        if self.warn_at is not None:
            out["warn_at"] = self.warn_at
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
        return out


_POLICY_FIELDS = {
    "rpm", "rph", "rpd", "tpm", "max_parallel", "budgets", "models",
    "free_models_only", "vendors", "on_breach", "approval_wait_s", "clamp_max_tokens",
    "hold_wait_ms",
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
    unknown = set(raw) - {"usd", "period", "mode", "warn_at"}
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
    warn_at = raw.get("warn_at")
    if warn_at is not None and (
        isinstance(warn_at, bool) or not isinstance(warn_at, int | float) or not 0 < warn_at <= 1
    ):
        raise PolicyError(f"{where}.warn_at must be a fraction in (0, 1], got {warn_at!r}")
    return Budget(cap, period, mode, None if warn_at is None else float(warn_at))


def parse_policy(raw: object) -> Policy:
    """Validate a policy dict (SPEC §2); unknown fields and bad values raise PolicyError."""
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
    )


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
            "vendor:<name> or global"
        )
    return text
