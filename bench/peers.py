"""Other gateways run as pass-throughs to the same mock: Portkey's open-source gateway (from
npm, in `bench/.portkey`, out of git) and Bifrost, which says why it cannot run here.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import nginx_mock as mock
from procs import Proc, free_port, port_open, wait_until
from scenarios import BENCH_DIR, Context, Scenario, Target

PORTKEY_DIR = BENCH_DIR / ".portkey"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
PORTKEY_VERSION = "1.15.2"  # the version of the first look; pinned, so runs compare
PORTKEY_TIMEOUT_S = 300.0


class Portkey(Scenario):
    key, title = "portkey", "Portkey gateway"
    about = (f"`{PORTKEY_PACKAGE}` {PORTKEY_VERSION} from npm (Node.js, in bench/.portkey), "
             "`x-portkey-provider: openai` with `x-portkey-custom-host` at the mock: a "
             "pass-through with no keys, budgets or ledger of its own")

    def __init__(self) -> None:
        self._reason: str | None = None
        self._checked = False
        self._lock = threading.Lock()

    @property
    def entry(self) -> Path:
        return PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / \
            "start-server.js"

    def unavailable(self, ctx: Context) -> str | None:
        with self._lock:
            if not self._checked:
                self._reason = self._install(ctx)
                self._checked = True
            return self._reason

    def _install(self, ctx: Context) -> str | None:
        if shutil.which("node") is None or shutil.which("npm") is None:
            return "Node.js and npm are not installed (apt-get install nodejs npm)"
        marker = PORTKEY_DIR / f".bench-installed-{PORTKEY_VERSION}"
        if marker.exists() and self.entry.exists():
            return None
        started = time.monotonic()
        shutil.rmtree(PORTKEY_DIR, ignore_errors=True)
        PORTKEY_DIR.mkdir(parents=True)
        (PORTKEY_DIR / "package.json").write_text('{"private": true}\n')
        try:
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PORTKEY_DIR),
                 f"{PORTKEY_PACKAGE}@{PORTKEY_VERSION}"],
                capture_output=True, text=True, timeout=PORTKEY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"`npm install {PORTKEY_PACKAGE}` did not finish in {PORTKEY_TIMEOUT_S:.0f} s"
        if done.returncode != 0 or not self.entry.exists():
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            return f"`npm install {PORTKEY_PACKAGE}` failed: " + (
                lines[-1] if lines else f"exit {done.returncode}")
        marker.write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        ctx.log(f"  Portkey installed in {time.monotonic() - started:.0f} s")
        return None

    def start(self, ctx: Context) -> Target:
        port = free_port()
        # NODE_ENV=production: no log UI; --headless: no console banner
        proc = Proc(self.key, ["node", str(self.entry), f"--port={port}", "--headless"],
                    ctx.tmp, cpus=ctx.gateway_cpus, env={"NODE_ENV": "production"})
        try:
            wait_until(lambda: port_open(port), 60, self.title, proc)
        except BaseException:
            proc.stop()
            raise
        origin = f"http://127.0.0.1:{ctx.mock_port}"
        return Target(
            f"http://127.0.0.1:{port}", tokens=["sk-bench"],
            headers=[("x-portkey-provider", "openai"),
                     ("x-portkey-custom-host", f"{origin}/v1")],
            # Portkey forwards no query string: the mock's stream is at /stream/v1
            stream_path="/v1/chat/completions", stream_model=mock.MODEL,
            stream_headers=[("x-portkey-provider", "openai"),
                            ("x-portkey-custom-host", f"{origin}/stream/v1")],
            pid=proc.pid, procs=[proc], streams=False,
            notes=[f"portkey {PORTKEY_VERSION} on Node.js {_node_version()}; its streams "
                   "are not measured: every streamed call answers 500 here (`TypeError: "
                   "immutable` as it sets a header on the upstream's response)"])


def _node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30,
                          check=False)
    return done.stdout.strip().lstrip("v") or "?"


class Bifrost(Scenario):
    key, title = "bifrost", "Bifrost gateway"
    about = "Maxim's Bifrost (Go)"

    def unavailable(self, ctx: Context) -> str | None:
        return ("not installable from the package registries: npm's `@maximhq/bifrost` "
                "(1.6.3) is a launcher with no dependencies that downloads the Go binary "
                "from downloads.getmaxim.ai on its first run, and the Go module proxy lists "
                "no version of `github.com/maximhq/bifrost/transports` (its server)")
