"""`--vendor-read N`: what a Stripe call on a payment Outlay has not counted yet costs, since
Outlay reads the payment from Stripe before it decides (docs/design.md, "Payments").

Three vendor calls, one at a time over one kept-alive connection, interleaved (so the
machine's drift falls on each alike), each against the nginx mock's Stripe:

- plain: `POST /v1/customers`, known to move no money: forwarded, nothing to count;
- counted: a capture of a payment intent Outlay already counts: priced on its record;
- read first: a capture of a payment intent Outlay has never seen: read from Stripe (a GET
  with the gateway's credential), then priced and forwarded like the one before.

The line reports each one's p50 and p99 and what a read first adds over the plain call.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from measure import percentile

if TYPE_CHECKING:
    from scenarios import Target

# the mock's Stripe answers (nginx_mock.stripe_locations): the intent as read, and captured
INTENT = {"id": "pi_bench", "object": "payment_intent", "amount": 2000, "currency": "usd",
          "amount_received": 0, "amount_capturable": 2000, "status": "requires_capture",
          "capture_method": "manual", "livemode": False}
CAPTURED = {**INTENT, "amount_received": 2000, "amount_capturable": 0, "status": "succeeded"}
CUSTOMER = {"id": "cus_bench", "object": "customer", "email": "bench@example.com"}
KINDS = ("plain", "counted", "read first")


@dataclass(frozen=True)
class VendorRead:
    calls: int
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    failures: int

    def lines(self) -> list[str]:
        """The report's section: a table and the line worth quoting."""
        out = ["## A vendor call that needs a read first", "",
               f"{self.calls} calls of each kind, one at a time over one connection, "
               "interleaved (bench/vendor_read.py); the embedded store.", "",
               "| call | p50 | p99 |", "|---|---:|---:|"]
        out += [f"| {kind} | {self.p50_ms[kind]:.2f} ms | {self.p99_ms[kind]:.2f} ms |"
                for kind in KINDS]
        added = self.p50_ms["read first"] - self.p50_ms["plain"]
        counted = self.p50_ms["counted"] - self.p50_ms["plain"]
        out += ["", f"A payment Outlay has not counted adds {added:+.2f} ms at the p50 over a "
                f"plain vendor pass-through ({counted:+.2f} ms for one it counts already)"
                + (f"; {self.failures} calls failed" if self.failures else "") + "."]
        return out


async def _measure(target: Target, calls: int) -> VendorRead:
    token = target.tokens[0]
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/x-www-form-urlencoded"}
    base = f"{target.url}/vendors/stripe/v1"
    paths = {"plain": (f"{base}/customers", "email=bench%40example.com"),
             "counted": (f"{base}/payment_intents/pi_bench_counted/capture", "")}
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    failures = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        # the counted intent is read once, here; every later capture of it is priced on it
        async with session.post(paths["counted"][0], data="", headers=headers) as first:
            await first.read()
        for i in range(calls):
            for kind in KINDS:
                url, body = paths.get(kind) or (
                    f"{base}/payment_intents/pi_bench_{time.time_ns():x}_{i}/capture", "")
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    ok = answer.status == 200
                elapsed = (time.perf_counter() - start) * 1000
                if ok:
                    times[kind].append(elapsed)
                else:
                    failures += 1
    return VendorRead(calls, {k: percentile(v, 50) for k, v in times.items()},
                      {k: percentile(v, 99) for k, v in times.items()}, failures)


def measure(target: Target, calls: int) -> VendorRead:
    return asyncio.run(_measure(target, calls))


def stripe_locations() -> str:
    """nginx locations answering as Stripe under /stripe (read, capture, a customer)."""
    def body(obj: object) -> str:
        return "'" + json.dumps(obj, separators=(",", ":")) + "'"

    return f"""\
    location ~ ^/stripe/v1/payment_intents/[A-Za-z0-9_]+$ {{
      default_type application/json;
      return 200 {body(INTENT)};
    }}
    location ~ ^/stripe/v1/payment_intents/[A-Za-z0-9_]+/capture$ {{
      default_type application/json;
      return 200 {body(CAPTURED)};
    }}
    location = /stripe/v1/customers {{
      default_type application/json;
      return 200 {body(CUSTOMER)};
    }}
"""
