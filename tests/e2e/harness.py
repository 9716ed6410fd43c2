"""The end-to-end harness: a real `outlay serve` process on loopback, and admin helpers over HTTP.

Each gateway gets its own directory (SQLite state, YAML config, log), an OS-chosen free port
(`listen: 127.0.0.1:0`, read back from the startup line) and an environment without provider
credentials, so the built-in simulated provider answers. conftest.py attaches the logs of running
gateways to the report of a failing test.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ADMIN_TOKEN = "e2e-admin-token-0123456789"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_LISTENING = re.compile(r"Outlay listening on http://([^\s:]+):(\d+)")
_names = itertools.count(1)
# The shared gateway: one worker, no latency, a small body limit for the bad-input tests,
# and prices for the simulated provider's failing models so that their calls reserve money.
_FAILING = {"provider": "openai", "input": 1, "output": 1, "max_output_tokens": 4096,
            "context_window": 128_000}
SHARED_CONFIG: dict[str, Any] = {
    "max_body_bytes": 16_384,
    "simulated": {"latency_ms": 0},
    "prices": {"sim-error-400": _FAILING, "sim-break": _FAILING},
}
# A model whose reservation is exactly its cost: no input price, and the simulated provider
# always writes EXACT_TOKENS tokens when asked for at most that many. A budget test with it
# sees any over-admission as spend above the cap.
EXACT_MODEL = "e2e-exact"
EXACT_TOKENS = 24
EXACT_PRICES = {EXACT_MODEL: {"provider": "openai", "input": 0, "output": 10,
                              "max_output_tokens": EXACT_TOKENS, "context_window": 128_000}}
# Several workers and a slow provider, so that many calls are in flight at once.
POOL_CONFIG: dict[str, Any] = {"simulated": {"latency_ms": 200}, "prices": EXACT_PRICES}


def outlay_bin() -> str:
    """The `outlay` command of the interpreter running the tests (the project's venv)."""
    beside = Path(sys.executable).with_name("outlay")
    if beside.exists():
        return str(beside)
    found = shutil.which("outlay")
    if found is None:
        pytest.fail("the `outlay` command is not installed next to the test interpreter")
    return found


def server_env() -> dict[str, str]:
    """The test environment minus provider credentials and stray OUTLAY_* settings."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith("OUTLAY_") and name not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    env["OUTLAY_ADMIN_TOKEN"] = ADMIN_TOKEN
    env["PYTHONUNBUFFERED"] = "1"
    return env


def unique(prefix: str) -> str:
    """A name no other test in this session uses (agents share one state file per gateway)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def micros(usd: str | int | float | Decimal | None) -> int:
    """A USD amount from an admin answer as exact micro-dollars."""
    assert usd is not None
    value = Decimal(str(usd)) * 1_000_000
    assert value == value.to_integral_value(), f"{usd!r} is finer than a micro-dollar"
    return int(value)


def price_cost_micros(price: dict[str, Any], input_tokens: int, output_tokens: int) -> int:
    """What the price table says a call costs, in micro-USD, rounded up (SPEC §3).

    Prices are USD per million tokens, so tokens x price is already in micro-USD.
    """
    exact = (Decimal(input_tokens) * Decimal(str(price["input"]))
             + Decimal(output_tokens) * Decimal(str(price["output"])))
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


class Gateway:
    """One `outlay serve` process group and an admin client for it."""

    def __init__(self, directory: Path, config: dict[str, Any], workers: int,
                 state: Path | None = None) -> None:
        self.name = directory.name
        self.dir = directory
        self.state_path = state or directory / "state.db"
        self.config_path = directory / "outlay.yaml"
        self.log_path = directory / "serve.log"
        self.config = {"listen": "127.0.0.1:0", **config}
        self.workers = workers
        self.env: dict[str, str] = {}  # added to the process's environment
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log_from = 0  # where the log of the current start begins
        self._admin: httpx.Client | None = None

    # -- lifecycle --------------------------------------------------------------------
    def argv(self) -> list[str]:
        return [outlay_bin(), "serve", "--config", str(self.config_path),
                "--state", f"sqlite:///{self.state_path}", "--workers", str(self.workers)]

    def start(self) -> Gateway:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        argv = self.argv()
        # started again (after stop or kill): the port is the one this start prints
        self.port, self._log_from = 0, len(self.log())
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(argv)}\n".encode())
            log.flush()
            # a session of its own, so that kill() reaches the workers as well
            self.proc = subprocess.Popen(argv, cwd=self.dir, env={**server_env(), **self.env},
                                         stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        self._admin = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive()
            if not self.port:
                found = _LISTENING.search(self.log()[self._log_from:])
                self.port = int(found[2]) if found else 0
            if self.port:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
            time.sleep(0.05)
        pytest.fail(f"outlay serve did not become healthy in {START_TIMEOUT_S} s:\n{self.log()}")

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"outlay serve exited with {self.proc.returncode}:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """The worker processes under the supervisor (Linux: read from /proc)."""
        assert self.proc is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.proc.pid:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(int(entry.name)) == self.proc.pid:
                    pids.append(int(entry.name))
        return sorted(pids)

    def busiest_worker(self) -> int:
        """The worker holding the most sockets, i.e. the most client connections."""
        def sockets(pid: int) -> int:
            fds = Path(f"/proc/{pid}/fd")
            with contextlib.suppress(FileNotFoundError, PermissionError):
                return sum(1 for fd in fds.iterdir()
                           if os.readlink(fd).startswith("socket:"))
            return 0

        return max(self.worker_pids(), key=sockets)

    def kill(self) -> None:
        """kill -9 the supervisor and every worker at once: a crash, nothing cleaned up."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._close_admin()

    def stop(self) -> None:
        """SIGTERM and wait; a gateway that will not stop is killed (and that is reported)."""
        self._close_admin()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
                raise AssertionError(f"outlay serve ignored SIGTERM:\n{self.log()}") from None
        # workers left behind by a supervisor that died: this process group only
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- admin API ----------------------------------------------------------------------
    @property
    def admin(self) -> httpx.Client:
        assert self._admin is not None, "the gateway is not running"
        return self._admin

    def _ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text}")
        return response.json()

    def mint_key(self, agent: str, **fields: Any) -> dict[str, Any]:
        """POST /admin/v1/keys; the answer holds the secret under `key`."""
        return self._ok(self.admin.post("/admin/v1/keys", json={"agent": agent, **fields}), 201)

    def revoke(self, key_id: str) -> dict[str, Any]:
        return self._ok(self.admin.post(f"/admin/v1/keys/{key_id}/revoke"))

    def set_policy(self, scope: str, policy: dict[str, Any]) -> dict[str, Any]:
        """Replace the scope's policy, budgets it drops included (a test's set-up)."""
        return self._ok(self.admin.put(f"/admin/v1/policies/{scope}", json=policy,
                                       params={"drop_budgets": "true"}))

    def usage(self, scope: str) -> dict[str, Any]:
        return self._ok(self.admin.get(f"/admin/v1/usage/{scope}"))

    def budget(self, scope: str, period: str | None = None) -> dict[str, Any]:
        """The one budget (of `period`, if given) in the usage of `scope`."""
        budgets = [b for b in self.usage(scope)["budgets"]
                   if period is None or b["period"] == period]
        assert len(budgets) == 1, budgets
        return budgets[0]

    def audit(self, scope: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self._ok(self.admin.get("/admin/v1/audit",
                                       params={"scope": scope, "limit": limit}))["entries"]

    def prices(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self._ok(self.admin.get("/admin/v1/prices"))["models"]}


# launch(config, workers=N, state=path, name=...) -> a started Gateway, stopped after the test
Launch = Callable[..., Gateway]
