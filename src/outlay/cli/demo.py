"""`outlay demo`: a simulated gateway, an agent with a tiny budget, calls until it runs out.

Runs offline: the gateway is started with a config of simulated providers only (OpenAI's,
and Groq's as a second one) and without provider keys in its environment, so it can only
serve the built-in simulated provider and never spends money.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
import httpx

from outlay.cli.admin import render_usage
from outlay.cli.client import AdminClient, error_message, segment

DEMO_AGENT = "demo-agent"
DEMO_SCOPE = f"agent:{DEMO_AGENT}"
DEMO_CAP_USD = Decimal("0.0003")
DEMO_RPM = 120
# Without a known price, ask for this many output tokens per call.
FALLBACK_MAX_TOKENS = 1000
# Every other call goes to a second provider, simulated too: one budget covers both
SECOND_MODEL = "groq/llama-3.1-8b-instant"
DEMO_CONFIG = "providers:\n  groq: {simulate: true, models: [\"llama-*\"]}\n"
_CREDENTIAL_VARIABLES = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}


def _output_price(admin: AdminClient, model: str) -> Decimal | None:
    """USD per output token of `model` (by name or alias), from the gateway's price table."""
    for entry in (admin.get("/prices") or {}).get("models", []):
        if model == entry.get("name") or model in (entry.get("aliases") or []):
            try:
                per_token = Decimal(str(entry.get("output"))) / 1_000_000
            except InvalidOperation:
                return None
            return per_token if per_token > 0 else None
    return None


def demo_max_tokens(per_token: Decimal | None) -> int:
    """Output tokens whose price is 90% of the cap: without clamping the second call would
    already be refused, with it each call is sent with what the budget still leaves."""
    if per_token is None:
        return FALLBACK_MAX_TOKENS
    return max(16, int(DEMO_CAP_USD * Decimal("0.9") / per_token))


def demo_floor(per_token: Decimal | None) -> int:
    """The least maximum output a clamped call is sent with: what costs 5% of the cap, so
    that the budget is spent to at least 90% before the first refusal."""
    if per_token is None:
        return 16
    return max(1, int(DEMO_CAP_USD * Decimal("0.05") / per_token))


def demo_policy(floor: int) -> dict[str, Any]:
    return {"rpm": DEMO_RPM, "clamp_max_tokens": floor,
            "budgets": [{"usd": str(DEMO_CAP_USD), "period": "day", "mode": "hard"}]}


def run_demo(admin: AdminClient, gateway: httpx.Client, *, model: str, calls: int) -> None:
    """The scripted walk-through, against a gateway that is already up."""
    per_token = _output_price(admin, model)
    max_tokens, floor = demo_max_tokens(per_token), demo_floor(per_token)
    admin.post("/agents", {"name": DEMO_AGENT})
    admin.put(f"/policies/{segment(DEMO_SCOPE)}", demo_policy(floor))
    click.echo(f"Agent {DEMO_AGENT}: {DEMO_RPM} requests/minute and a hard budget of "
               f"${DEMO_CAP_USD} a day.")
    created = admin.post("/keys", {"agent": DEMO_AGENT, "name": "demo", "ttl_seconds": 3600})
    click.echo(f"Minted key {created['id']}: {created['key']}")
    click.echo(
        f"Each call asks for up to {max_tokens} tokens: Outlay reserves what that could cost "
        "before forwarding it.\nWhen the budget left cannot cover it, Outlay lowers the call's "
        f"max_tokens to what fits (down to {floor}),\nsays so in X-Outlay-Max-Tokens-Clamped, "
        "and refuses the call only below that.\n"
        f"Calls alternate between {model} and {SECOND_MODEL} (a second provider): one "
        "budget covers both.\n"
    )
    headers = {"Authorization": f"Bearer {created['key']}"}
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Say something about budgets."}],
    }
    refused = False
    for number in range(1, calls + 1):
        called = model if number % 2 else SECOND_MODEL
        try:
            response = gateway.post("/v1/chat/completions", json={**body, "model": called},
                                    headers=headers)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"the demo gateway stopped answering: {exc}") from None
        if response.is_error:
            click.echo(f"call {number:>2}: refused: {error_message(response)}")
            refused = True
            break
        cost = response.headers.get("X-Outlay-Cost-USD", "?")
        left = response.headers.get("X-Budget-Remaining-USD", "?")
        clamped = response.headers.get("X-Outlay-Max-Tokens-Clamped")
        lowered = f", max_tokens lowered to {clamped}" if clamped else ""
        click.echo(f"call {number:>2}: {called} answered, cost ${cost}, budget left "
                   f"${left}{lowered}")
    else:
        click.echo(f"All {calls} calls fitted in the budget.")
    usage = admin.get(f"/usage/{segment(DEMO_SCOPE)}")
    spent = _spent(usage)
    if spent is not None:
        share = spent / DEMO_CAP_USD * 100
        when = "before the first refusal" if refused else "in all"
        click.echo(f"\nSpent ${spent} of the ${DEMO_CAP_USD} budget ({share:.1f} %) {when}.")
    click.echo("")
    click.echo(render_usage(usage))


def _spent(usage: Any) -> Decimal | None:
    for budget in (usage or {}).get("budgets", []):
        try:
            return Decimal(str(budget.get("spent_usd")))
        except InvalidOperation:
            return None
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _gateway_env(token: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OUTLAY_") and name not in _CREDENTIAL_VARIABLES
    }
    # The child runs in a scratch directory: make sure it imports this very copy of Outlay.
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    env["OUTLAY_ADMIN_TOKEN"] = token
    return env


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise click.ClickException(f"the demo gateway exited ({process.returncode}):\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    raise click.ClickException(f"the demo gateway did not become healthy within {timeout:g} s")


@contextmanager
def simulated_gateway(startup_timeout: float = 30.0) -> Iterator[tuple[str, str]]:
    """Run `outlay serve` on a free loopback port with scratch state; yield (url, admin token)."""
    token = secrets.token_urlsafe(24)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="outlay-demo-") as workdir:
        # An explicit config: an outlay.yaml with real credentials must not be picked up.
        Path(workdir, "outlay.yaml").write_text(DEMO_CONFIG, encoding="utf-8")
        log_path = Path(workdir, "gateway.log")
        command = [
            sys.executable,
            "-m",
            "outlay.cli",
            "serve",
            "--config",
            "outlay.yaml",
            "--state",
            "sqlite:///demo.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=workdir, env=_gateway_env(token), stdout=log, stderr=subprocess.STDOUT
            )
            try:
                _wait_ready(url, process, log_path, startup_timeout)
                yield url, token
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
