"""One `outlay serve` per conformance module, on the simulated provider, and the ledger
checks every framework's scenarios share: chat, stream, a tool loop and a 402."""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Iterator
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest

from ..conftest import _launcher
from ..harness import Gateway, micros, unique

# Two workers, no latency: the agents' calls land on either, as in production
CONFORMANCE_CONFIG: dict[str, Any] = {"simulated": {"latency_ms": 0}}
TINY_BUDGET = {"budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]}
WEATHER = "It is sunny in Paris."
SETTLE_TIMEOUT_S = 10.0


@pytest.fixture(scope="module", autouse=True)
def _frameworks_clients_collected() -> Iterator[None]:
    """Collect, at the end of each module, the HTTP clients and event loops the frameworks
    made and give no way to close (LangChain's models, LiteLLM's cached clients): their
    ResourceWarnings are the frameworks' own, and would otherwise surface in whatever test
    runs when the garbage collector happens to find them."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with _launcher(request.config, tmp_path_factory.mktemp("conformance")) as start:
        yield start(CONFORMANCE_CONFIG, workers=2, name="conformance")


class Ledger:
    """A key of its own for one scenario, and what the gateway recorded on it."""

    def __init__(self, gateway: Gateway, scenario: str, *, refused: bool = False) -> None:
        fields: dict[str, Any] = {"policy": TINY_BUDGET} if refused else {}
        minted = gateway.mint_key(unique(scenario), **fields)
        self.gateway = gateway
        self.key: str = minted["key"]
        self.scope = f"key:{minted['id']}"

    def entries(self, calls: int = 1) -> list[dict[str, Any]]:
        """The ledger rows once `calls` calls are recorded and none is still settling (a call
        settles just after its answer is written)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            entries = self.gateway.audit(self.scope)
            if (len(entries) >= calls and all(e["settlement"] != "pending" for e in entries)) \
                    or time.monotonic() > deadline:
                return entries
            time.sleep(0.05)

    def settled(self, model: str, route: str, calls: int,
                usage: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """`calls` calls of `model` on `route`, each settled at a cost above zero; with the
        tokens the framework reported (input, output) over them all, their costs add up to
        that usage at the table's prices (each call rounded up to a micro-dollar)."""
        entries = self.entries(calls)
        assert len(entries) == calls, entries
        for entry in entries:
            assert (entry["decision"], entry["status"], entry["settlement"]) == (
                "allowed", 200, "settled"), entry
            assert (entry["route"], entry["model"]) == (route, model), entry
            assert micros(entry["cost_usd"]) > 0, entry
            assert micros(entry["cost_usd"]) <= micros(entry["reserved_usd"]), entry
        if usage is not None:
            price = self.gateway.prices()[_canonical(self.gateway, model)]
            exact = (Decimal(usage[0]) * Decimal(str(price["input"]))
                     + Decimal(usage[1]) * Decimal(str(price["output"])))
            spent = sum(micros(entry["cost_usd"]) for entry in entries)
            low = int(exact.to_integral_value(rounding=ROUND_FLOOR))
            high = int(exact.to_integral_value(rounding=ROUND_CEILING)) + calls
            assert low <= spent <= high, (spent, exact, entries)
        budget_spent = micros(self.gateway.usage(self.scope)["spend_by_model"][model])
        assert budget_spent == sum(micros(entry["cost_usd"]) for entry in entries)
        return entries

    def refused_once(self, model: str) -> None:
        """One call, refused 402 before it reached the provider, charged nothing: the
        framework did not retry it."""
        entries = self.entries()
        assert len(entries) == 1, entries
        entry = entries[0]
        assert (entry["decision"], entry["status"], entry["code"]) == (
            "refused", 402, "budget_exceeded"), entry
        assert entry["model"] == model
        assert micros(entry["cost_usd"]) == 0
        assert micros(self.gateway.budget(self.scope)["spent_usd"]) == 0


def _canonical(gateway: Gateway, model: str) -> str:
    prices = gateway.prices()
    if model in prices:
        return model
    return next(name for name, entry in prices.items() if model in entry.get("aliases", ()))


def get_weather(city: str) -> str:
    """The one tool every framework's agent is given: the weather in a city."""
    assert city == "sim", city  # what the simulated model writes for a plain string
    return WEATHER
