"""The scenario table: what stands between the load generator and the mock upstream.

A scenario says whether it can run here (`unavailable` gives the reason when not), starts
its gateway on a port of its own and hands back a Target. Adding one is adding a row to
`table()`; a scenario whose software does not exist yet stays in the table and is reported
as not available, with the reason, until it does.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import nginx_mock as mock
from procs import Proc, free_port, http_json, http_ok, port_open, wait_until

BENCH_DIR = Path(__file__).resolve().parent
PYTHON_BIN = Path(sys.executable).parent
AGENT = "bench"
LOAD_KEYS = 10
HUGE_USD = 1_000_000_000  # far above anything a run can spend: nothing is ever refused
# every Outlay scenario runs with full enforcement: key authentication, an rpm and a tpm
# window, a hard monthly budget on the key and on its agent, and the audit row
KEY_POLICY = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000,
              "budgets": [{"usd": HUGE_USD, "period": "month", "mode": "hard"}]}
AGENT_POLICY = {"budgets": [{"usd": HUGE_USD, "period": "month", "mode": "hard"}]}
# the guards on the request path: a loop guard on every key, counting each call. The load
# generator sends one body over and over, so every call of a key is the same request and
# counted against one fingerprint: 100,000 in 10 s per key (100,000 calls a second over the
# LOAD_KEYS keys) is far above what a run sends, so it never refuses, and it pays the
# hashing and the count on every call
@dataclass
class Context:
    tmp: Path
    mock_port: int
    mock_pid: int
    gateway_cpus: str | None
    log: Callable[[str], None]
    # where the load generator and the mock run; the services a gateway needs (Redis,
    # PostgreSQL) run there too, so the gateway's core measures the gateway alone
    load_cpus: str | None = None
    admin_token: str = "oladm_bench_" + os.urandom(8).hex()
    litellm: LitellmInstall | None = None


@dataclass
class Target:
    """A running scenario, as the load generators see it."""

    url: str  # origin, e.g. http://127.0.0.1:8001
    tokens: list[str] = field(default_factory=lambda: [""])  # bearer tokens, cycled
    path: str = "/v1/chat/completions"
    stream_path: str = "/v1/chat/completions?stream=1"
    stream_model: str = mock.MODEL
    headers: list[tuple[str, str]] = field(default_factory=list)  # sent with every call
    stream_headers: list[tuple[str, str]] | None = None  # for streams, if not `headers`
    streams: bool = True  # False: its streams are not measured (a note says why)
    pid: int | None = None  # root of the process tree whose memory is sampled
    procs: list[Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


class Scenario:
    key: str = ""
    title: str = ""
    about: str = ""
    outlay = False  # held to the bar and checked for its audit rows

    def unavailable(self, ctx: Context) -> str | None:
        return None

    def start(self, ctx: Context) -> Target:
        raise NotImplementedError


class Direct(Scenario):
    key, title = "direct", "Direct to the mock"
    about = "wrk straight to nginx: the reference for added latency"

    def start(self, ctx: Context) -> Target:
        return Target(f"http://127.0.0.1:{ctx.mock_port}", pid=ctx.mock_pid)


class PassThrough(Scenario):
    key, title = "passthrough", "Pass-through (the floor)"
    about = ("bench/passthrough.py: parse the JSON body, forward it with one shared aiohttp "
             "ClientSession, return the answer")

    def start(self, ctx: Context) -> Target:
        port = free_port()
        proc = Proc(self.key, [sys.executable, str(BENCH_DIR / "passthrough.py"), str(port),
                               f"http://127.0.0.1:{ctx.mock_port}"], ctx.tmp,
                    cpus=ctx.gateway_cpus)
        wait_until(lambda: port_open(port), 30, self.title, proc)
        return Target(f"http://127.0.0.1:{port}", pid=proc.pid, procs=[proc])


class Outlay(Scenario):
    """`outlay serve`, one worker, forwarding to the mock, every key fully enforced."""

    outlay = True
    endpoint_fields = ""  # more fields of the mock's endpoint, as YAML flow items
    # more fields of the agent's and the keys' policies
    policy_fields: ClassVar[dict[str, Any]] = {}

    def __init__(self, key: str, title: str, about: str, *, seed_keys: int = 0,
                 seed_ledger: int = 0, source: Path | None = None, workers: int = 1) -> None:
        self.key, self.title, self.about = key, title, about
        self.seed_keys, self.seed_ledger = seed_keys, seed_ledger
        self.source = source  # another checkout to run Outlay from; None: this one
        self.workers = workers

    def cpus(self, ctx: Context) -> tuple[str | None, list[str]]:
        """The CPUs the gateway is pinned to, and a note when its workers share fewer cores
        than they are: one worker gets the gateway's core, more get as many of the last
        cores when the machine has more than that, else they share the gateway's one."""
        if self.workers == 1 or ctx.gateway_cpus is None:
            return ctx.gateway_cpus, []
        # the run's CPUs (the driver itself is pinned to the load's by now)
        cpus = sorted({int(c) for part in (ctx.load_cpus, ctx.gateway_cpus) if part
                       for c in part.split(",")})
        if len(cpus) > self.workers:
            return ",".join(map(str, cpus[-self.workers:])), []
        return ctx.gateway_cpus, [f"{self.workers} workers on CPU {ctx.gateway_cpus}: this "
                                  f"machine has {len(cpus)} cores, so they share one"]

    def config(self, ctx: Context) -> Path:
        path = ctx.tmp / f"{self.key}.yaml"
        path.write_text(
            "providers:\n  openai:\n    endpoints:\n"
            f"      - {{base_url: 'http://127.0.0.1:{ctx.mock_port}/v1', api_key: sk-bench"
            f"{self.endpoint_fields}}}\n"
            # the mock's Stripe, for --vendor-read
            "vendors:\n  stripe:\n"
            f"    {{base_url: 'http://127.0.0.1:{ctx.mock_port}/stripe', secret: sk_bench}}\n")
        return path

    def state_args(self, ctx: Context, procs: list[Proc]) -> list[str]:
        db = ctx.tmp / f"{self.key}.db"
        if self.seed_keys or self.seed_ledger:
            from seed import seed

            ctx.log(f"  seeding {self.seed_keys:,} keys and {self.seed_ledger:,} ledger rows")
            done = seed(str(db), keys=self.seed_keys, ledger_rows=self.seed_ledger)
            ctx.log(f"  seeded in {done.seconds:.0f} s ({db.stat().st_size / 2**20:.0f} MiB)")
        return ["--state", f"sqlite:///{db}"]

    def start(self, ctx: Context) -> Target:
        procs: list[Proc] = []
        cpus, notes = self.cpus(ctx)
        try:
            state = self.state_args(ctx, procs)
            port = free_port()
            env = {"OUTLAY_ADMIN_TOKEN": ctx.admin_token}
            command = [str(PYTHON_BIN / "outlay")]
            if self.source is not None:  # its code first on the path, this environment's rest
                env["PYTHONPATH"] = str(self.source.resolve() / "src")
                command = [sys.executable, "-m", "outlay.cli"]
            gateway = Proc(
                self.key, [*command, "serve", "--config", str(self.config(ctx)), *state,
                           "--port", str(port), "--workers", str(self.workers)],
                ctx.tmp, cpus=cpus, env=env)
            procs.append(gateway)
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_ok(url + "/readyz"), 60, self.title, gateway)
            tokens = provision(url, ctx.admin_token, self.policy_fields)
        except BaseException:
            for proc in reversed(procs):
                proc.stop()
            raise
        return Target(url, tokens=tokens, pid=gateway.pid, procs=procs, notes=notes)


def provision(url: str, token: str, fields: dict[str, Any] | None = None) -> list[str]:
    """The agent's budget and LOAD_KEYS keys with their own windows and budget (and
    `fields` in both policies)."""
    status, answer = http_json("PUT", f"{url}/admin/v1/policies/agent:{AGENT}",
                               {**AGENT_POLICY, **(fields or {})}, token)
    if status != 200:
        raise RuntimeError(f"PUT agent policy answered {status}: {answer}")
    tokens = []
    for _ in range(LOAD_KEYS):
        status, answer = http_json("POST", f"{url}/admin/v1/keys",
                                   {"agent": AGENT, "policy": {**KEY_POLICY, **(fields or {})}},
                                   token)
        if status not in (200, 201) or "key" not in answer:
            raise RuntimeError(f"POST /admin/v1/keys answered {status}: {answer}")
        tokens.append(answer["key"])
    return tokens


class OutlayGuarded(Outlay):
    """As the embedded store, with the traffic guards on and never binding: every policy has a
    loop guard that counts each call (the load's bodies never change, so each is a repeat)
    and says `on_rate_limit: queue`, and the endpoint has limits far above the load. What the
    guard's hash and count, an empty queue and an endpoint's limits (one more scope in each
    decision) cost on the request path."""

    endpoint_fields = ", limits: {rpm: 1000000000, tpm: 1000000000000, max_parallel: 100000}"
    policy_fields: ClassVar[dict[str, Any]] = {
        "on_rate_limit": "queue", "queue_max_wait_s": 30,
        "loop_guard": {"max_repeats": 100_000, "window_s": 10}}


class OutlayRedisPostgres(Outlay):
    """Outlay on Redis (decisions) and PostgreSQL (the durable ledger), both started here."""

    def unavailable(self, ctx: Context) -> str | None:
        try:
            from outlay.state.open import store_from_url

            store_from_url("redis://127.0.0.1:1/0", database="postgresql://127.0.0.1:1/x")
        except ValueError as exc:
            return f"`outlay serve --state redis://…` does not work yet ({exc})"
        except Exception:  # noqa: S110 (it exists; whatever else it wants, serve will say)
            pass
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (apt-get install redis-server)"
        if _pg_bin("initdb") is None:
            return "PostgreSQL is not installed (apt-get install postgresql)"
        return None

    def state_args(self, ctx: Context, procs: list[Proc]) -> list[str]:
        redis_port, pg_port = free_port(), free_port()
        redis_dir = ctx.tmp / f"{self.key}-redis"  # each such scenario its own servers
        redis_dir.mkdir()
        redis = Proc(f"{self.key}-redis", ["redis-server", "--bind", "127.0.0.1", "--port",
                               str(redis_port), "--dir", str(redis_dir), "--save", "",
                               "--appendonly", "yes", "--appendfsync", "everysec"], ctx.tmp,
                     cpus=ctx.load_cpus)
        procs.append(redis)
        wait_until(lambda: port_open(redis_port), 30, "redis-server", redis)
        procs.append(_start_postgres(ctx, pg_port, self.key))
        return ["--state", f"redis://127.0.0.1:{redis_port}/0",
                "--database", f"postgresql://postgres@127.0.0.1:{pg_port}/outlay"]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


def _start_postgres(ctx: Context, port: int, name: str) -> Proc:
    """A throwaway cluster in the run's temp dir; as root, it runs as the postgres user."""
    data, sockets = ctx.tmp / f"{name}-pgdata", ctx.tmp / f"{name}-pgsock"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root; its user needs to reach the temp dir
        os.chmod(ctx.tmp, 0o755)  # noqa: S103 (a throwaway dir of this run; no secrets)
        data.mkdir()
        shutil.chown(data, "postgres")
        shutil.chown(sockets, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, str(_pg_bin("initdb")), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    proc = Proc(f"{name}-postgres", [*as_user, str(_pg_bin("postgres")), "-D", str(data), "-p",
                             str(port), "-k", str(sockets), "-c", "listen_addresses=127.0.0.1"],
                ctx.tmp, cpus=ctx.load_cpus)
    wait_until(lambda: port_open(port), 60, "postgres", proc)
    psql = _pg_bin("psql") or "psql"
    for _ in range(50):  # accepting connections is a little after listening
        done = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                               "-c", "CREATE DATABASE outlay"], capture_output=True, timeout=30)
        if done.returncode == 0:
            return proc
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"CREATE DATABASE failed: {done.stderr.decode(errors='replace')}")


# --- LiteLLM ------------------------------------------------------------------------------

LITELLM_VENV = BENCH_DIR / ".litellm-venv"
LITELLM_MASTER_KEY = "sk-bench-litellm-master"


class LitellmInstall:
    """Installs `litellm[proxy]` into a venv of its own, in the background, time-boxed."""

    def __init__(self, timeout_s: float, log: Callable[[str], None]) -> None:
        self.timeout_s, self.log = timeout_s, log
        self.reason: str | None = None
        self._thread = threading.Thread(target=self._install, daemon=True)
        self._thread.start()

    @property
    def executable(self) -> Path:
        return LITELLM_VENV / "bin" / "litellm"

    def _install(self) -> None:
        marker = LITELLM_VENV / ".bench-installed"
        if marker.exists() and self.executable.exists():
            return
        started = time.monotonic()
        try:
            shutil.rmtree(LITELLM_VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True,
                           capture_output=True, timeout=120)
            left = self.timeout_s - (time.monotonic() - started)
            done = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q",
                                   "litellm[proxy]"], capture_output=True, timeout=left)
        except subprocess.TimeoutExpired:
            self.reason = f"`pip install 'litellm[proxy]'` did not finish in {self.timeout_s:.0f} s"
            return
        except (subprocess.CalledProcessError, OSError) as exc:
            self.reason = f"could not make its virtual environment: {exc}"
            return
        if done.returncode != 0 or not self.executable.exists():
            lines = [ln for ln in done.stderr.decode(errors="replace").splitlines()
                     if ln.strip() and not ln.startswith("WARNING")]
            self.reason = "`pip install 'litellm[proxy]'` failed: " + (
                lines[-1] if lines else f"exit {done.returncode}")
            return
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        self.log(f"  LiteLLM installed in {time.monotonic() - started:.0f} s")

    def wait(self) -> str | None:
        self._thread.join(self.timeout_s + 60)
        if self._thread.is_alive():
            return f"the install did not finish in {self.timeout_s:.0f} s"
        return self.reason

    def version(self) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([str(LITELLM_VENV / "bin" / "python"), "-c",
                                  "from importlib.metadata import version; "
                                  "print(version('litellm'))"],
                                 capture_output=True, timeout=60, text=True)
            return out.stdout.strip()
        return "?"


class Litellm(Scenario):
    key, title = "litellm", "LiteLLM proxy"
    about = ("`litellm --config … --num_workers 1`: master key, no database (so no per-key "
             "budgets: less work than Outlay does), in bench/.litellm-venv")

    def unavailable(self, ctx: Context) -> str | None:
        if ctx.litellm is None:
            return "skipped (--no-litellm)"
        return ctx.litellm.wait()

    def start(self, ctx: Context) -> Target:
        assert ctx.litellm is not None
        origin = f"http://127.0.0.1:{ctx.mock_port}"
        config = ctx.tmp / "litellm.yaml"
        model = f"openai/{mock.MODEL}"
        config.write_text(f"""\
model_list:
  - model_name: {mock.MODEL}
    litellm_params: {{model: {model}, api_base: "{origin}/v1", api_key: sk-bench}}
  - model_name: {mock.MODEL}-stream
    litellm_params: {{model: {model}, api_base: "{origin}/stream/v1", api_key: sk-bench}}
general_settings:
  master_key: {LITELLM_MASTER_KEY}
""")
        # no access log line per request: Outlay and the pass-through write none either
        log_config = ctx.tmp / "litellm-logging.yaml"
        log_config.write_text("""\
version: 1
disable_existing_loggers: false
formatters: {plain: {format: "%(asctime)s %(name)s %(levelname)s %(message)s"}}
handlers: {err: {class: logging.StreamHandler, formatter: plain, stream: ext://sys.stderr}}
loggers:
  uvicorn: {handlers: [err], level: WARNING}
  uvicorn.error: {level: WARNING}
  uvicorn.access: {handlers: [], level: WARNING, propagate: false}
root: {handlers: [err], level: WARNING}
""")
        port = free_port()
        proc = Proc(self.key, [str(ctx.litellm.executable), "--config", str(config), "--host",
                               "127.0.0.1", "--port", str(port), "--num_workers", "1",
                               "--log_config", str(log_config)],
                    ctx.tmp, cpus=ctx.gateway_cpus,
                    env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                         "PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_ok(url + "/health/liveliness"), 180, self.title, proc)
        except BaseException:
            proc.stop()
            raise
        return Target(url, tokens=[LITELLM_MASTER_KEY], stream_path="/v1/chat/completions",
                      stream_model=f"{mock.MODEL}-stream", pid=proc.pid, procs=[proc],
                      notes=[f"litellm {ctx.litellm.version()}"])


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def table(*, quick: bool, baselines: Sequence[Path] = ()) -> list[Scenario]:
    from peers import Bifrost, Portkey

    keys, ledger = (10_000, 100_000) if quick else (100_000, 1_000_000)

    def named(n: int, base: Path) -> tuple[str, str]:
        """The key's suffix and the title's: `-baseline`, then `-baseline-2` with its folder."""
        return ("-baseline", ", baseline") if len(baselines) == 1 else (
            f"-baseline-{n}", f", baseline {n} ({base.name})")

    compared: list[Scenario] = [
        Outlay(f"outlay{named(n, base)[0]}", f"Outlay, embedded{named(n, base)[1]}",
               f"as the embedded store, the code of {base}", source=base)
        for n, base in enumerate(baselines, 1)]
    compared_shared: list[Scenario] = [
        OutlayRedisPostgres(f"outlay-redis-pg{named(n, base)[0]}",
                            f"Outlay, Redis + PostgreSQL{named(n, base)[1]}",
                            f"as Redis + PostgreSQL, the code of {base}", source=base)
        for n, base in enumerate(baselines, 1)]
    return [
        Direct(),
        PassThrough(),
        Outlay("outlay", "Outlay, embedded store",
               f"`outlay serve --state sqlite:///…`, {LOAD_KEYS} keys, full enforcement"),
        *compared,
        OutlayGuarded("outlay-guards", "Outlay, embedded, guards on",
                      "as the embedded store, every policy under a loop guard that counts each "
                      "call (100,000 repeats in 10 s: never refused) and `on_rate_limit: "
                      "queue`, with limits on the provider's endpoint, none of them reached"),
        Outlay("outlay-grown", f"Outlay, embedded, {_short(keys)} keys, {_short(ledger)} rows",
               f"as the embedded store, on one seeded with {keys:,} keys (each with a "
               f"policy) and a ledger of {ledger:,} rows", seed_keys=keys, seed_ledger=ledger),
        OutlayRedisPostgres("outlay-redis-pg", "Outlay, Redis + PostgreSQL",
                            "`outlay serve --state redis://… --database postgresql://…`"),
        *compared_shared,
        Outlay("outlay-2w", "Outlay, embedded, 2 workers",
               "as the embedded store, `--workers 2` sharing the SQLite file", workers=2),
        OutlayRedisPostgres("outlay-redis-pg-2w", "Outlay, Redis + PostgreSQL, 2 workers",
                            "as Redis + PostgreSQL, `--workers 2`", workers=2),
        Portkey(),
        Bifrost(),
        Litellm(),
    ]
