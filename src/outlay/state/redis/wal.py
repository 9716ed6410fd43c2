"""The ledger's way from Redis to PostgreSQL.

Every ledger change a worker makes is written twice: into its stream in Redis, by the same
script that decides or settles (so a worker killed a moment later loses nothing: another
worker drains its stream), and into the worker's memory (so an emptied Redis loses nothing
either). The worker writes its memory to PostgreSQL in batches every few milliseconds, with
idempotent statements, then drops the entries from its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from outlay.policy.decision import KeyInfo
from outlay.state import ledger_sql
from outlay.state.base import SHADOW_CODE, StateError, Ticket
from outlay.state.redis.batch import ScriptBatch

log = logging.getLogger("outlay.state")

Entry = dict[str, Any]
MAX_BATCH = 2_000


class Ledger(Protocol):
    async def apply_wal(self, entries: list[Entry]) -> None: ...


def _opt_int(text: str) -> int | None:
    return int(text) if text else None


def entries_of(fields: Mapping[str, str], row: Entry | None = None) -> list[Entry]:
    """One stream entry as the ledger writes it applies: 'r' a reservation's row, 's' a
    settlement (with the row, so that it lands even before the reserving worker's own
    entry), 'j' entries written as they are. `row`: the entry's row as a dict, when the
    caller has it (then `fields` need not carry it as text, and it is taken as is)."""
    kind = fields["k"]
    if kind == "j":
        entries: list[Entry] = orjson.loads(fields["e"])
        return entries
    if row is None:
        row = orjson.loads(fields["row"])
    overage_code = row.pop("overage_code", None)
    if fields.get("ov") == "1":  # let through by on_breach: alert
        row["code"] = overage_code
    elif fields.get("ov") == "2":  # let through by the call's approval
        row["code"] = "approved_overage"
    elif fields.get("ov") == "3":  # a breach only reported (enforce: shadow)
        row["code"] = SHADOW_CODE
    row["spent"], row["cap"] = _opt_int(fields.get("sp", "")), _opt_int(fields.get("cap", ""))
    out: list[Entry] = [{"t": "row", "row": row}]
    if kind == "s":
        out.append(settle_entry(row["request_id"], _opt_int(fields["status"]), fields["cost"],
                                fields["mode"], fields["model"], fields["reserved"],
                                fields["tokens"]))
    return out


def settle_entry(request_id: str, status: int | None, cost: int | str, settlement: str,
                 model: str | None, reserved: int | str, tokens: int | str) -> Entry:
    """A settlement as the ledger writes it applies (figures as numbers or their text)."""
    return {"t": "settle", "request_id": request_id, "status": status, "cost": int(cost),
            "settlement": settlement, "model": model or None, "reserved": int(reserved),
            "tokens": int(tokens)}


class Wal:
    def __init__(self, redis: Redis, stream: str, ledger: Ledger, interval_s: float = 0.02,
                 batch: ScriptBatch | None = None) -> None:
        self._redis, self._stream, self._ledger = redis, stream, ledger
        self._batch = batch  # the written entries' XDEL goes with its scripts, when given
        self.interval_s = interval_s
        self.retry_s = 1.0  # after a failed write
        self._pending: list[tuple[str | None, list[Entry]]] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the writer and write what is kept, waiting at most `timeout_s` for
        PostgreSQL: entries not written then stay in the worker's Redis stream, which the
        reaper of another worker drains once this one is gone."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            log.warning("stopping with %d ledger batches not written to PostgreSQL",
                        len(self._pending))

    def add(self, stream_id: str | None, fields: Mapping[str, str],
            row: Entry | None = None) -> None:
        """Keep an entry a script already put in the stream (`row`: see entries_of)."""
        self._pending.append((stream_id, entries_of(fields, row)))

    def keep(self, stream_id: str | None, entries: list[Entry]) -> None:
        """Keep entries, as the ledger writes them apply, of a stream entry a script wrote."""
        self._pending.append((stream_id, entries))

    async def append(self, entries: list[Entry]) -> None:
        """Write entries the scripts did not (refusals, events): stream first, then memory."""
        fields = {"k": "j", "e": orjson.dumps(entries).decode()}
        stream_id: str | None = None
        try:
            stream_id = str(await self._redis.xadd(self._stream, fields))  # type: ignore[arg-type]
        except RedisError as exc:  # Redis is down: memory alone keeps them until it is back
            log.warning("ledger entries kept in memory only: %s", exc)
        self.add(stream_id, fields)

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def flush(self, *, everything: bool = True) -> None:
        """Write what is kept to PostgreSQL (one batch, or until nothing is left); kept on
        failure, for the next try."""
        async with self._lock:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                entries = [e for _, group in batch for e in group]
                await self._ledger.apply_wal(entries)
                del self._pending[:len(batch)]
                ids = [sid for sid, _ in batch if sid is not None]
                if ids:
                    with contextlib.suppress(RedisError, StateError):
                        await (self._redis.xdel(self._stream, *ids) if self._batch is None
                               else self._batch.command("XDEL", self._stream, *ids))
                if not everything:
                    break

    async def _run(self) -> None:
        me = asyncio.current_task()
        # stops when cancelled even if a driver swallowed the CancelledError
        while me is None or not me.cancelling():
            await asyncio.sleep(self.interval_s)  # a batch gathers meanwhile
            if not self._pending:
                continue
            try:
                await self.flush(everything=False)
            except StateError as exc:
                log.warning("ledger not yet written to PostgreSQL (%d batches kept): %s",
                            len(self._pending), exc)
                await asyncio.sleep(self.retry_s)
            except Exception:  # a bug must not stop the writer: kept, logged, tried again
                log.exception("writing the ledger to PostgreSQL failed; entries kept")
                await asyncio.sleep(self.retry_s)


async def drain(redis: Redis, stream: str, ledger: Ledger, *, delete: bool = True) -> int:
    """Write a worker's stream to PostgreSQL (idempotently: the worker may write the same
    entries itself), then delete it if the worker is dead; returns entries written."""
    written = 0
    after = "-"
    while True:
        rows: Sequence[tuple[str, Mapping[str, str]]] = await redis.xrange(  # type: ignore[assignment]
            stream, min=after, count=MAX_BATCH)
        if not rows:
            break
        await ledger.apply_wal([e for _, fields in rows for e in entries_of(fields)])
        written += len(rows)
        after = "(" + rows[-1][0]  # exclusive
    if delete:
        await redis.delete(stream)
    return written


def ledger_row(
    ticket: Ticket, key: KeyInfo | None, now: int, worker: str, *, decision: str,
    code: str | None, scope: str | None, status: int | None, reserved: int, settlement: str,
) -> dict[str, Any]:
    """The ledger row a decision puts in the stream (settlement completes it later)."""
    call = ticket.call
    return {
        "request_id": ticket.request_id, "ts_ms": now, "key_id": key.id if key else None,
        "agent": key.agent if key else None, "grp": key.group if key else None,
        "labels": orjson.dumps(ticket.labels(key)).decode() if key else None,
        "vendor": call.vendor, "model": call.model_resolved or call.model,
        "route": ticket.route, "decision": decision, "code": code, "scope": scope,
        "status": status, "reserved": reserved, "cost": 0, "settlement": settlement,
        "spent": None, "cap": None, "tokens": call.tokens if decision == "allowed" else 0,
        "worker": worker, "idem": ticket.idempotency_key if decision == "allowed" else None,
        "idem_account": ticket.idempotency_account if decision == "allowed" else None,
        "replay_of": ticket.replay_of, "waited_ms": ticket.waited_ms or None,
        "held": None, "estimated": None, "flow": ledger_sql.row_flow(call.flow),
    }

