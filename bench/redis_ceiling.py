"""The decisions per second one Redis process sustains when only Outlay's scripts run: the
ceiling of one shard, however many gateway replicas share it.

    .venv/bin/python bench/redis_ceiling.py                      # 8 connections, 20 s
    .venv/bin/python bench/redis_ceiling.py --connections 32 --depth 64 --seconds 10

A redis-server of its own (append-only file, fsync every second, as the benchmark's
scenario) on a free loopback port, the scripts loaded as a gateway loads them, then many
connections each sending pipelined batches of whole calls, each call as a gateway sends it:
the reservation script (`reserve.lua`, with the checks of the benchmark's fully enforced
key: an rpm and a tpm window, a hard monthly budget on the key and one on its agent), the
forwarded mark (`forward.lua`) and the settlement (`settle.lua` as wrapped for vendor
objects), and the deletion of the ledger entries they leave in the worker's stream (one
XDEL a batch, as the worker does once PostgreSQL has them). Nothing else runs on that Redis.

It reports calls per second, and Redis's own CPU time per call (from /proc), which a busy
machine moves much less: one core divided by it is the ceiling of a Redis process that has
a core to itself. The driver is one Python process; when Redis's core is not saturated the
calls per second are the driver's limit, and the CPU per call is the figure to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hiredis
from procs import Proc, free_port, port_open, wait_until
from scenarios import AGENT, AGENT_POLICY, KEY_POLICY, LOAD_KEYS

TICKS = os.sysconf("SC_CLK_TCK")


def command(*args: Any) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        value = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(parts)


class Calls:
    """Packed commands of whole calls, as a gateway's worker sends them."""

    def __init__(self, worker: str, *, forward: bool) -> None:
        import orjson

        from outlay.policy.decision import Call, KeyInfo, call_scopes
        from outlay.policy.model import parse_policy
        from outlay.state.base import Ticket
        from outlay.state.redis.exposure import exposure_scripts
        from outlay.state.redis.plan import Holder, Names, check_args, plan
        from outlay.state.redis.scripts import script_text
        from outlay.state.redis.wal import ledger_row

        self.orjson = orjson
        self.names = Names("default")
        self.worker = worker
        self.forward = forward
        self.scripts = {"reserve": script_text("reserve.lua"),
                        "forward": script_text("forward.lua"),
                        "settle": exposure_scripts()[1]}
        self.keys = [KeyInfo(f"key{i:02d}", AGENT, None, {}) for i in range(LOAD_KEYS)]
        self.policies = {f"key:{k.id}": parse_policy(KEY_POLICY) for k in self.keys}
        self.policies[f"agent:{AGENT}"] = parse_policy(AGENT_POLICY)
        self._call = Call("openai", "gpt-4o-mini", "gpt-4o-mini", cost_micros=1_000,
                          tokens=120)
        self._ticket, self._row, self._plan = Ticket, ledger_row, plan
        self._holder, self._check_args, self._scopes = Holder, check_args, call_scopes
        self.shas: dict[str, str] = {}
        self.n = 0

    def templates(self, version: str) -> None:
        """One call's commands per key, packed once with a placeholder request id of the
        same length as the real ones: the driver then only substitutes the id, so that it
        is not the bottleneck (a request id must be new for every call)."""
        names, call = self.names, self._call
        now = int(time.time() * 1000)
        self._templates = []
        for key in self.keys:
            rid = self.placeholder
            ticket = self._ticket(rid, "hash", call, "openai.chat")
            scopes = self._scopes(key, call.vendor, {})
            checks, record = self._plan(names, call, scopes, self.policies, now, None,
                                        self._holder(key.id, key.agent, "", self.worker))
            row = self._row(ticket, key, now, self.worker, decision="allowed", code=None,
                            scope=None, status=None, reserved=1_000, settlement="pending")
            packed = command(
                b"EVALSHA", self.shas["reserve"], 6 + len(checks), names.meta, names.leases,
                names.reservation(rid), names.wal(self.worker), names.meta, names.workers,
                *(c.key for c in checks), "", version, 900_000, rid, "0",
                self.orjson.dumps(record), self.orjson.dumps(row), len(checks), self.worker,
                self._check_args(checks))
            if self.forward:
                packed += command(b"EVALSHA", self.shas["forward"], 1, names.reservation(rid))
            packed += command(b"EVALSHA", self.shas["settle"], 4, names.reservation(rid),
                              names.leases, names.wal(self.worker), names.meta, rid,
                              "settled", 800, 100, 200, "gpt-4o-mini")
            self._templates.append(packed)

    @property
    def placeholder(self) -> str:
        return f"req_{self.worker}_" + "X" * 12

    def one(self) -> bytes:
        self.n += 1
        rid = f"req_{self.worker}_{self.n:012d}".encode()
        template = self._templates[self.n % len(self._templates)]
        return template.replace(self.placeholder.encode(), rid)


async def connection(port: int, worker: str, depth: int, until: float, version: str,
                     shas: dict[str, str], forward: bool) -> int:
    calls = Calls(worker, forward=forward)
    calls.shas = shas
    calls.templates(version)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parser = hiredis.Reader()
    done = 0
    to_delete: list[bytes] = []
    per_call = 3 if forward else 2
    while time.monotonic() < until:
        packed = [calls.one() for _ in range(depth)]
        expect = depth * per_call
        if to_delete:
            packed.append(command(b"XDEL", calls.names.wal(worker), *to_delete))
            expect += 1
        writer.write(b"".join(packed))
        replies: list[Any] = []
        while len(replies) < expect:
            data = await reader.read(1 << 16)
            if not data:
                raise RuntimeError("redis closed the connection")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                replies.append(reply)
        to_delete = []
        for i in range(depth):
            reserved, settled = replies[i * per_call], replies[i * per_call + per_call - 1]
            if isinstance(reserved, Exception) or reserved[0] != b"ok":
                raise RuntimeError(f"the reservation script answered {reserved!r}")
            if isinstance(settled, Exception) or settled[0] != 1:
                raise RuntimeError(f"the settlement script answered {settled!r}")
            to_delete += [reserved[2], settled[3]]
        done += depth
    writer.close()
    return done


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def drive(port: int, connections: int, depth: int, seconds: float, forward: bool,
                redis_pid: int) -> tuple[int, float, float]:
    import redis as redis_client

    calls = Calls("setup", forward=forward)
    client = redis_client.Redis(port=port)
    shas = {name: client.script_load(text) for name, text in calls.scripts.items()}
    version = "bench"
    client.hset(calls.names.meta, mapping={"ready": "1", "version": version})
    client.close()
    cpu0, t0 = cpu_seconds(redis_pid), time.monotonic()
    until = t0 + seconds
    counts = await asyncio.gather(*(
        connection(port, f"w{i}", depth, until, version, shas, forward)
        for i in range(connections)))
    return sum(counts), time.monotonic() - t0, cpu_seconds(redis_pid) - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--depth", type=int, default=32, help="calls per pipelined batch")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--cpus", help="taskset CPU list for redis-server, e.g. 1")
    parser.add_argument("--no-aof", action="store_true",
                        help="no append-only file (what persistence costs Redis)")
    parser.add_argument("--no-forward", action="store_true",
                        help="leave out the forwarded mark (what it costs Redis)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    tmp = Path(tempfile.mkdtemp(prefix="outlay-redis-ceiling-"))
    port = free_port()
    (tmp / "data").mkdir()
    redis = Proc("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                           "--dir", str(tmp / "data"), "--save", "", "--appendonly",
                           "no" if args.no_aof else "yes", "--appendfsync", "everysec"],
                  tmp, cpus=args.cpus)
    try:
        wait_until(lambda: port_open(port), 30, "redis-server", redis)
        calls, wall, cpu = asyncio.run(drive(port, args.connections, args.depth,
                                             args.seconds, not args.no_forward, redis.pid))
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    per_call_us = cpu / calls * 1e6
    scripts = "reserve, forward, settle" if not args.no_forward else "reserve, settle"
    print(f"{calls:,} calls ({scripts}) in {wall:.1f} s over {args.connections} connections, "
          f"{args.depth} calls a batch: {calls / wall:,.0f} calls/s; Redis CPU "
          f"{per_call_us:.1f} µs per call ({cpu / wall:.0%} of a core), a ceiling of "
          f"{1e6 / per_call_us:,.0f} calls/s on a core of its own")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
