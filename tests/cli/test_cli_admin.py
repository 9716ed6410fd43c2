"""Admin commands against a fake admin API: the calls they make and what they print."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from outlay.cli.client import CliHooks
from outlay.cli.main import main

from .fakes import ADMIN_TOKEN, FakeAdmin, RunCli

KEY = {
    "id": "key_01",
    "key": "olk_s3cret",
    "agent": "order-processor",
    "name": "run-42",
    "labels": {"run": "r-42"},
    "expires_at": "2030-01-01T00:00:00.713000Z",
    "created_at": 1_700_000_000,
    "policy": {"rpm": 10},
}


def columns_align(text: str, *headers: str) -> None:
    """Every row has a value starting under each header (tables are left-aligned)."""
    lines = text.splitlines()
    starts = [lines[0].index(header) for header in headers]
    for line in lines[1:]:
        for start in starts[1:]:
            assert line[start - 2 : start] == "  ", f"{line!r} is not aligned at {start}"
            assert line[start] != " ", f"{line!r} has no value at {start}"


async def test_keys_create_sends_the_body_and_shows_the_secret_once(
    fake_admin: FakeAdmin, run_cli: RunCli
) -> None:
    fake_admin.answer("POST", "/admin/v1/keys", KEY, status=201)
    result = await run_cli(
        "keys", "create", "--agent", "order-processor", "--name", "run-42",
        "--ttl", "1h", "--label", "run=r-42", "--label", "workflow=nightly",
        "--policy", '{"rpm": 10}',
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    call = fake_admin.last
    assert (call.method, call.path) == ("POST", "/admin/v1/keys")
    assert call.authorization == f"Bearer {ADMIN_TOKEN}"
    assert call.body == {
        "agent": "order-processor",
        "name": "run-42",
        "ttl_seconds": 3600,
        "labels": {"run": "r-42", "workflow": "nightly"},
        "policy": {"rpm": 10},
    }
    assert result.stdout.count("olk_s3cret") == 1
    assert "shown only now" in result.stdout
    assert "run=r-42" in result.stdout
    assert "2023-11-14 22:13:20Z" in result.stdout  # unix created_at shown as UTC time
    assert "2030-01-01 00:00:00Z" in result.stdout  # ISO times to the second


async def test_keys_create_minimal_body_and_json(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/keys", KEY, status=201)
    result = await run_cli("keys", "create", "--agent", "a", "--json")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"agent": "a"}
    assert json.loads(result.stdout) == KEY


async def test_keys_create_reads_policy_file(
    fake_admin: FakeAdmin, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_admin.answer("POST", "/admin/v1/keys", KEY, status=201)
    policy = tmp_path / "policy.yaml"
    policy.write_text("budgets:\n  - {usd: 5, period: total}\n", encoding="utf-8")
    result = await run_cli("keys", "create", "--agent", "a", "--policy-file", str(policy))
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body["policy"] == {"budgets": [{"usd": 5, "period": "total"}]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", '{"rpm": -1}'], "rpm must be a non-negative integer"),
        (["--policy", "{rpm: [}"], "not valid JSON or YAML"),
        (["--ttl", "soon"], "not a duration"),
        (["--label", "novalue"], "not a label"),
    ],
)
async def test_keys_create_checks_input_before_sending(
    fake_admin: FakeAdmin, run_cli: RunCli, args: list[str], message: str
) -> None:
    result = await run_cli("keys", "create", "--agent", "a", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake_admin.calls == []


async def test_keys_list_table_and_filter(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    listed = [
        {k: v for k, v in KEY.items() if k != "key"},
        {"id": "key_0002", "agent": "bot", "name": None, "labels": {}, "revoked_at": "2024"},
        {"id": "key_3", "agent": "bot", "expires_at": "2020-01-01T00:00:00+00:00"},
    ]
    fake_admin.answer("GET", "/admin/v1/keys", {"keys": listed})
    result = await run_cli("keys", "list", "--agent", "order-processor")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"agent": "order-processor"}
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "AGENT", "NAME", "STATUS", "LABELS", "CREATED", "EXPIRES"]
    assert lines[1].split()[:5] == ["key_01", "order-processor", "run-42", "active", "run=r-42"]
    assert lines[2].split()[:4] == ["key_0002", "bot", "-", "revoked"]
    assert lines[3].split()[:4] == ["key_3", "bot", "-", "expired"]
    columns_align(result.stdout, "ID", "AGENT", "NAME", "STATUS")

    result = await run_cli("keys", "list")
    assert fake_admin.last.query == {}
    result = await run_cli("keys", "list", "--limit", "20", "--active")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"limit": "20", "active": "true"}
    result = await run_cli("keys", "list", "--limit", "0")
    assert result.exit_code == 2


async def test_keys_list_empty(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/keys", {"keys": []})
    result = await run_cli("keys", "list")
    assert result.stdout.strip() == "(no keys)"


async def test_keys_show_update_revoke(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    shown = {k: v for k, v in KEY.items() if k != "key"}
    fake_admin.answer("GET", "/admin/v1/keys/key_01", shown)
    result = await run_cli("keys", "show", "key_01")
    assert result.exit_code == 0, result.output
    assert "agent:" in result.stdout
    assert "order-processor" in result.stdout
    assert "rpm: 10" in result.stdout

    fake_admin.answer("PATCH", "/admin/v1/keys/key_01", {**shown, "name": "renamed"})
    result = await run_cli("keys", "update", "key_01", "--name", "renamed", "--label", "a=b")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.method == "PATCH"
    assert fake_admin.last.body == {"name": "renamed", "labels": {"a": "b"}}
    assert "renamed" in result.stdout

    result = await run_cli("keys", "update", "key_01")
    assert result.exit_code == 2
    assert "nothing to update" in result.stderr

    fake_admin.answer("POST", "/admin/v1/keys/key_01/revoke", {"id": "key_01", "revoked": True})
    result = await run_cli("keys", "revoke", "key_01")
    assert result.exit_code == 0, result.output
    assert (fake_admin.last.method, fake_admin.last.path) == (
        "POST",
        "/admin/v1/keys/key_01/revoke",
    )
    assert result.stdout.strip() == "Revoked key key_01."


async def test_agents_and_groups(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("POST", "/admin/v1/agents", {"name": "bot", "group": "fleet"}, status=201)
    result = await run_cli("agents", "create", "bot", "--group", "fleet")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"name": "bot", "group": "fleet"}
    assert "Created agent bot in group fleet." in result.stdout

    agents = {
        "agents": [{"name": "bot", "group": "fleet"}, {"name": "lonely-agent", "group": None}]
    }
    fake_admin.answer("GET", "/admin/v1/agents", agents)
    result = await run_cli("agents", "list")
    assert result.stdout.splitlines() == [
        "NAME          GROUP",
        "bot           fleet",
        "lonely-agent  -",
    ]
    result = await run_cli("agents", "list", "--json")
    assert json.loads(result.stdout) == agents

    fake_admin.answer("GET", "/admin/v1/groups", {"groups": [{"name": "fleet", "agents": ["bot"]}]})
    result = await run_cli("groups", "list")
    assert result.stdout.splitlines() == ["NAME   AGENTS", "fleet  1"]


async def test_policy_set_from_flags(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    stored = {"rpm": 60, "budgets": [{"usd": "50", "period": "month", "mode": "hard"}]}
    fake_admin.answer("PUT", "/admin/v1/policies/agent:bot", stored)
    result = await run_cli(
        "policy", "set", "agent:bot", "--rpm", "60", "--tpm", "1000",
        "--budget", "50/month/hard/0.8", "--budget", "$5/day/soft", "--budget", "1",
        "--budget", "out:20/day", "--model", "gpt-4o-mini", "--model", "claude-*",
        "--vendor", "openai",
        "--free-models-only", "--on-breach", "alert", "--clamp-max-tokens", "256",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (fake_admin.last.method, fake_admin.last.path) == ("PUT", "/admin/v1/policies/agent:bot")
    assert fake_admin.last.body == {
        "rpm": 60,
        "tpm": 1000,
        "free_models_only": True,
        "on_breach": "alert",
        "clamp_max_tokens": 256,
        "budgets": [
            {"usd": "50", "period": "month", "mode": "hard", "warn_at": 0.8},
            {"usd": "5", "period": "day", "mode": "soft"},
            {"usd": "1"},
            {"usd": "20", "period": "day", "flow": "out"},
        ],
        "models": ["gpt-4o-mini", "claude-*"],
        "vendors": ["openai"],
    }
    assert "Policy of agent:bot:" in result.stdout
    assert "rpm: 60" in result.stdout


async def test_policy_set_inline_and_file(
    fake_admin: FakeAdmin, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_admin.answer("PUT", "/admin/v1/policies/global", {"rpm": 5})
    result = await run_cli("policy", "set", "global", '{"rpm": 5}')
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"rpm": 5}

    result = await run_cli("policy", "set", "global", "rpm: 6\nvendors: [stripe]")
    assert fake_admin.last.body == {"rpm": 6, "vendors": ["stripe"]}

    policy = tmp_path / "p.yaml"
    policy.write_text("rph: 100\n", encoding="utf-8")
    result = await run_cli("policy", "set", "global", "--file", str(policy))
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"rph": 100}

    result = await run_cli("policy", "set", "global", "--file", "-", stdin="rpd: 7\n")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"rpd": 7}


async def test_policy_set_vendor_lists_from_flags(fake_admin: FakeAdmin,
                                                  run_cli: RunCli) -> None:
    fake_admin.answer("PUT", "/admin/v1/policies/agent:payer", {"on_breach": "block"})
    result = await run_cli(
        "policy", "set", "agent:payer", "--operation", "stripe=POST /v1/payment_intents",
        "--operation", "stripe=GET /v1/**", "--account", "stripe=acct_1Nabc",
        "--destination", "twilio=US", "--destination", "resend=*@example.com",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {
        "operations": {"stripe": ["POST /v1/payment_intents", "GET /v1/**"]},
        "accounts": {"stripe": ["acct_1Nabc"]},
        "destinations": {"twilio": ["US"], "resend": ["*@example.com"]},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["global", "--operation", "stripe"], "VENDOR=ENTRY"),
        (["global", "--operation", "stripe=/v1/refunds"], "operations.stripe[0]"),
        (["global", "--operation", "stripe=POST /v1/***"], "operations.stripe[0]"),
        (["global", "--destination", "=US"], "VENDOR=ENTRY"),
        (["robot", "--rpm", "1"], "invalid scope"),
        (["global"], "give the policy one way"),
        (["global", '{"rpm": 1}', "--rpm", "2"], "give the policy one way"),
        (["global", "--budget", "5/fortnight"], "budgets[0].period"),
        (["global", "--budget", "5/day/hard/x"], "WARN_AT"),
        (["global", "--budget", "in:5/day"], "[out:]USD"),
        (["global", "--budget", "out:"], "[out:]USD"),
        (["global", '{"colour": "red"}'], "unknown policy field"),
        (["global", "--clamp-max-tokens", "0"], "--clamp-max-tokens"),
        (["global", '{"clamp_max_tokens": 0}'], "clamp_max_tokens"),
    ],
)
async def test_policy_set_refuses_bad_input_locally(
    fake_admin: FakeAdmin, run_cli: RunCli, args: list[str], message: str
) -> None:
    result = await run_cli("policy", "set", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake_admin.calls == []


async def test_policy_show_list_delete(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    # The gateway answers the scope beside the policy's fields, USD as exact strings.
    answer = {
        "scope": "vendor:stripe",
        "rpm": 60,
        "budgets": [{"usd": "50.5", "period": "month", "mode": "hard"}],
    }
    fake_admin.answer("GET", "/admin/v1/policies/vendor:stripe", answer)
    result = await run_cli("policy", "show", "vendor:stripe")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "rpm: 60",
        "budgets:",
        "- usd: 50.5",
        "  period: month",
        "  mode: hard",
    ]
    result = await run_cli("policy", "show", "vendor:stripe", "--json")
    assert json.loads(result.stdout) == answer

    listed = {"policies": [answer, {"scope": "global", "rpd": 9}]}
    fake_admin.answer("GET", "/admin/v1/policies", listed)
    result = await run_cli("policy", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("vendor:stripe:\n  rpm: 60\n")
    assert "\n\nglobal:\n  rpd: 9\n" in result.stdout

    fake_admin.answer("DELETE", "/admin/v1/policies/global", {"scope": "global", "deleted": True})
    result = await run_cli("policy", "delete", "global")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.method == "DELETE"
    assert result.stdout.strip() == "Deleted the policy of global."


async def test_a_policy_the_configuration_file_manages(
        fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    answer = {"scope": "agent:r", "managed_by": "/etc/outlay.yaml", "rpm": 60}
    fake_admin.answer("GET", "/admin/v1/policies/agent:r", answer)
    result = await run_cli("policy", "show", "agent:r")
    assert result.stdout.splitlines() == [
        "# managed by /etc/outlay.yaml: change it there (read-only here)", "rpm: 60"]
    error = {"error": {"message": "The policy of agent:r is set by /etc/outlay.yaml: change "
                       "it there and restart Outlay.", "type": "admin_error",
                       "code": "policy_managed_by_config", "param": None,
                       "scope": "agent:r", "file": "/etc/outlay.yaml"}}
    fake_admin.answer("PUT", "/admin/v1/policies/agent:r", error, status=409)
    result = await run_cli("policy", "set", "agent:r", "--rpm", "5")
    assert result.exit_code == 1
    assert "/etc/outlay.yaml" in result.stderr
    assert "HTTP 409 policy_managed_by_config" in result.stderr


USAGE = {
    "scope": "agent:bot",
    "windows": [
        {"name": "rpm", "limit": 60, "used": 3, "remaining": 57, "reset_at": 1_700_000_060},
        {"name": "tpm", "limit": 100000, "used": 1200, "remaining": 98800, "reset_at": None},
    ],
    "budgets": [
        {
            "period": "month",
            "mode": "hard",
            "cap_usd": "50",
            "spent_usd": "1.234567",
            "reserved_usd": 0.00001,
            "remaining_usd": "48.765423",
            "resets_at": "2023-12-01T00:00:00Z",
            "projected_usd": "61.7",
        }
    ],
    "spend_since": "2023-11-01T00:00:00Z",
    "exhausted_at": "2023-11-28T06:00:00Z",
    "spend_by_model": {"gpt-4o-mini": "1.234567"},
    "spend_by_vendor": {"openai": "1.234567"},
}


async def test_usage_tables(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/usage/agent:bot", USAGE)
    result = await run_cli("usage", "agent:bot")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("Usage of agent:bot\n")
    windows = text.split("\n\n")[1]
    assert windows.splitlines()[1].split() == ["rpm", "60", "3", "57", "2023-11-14", "22:14:20Z"]
    columns_align(windows, "WINDOW", "LIMIT", "USED", "REMAINING")
    budgets = text.split("\n\n")[2]
    assert budgets.splitlines()[1].split() == [
        "month", "hard", "50", "1.234567", "0.00001", "48.765423", "61.7", "2023-12-01",
        "00:00:00Z",
    ]  # fmt: skip
    assert "At this rate a hard cap is hit at 2023-11-28 06:00:00Z." in text
    assert "Spend since 2023-11-01 00:00:00Z:" in text
    assert "gpt-4o-mini  1.234567" in text
    assert "openai  1.234567" in text

    result = await run_cli("usage", "agent:bot", "--json")
    assert json.loads(result.stdout) == USAGE


async def test_audit_query_and_table(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    entry = {
        "request_id": "req_1",
        "time": "2024-05-01T10:00:00Z",
        "key_id": "key_01",
        "agent": "bot",
        "labels": {"run": "r-1"},
        "vendor": "openai",
        "model": "gpt-4o-mini",
        "decision": "refused",
        "status": 402,
        "reserved_usd": "0",
        "cost_usd": "0",
        "spent_usd": "5",
        "cap_usd": "5",
        "code": "budget_exceeded",
    }
    fake_admin.answer("GET", "/admin/v1/audit", {"entries": [entry]})
    result = await run_cli("audit", "--scope", "agent:bot", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"scope": "agent:bot", "limit": "5"}
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["TIME", "REQUEST", "KEY"]
    assert "budget_exceeded" in row
    assert "5/5" in row
    assert "run=r-1" in row

    result = await run_cli("audit")
    assert fake_admin.last.query == {"limit": "50"}


async def test_prices_table(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    models = [
        {"name": "gpt-4o-mini", "provider": "openai", "input": "0.15", "cached_input": "0.075",
         "output": "0.6", "free": False, "aliases": ["mini", "fast"]},
        {"name": "local-llama", "provider": "local", "input": 0, "cached_input": None,
         "output": 0, "free": True, "aliases": []},
    ]  # fmt: skip
    fake_admin.answer("GET", "/admin/v1/prices", {"models": models})
    result = await run_cli("prices")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "PROVIDER"]
    assert lines[1].split() == ["gpt-4o-mini", "openai", "0.15", "0.075", "0.6", "no", "mini,fast"]
    assert lines[2].split() == ["local-llama", "local", "0", "-", "0", "yes", "-"]
    columns_align(result.stdout, "MODEL", "PROVIDER", "INPUT", "CACHED", "OUTPUT", "FREE")


async def test_providers_table(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    endpoints = [
        {"kind": "llm", "provider": "openai", "base_url": "https://api.openai.com/v1",
         "weight": 3, "state": "open", "consecutive_failures": 5, "simulated": False},
        {"kind": "vendor", "provider": "stripe", "base_url": "simulated", "weight": 1,
         "state": "closed", "consecutive_failures": 0, "simulated": True},
    ]  # fmt: skip
    fake_admin.answer("GET", "/admin/v1/providers", {"worker": 7, "providers": endpoints})
    result = await run_cli("providers")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "PROVIDER", "ENDPOINT", "WEIGHT", "STATE", "FAILURES",
                                "SIMULATED"]
    assert lines[1].split() == ["llm", "openai", "https://api.openai.com/v1", "3", "open", "5",
                                "no"]
    assert lines[2].split() == ["vendor", "stripe", "simulated", "1", "closed", "0", "yes"]
    columns_align(result.stdout, "KIND", "PROVIDER", "ENDPOINT", "WEIGHT", "STATE")
    result = await run_cli("providers", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["providers"] == endpoints


async def test_report(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    rows = [
        {"vendor": "openai", "requests": 12, "allowed": 10, "refused": 2, "cost_usd": "0.0123",
         "out_usd": "0", "unsettled": 0, "estimated": 3},
        {"vendor": "stripe", "requests": 2, "allowed": 2, "refused": 0, "cost_usd": "7",
         "out_usd": "50.5", "unsettled": 0, "estimated": 0},
    ]  # fmt: skip
    fake_admin.answer("GET", "/admin/v1/reports", {"group_by": "vendor", "rows": rows})
    result = await run_cli("report", "--by", "vendor", "--since", "2024-05-01")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"group_by": "vendor", "since_ms": "1714521600000"}
    assert result.stdout.splitlines()[0].split()[-2:] == ["UNSETTLED", "ESTIMATED"]
    assert result.stdout.splitlines()[0].split()[4:8] == ["COST", "USD", "OUT", "USD"]
    assert result.stdout.splitlines()[1].split() == [
        "openai", "12", "10", "2", "0.0123", "0", "0", "3"]
    assert result.stdout.splitlines()[2].split() == [
        "stripe", "2", "2", "0", "7", "50.5", "0", "0"]

    before = time.time() * 1000
    result = await run_cli("report", "--since", "1h")
    assert result.exit_code == 0, result.output
    since = int(fake_admin.last.query["since_ms"])
    assert before - 3_600_000 - 5_000 < since <= time.time() * 1000 - 3_600_000
    assert fake_admin.last.query["group_by"] == "agent"

    result = await run_cli("report", "--since", "last tuesday")
    assert result.exit_code == 2


async def test_server_error_message_goes_to_stderr(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    error = {"error": {"message": "no key key_zz", "type": "not_found", "code": "key_not_found"}}
    fake_admin.answer("GET", "/admin/v1/keys/key_zz", error, status=404)
    result = await run_cli("keys", "show", "key_zz")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "Error: no key key_zz (HTTP 404 key_not_found)"


async def test_unauthorised_hints_at_the_token(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    error = {"error": {"message": "admin token required", "code": "invalid_admin_token"}}
    fake_admin.answer("GET", "/admin/v1/agents", error, status=401)
    result = await run_cli("agents", "list", token=None, env={"OUTLAY_ADMIN_TOKEN": None})
    assert result.exit_code == 1
    assert fake_admin.last.authorization is None
    assert "admin token required" in result.stderr
    assert "OUTLAY_ADMIN_TOKEN" in result.stderr


async def test_error_without_json_body(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/prices", "upstream exploded", status=500)
    result = await run_cli("prices")
    assert result.exit_code == 1
    assert "upstream exploded (HTTP 500)" in result.stderr


async def test_url_and_token_from_environment(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/agents", {"agents": []})
    env = {"OUTLAY_URL": fake_admin.url, "OUTLAY_ADMIN_TOKEN": "from-env"}
    result = await run_cli("agents", "list", pass_url=False, token=None, env=env)
    assert result.exit_code == 0, result.output
    assert fake_admin.last.authorization == "Bearer from-env"
    assert result.stdout.strip() == "(no agents)"


async def test_unreachable_gateway(run_cli: RunCli) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = await run_cli("keys", "list", url=url)
    assert result.exit_code == 1
    assert f"cannot reach the gateway at {url}" in result.stderr


def test_transport_hook_replaces_the_network() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"groups": []})

    hooks = CliHooks(transport=httpx.MockTransport(handler))
    result = CliRunner().invoke(main, ["groups", "list", "--url", "http://gw.test/base"], obj=hooks)
    assert result.exit_code == 0, result.output
    assert str(seen[0].url) == "http://gw.test/base/admin/v1/groups"
    assert result.stdout.strip() == "(no groups)"


def test_timeout_is_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    hooks = CliHooks(transport=httpx.MockTransport(handler))
    result = CliRunner().invoke(main, ["prices", "--url", "http://gw.test"], obj=hooks)
    assert result.exit_code == 1
    assert "did not answer within" in result.stderr


async def test_prices_check_shows_every_dimension(fake_admin: FakeAdmin, run_cli: RunCli
                                                  ) -> None:
    rates = {"input": "3", "cached_input": "0.3", "cache_write": "3.75", "cache_write_1h": "6",
             "output": "15"}
    long = {"threshold": 200000, "input": "6", "cached_input": "0.6", "cache_write": "7.5",
            "cache_write_1h": "12", "output": "22.5"}
    answer = {"requested": "claude-sonnet-4-5-20250929", "name": "claude-sonnet-4-5",
              "provider": "anthropic", **rates, "max_output_tokens": 64000,
              "context_window": 200000, "free": False, "aliases": ["claude-sonnet-4-5-latest"],
              "tiers": [long], "service_tiers": {"batch": {**rates, "input": "1.5",
                                                           "tiers": [long]}},
              "tool_fees": {"web_fetch": "0", "web_search": "0.01"},
              "betas": {"context-1m": {"context_window": 1000000}},
              "base_tier": "standard", "service_tier_default": "priority",
              "source": {"prices": "genai-prices 0.2.5 (2026-12-06)",
                         "max_output_tokens": "prices.yaml"}}
    fake_admin.answer("GET", "/admin/v1/prices/claude-sonnet-4-5-20250929", answer)
    result = await run_cli("prices", "check", "claude-sonnet-4-5-20250929")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("claude-sonnet-4-5 (anthropic), asked for as "
                        "claude-sonnet-4-5-20250929")
    assert lines[3].split() == ["standard", "-", "3", "0.3", "3.75", "6", "15"]
    assert lines[4].split() == ["standard", "200000", "6", "0.6", "7.5", "12", "22.5"]
    assert lines[5].split()[:3] == ["batch", "-", "1.5"]
    assert lines[6].split()[:3] == ["batch", "200000", "6"]
    text = result.stdout
    assert "limits: max_output_tokens 64000, context_window 200000" in text
    assert "betas: context-1m lifts context_window=1000000" in text
    assert "tool fees (USD per use): web_fetch 0, web_search 0.01" in text
    assert "reserved at: priority" in text
    assert "source of prices: genai-prices 0.2.5 (2026-12-06)" in text
    assert "source of max_output_tokens: prices.yaml" in text


async def test_prices_check_of_an_unknown_model_fails(fake_admin: FakeAdmin,
                                                      run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/prices/nope", {"error": {
        "message": "no price for model 'nope'", "type": "admin_error", "code": "not_found",
        "param": None}}, status=404)
    result = await run_cli("prices", "check", "nope")
    assert result.exit_code != 0
    assert "no price for model 'nope'" in result.output


TAG_USAGE = {
    **USAGE, "scope": "tag:customer=*", "windows": [], "values_seen": 2, "max_values": 100000,
    "values": [
        {"value": "acme", "scope": "tag:customer=acme", "budgets": [
            {"period": "day", "cap_usd": "2", "spent_usd": "1.5", "reserved_usd": "0.1",
             "remaining_usd": "0.4"}]},
        {"value": "beta", "scope": "tag:customer=beta", "budgets": [
            {"period": "day", "cap_usd": "2", "spent_usd": "0", "reserved_usd": "0",
             "remaining_usd": "2"}]},
    ],
}


async def test_usage_of_a_star_tag_scope_lists_its_values(
        fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/usage/tag:customer=*", TAG_USAGE)
    result = await run_cli("usage", "tag:customer=*", "--values", "2")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"values": "2"}
    text = result.stdout
    assert "Values seen this period: 2 (max_values 100000)" in text
    values = text.split("\n\n")[-1].splitlines()
    assert values[0].split() == ["VALUE", "BUDGET", "CAP", "USD", "SPENT", "USD", "RESERVED",
                                 "USD", "REMAINING", "USD"]
    assert values[1].split() == ["acme", "day", "2", "1.5", "0.1", "0.4"]
    assert values[2].split() == ["beta", "day", "2", "0", "0", "2"]
    result = await run_cli("usage", "agent:*")
    assert result.exit_code != 0
    assert "only a tag scope" in result.output


async def test_audit_by_label(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    fake_admin.answer("GET", "/admin/v1/audit", {"entries": []})
    result = await run_cli("audit", "--label", "customer=acme")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"scope": "label:customer=acme", "limit": "50"}
    for bad in ("customer", "customer=*", "bad name=x"):
        result = await run_cli("audit", "--label", bad)
        assert result.exit_code != 0, bad
    result = await run_cli("audit", "--label", "a=b", "--scope", "global")
    assert result.exit_code != 0


async def test_report_by_label_and_as_csv(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    rows = [{"label:run": "r-1", "requests": 3, "allowed": 3, "refused": 0, "cost_usd": "0.5",
             "unsettled": 0, "estimated": 0, "out_usd": "0"},
            {"label:run": None, "requests": 1, "allowed": 0, "refused": 1, "cost_usd": "0",
             "unsettled": 0, "estimated": 0, "out_usd": "0"}]
    fake_admin.answer("GET", "/admin/v1/reports", {"group_by": "label:run", "rows": rows})
    result = await run_cli("report", "--by", "label:run")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"group_by": "label:run"}
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "LABEL:RUN"
    assert lines[1].split() == ["r-1", "3", "3", "0", "0.5", "0", "0", "0"]
    assert lines[2].split()[0] == "-"
    csv_text = "label:run,requests\r\nr-1,3\r\n"
    fake_admin.answer("GET", "/admin/v1/reports", csv_text)
    result = await run_cli("report", "--by", "label:run", "--csv")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"group_by": "label:run", "format": "csv"}
    assert result.stdout.splitlines() == ["label:run,requests", "r-1,3"]
    for bad in (["--by", "colour"], ["--by", "label:"], ["--csv", "--json"],
                ["--interval", "day"], ["--series", "--by", "vendor"]):
        result = await run_cli("report", *bad)
        assert result.exit_code == 2, (bad, result.output)


SERIES = {"scope": "vendor:stripe", "interval": "day", "split": "model",
          "points": [{"start": "2024-05-01T00:00:00Z", "requests": 2, "refused": 1,
                      "cost_usd": "0.3"},
                     {"start": "2024-05-02T00:00:00Z", "requests": 0, "refused": 0,
                      "cost_usd": "0"}],
          "series": [{"model": None, "points": [
              {"start": "2024-05-01T00:00:00Z", "requests": 2, "refused": 1, "cost_usd": "0.3"},
              {"start": "2024-05-02T00:00:00Z", "requests": 0, "refused": 0,
               "cost_usd": "0"}]}]}


async def test_report_series(fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    plain = {k: v for k, v in SERIES.items() if k not in ("split", "series")}
    fake_admin.answer("GET", "/admin/v1/reports/series", plain)
    result = await run_cli("report", "--series", "--interval", "day", "--scope",
                           "vendor:stripe", "--since", "2024-05-01")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"scope": "vendor:stripe", "interval": "day",
                                     "since": "1714521600000"}
    lines = result.stdout.splitlines()
    assert lines[0] == "Spend of vendor:stripe by day"
    assert lines[2].split() == ["START", "REQUESTS", "REFUSED", "COST", "USD"]
    assert lines[3].split() == ["2024-05-01", "00:00:00Z", "2", "1", "0.3"]
    assert lines[4].split() == ["2024-05-02", "00:00:00Z", "0", "0", "0"]
    fake_admin.answer("GET", "/admin/v1/reports/series", SERIES)
    result = await run_cli("report", "--series", "--split", "model")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.query == {"split": "model"}
    assert result.stdout.splitlines()[3].split() == ["2024-05-01", "00:00:00Z", "-", "2", "1",
                                                     "0.3"]
    fake_admin.answer("GET", "/admin/v1/reports/series", "start,requests\r\n")
    result = await run_cli("report", "--series", "--csv", "--until", "2024-05-03")
    assert fake_admin.last.query == {"format": "csv", "until": "1714694400000"}
    assert result.stdout.startswith("start,requests")
