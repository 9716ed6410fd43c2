"""Instructions per call of `outlay serve`, counted by valgrind's callgrind: a figure the
machine's noise does not move (the same code, inputs and environment count the same), for
comparing a change with the code it changes when timings drift by a third within an hour.

    .venv/bin/python bench/instructions.py                      # this checkout
    .venv/bin/python bench/instructions.py --baseline /tmp/base # and another, side by side

Each checkout's gateway runs under callgrind twice, answering N and N + DELTA plain chat
calls (one kept-alive connection, the same fully enforced keys as bench/run.py) against the
nginx mock; the difference of the two totals divided by DELTA is the cost of one call,
start-up and shut-down cancelled out. System calls' time in the kernel is not counted.
Needs valgrind (Debian's `valgrind`) besides what bench/run.py needs.

`--tag-values N` counts this checkout twice more, side by side: plain calls as above, and the
same calls each tagged `X-Outlay-Tags: customer=<value>` under a `tag:customer=*` policy with
a daily budget, on a store that has seen N values already (seeded into the SQLite file, each
with its counter): the request-path cost of a budget per tag value.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nginx_mock import nginx_config, request_body
from procs import Proc, free_port, http_json, http_ok, port_open, wait_until
from scenarios import Context, OutlayGuarded, OutlayRedisPostgres, provision

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "oladm_instructions"  # noqa: S105 (a throwaway gateway on loopback)


def total_instructions(callgrind_out: Path) -> int:
    text = subprocess.run(["callgrind_annotate", str(callgrind_out)], capture_output=True,
                          text=True, check=True).stdout
    found = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if found is None:
        raise RuntimeError(f"no total in callgrind_annotate's output for {callgrind_out}")
    return int(found.group(1).replace(",", ""))


DAY_MS = 86_400_000
TAG_POLICY = {"budgets": [{"usd": 1_000_000, "period": "day"}]}


def seed_tag_values(db: Path, values: int) -> None:
    """`values` customers the `tag:customer=*` policy tracks today, each with a counter."""
    start = int(time.time() * 1000) // DAY_MS * DAY_MS
    conn = sqlite3.connect(db, timeout=60)
    with conn:
        conn.executemany("INSERT OR IGNORE INTO tag_values(name, period_start, value) "
                         "VALUES ('customer', ?, ?)", ((start, f"c{i}") for i in range(values)))
        conn.execute("INSERT OR REPLACE INTO tag_value_counts(name, period_start, n) "
                     "VALUES ('customer', ?, ?)", (start, values))
        conn.executemany("INSERT OR IGNORE INTO counters(scope, period, period_start, spent, "
                         "reserved) VALUES (?, 'day', ?, 1000, 0)",
                         ((f"tag:customer=c{i}", start) for i in range(values)))
    conn.close()


def count(source: Path, calls: int, mock_port: int, tmp: Path, name: str,
          state: list[str] | None = None, connections: int = 1, tag_values: int = 0,
          guards: bool = False) -> int:
    """Instructions of one gateway from start to stop, having answered `calls` calls over
    `connections` kept-alive connections at once (`state`: its --state arguments; None: an
    embedded store of its own), each tagged with one of `tag_values` customers already seen
    when more than 0; `guards`: with the traffic guards of the benchmark's guards-on
    scenario (scenarios.OutlayGuarded: a loop guard, a queue, the endpoint's limits)."""
    port = free_port()
    config = tmp / f"{name}.yaml"
    config.write_text("providers:\n  openai:\n    endpoints:\n"
                      f"      - {{base_url: 'http://127.0.0.1:{mock_port}/v1', "
                      "api_key: sk-bench"
                      f"{OutlayGuarded.endpoint_fields if guards else ''}}}\n")
    out = tmp / f"{name}.callgrind"
    gateway = Proc(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          sys.executable, "-m", "outlay.cli", "serve", "--config", str(config),
                          *(state or ["--state", f"sqlite:///{tmp / name}.db"]),
                          "--port", str(port),
                          "--workers", "1"],
                   tmp, env={"OUTLAY_ADMIN_TOKEN": ADMIN_TOKEN,
                             "PYTHONPATH": str(source.resolve() / "src")})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/readyz"), 600, name, gateway)
        tokens = provision(url, ADMIN_TOKEN, OutlayGuarded.policy_fields if guards else None)
        if tag_values:
            status, answer = http_json("PUT", f"{url}/admin/v1/policies/tag:customer=*",
                                       TAG_POLICY, ADMIN_TOKEN)
            if status != 200:
                raise RuntimeError(f"PUT tag:customer=* answered {status}: {answer}")
            seed_tag_values(tmp / f"{name}.db", tag_values)
        body = request_body().encode()

        def client(first: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for i in range(first, calls, connections):
                headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}",
                           "Content-Type": "application/json"}
                if tag_values:
                    headers["X-Outlay-Tags"] = f"customer=c{i % tag_values}"
                conn.request("POST", "/v1/chat/completions", body, headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{name}: call {i} answered {answer.status}")
            conn.close()

        with ThreadPoolExecutor(connections) as pool:
            for done in [pool.submit(client, first) for first in range(connections)]:
                done.result()
    finally:
        gateway.stop(timeout=300)
    return total_instructions(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout, counted too")
    parser.add_argument("--calls", type=int, default=300, help="calls of the shorter run")
    parser.add_argument("--delta", type=int, default=1000, help="more calls in the longer")
    parser.add_argument("--tag-values", type=int, default=0,
                        help="also count calls tagged under a tag:customer=* budget with "
                        "this many values seen")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                        help="the embedded store [sqlite], or Redis + PostgreSQL (started "
                             "here for each run, outside callgrind)")
    parser.add_argument("--guards", action="store_true",
                        help="with the guards-on scenario's loop guard, queue and endpoint "
                             "limits")
    parser.add_argument("--connections", type=int, default=1,
                        help="calls sent over this many connections at once [1]")
    args = parser.parse_args()
    if args.tag_values and args.store != "sqlite":
        sys.exit("--tag-values seeds the embedded store's file: use it with --store sqlite")
    for tool in ("valgrind", "callgrind_annotate", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install valgrind nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="outlay-instructions-"))
    (tmp / "nginx").mkdir()
    mock_port = free_port()
    conf = tmp / "nginx" / "nginx.conf"
    conf.write_text(nginx_config(tmp / "nginx", mock_port))
    nginx = Proc("nginx", ["nginx", "-p", str(tmp / "nginx"), "-c", str(conf)], tmp)
    try:
        wait_until(lambda: port_open(mock_port), 30, "nginx", nginx)
        runs: list[tuple[str, Path, int]] = [("this checkout", ROOT, 0)]
        if args.baseline is not None:
            runs.append(("baseline", args.baseline, 0))
        if args.tag_values:
            runs.append((f"this checkout, tagged, {args.tag_values:,} values seen", ROOT,
                         args.tag_values))
        figures = []
        for i, (label, source, values) in enumerate(runs):
            totals = []
            for run, calls in (("short", args.calls), ("long", args.calls + args.delta)):
                name = f"gateway{i}-{run}"
                services: list[Proc] = []
                try:
                    state = None
                    if args.store == "redis":
                        run_tmp = tmp / name
                        run_tmp.mkdir()
                        tmp.chmod(0o755)  # PostgreSQL's user (as root) reaches its cluster
                        ctx = Context(tmp=run_tmp, mock_port=mock_port, mock_pid=nginx.pid,
                                      gateway_cpus=None, log=print)
                        state = OutlayRedisPostgres(name, name, "").state_args(ctx, services)
                    totals.append(count(source, calls, mock_port, tmp, name, state,
                                        args.connections, values, args.guards))
                finally:
                    for service in reversed(services):
                        service.stop()
            short, long = totals
            per_call = (long - short) / args.delta
            figures.append(per_call)
            print(f"{label} ({source}): {per_call:,.0f} instructions per call", flush=True)
        if args.tag_values:
            print(f"tagged ÷ plain: {figures[-1] / figures[0]:.3f}", flush=True)
    finally:
        nginx.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
