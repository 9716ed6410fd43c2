"""What each of a call's scripts costs Redis: the reservation (`reserve.lua`), the forwarded
mark (`forward.lua`) and the settlement (`settle.lua` as wrapped for vendor objects), run
one phase at a time on a redis-server of their own, each call as the benchmark's fully
enforced key makes it (an rpm and a tpm window, a hard monthly budget on the key and one on
its agent).

    .venv/bin/python bench/lua_cost.py                    # µs per script (INFO commandstats)
    .venv/bin/python bench/lua_cost.py --callgrind        # instructions per script
    PYTHONPATH=/work/main/src .venv/bin/python bench/lua_cost.py --callgrind   # another tree

Times move with the machine's load; under `--callgrind` redis-server runs in valgrind and
each phase's instructions (Redis's event loop, the reply, the script) are counted exactly.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import free_port, port_open, wait_until
from scenarios import AGENT, AGENT_POLICY, KEY_POLICY, LOAD_KEYS

PHASES = ("reserve", "forward", "settle")


def calls(shas: dict[str, str], version: str, count: int, start: int, now: int
          ) -> dict[str, list[Any]]:
    """Each phase's commands of `count` calls, all at `now` (so that every call meets the
    same state: each window full, as in a long run); "seed" fills the windows."""
    import orjson

    from outlay.policy.decision import Call, KeyInfo, call_scopes
    from outlay.policy.model import parse_policy
    from outlay.state.base import Ticket
    from outlay.state.redis.plan import Holder, Names, check_args, plan
    from outlay.state.redis.wal import ledger_row

    names, worker = Names("default"), "w0"
    keys = [KeyInfo(f"key{i:02d}", AGENT, None, {}) for i in range(LOAD_KEYS)]
    policies = {f"key:{k.id}": parse_policy(KEY_POLICY) for k in keys}
    policies[f"agent:{AGENT}"] = parse_policy(AGENT_POLICY)
    call = Call("openai", "gpt-4o-mini", "gpt-4o-mini", cost_micros=1_000, tokens=120)
    out: dict[str, list[Any]] = {phase: [] for phase in (*PHASES, "seed")}
    for n in range(start, start + count):
        key, rid = keys[n % len(keys)], f"req_{worker}_{n:012d}"
        ticket = Ticket(rid, "hash", call, "openai.chat")
        checks, record = plan(names, call, call_scopes(key, call.vendor, {}), policies, now,
                              None, Holder(key.id, key.agent, "", worker))
        row = ledger_row(ticket, key, now, worker, decision="allowed", code=None, scope=None,
                         status=None, reserved=1_000, settlement="pending")
        if n < start + len(keys):
            for check in checks:
                if check.kind == "w":
                    bucket = now // check.a
                    out["seed"].append(("HSET", check.key, *(
                        v for b in range(bucket - 59, bucket + 1) for v in (b, 200 * check.c))))
        out["reserve"].append((
            "EVALSHA", shas["reserve"], 6 + len(checks), names.meta, names.leases,
            names.reservation(rid), names.wal(worker), names.meta, names.workers,
            *(c.key for c in checks), now, version, 900_000, rid, "0", orjson.dumps(record),
            orjson.dumps(row), len(checks), worker, check_args(checks)))
        out["forward"].append(("EVALSHA", shas["forward"], 1, names.reservation(rid)))
        out["settle"].append((
            "EVALSHA", shas["settle"], 4, names.reservation(rid), names.leases,
            names.wal(worker), names.meta, rid, "settled", 800, 100, 200, "gpt-4o-mini"))
    return out


def run(client: Any, commands: list[Any], check: str) -> None:
    for i in range(0, len(commands), 32):
        pipe = client.pipeline(transaction=False)
        for command in commands[i:i + 32]:
            pipe.execute_command(*command)
        for reply in pipe.execute():
            if (check == "reserve" and reply[0] != b"ok") or (check == "settle" and reply[0] != 1):
                raise RuntimeError(f"{check} answered {reply!r}")


def instructions(out: Path) -> int:
    """The instructions of the last dump of callgrind in `out`."""
    dumps = sorted(out.glob("callgrind.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1])
                   if p.name.rsplit(".", 1)[1].isdigit() else 0)
    for line in dumps[-1].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {dumps[-1]}")


def main() -> int:
    import redis as redis_client

    from outlay.state.redis.exposure import exposure_scripts
    from outlay.state.redis.scripts import script_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--keep", type=Path, help="copy callgrind's dumps into this folder")
    args = parser.parse_args()
    count = min(args.calls, 2_000) if args.callgrind else args.calls
    tmp = Path(tempfile.mkdtemp(prefix="outlay-lua-cost-"))
    port = free_port()
    command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp),
               "--save", "", "--appendonly", "no"]
    if args.callgrind:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out",
                   "--dump-instr=no", *command]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port), 60, "redis-server", None)
        client = redis_client.Redis(port=port)
        texts = {"reserve": script_text("reserve.lua"), "forward": script_text("forward.lua"),
                 "settle": exposure_scripts()[1]}
        shas = {name: client.script_load(text) for name, text in texts.items()}
        client.hset("outlay:{default}:meta", mapping={"ready": "1", "version": "v"})
        now = int(time.time() * 1000)
        warm = calls(shas, "v", 200, 0, now)
        for phase in ("seed", *PHASES):
            run(client, warm[phase], phase)
        measured = calls(shas, "v", count, 200, now)
        for phase in PHASES:
            client.config_resetstat()
            if args.callgrind:
                subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                               capture_output=True)
            run(client, measured[phase], phase)
            usec = client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
            if args.callgrind:
                subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                               capture_output=True)
                print(f"{phase:8} {instructions(tmp) / count:10,.0f} instructions per call")
            else:
                print(f"{phase:8} {usec:6.2f} µs per call")
        client.close()
    finally:
        server.terminate()
        server.wait(30)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in tmp.glob("callgrind.out*"):
                shutil.copy(dump, args.keep)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
