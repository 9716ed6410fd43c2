"""Instructions per call of the embedded store's group commit, counted by valgrind's
callgrind in process (no server, no HTTP): batches of reservations, each with the
settlements of the batch before, through `SqliteStore` on a file, as a loaded worker sends
them.

    .venv/bin/python bench/group_commit.py                       # this checkout
    .venv/bin/python bench/group_commit.py --baseline /tmp/base  # and another, side by side

Variants of this checkout: `as is`; `one bad op per batch` (one reservation in each batch
carries a value SQLite refuses, so every batch is applied again without it: the cost of
isolating a failing op); `savepoint per op` (a SAVEPOINT and its RELEASE around each op,
the other way to isolate one: a lower bound of it, as it leaves out the copy of the
worker's mirror that it would need too). Each runs twice, N and N + DELTA batches; the
difference divided by the calls between is the cost of one call (a reservation and its
settlement), start-up cancelled out. What the store does by the clock is held still, so
that a run slowed by valgrind or a busy machine counts the same: the store's clock stands
at one moment (rate windows never turn), settled rows move to the ledger by count only, and
the checkpoint thread does not run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 32
NOW_MS = 1_710_417_600_000  # the store's clock, held still
VARIANTS = ("as is", "one bad op per batch", "savepoint per op")


def total_instructions(callgrind_out: Path) -> int:
    text = subprocess.run(["callgrind_annotate", str(callgrind_out)], capture_output=True,
                          text=True, check=True).stdout
    found = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if found is None:
        raise RuntimeError(f"no total in callgrind_annotate's output for {callgrind_out}")
    return int(found.group(1).replace(",", ""))


def with_savepoints() -> None:
    """Wrap every op of a batch in a savepoint (bench only)."""
    from outlay.state.sqlite import store as sqlite_store

    def saved(op):  # type: ignore[no-untyped-def]
        def in_savepoint(c):  # type: ignore[no-untyped-def]
            c.execute("SAVEPOINT op")
            try:
                result = op(c)
            except BaseException:
                c.execute("ROLLBACK TO op")
                c.execute("RELEASE op")
                raise
            c.execute("RELEASE op")
            return result
        return in_savepoint

    class Savepoints(sqlite_store.GroupCommit):  # type: ignore[misc,name-defined]
        async def run(self, op, *, always=False):  # type: ignore[no-untyped-def]
            return await super().run(saved(op), always=always)

        def submit(self, op, lost):  # type: ignore[no-untyped-def]
            super().submit(saved(op), lost)

    sqlite_store.GroupCommit = Savepoints  # type: ignore[attr-defined]


def without_the_clock() -> None:
    """No work that depends on how long the run takes (bench only)."""
    from outlay.state.sqlite import mirror
    from outlay.state.sqlite import store as sqlite_store

    class Still(sqlite_store.Checkpointer):  # type: ignore[misc,name-defined]
        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    mirror.MOVE_S = float("inf")  # type: ignore[attr-defined]
    sqlite_store.Checkpointer = Still  # type: ignore[attr-defined]


async def calls(path: str, batches: int, variant: str) -> None:
    """`batches` batches of BATCH reservations, each with the previous batch's settlements."""
    from outlay.policy.decision import Call
    from outlay.policy.model import parse_policy
    from outlay.state.base import NewKey, Outcome, StateError, Ticket
    from outlay.state.keys import hash_secret
    from outlay.state.sqlite.store import SqliteStore

    store = SqliteStore(path, clock=lambda: NOW_MS)
    await store.open()
    await store.put_policy("agent:bench", parse_policy(
        {"rpm": 10**9, "tpm": 10**12, "budgets": [{"usd": 10**6}]}))
    _, secret = await store.create_key(NewKey(agent="bench"))
    key_hash = hash_secret(secret)
    held: list[str] = []
    n = 0
    for _ in range(batches):
        tickets = []
        for _ in range(BATCH):
            n += 1
            tickets.append(Ticket(f"req_{n:024d}", key_hash,
                                  Call("openai", "gpt-4o-mini", "gpt-4o-mini",
                                       cost_micros=1_000, tokens=100),
                                  "/v1/chat/completions"))
        if variant == "one bad op per batch":
            tickets[BATCH // 2] = replace(tickets[BATCH // 2], idempotency_key="\udcff")
        for rid in held:
            store.queue_settlement(Outcome(rid, 200, cost_micros=500, tokens=50))
        answers = await asyncio.gather(*(store.reserve(t) for t in tickets),
                                       return_exceptions=True)
        held = [a.id for a in answers if not isinstance(a, StateError)]
    await store.close()


def count(source: Path, batches: int, variant: str, tmp: Path, name: str) -> int:
    out = tmp / f"{name}.callgrind"
    # a fixed hash seed: the layout of sets and dicts, and so the count, is the same each run
    env = {**os.environ, "PYTHONPATH": str(source.resolve() / "src"), "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--child", str(tmp / f"{name}.db"),
                    "--batches", str(batches), "--variant", variant],
                   env=env, check=True, capture_output=True, timeout=3600)
    return total_instructions(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout, counted as is too")
    parser.add_argument("--batches", type=int, default=10, help="batches of the shorter run")
    parser.add_argument("--delta", type=int, default=40, help="more batches in the longer")
    parser.add_argument("--variant", choices=VARIANTS, action="append",
                        help="only this variant of this checkout (repeatable)")
    parser.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (variant,) = args.variant or ["as is"]
        without_the_clock()
        if variant == "savepoint per op":
            with_savepoints()
        asyncio.run(calls(args.child, args.batches, variant))
        return 0
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install valgrind)")
    runs = [("this checkout", ROOT, v) for v in args.variant or VARIANTS]
    if args.baseline is not None:
        runs.insert(0, ("baseline", args.baseline, "as is"))
    tmp = Path(tempfile.mkdtemp(prefix="outlay-group-commit-"))
    try:
        for i, (label, source, variant) in enumerate(runs):
            short = count(source, args.batches, variant, tmp, f"run{i}-short")
            long = count(source, args.batches + args.delta, variant, tmp, f"run{i}-long")
            per_call = (long - short) / (args.delta * BATCH)
            print(f"{label}, {variant}: {per_call:,.0f} instructions per call", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
