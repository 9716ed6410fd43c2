"""Fixtures for end-to-end tests: gateways started per test or once per session, and their
logs attached to the report of any test that fails while they run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import POOL_CONFIG, SHARED_CONFIG, Gateway, Launch
from .replicas import Replicas

StartReplicas = Callable[..., Replicas]

LOG_TAIL_LINES = 200
_RUNNING: pytest.StashKey[list[Gateway]] = pytest.StashKey()
_RECOVERIES: pytest.StashKey[list[str]] = pytest.StashKey()
Recovery = Callable[[str, str], None]


def _register(config: pytest.Config, gateway: Gateway) -> None:
    config.stash.setdefault(_RUNNING, []).append(gateway)


def _unregister(config: pytest.Config, gateway: Gateway) -> None:
    running = config.stash.get(_RUNNING, [])
    if gateway in running:
        running.remove(gateway)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        for gateway in item.config.stash.get(_RUNNING, []):
            tail = "\n".join(gateway.log().splitlines()[-LOG_TAIL_LINES:])
            report.sections.append((f"outlay serve log ({gateway.name})", tail))
    return report


@contextlib.contextmanager
def _launcher(config: pytest.Config, root: Path) -> Iterator[Launch]:
    started: list[Gateway] = []

    def launch(config_doc: dict[str, Any] | None = None, *, workers: int = 1,
               state: Path | None = None, name: str = "gw") -> Gateway:
        directory = root / f"{name}-{len(started) + 1}"
        gateway = Gateway(directory, config_doc or {}, workers, state)
        started.append(gateway)
        _register(config, gateway)
        return gateway.start()

    try:
        yield launch
    finally:
        errors = []
        for gateway in started:
            try:
                gateway.stop()
            except AssertionError as exc:
                errors.append(str(exc))
            finally:
                _unregister(config, gateway)
        assert not errors, "\n".join(errors)


@pytest.fixture
def launch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Launch]:
    """Start gateways for one test: launch(config, workers=N, state=path) -> Gateway."""
    with _launcher(request.config, tmp_path) as start:
        yield start


@pytest.fixture(scope="session")
def gateway(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the tests that only need a running server; each uses its own agents."""
    with _launcher(request.config, tmp_path_factory.mktemp("shared")) as start:
        yield start(SHARED_CONFIG, name="shared")


@pytest.fixture(scope="module")
def pool(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Three worker processes on one SQLite file, with a slow provider so calls overlap."""
    with _launcher(request.config, tmp_path_factory.mktemp("pool")) as start:
        yield start(POOL_CONFIG, workers=3, name="pool")


@contextlib.contextmanager
def _replica_launcher(config: pytest.Config, root: Path) -> Iterator[StartReplicas]:
    with contextlib.ExitStack() as stack:
        count = 0

        def start(n: int, *, state_url: str, database: str | None,
                  config_doc: dict[str, Any] | None = None, workers: int = 1,
                  name: str = "replica") -> Replicas:
            nonlocal count
            count += 1
            group = Replicas(root / f"{name}s-{count}", n, state_url=state_url,
                             database=database, config=config_doc, workers=workers, name=name)
            for replica in group:
                _register(config, replica)
                stack.callback(_unregister, config, replica)
            return stack.enter_context(group)

        yield start


@pytest.fixture
def start_replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartReplicas]:
    """Start groups of replicas for one test: start_replicas(3, state_url=…, database=…,
    config_doc=…) -> Replicas, stopped after the test; their logs join a failure's report."""
    with _replica_launcher(request.config, tmp_path) as start:
        yield start


@pytest.fixture
def recovery(request: pytest.FixtureRequest) -> Recovery:
    """recovery(fault, figures): a line for the run's summary (the fault suite reports how
    long each fault took to recover from; reported, not asserted)."""
    def record(fault: str, figures: str) -> None:
        request.config.stash.setdefault(_RECOVERIES, []).append(f"{fault}: {figures}")

    return record


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    lines = config.stash.get(_RECOVERIES, [])
    if lines:
        terminalreporter.section("recovery after each fault")
        for line in lines:
            terminalreporter.write_line(line)
