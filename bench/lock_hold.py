"""How long a call holds the embedded store's write lock: the ceiling of one SQLite file,
however many workers (cores) share it.

    .venv/bin/python bench/lock_hold.py                    # batches of 1 and of 32 calls
    .venv/bin/python bench/lock_hold.py --baseline /tmp/base

Every worker of a host writes its decisions and settlements to one SQLite file, one write
transaction at a time: whatever the number of cores, the file serves at most one second
divided by the time each call holds its write lock. This drives `SqliteStore` in process
(no HTTP) as the gateway does, on a file: each call reserved (the fully enforced key of
bench/run.py: an rpm and a tpm window, a hard monthly budget on the key and its agent),
marked forwarded, then settled after its answer (queued, it rides with the next batch), in
batches of B concurrent calls as a worker under B connections sends them (B = 1: one
connection, every step its own transaction). It times every group-commit transaction from
BEGIN IMMEDIATE to the end of COMMIT, in wall time and in the thread's CPU time (which a busy
machine moves less; the lock's wall time is what other workers wait for), and divides by
the calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


async def calls(path: str, batch: int, batches: int) -> dict[str, float]:
    from scenarios import AGENT, AGENT_POLICY, KEY_POLICY

    from outlay.policy.decision import Call
    from outlay.policy.model import parse_policy
    from outlay.state.base import NewKey, Outcome, Ticket
    from outlay.state.keys import hash_secret
    from outlay.state.sqlite.store import SqliteStore

    store = SqliteStore(path)
    await store.open()
    await store.put_policy(f"agent:{AGENT}", parse_policy(AGENT_POLICY))
    _, secret = await store.create_key(NewKey(agent=AGENT, policy=parse_policy(KEY_POLICY)))
    key_hash = hash_secret(secret)
    held = {"wall": 0.0, "cpu": 0.0, "tx": 0}
    inner = store._batch._tx

    @contextlib.contextmanager
    def timed() -> Iterator[object]:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            with inner() as c:
                yield c
        finally:
            held["wall"] += time.perf_counter() - wall
            held["cpu"] += time.thread_time() - cpu
            held["tx"] += 1

    store._batch._tx = timed
    n = 0
    answered: list[str] = []
    measured_from = batches // 5  # the first fifth warms the caches, then counting starts
    for i in range(batches):
        if i == measured_from:
            held.update(wall=0.0, cpu=0.0, tx=0)
        tickets = []
        for _ in range(batch):
            n += 1
            tickets.append(Ticket(f"req_{n:024d}", key_hash,
                                  Call("openai", "gpt-4o-mini", "gpt-4o-mini",
                                       cost_micros=1_000, tokens=120),
                                  "openai.chat"))
        for rid in answered:  # the answers of the batch before, settled after them
            store.queue_settlement(Outcome(rid, 200, cost_micros=800, tokens=100))
        reservations = await asyncio.gather(*(store.reserve(t) for t in tickets))
        marks = await asyncio.gather(*(store.forwarding(r.id) for r in reservations))
        if not all(marks):
            raise RuntimeError("a reservation was not held when it was marked forwarded")
        answered = [r.id for r in reservations]
    counted = (batches - measured_from) * batch
    await store.close()
    return {"calls": counted, "tx": held["tx"], "wall_us": held["wall"] / counted * 1e6,
            "cpu_us": held["cpu"] / counted * 1e6}


def measure(source: Path, batch: int, batches: int) -> dict[str, float]:
    """One run in a fresh process with `source`'s src/ first on the path."""
    with tempfile.TemporaryDirectory(prefix="outlay-lock-hold-") as tmp:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(source.resolve() / "src"), str(BENCH_DIR)])}
        done = subprocess.run([sys.executable, __file__, "--child", f"{tmp}/outlay.db",
                               "--batch", str(batch), "--batches", str(batches)],
                              env=env, capture_output=True, text=True, timeout=1800,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip()[-2000:])
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout, measured too")
    parser.add_argument("--batches", type=int, default=0,
                        help="batches per run (default: 3,000 calls' worth)")
    parser.add_argument("--batch", type=int, action="append",
                        help="calls per batch (repeatable; default 1 and 32)")
    parser.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.batch or [1, 32]
    if args.child:
        (batch,) = sizes
        print(json.dumps(asyncio.run(calls(args.child, batch, args.batches))))
        return 0
    checkouts = [("this checkout", ROOT)]
    if args.baseline is not None:
        checkouts.insert(0, ("baseline", args.baseline))
    print("| checkout | calls a batch | transactions a call | lock held a call (wall) "
          "| (CPU) | ceiling of one file (wall) |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        for label, source in checkouts:
            r = measure(source, size, args.batches or max(10, 3000 // size))
            print(f"| {label} | {size} | {r['tx'] / r['calls']:.2f} | {r['wall_us']:.0f} µs "
                  f"| {r['cpu_us']:.0f} µs | {1e6 / r['wall_us']:,.0f} calls/s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
