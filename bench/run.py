"""Outlay's benchmark: every scenario side by side in one run, against one nginx mock.

    .venv/bin/python bench/run.py [--duration 10] [--rounds 3] [--quick] [--profile]

Writes bench/results/<timestamp>.md (absolute figures and ratios, the bar) and a PNG chart
beside it, and prints the table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import urlsplit

import hotspots
import report
import vendor_read
from hostile import CLIENTS, HostileRow, hostile_clients, hostile_table
from load import RssSampler, run_streams, run_wrk, smoke
from measure import cpu_times, tree_cpu_seconds, wait_quiet
from nginx_mock import nginx_config
from procs import Proc, cpu_split, free_port, http_json, port_open, wait_until
from scenarios import Context, LitellmInstall, Target, table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
APT_PACKAGES = {"nginx": "nginx-light", "wrk": "wrk"}
BUSY = 0.10  # share of the CPUs busy before the run above which the figures are flagged


def log(text: str) -> None:
    print(text, flush=True)


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)), None)


def ensure_tools(*, profile: bool) -> None:
    """nginx and wrk from Debian's packages; matplotlib (and py-spy) into this environment."""
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if _which(tool) is None]
    if missing:
        if os.geteuid() != 0:
            sys.exit(f"bench: needs {' '.join(missing)}: apt-get install {' '.join(missing)}")
        log(f"installing {' '.join(missing)} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env,
                       timeout=900, stdout=subprocess.DEVNULL)
    wanted = ["matplotlib>=3.8"]
    try:
        import matplotlib  # noqa: F401
        wanted = []
    except ImportError:
        pass
    if profile and not (Path(sys.executable).parent / "py-spy").exists():
        wanted.append("py-spy>=0.3.14")
    if wanted:
        log(f"installing {' '.join(wanted)} into {sys.prefix} (the `bench` extra)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *wanted], check=True,
                       timeout=900)


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    nginx = subprocess.run([_which("nginx") or "nginx", "-v"], capture_output=True, text=True)
    return (f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, Linux "
            f"{platform.release()}, Python {platform.python_version()}, "
            f"{nginx.stderr.strip().removeprefix('nginx version: ')}")


def busy_share(seconds: float = 3.0) -> float:
    """How busy the machine's CPUs are, before we add anything: 0.0 to 1.0."""
    try:
        busy0, total0 = cpu_times()
        time.sleep(seconds)
        busy1, total1 = cpu_times()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (busy1 - busy0) / max(1, total1 - total0)


def source_state() -> str:
    """Which Outlay was measured: the commit, and whether the tree had changes on top."""
    git = ["git", "-C", str(BENCH_DIR.parent)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=30).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "Outlay from an unknown commit"
    if not commit:
        return "Outlay from an unknown commit"
    return f"Outlay at commit {commit}" + (" with uncommitted changes in src/" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every scenario this many times, interleaved; the "
                        "medians are reported [3]")
    parser.add_argument("--streams", type=int, default=300,
                        help="streamed calls per scenario for the time to first chunk")
    parser.add_argument("--quick", action="store_true",
                        help="one round of 3 s runs, 100 streams, a 10x smaller seeded store")
    parser.add_argument("--only", help="comma-separated scenario keys (direct and passthrough "
                        "are always kept: the ratios need them)")
    parser.add_argument("--levels", default="1,32",
                        help="comma-separated wrk connection counts [1,32]")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", action="append",
                        default=[],
                        help="also run Outlay (embedded) from another source tree, e.g. a "
                        "`git worktree` of main, to measure a change side by side with it; "
                        "repeat it to run several (e.g. to find which commit moved a figure)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--litellm-timeout", type=float, default=480,
                        help="seconds allowed for installing LiteLLM [480]")
    parser.add_argument("--profile", action="store_true",
                        help="also profile Outlay (embedded) under load with py-spy")
    parser.add_argument("--profile-seconds", type=float, default=10)
    parser.add_argument("--profile-target", default="outlay",
                        help="the scenario --profile profiles [default: outlay, the embedded]")
    parser.add_argument("--profile-connections", type=int, default=32,
                        help="wrk connections while profiling [32]")
    parser.add_argument("--hostile", action="store_true",
                        help=f"also measure each Outlay scenario's paying calls at one "
                        f"connection beside {CLIENTS} clients sending 4 MiB bodies without a "
                        "valid key, and without them, interleaved (bench/hostile.py)")
    parser.add_argument("--vendor-read", type=int, default=0, metavar="N",
                        help="also time N Stripe captures of payments Outlay must read first, "
                        "against plain vendor calls, on the embedded store [0: not]")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, stores)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.streams, args.rounds = (
            min(args.duration, 3), min(args.streams, 100), 1)

    levels = [int(c) for c in args.levels.split(",")]
    for checkout in args.baseline:
        if not (checkout / "src" / "outlay").is_dir():
            parser.error(f"--baseline {checkout}: no src/outlay there")
    ensure_tools(profile=args.profile)
    measured = source_state()
    busy_before = busy_share()
    if busy_before > BUSY:
        log(f"warning: the CPUs are {busy_before:.0%} busy before the run; the figures will "
            "be noisy")
    load_cpus, gateway_cpus = cpu_split()
    if load_cpus:
        os.sched_setaffinity(0, {int(c) for c in load_cpus.split(",")})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="outlay-bench-"))
    started = time.monotonic()
    rows: list[report.Row] = []
    targets: dict[str, Target] = {}
    procs: list[Proc] = []
    sampler = RssSampler()
    ok = False
    try:
        scenarios = table(quick=args.quick, baselines=args.baseline)
        if args.only:
            keep = {"direct", "passthrough", *args.only.split(",")}
            # a baseline comes with the scenario it is the baseline of
            scenarios = [s for s in scenarios
                         if s.key in keep or s.key.split("-baseline")[0] in keep]
        # started first: it downloads while the other scenarios start and seed
        wants_litellm = any(s.key == "litellm" for s in scenarios) and not args.no_litellm
        install = LitellmInstall(args.litellm_timeout, log) if wants_litellm else None
        (tmp / "nginx").mkdir()
        mock_port = free_port()
        conf = tmp / "nginx" / "nginx.conf"
        conf.write_text(nginx_config(tmp / "nginx", mock_port, vendor_read.stripe_locations()))
        nginx = Proc("nginx", [_which("nginx") or "nginx", "-p", str(tmp / "nginx"), "-c",
                               str(conf)], tmp, cpus=load_cpus)
        procs.append(nginx)
        wait_until(lambda: port_open(mock_port), 30, "nginx", nginx)
        ctx = Context(tmp=tmp, mock_port=mock_port, mock_pid=nginx.pid,
                      gateway_cpus=gateway_cpus, log=log, litellm=install, load_cpus=load_cpus)
        pinned = (f"gateway under test pinned to CPU {gateway_cpus}; wrk, nginx and this "
                  f"driver on CPU {load_cpus}") if gateway_cpus else "no CPU pinning (1 core)"
        log(f"mock upstream: nginx on 127.0.0.1:{mock_port}; {pinned}")

        for s in scenarios:
            row = report.Row(s.key, s.title, s.about, outlay=s.outlay)
            rows.append(row)
            log(f"{s.title}: starting")
            row.reason = s.unavailable(ctx)
            if row.reason:
                log(f"  not available: {row.reason}")
                continue
            try:
                target = s.start(ctx)
                procs.extend(target.procs)
                smoke(target)
            except Exception as exc:  # a scenario that fails is reported, not fatal
                row.reason = f"failed to start: {str(exc).strip()[:400]}"
                log(f"  {row.reason}")
                continue
            targets[s.key] = target
            row.notes += target.notes
        running = [r for r in rows if r.key in targets]

        warm = 1 if args.quick else 3
        log(f"warming up every gateway ({warm} s at 32 connections, 30 streams)")
        for r in running:
            t = targets[r.key]
            with sampler.watching(r.key, t.pid):
                run_wrk(t, 32, warm, tmp, cpus=load_cpus, name=f"{r.key}-warm")
                if t.streams:
                    run_streams(t, requests=1, warmup=29)
            if t.pid:
                wait_quiet(lambda pid=t.pid: tree_cpu_seconds(pid))

        for round_no in range(args.rounds):
            # rotate the order each round, so no scenario always follows the same one
            order = running[round_no % len(running):] + running[:round_no % len(running)]
            for c in levels:
                log(f"round {round_no + 1}/{args.rounds}: wrk, {c} connection(s), "
                    f"{args.duration:.0f} s each")
                for r in order:
                    t = targets[r.key]
                    cpu_before = tree_cpu_seconds(t.pid) if t.pid else 0.0
                    with sampler.watching(r.key, t.pid):
                        res = run_wrk(t, c, args.duration, tmp, cpus=load_cpus,
                                      name=f"{r.key}-{c}")
                    r.runs.setdefault(c, []).append(res)
                    cpu = ""
                    if t.pid and res.requests:
                        # what it still does for these calls is theirs, not the next run's
                        tail = wait_quiet(lambda pid=t.pid: tree_cpu_seconds(pid))
                        used = (tree_cpu_seconds(t.pid) - cpu_before) / res.requests * 1e6
                        r.cpu.setdefault(c, []).append(used)
                        cpu = f"  CPU {used:5,.0f} µs/call"
                        if tail >= 1:
                            cpu += f" (busy {tail:.0f} s after its load)"
                    flag = "" if res.clean else f"  ({res.errors} errors, {res.non_2xx} non-2xx)"
                    log(f"  {r.title:34} {res.rps:9,.0f} req/s  p50 {res.p50_ms:6.2f} ms  "
                        f"p99 {res.p99_ms:6.2f} ms{cpu}{flag}")
        hostile_rows: list[HostileRow] = []
        if args.hostile:
            log(f"paying calls at 1 connection, alone and beside {CLIENTS} hostile clients, "
                f"{args.rounds} round(s) of {args.duration:.0f} s each")
            hostile_rows = [hostile(r, targets[r.key], args.rounds, args.duration, tmp,
                                    load_cpus) for r in running if r.outlay]
        log(f"streams: time to first chunk over {args.streams} calls each, one at a time")
        for r in running if args.streams else []:
            t = targets[r.key]
            if not t.streams:
                continue
            with sampler.watching(r.key, t.pid):
                r.stream = run_streams(t, args.streams)
            log(f"  {r.title:34} TTFB p50 {r.stream.ttfb_p50_ms:6.2f} ms  p99 "
                f"{r.stream.ttfb_p99_ms:6.2f} ms  whole stream p50 "
                f"{r.stream.total_p50_ms:6.2f} ms")
        for r in running:
            r.peak_rss = sampler.peaks.get(r.key)
        vendor_lines: list[str] = []
        if args.vendor_read and "outlay" in targets:
            log(f"vendor calls: {args.vendor_read} of each kind, one at a time")
            vendor_lines = vendor_read.measure(targets["outlay"], args.vendor_read).lines()
            log("\n".join(vendor_lines[2:]))

        checks = [enforcement(r, targets[r.key], ctx.admin_token) for r in running if r.outlay]

        profile_md = None
        if args.profile and args.profile_target in targets:
            log(f"profiling {args.profile_target} under {args.profile_connections} "
                f"connection(s) for {args.profile_seconds:.0f} s with py-spy")
            profile_md = profile(targets[args.profile_target], args.profile_target,
                                 args.profile_connections, args.profile_seconds, stamp, tmp,
                                 load_cpus)

        elapsed = time.monotonic() - started
        setup = [
            f"Run {stamp}, {elapsed / 60:.0f} min, {measured}. Machine: {machine()}.",
            f"Each wrk run: {args.duration:.0f} s, `wrk -t1 -c1|32 --latency`, "
            f"{args.rounds} round(s) interleaved (medians); the same small chat completion "
            f"request everywhere; {pinned}. Stream time to first chunk: {args.streams} "
            "streamed calls one at a time over one kept-alive connection (aiohttp client). "
            "Peak RSS: the gateway's process tree, sampled every 0.2 s while it was under "
            "load (direct: nginx's).",
            f"CPUs busy before the run: {busy_before:.0%}"
            + (" (**something else was running: noisy figures**)." if busy_before > BUSY
               else "."),
        ]
        chart_path = RESULTS_DIR / f"{stamp}.png"
        report.chart(rows, chart_path, f"Outlay benchmark {stamp} (one worker each)")
        hostile_md = hostile_table(hostile_rows) if hostile_rows else None
        text = report.markdown(rows, title=f"Outlay benchmark, {stamp}", setup=setup,
                               checks=checks, profile=profile_md, chart=chart_path.name,
                               hostile=hostile_md)
        if vendor_lines:
            text = text.rstrip("\n") + "\n\n" + "\n".join(vendor_lines) + "\n"
        md_path = RESULTS_DIR / f"{stamp}.md"
        md_path.write_text(text)
        log("")
        log(report.figures_table(rows))
        log("")
        log(report.ratios_table(rows))
        log("")
        log("\n".join(report.bar(rows)))
        if hostile_md:
            log("")
            log(hostile_md)
        for r in rows:
            if r.reason:
                log(f"not available: {r.title}: {r.reason}")
        log(f"\nwrote {md_path.relative_to(BENCH_DIR.parent)} and "
            f"{chart_path.relative_to(BENCH_DIR.parent)}")
        ok = True
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        sampler.close()
        for proc in reversed(procs):
            proc.stop()
        if args.keep or not ok:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def hostile(row: report.Row, target: Target, rounds: int, seconds: float, tmp: Path,
            cpus: str | None) -> HostileRow:
    """A paying call's latency at one connection alone and beside the hostile clients,
    interleaved round by round (the order swapped each round, so drift favours neither)."""
    out = HostileRow(row.title)
    address = urlsplit(target.url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    for round_no in range(rounds):
        for loud in (False, True) if round_no % 2 == 0 else (True, False):
            if not loud:
                out.quiet.append(run_wrk(target, 1, seconds, tmp, cpus=cpus,
                                         name=f"{row.key}-alone"))
            else:
                with hostile_clients(host, port, target.path) as tally:
                    time.sleep(0.5)  # the hostile clients are at it before the paying calls
                    out.loud.append(run_wrk(target, 1, seconds, tmp, cpus=cpus,
                                            name=f"{row.key}-hostile"))
                out.tallies.append(tally)
            if target.pid:  # what one half leaves running must not land in the other
                wait_quiet(lambda pid=target.pid: tree_cpu_seconds(pid))
        loud = out.loud[-1]
        beside = f"{loud.p50_ms:7.2f} ms" if loud.requests else "no call answered"
        log(f"  {row.title:34} paying p50 alone {out.quiet[-1].p50_ms:7.2f} ms, beside "
            f"hostile clients {beside} ({out.tallies[-1].requests:,} hostile requests)")
    return out


def enforcement(row: report.Row, target: Target, admin_token: str) -> str:
    """Shows the calls really went the whole path: admitted, charged, audited."""
    status, usage = http_json("GET", f"{target.url}/admin/v1/usage/agent:bench", None,
                              admin_token)
    status2, rep = http_json("GET", f"{target.url}/admin/v1/reports?group_by=agent", None,
                             admin_token)
    if status != 200 or status2 != 200:
        return f"- {row.title}: the admin API answered {status}/{status2}"
    mine = next((e for e in rep.get("rows", []) if e.get("agent") == "bench"), None)
    if mine is None:
        return f"- {row.title}: no ledger rows for the bench agent"
    spent = next((b.get("spent_usd") for b in usage.get("budgets", [])), "?")
    answered = sum(r.requests for runs in row.runs.values() for r in runs)
    return (f"- {row.title}: the ledger holds {mine['requests']:,} rows for the bench agent "
            f"({mine['allowed']:,} allowed, {mine['refused']:,} refused, {mine['unsettled']:,} "
            f"unsettled; wrk counted {answered:,} answers in the measured runs, the rest are "
            f"warm-up and streams); the agent's hard monthly budget shows ${spent} spent")


def profile(target: Target, name: str, connections: int, seconds: float, stamp: str, tmp: Path,
            cpus: str | None) -> str:
    py_spy = str(Path(sys.executable).parent / "py-spy")
    raw = RESULTS_DIR / f"{stamp}-profile.txt"
    svg = RESULTS_DIR / f"{stamp}-profile.svg"
    for fmt, out in (("raw", raw), ("flamegraph", svg)):
        load = threading.Thread(target=run_wrk, args=(target, connections, seconds + 3, tmp),
                                kwargs={"cpus": cpus, "name": f"profile-{fmt}"})
        load.start()
        time.sleep(1.5)
        done = subprocess.run([py_spy, "record", "--pid", str(target.pid), "-d",
                               str(int(seconds)), "-r", "200", "--idle", "--format", fmt,
                               "-o", str(out)], capture_output=True, text=True,
                              timeout=seconds + 60)
        load.join()
        if done.returncode != 0:
            return f"py-spy failed: {done.stderr.strip()[-400:]}"
    summary = hotspots.report(hotspots.summarize(raw.read_text().splitlines()))
    return (f"py-spy at 200 Hz for {seconds:.0f} s of `wrk -c{connections}` on `{name}` "
            f"(flame graph: {svg.name}, stacks: {raw.name}).\n\n{summary}")


if __name__ == "__main__":
    sys.exit(main())
