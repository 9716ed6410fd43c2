"""The decision's CPU per call in process, with the bench's key (an rpm and a tpm window, a
hard monthly budget on the key and on its agent): the embedded store's `decide` on views
of steady traffic, and the Redis store's plan, script argument, record, views of the
script's reply and `decide`. Prints microseconds per call; for a figure the machine's
noise does not move, count instructions instead:

    valgrind --tool=callgrind .venv/bin/python bench/decide_cost.py embedded 300
    valgrind --tool=callgrind .venv/bin/python bench/decide_cost.py embedded 900

(the difference of the two totals over 2 x 600 calls: warm-up and measure run as many).
"""

from __future__ import annotations

import sys
import time

import orjson

from outlay.policy.decide import decide
from outlay.policy.decision import Call, Clamp, Counter, KeyInfo, ScopeView
from outlay.policy.model import parse_policy
from outlay.policy.periods import period_start
from outlay.policy.windows import WindowState, bucket_of
from outlay.state.redis.plan import Holder, Names, Plans, views

HUGE_USD = 1_000_000_000
KEY = parse_policy({"rpm": 1_000_000_000, "tpm": 1_000_000_000_000,
                    "budgets": [{"usd": HUGE_USD, "period": "month", "mode": "hard"}]})
AGENT = parse_policy({"budgets": [{"usd": HUGE_USD, "period": "month", "mode": "hard"}]})
KEY_INFO = KeyInfo("k1", "a1", None, {})
SCOPES = ("key:k1", "agent:a1", "vendor:openai", "global")
POLICIES = {"key:k1": KEY, "agent:a1": AGENT}
NOW = 1_765_000_000_123
CALL = Call("openai", "gpt-4o-mini", "gpt-4o-mini", cost_micros=1234, tokens=300,
            clamp=Clamp(1000, 600, 4096))


def embedded_views(now: int) -> list[ScopeView]:
    windows = {"rpm": WindowState(bucket_of("rpm", now), tuple(range(100, 160))),
               "tpm": WindowState(bucket_of("tpm", now), tuple(range(10_000, 10_060)))}
    start = period_start("month", now)
    return [ScopeView("key:k1", KEY, windows, 0, {"month": Counter(start, 5_000_000, 30_000)}),
            ScopeView("agent:a1", AGENT, {}, 0, {"month": Counter(start, 5_000_000, 30_000)}),
            ScopeView("vendor:openai", None), ScopeView("global", None)]


def embedded(calls: int) -> float:
    seen = embedded_views(NOW)
    began = time.perf_counter()
    for i in range(calls):
        decide(CALL, KEY_INFO, seen, NOW + i)
    return (time.perf_counter() - began) / calls


def redis(calls: int) -> float:
    plans = Plans(Names("default"))
    holder = Holder("k1", "a1", "", "w1")
    try:  # a window as the script returns it: `b s c t` (state/redis/windows.py)
        from outlay.state.redis.windows import seen_window  # noqa: F401
        counts = " ".join(str(n) for n in (NOW // 1000, sum(range(100, 159)), 159,
                                           *range(158, 99, -1)))
    except ImportError:  # a checkout from before: the 60 counts, oldest first
        counts = " ".join(str(n) for n in range(100, 160))
    reply: list[list[str]] | None = None
    began = time.perf_counter()
    for i in range(calls):
        planned = plans.planned(CALL, SCOPES, POLICIES, POLICIES, NOW + i, None, holder)
        orjson.dumps(planned.record)
        if reply is None:
            reply = [[counts] if c.kind == "w" else ["5000000", "30000"]
                     for c in planned.checks]
        seen = views(planned.checks, reply, SCOPES, POLICIES, NOW + i)
        decide(CALL, KEY_INFO, seen, NOW + i)
    return (time.perf_counter() - began) / calls


def main() -> None:
    store = sys.argv[1] if len(sys.argv) > 1 else "embedded"
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    run = redis if store == "redis" else embedded
    run(calls)  # warm-up
    print(f"{store}: {run(calls) * 1e6:.2f} µs per call")


if __name__ == "__main__":
    main()
