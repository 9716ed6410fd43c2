"""Recreate an installation's hot state in Redis from the ledger in PostgreSQL: budget
counters of the current periods, rate windows, calls in flight and their reservations,
idempotency keys. Runs when a worker finds Redis without a good state (first start,
flushed, replaced, restarted from a snapshot: see forgot.py), into a Redis emptied of the
installation's keys; the state is marked ready (`lua/ready.lua`), with a new version and
epoch, only once all of it is written.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from outlay.policy.decision import Call, KeyInfo, call_scopes
from outlay.policy.model import Policy
from outlay.policy.periods import period_bounds
from outlay.policy.tags import is_wildcard, split, tracking_period
from outlay.policy.windows import BUCKETS, REQUEST_WINDOWS, bucket_ms
from outlay.state.redis.plan import Holder, Names, counter_ttl_ms, plan
from outlay.state.redis.scripts import script_text
from outlay.state.redis.windows import window_fields

IDEMPOTENCY_MS = 7 * 86_400_000


class Source(Protocol):
    async def committed(self, scope: str, since_ms: int, flow: str = "spend"
                        ) -> tuple[int, int]: ...
    async def window_counts(self, scope: str, since_ms: int, bucket_ms: int, tokens: bool
                            ) -> dict[int, int]: ...
    async def pending_rows(self) -> list[dict[str, Any]]: ...
    async def idempotency_since(self, since_ms: int) -> list[tuple[str, str, str, str]]: ...
    async def tag_values(self, name: str, since_ms: int) -> list[str]: ...


def row_scopes(row: Mapping[str, Any]) -> list[str]:
    key = KeyInfo(row["key_id"], row["agent"], row.get("grp"), {})
    labels = row.get("labels")
    return list(call_scopes(key, row["vendor"], orjson.loads(labels) if labels else None))


async def with_tag_values(source: Source, policies: Mapping[str, Policy], now_ms: int
                          ) -> tuple[dict[str, Policy], dict[str, tuple[int, list[str]]]]:
    """The policies to rebuild the state of: every scope's own, and each value a `*` policy
    tracks (seen in its tracking period) under its `*`'s; and the values to track again,
    by tag name (their set's period start, the values)."""
    out = dict(policies)
    tracked: dict[str, tuple[int, list[str]]] = {}
    for scope, policy in policies.items():
        parts = split(scope)
        if parts is None or parts[1] != "*":
            continue
        start = period_bounds(tracking_period(policy), now_ms)[0]
        values = (await source.tag_values(parts[0], start))[:policy.values_limit]
        tracked[parts[0]] = (start, values)
        for value in values:
            out.setdefault(f"tag:{parts[0]}={value}", policy)
    return out, tracked


def reservation_of(
    names: Names, row: Mapping[str, Any], policies: Mapping[str, Policy], worker: str
) -> dict[str, Any]:
    """The record of a call still in flight, as `plan` made it when the call was admitted."""
    idem = (names.idempotency(row["vendor"], row["idem_account"], row["idem"])
            if row.get("idem") and row.get("idem_account") is not None else "")
    call = Call(row["vendor"], cost_micros=row["reserved"], tokens=row["tokens"],
                flow="out" if row.get("flow") == "out" else "spend")
    _, record = plan(names, call, row_scopes(row), policies, row["ts_ms"], None,
                     Holder(row["key_id"], row["agent"], idem, worker))
    return record


async def rebuild(
    redis: Redis, names: Names, source: Source, policies: Mapping[str, Policy], now_ms: int,
    lease_ms: int, epoch: str, *, clock_given: bool = False,
) -> str:
    """Write the hot state and mark it ready, of `epoch`; returns its new version. `now_ms`
    is the store's clock (its TIME, the skew being reset), or the clock the store was
    given (`clock_given`)."""
    policies, tracked = await with_tag_values(source, policies, now_ms)
    pipe = redis.pipeline(transaction=True)
    for name, (start, values) in tracked.items():
        key = names.tag_values(name, start)
        pipe.delete(key)
        if values:
            pipe.sadd(key, *values)
            ttl = counter_ttl_ms(tracking_period(policies[f"tag:{name}=*"]))
            if ttl > 0:
                pipe.pexpire(key, ttl)
    for scope, policy in policies.items():
        if is_wildcard(scope):
            continue  # its values are scopes of their own
        for period, flow, counter in {(b.period, b.flow, b.counter) for b in policy.budgets}:
            start = period_bounds(period, now_ms)[0]
            spent, reserved = await source.committed(scope, start, flow)
            key = names.counter(scope, counter, start)
            pipe.hset(key, mapping={"spent": spent, "reserved": reserved})
            if (ttl := counter_ttl_ms(period)) > 0:  # as reserve.lua gives a counter it makes
                pipe.pexpire(key, ttl)
        for name in (*REQUEST_WINDOWS, "tpm"):
            if getattr(policy, name) is None:
                continue
            width = bucket_ms(name)
            since = (now_ms // width - BUCKETS + 1) * width
            counts = await source.window_counts(scope, since, width, name == "tpm")
            key = names.window(scope, name)
            pipe.delete(key)
            if counts:  # its newest bucket now's, or a newer one a call was counted in
                fields = window_fields(max(now_ms // width, *counts), counts)
                pipe.hset(key, items=[v for kv in fields.items() for v in kv])
                pipe.pexpire(key, width * (BUCKETS + 2))
    inflight: dict[str, int] = {}
    workers: set[str] = set()
    for row in await source.pending_rows():
        worker = row.get("worker") or "unknown"
        workers.add(worker)
        record = reservation_of(names, row, policies, worker)
        for key in record["parallel"]:
            inflight[key] = inflight.get(key, 0) + 1
        template = {
            "request_id": row["request_id"], "ts_ms": row["ts_ms"], "key_id": row["key_id"],
            "agent": row["agent"], "grp": row.get("grp"), "labels": None,
            "vendor": row["vendor"], "model": None, "route": "", "decision": "allowed",
            "code": None, "scope": None, "status": None, "reserved": row["reserved"],
            "cost": 0, "settlement": "pending", "spent": None, "cap": None,
            "tokens": row["tokens"], "worker": worker, "idem": row.get("idem"),
            "idem_account": row.get("idem_account"), "flow": row.get("flow"),
        }
        pipe.hset(names.reservation(row["request_id"]), mapping={
            "rec": orjson.dumps(record), "row": orjson.dumps(template), "ov": "0", "sp": "",
            "cap": "", "at": str(row["ts_ms"]), "fwd": "1"})  # may have been sent
        pipe.zadd(names.leases, {f"{worker} {row['request_id']}": row["ts_ms"] + lease_ms})
    for key, n in inflight.items():
        pipe.set(key, n)
    for vendor, account, idem, request_id in await source.idempotency_since(
            now_ms - IDEMPOTENCY_MS):
        pipe.set(names.idempotency(vendor, account, idem), request_id, px=IDEMPOTENCY_MS)
    version = secrets.token_hex(8)
    # the workers of those calls: theirs to settle, reaped only if they stop heartbeating
    pipe.eval(script_text("ready.lua"), 2, names.meta, names.workers, version, epoch,
              str(now_ms) if clock_given else "", *sorted(workers))
    await pipe.execute()
    return version
