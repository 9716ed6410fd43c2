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
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nginx_mock import nginx_config, request_body
from procs import Proc, free_port, http_ok, port_open, wait_until
from scenarios import Context, OutlayRedisPostgres, provision

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "oladm_instructions"  # noqa: S105 (a throwaway gateway on loopback)


def total_instructions(callgrind_out: Path) -> int:
    text = subprocess.run(["callgrind_annotate", str(callgrind_out)], capture_output=True,
                          text=True, check=True).stdout
    found = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text)
    if found is None:
        raise RuntimeError(f"no total in callgrind_annotate's output for {callgrind_out}")
    return int(found.group(1).replace(",", ""))


def count(source: Path, calls: int, mock_port: int, tmp: Path, name: str,
          state: list[str] | None = None, connections: int = 1) -> int:
    """Instructions of one gateway from start to stop, having answered `calls` calls over
    `connections` kept-alive connections at once (`state`: its --state arguments; None: an
    embedded store of its own)."""
    port = free_port()
    config = tmp / f"{name}.yaml"
    config.write_text("providers:\n  openai:\n    endpoints:\n"
                      f"      - {{base_url: 'http://127.0.0.1:{mock_port}/v1', "
                      "api_key: sk-bench}\n")
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
        tokens = provision(url, ADMIN_TOKEN)
        body = request_body().encode()

        def client(first: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for i in range(first, calls, connections):
                conn.request("POST", "/v1/chat/completions", body, {
                    "Authorization": f"Bearer {tokens[i % len(tokens)]}",
                    "Content-Type": "application/json"})
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
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                        help="the embedded store [sqlite], or Redis + PostgreSQL (started "
                             "here for each run, outside callgrind)")
    parser.add_argument("--connections", type=int, default=1,
                        help="calls sent over this many connections at once [1]")
    args = parser.parse_args()
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
        sources = {"this checkout": ROOT}
        if args.baseline is not None:
            sources["baseline"] = args.baseline
        for i, (label, source) in enumerate(sources.items()):
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
                                         args.connections))
                finally:
                    for service in reversed(services):
                        service.stop()
            short, long = totals
            per_call = (long - short) / args.delta
            print(f"{label} ({source}): {per_call:,.0f} instructions per call", flush=True)
    finally:
        nginx.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
