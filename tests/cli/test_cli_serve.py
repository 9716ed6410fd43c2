"""`outlay serve` builds Settings from file, environment and flags; `outlay demo` walks through."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from click.testing import CliRunner
from pytest_aiohttp import AiohttpServer

from outlay.cli import demo as demo_module
from outlay.cli import main as main_module
from outlay.cli.client import AdminClient
from outlay.cli.main import main
from outlay.settings import Settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Settings]:
    """Stand in for outlay.gateway.server, capturing the Settings `serve` is started with."""
    captured: list[Settings] = []
    fake = types.ModuleType("outlay.gateway.server")
    fake.serve = captured.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "outlay.gateway.server", fake)
    monkeypatch.chdir(tmp_path)  # no stray ./outlay.yaml
    for name in ("OUTLAY_CONFIG", "OUTLAY_LISTEN", "OUTLAY_STATE", "OUTLAY_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    return captured


def test_serve_passes_file_env_and_flags(served: list[Settings], tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text(
        "listen: 127.0.0.1:9000\nstate: sqlite:///file.db\nworkers: 2\n"
        "policies: {global: {rpm: 5}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main,
        ["serve", "--config", str(config), "--port", "9100", "--database", "postgresql://db/x"],
        env={"OUTLAY_WORKERS": "3", "OPENAI_API_KEY": None},
    )
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert (settings.host, settings.port) == ("127.0.0.1", 9100)
    assert settings.state == "sqlite:///file.db"
    assert settings.database == "postgresql://db/x"
    assert settings.workers == 3
    assert settings.policies == {"global": {"rpm": 5}}
    assert settings.simulated


def test_serve_defaults(served: list[Settings]) -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--host", "::1", "--workers", "2", "--state", "redis://r:6379/0"],
        env={"OPENAI_API_KEY": None, "ANTHROPIC_API_KEY": None, "OUTLAY_ADMIN_TOKEN": None},
    )
    assert result.exit_code == 0, result.output
    assert served == [Settings(host="::1", workers=2, state="redis://r:6379/0")]


def test_serve_reports_config_errors(served: list[Settings], tmp_path: Path) -> None:
    config = tmp_path / "gw.yaml"
    config.write_text("listen: 127.0.0.1:9000\nwokers: 2\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "unknown setting(s) wokers" in result.stderr
    assert served == []

    result = CliRunner().invoke(main, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert served == []


class FakeGateway:
    """Just enough of a simulated gateway for the demo: admin calls and a spending budget."""

    def __init__(self, affordable_calls: int) -> None:
        self.affordable_calls = affordable_calls
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(f"{request.method} {request.path}")
        if request.path == "/admin/v1/keys":
            return web.json_response({"id": "key_demo", "key": "olk_demo"}, status=201)
        if request.path.startswith("/admin/v1/usage/"):
            return web.json_response({"scope": "agent:demo-agent", "windows": [], "budgets": []})
        if request.path == "/v1/chat/completions":
            assert request.headers["Authorization"] == "Bearer olk_demo"
            if self.affordable_calls == 0:
                error = {"message": "Budget of $0.002 a day spent", "code": "budget_exceeded"}
                return web.json_response({"error": error}, status=402)
            self.affordable_calls -= 1
            headers = {"X-Outlay-Cost-USD": "0.0003", "X-Budget-Remaining-USD": "0.0017"}
            return web.json_response({"choices": []}, headers=headers)
        return web.json_response({}, status=200)


async def test_demo_spends_the_budget_until_refused(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGateway(affordable_calls=2)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")

    @contextmanager
    def already_running() -> Iterator[tuple[str, str]]:
        yield url, "demo-token"

    monkeypatch.setattr(main_module, "simulated_gateway", already_running)
    result = await asyncio.to_thread(CliRunner().invoke, main, ["demo", "--calls", "5"])
    assert result.exit_code == 0, result.output
    assert fake.paths[:4] == [
        "GET /admin/v1/prices",  # the demo sizes its calls and floor from the price table
        "POST /admin/v1/agents",
        "PUT /admin/v1/policies/agent:demo-agent",
        "POST /admin/v1/keys",
    ]
    assert fake.paths.count("POST /v1/chat/completions") == 3
    lines = result.stdout.splitlines()
    assert any("call  1: gpt-4o-mini answered, cost $0.0003" in line for line in lines)
    assert any("call  3: refused: Budget of $0.002 a day spent" in line for line in lines)
    assert "Usage of agent:demo-agent" in result.stdout


async def test_run_demo_reports_when_everything_fits(
    aiohttp_server: AiohttpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeGateway(affordable_calls=10)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")

    def run() -> None:
        with httpx.Client(base_url=url) as gateway:
            demo_module.run_demo(AdminClient(url, "t"), gateway, model="m", calls=2)

    await asyncio.to_thread(run)
    assert "All 2 calls fitted in the budget." in capsys.readouterr().out


def test_demo_environment_drops_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    monkeypatch.setenv("OUTLAY_CONFIG", "/etc/outlay.yaml")
    env = demo_module._gateway_env("tok")
    assert "OPENAI_API_KEY" not in env
    assert "OUTLAY_CONFIG" not in env
    assert env["OUTLAY_ADMIN_TOKEN"] == "tok"
    assert env["PYTHONPATH"].split(":")[0] == str(Path(demo_module.__file__).parents[2])
