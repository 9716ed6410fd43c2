"""`outlay migrate` brings a PostgreSQL schema up to date, once, and says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from outlay.cli.main import main
from outlay.state.postgres.schema import LATEST, schema_version


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./outlay.yaml
    for name in ("OUTLAY_CONFIG", "OUTLAY_DATABASE", "OUTLAY_STATE"):
        monkeypatch.delenv(name, raising=False)


def test_migrate_applies_every_version_once(postgres_dsn: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["migrate", "--database", postgres_dsn])
    assert first.exit_code == 0, first.output
    assert first.output.strip() == "applied migrations " + ", ".join(
        str(v) for v in range(1, LATEST + 1))
    assert asyncio.run(schema_version(postgres_dsn)) == LATEST
    again = runner.invoke(main, ["migrate"], env={"OUTLAY_DATABASE": postgres_dsn})
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "the schema is up to date"


def test_migrate_needs_a_database() -> None:
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1
    assert "no PostgreSQL database to migrate" in result.output


def test_migrate_says_when_the_database_cannot_be_reached() -> None:
    result = CliRunner().invoke(main, ["migrate", "--database",
                                       "postgresql://nobody@127.0.0.1:1/outlay"])
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "127.0.0.1" in result.output
