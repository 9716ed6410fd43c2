"""An operator's first day through a real `outlay serve`: no silent simulator, policies that
change field by field, typos refused before anything is stored, the whole budget usable with
the official `anthropic` SDK, and Stripe refusals that stripe-python reads as what they are."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import stripe
import yaml

from .harness import ADMIN_TOKEN, Gateway, Launch, micros, outlay_bin, server_env, unique

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-5"
CAP_USD = Decimal("0.05")
PAYMENT = {"amount": 2000, "currency": "usd"}  # $20


@pytest.fixture(scope="module")
def simulated(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose config asks for the simulator by name, for one provider and Stripe."""
    from .conftest import _launcher

    config = {"providers": {"anthropic": {"simulate": True}},
              "vendors": {"stripe": {"simulate": True}}}
    with _launcher(request.config, tmp_path_factory.mktemp("first-day")) as start:
        yield start(config, name="first-day")


def _serve(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    path = tmp_path / "outlay.yaml"
    path.write_text(yaml.safe_dump({"listen": "127.0.0.1:0", **config}), encoding="utf-8")
    return subprocess.Popen(
        [outlay_bin(), "serve", "--config", str(path), "--state",
         f"sqlite:///{tmp_path / 'state.db'}"], cwd=tmp_path, env={**server_env(), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# -- simulation is explicit ------------------------------------------------------------------

@pytest.mark.parametrize(("config", "named"), [
    ({"vendors": {"stripe": {"secret": "env:STRIPE_SECRET_KEY"}}},
     "vendors.stripe.secret is env:STRIPE_SECRET_KEY, and STRIPE_SECRET_KEY is not set"),
    ({"providers": {"openai": {"endpoints": [{"api_key": "env:OPENAI_KEY_TYPO"}]}}},
     "providers.openai.endpoints[0].api_key is env:OPENAI_KEY_TYPO, and OPENAI_KEY_TYPO is "
     "not set"),
])
def test_an_unset_credential_stops_the_start(tmp_path: Path, config: dict[str, Any],
                                              named: str) -> None:
    proc = _serve(tmp_path, config, {})
    try:
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert named in output
    assert "simulate: true" in output
    assert "Outlay listening" not in output


def test_simulated_upstreams_are_named_and_every_simulated_answer_says_so(
        simulated: Gateway) -> None:
    # anthropic and stripe by their sections; openai, twilio and resend as no section
    # configures them
    assert "simulated: openai, anthropic, stripe, twilio, resend" in simulated.log()
    key = simulated.mint_key(unique("sim"))["key"]
    client = anthropic.Anthropic(base_url=simulated.url, api_key=key, max_retries=0, timeout=15)
    with client:
        answer = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hi."}])
    assert answer.headers["X-Outlay-Simulated"] == "true"
    paid = httpx.post(f"{simulated.url}/vendors/stripe/v1/payment_intents", data=PAYMENT,
                      auth=(key, ""), timeout=15)  # curl -u olk_…: as Stripe documents
    assert paid.status_code == 200, paid.text
    assert paid.headers["X-Outlay-Simulated"] == "true"
    providers = simulated.admin.get("/admin/v1/providers").json()["providers"]
    assert {(p["kind"], p["provider"]) for p in providers if p["simulated"]} == {
        ("llm", "openai"), ("llm", "anthropic"), ("vendor", "stripe"), ("vendor", "twilio"),
        ("vendor", "resend")}


# -- the whole budget is usable --------------------------------------------------------------

def test_the_anthropic_sdk_spends_90_percent_of_its_cap_before_its_first_refusal(
        simulated: Gateway) -> None:
    agent = unique("clamp")
    simulated.admin.post("/admin/v1/agents", json={"name": agent}).raise_for_status()
    simulated.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": str(CAP_USD), "period": "day", "mode": "hard"}]})
    key = simulated.mint_key(agent)["key"]
    client = anthropic.Anthropic(base_url=simulated.url, api_key=key, max_retries=0, timeout=15)
    clamped: list[int] = []
    refusal: anthropic.APIStatusError | None = None
    with client:
        for _ in range(1_000):
            try:
                answer = client.messages.with_raw_response.create(
                    model=MODEL, max_tokens=1024,
                    messages=[{"role": "user", "content": "Say hello."}])
            except anthropic.APIStatusError as exc:
                refusal = exc
                break
            said = answer.headers.get("X-Outlay-Max-Tokens-Clamped")
            if said is not None:
                clamped.append(int(said))
    assert refusal is not None
    assert refusal.status_code == 402
    spent = micros(simulated.budget(f"agent:{agent}")["spent_usd"])
    cap = micros(str(CAP_USD))
    assert spent >= cap * 9 // 10, f"refused at {spent} of {cap} micro-USD"
    assert spent <= cap  # never past the cap
    assert clamped, "no call was clamped"
    assert all(256 <= n < 1024 for n in clamped)
    entries = simulated.audit(f"agent:{agent}")
    assert sum(micros(e["cost_usd"] or "0") for e in entries) == spent


# -- Stripe refusals stripe-python reads right ------------------------------------------------

def _stripe(gateway: Gateway, key: str, http: stripe.HTTPClient) -> stripe.StripeClient:
    # the SDK's own retries on: a refusal must not be repeated by them
    return stripe.StripeClient(api_key=key, http_client=http, max_network_retries=3,
                               base_addresses={"api": f"{gateway.url}/vendors/stripe"})


@pytest.fixture
def stripe_http() -> Iterator[stripe.HTTPClient]:
    http = stripe.RequestsClient()
    yield http
    http.close()


@pytest.mark.parametrize(("policy", "error", "status", "code"), [
    ({"budgets": [{"usd": 10, "period": "total"}]}, stripe.InvalidRequestError, 400,
     "budget_exceeded"),
    ({"rpm": 1}, stripe.RateLimitError, 429, "rate_limit_exceeded"),
    ({"vendors": ["twilio"]}, stripe.InvalidRequestError, 400, "vendor_not_allowed"),
])
def test_stripe_refusals_are_not_card_errors_and_not_retried(
        simulated: Gateway, stripe_http: stripe.HTTPClient, policy: dict[str, Any],
        error: type[stripe.StripeError], status: int, code: str) -> None:
    agent = unique("stripe-refusal")
    key = simulated.mint_key(agent, policy=policy)["key"]
    sdk = _stripe(simulated, key, stripe_http)
    if code == "rate_limit_exceeded":
        sdk.v1.customers.list()  # the one call a minute allows
    with pytest.raises(error) as refused:
        sdk.v1.payment_intents.create(params=PAYMENT)
    assert not isinstance(refused.value, stripe.CardError)
    assert refused.value.http_status == status
    body = refused.value.json_body
    assert body is not None
    assert body["error"]["code"] == code  # RateLimitError keeps no `code` of its own
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["outlay_type"]
    assert refused.value.headers is not None
    assert refused.value.headers.get("stripe-should-retry") == "false"
    entries = simulated.audit(f"agent:{agent}")
    assert len([e for e in entries if e["code"] == code]) == 1  # the SDK did not try again
    assert all(micros(e["cost_usd"] or "0") == 0 for e in entries)  # no money moved


# -- policies change field by field ------------------------------------------------------------

def _cli(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTLAY_URL": gateway.url, "OUTLAY_ADMIN_TOKEN": ADMIN_TOKEN}
    return subprocess.run([outlay_bin(), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_policy_update_keeps_the_budget_and_set_refuses_to_drop_it(simulated: Gateway) -> None:
    agent = unique("order-processor")
    simulated.admin.post("/admin/v1/agents", json={"name": agent}).raise_for_status()
    scope = f"agent:{agent}"
    made = _cli(simulated, "policy", "set", scope, "--budget", "5/day/hard")
    assert made.returncode == 0, made.stderr
    updated = _cli(simulated, "policy", "update", scope, "--rpm", "120")
    assert updated.returncode == 0, updated.stderr
    stored = simulated.admin.get(f"/admin/v1/policies/{scope}").json()
    assert stored["rpm"] == 120
    assert stored["budgets"] == [{"usd": "5", "period": "day", "mode": "hard"}]

    refused = _cli(simulated, "policy", "set", scope, "--rpm", "60")
    assert refused.returncode != 0
    assert "budget_would_be_dropped" in refused.stderr
    assert "--yes" in refused.stderr
    assert simulated.admin.get(f"/admin/v1/policies/{scope}").json() == stored

    replaced = _cli(simulated, "policy", "set", scope, "--rpm", "60", "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert "Removed: budgets ($5/day hard)" in replaced.stdout
    assert "budgets" not in simulated.admin.get(f"/admin/v1/policies/{scope}").json()


# -- typos are refused, and say what they did ----------------------------------------------

def test_typos_are_refused_and_nothing_is_stored(simulated: Gateway) -> None:
    agent = unique("support-bot")
    admin = simulated.admin
    admin.post("/admin/v1/agents", json={"name": agent, "group": "fleet-a"}).raise_for_status()
    before = admin.get("/admin/v1/keys", params={"agent": agent}).json()["keys"]

    ttl = admin.post("/admin/v1/keys", json={"agent": agent, "ttl": "5s"})
    assert ttl.status_code == 400
    assert ttl.json()["error"]["param"] == "ttl"
    assert "ttl_seconds" in ttl.json()["error"]["message"]
    assert admin.get("/admin/v1/keys", params={"agent": agent}).json()["keys"] == before

    model = admin.put(f"/admin/v1/policies/agent:{agent}", json={"models": ["gpt-4o-mnii"]})
    assert model.status_code == 400
    assert "gpt-4o-mini" in model.json()["error"]["nearest"]
    assert admin.get(f"/admin/v1/policies/agent:{agent}").status_code == 404
    insisted = admin.put(f"/admin/v1/policies/agent:{agent}",
                         json={"models": ["gpt-4o-mnii"]}, params={"allow_unpriced": "true"})
    assert insisted.status_code == 200, insisted.text

    again = _cli(simulated, "agents", "create", agent, "--group", "fleet-z")
    assert again.returncode != 0
    assert "agent_exists" in again.stderr
    agents = admin.get("/admin/v1/agents").json()["agents"]
    assert {"name": agent, "group": "fleet-a"} in agents

    nobody = _cli(simulated, "policy", "set", f"agent:does-not-exist-{agent}", "--rpm", "5")
    assert nobody.returncode == 0, nobody.stderr
    assert "Warning: agent:does-not-exist-" in nobody.stdout
    assert "names no agent yet" in nobody.stdout


def test_a_key_for_a_new_agent_lands_under_the_default_policy(launch: Launch) -> None:
    gateway = launch({"default_policy": {"budgets": [
        {"usd": "0.001", "period": "day", "mode": "hard"}], "clamp_max_tokens": False}})
    agent = unique("suport-bot")
    minted = _cli(gateway, "keys", "create", "--agent", agent)
    assert minted.returncode == 0, minted.stderr
    assert f"Created agent {agent} with the configured default_policy" in minted.stdout
    key = next(line.split()[-1] for line in minted.stdout.splitlines()
               if line.startswith("secret:"))
    policy = gateway.admin.get(f"/admin/v1/policies/agent:{agent}").json()
    assert policy["budgets"] == [{"usd": "0.001", "period": "day", "mode": "hard"}]
    with httpx.Client(base_url=gateway.url, timeout=15) as http:
        refused = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": "gpt-4o", "max_tokens": 4096,
                                  "messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 402  # $0.04 of output does not fit $0.001
    assert refused.json()["error"]["scope"] == f"agent:{agent}"


def test_clamped_calls_across_two_workers_never_pass_the_cap(launch: Launch) -> None:
    """A hostile agent: four clients at once over two workers, on a model that writes (and
    bills) every token it is allowed, so each clamped call costs what it reserved."""
    model = "sim-max-first-day"
    gateway = launch({"prices": {model: {
        "provider": "anthropic", "input": 3, "output": 15, "max_output_tokens": 8192,
        "context_window": 200_000}}}, workers=2)
    agent = unique("clamp-race")
    gateway.admin.post("/admin/v1/agents", json={"name": agent}).raise_for_status()
    # two whole calls ($0.0155 each) fit, the third only with its maximum lowered
    cap_usd = Decimal("0.04")
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": str(cap_usd), "period": "day", "mode": "hard"}]})
    key = gateway.mint_key(agent)["key"]
    clamped: list[int] = []
    statuses: list[int] = []

    def spend() -> None:
        client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0,
                                     timeout=30)
        with client:
            for _ in range(200):
                try:
                    answer = client.messages.with_raw_response.create(
                        model=model, max_tokens=1024,
                        messages=[{"role": "user", "content": "Say hello."}])
                except anthropic.APIStatusError as exc:
                    statuses.append(exc.status_code)
                    return
                statuses.append(200)
                said = answer.headers.get("X-Outlay-Max-Tokens-Clamped")
                if said is not None:
                    clamped.append(int(said))

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert set(statuses) <= {200, 402}, statuses
    assert statuses.count(402) == 4  # every client ended on a refusal
    budget = gateway.budget(f"agent:{agent}")
    spent, cap = micros(budget["spent_usd"]), micros(str(cap_usd))
    assert micros(budget["reserved_usd"]) == 0
    assert spent <= cap, f"{spent} micro-USD spent past the {cap} cap"
    assert spent >= cap * 9 // 10, f"refused at {spent} of {cap}"
    assert clamped
    assert all(256 <= n < 1024 for n in clamped)
