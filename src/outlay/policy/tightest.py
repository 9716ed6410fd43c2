"""The limits a call's response headers speak of (SPEC §4): the tightest request window,
token window and hard budget among those `decide` checked."""

from __future__ import annotations

from outlay.policy.decision import Limits


class Tightest:
    """Keeps the tightest request window, token window and hard budget seen."""

    __slots__ = ("bud", "req", "tok")  # one per decision: set and read quickly

    def __init__(self) -> None:
        self.req: tuple[int, int, int, str] | None = None  # remaining, limit, reset, window
        self.tok: tuple[int, int, int, str] | None = None
        self.bud: tuple[int, int, str] | None = None  # remaining, cap, scope

    def window(self, name: str, limit: int, used: int, reset_ms: int) -> None:
        left = limit - used  # not max(0, …): a builtin's call costs more than the test
        entry = (left if left > 0 else 0, limit, reset_ms, name)
        if name == "tpm":
            if self.tok is None or entry < self.tok:
                self.tok = entry
        elif self.req is None or entry < self.req:
            self.req = entry

    def budget(self, cap: int, remaining: int, scope: str) -> None:
        entry = (remaining if remaining > 0 else 0, cap, scope)
        if self.bud is None or entry < self.bud:
            self.bud = entry

    def build(self) -> Limits:
        req, tok, bud = self.req, self.tok, self.bud
        if req is None and tok is None and bud is None:
            return Limits()
        # positional, in Limits' order: the headers' values are made on every call
        r_remaining, r_limit, r_reset, r_window = req or _NO_REQ
        t_remaining, t_limit, t_reset, _ = tok or _NO_REQ
        b_remaining, b_cap, b_scope = bud or _NO_BUD
        return Limits(r_limit, r_remaining, r_reset, r_window, t_limit, t_remaining, t_reset,
                      b_cap, b_remaining, b_scope)


_NO_REQ: tuple[None, None, None, None] = (None, None, None, None)
_NO_BUD: tuple[None, None, None] = (None, None, None)
