"""An endpoint's `limits` (its upstream key's rpm, tpm, max_parallel) and the queue's bound
(`server.queue_max_waiting`) in the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from outlay.policy.model import Policy
from outlay.settings import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "outlay.yaml"
    path.write_text(text)
    return load_settings(path, {})


def test_endpoint_limits_are_read_per_endpoint(tmp_path: Path) -> None:
    settings = load(tmp_path, """
providers:
  openai:
    endpoints:
      - {api_key: k1, limits: {rpm: 500, tpm: 200000, max_parallel: 50}}
      - {api_key: k2, limits: {rpm: 60}}
      - {api_key: k3}
""")
    first, second, third = settings.providers["openai"]
    assert first.limits == Policy(rpm=500, tpm=200_000, max_parallel=50)
    assert second.limits == Policy(rpm=60)
    assert third.limits is None


@pytest.mark.parametrize(("limits", "message"), [
    ("{rpm: sixty}", r"providers\.openai\.endpoints\[0\]\.limits\.rpm must be a positive "
                     r"integer, got 'sixty'"),
    ("{rpm: 0}", r"providers\.openai\.endpoints\[0\]\.limits\.rpm must be a positive integer"),
    ("{tpm: -5}", r"providers\.openai\.endpoints\[0\]\.limits\.tpm must be a positive integer"),
    ("{max_parallel: 1.5}", r"providers\.openai\.endpoints\[0\]\.limits\.max_parallel must"),
    ("{max_parallel: true}", r"providers\.openai\.endpoints\[0\]\.limits\.max_parallel must"),
    ("{rph: 5}", r"providers\.openai\.endpoints\[0\]\.limits: unknown field\(s\) rph; known: "
                 r"rpm, tpm, max_parallel"),
    ("60", r"providers\.openai\.endpoints\[0\]\.limits must be a mapping"),
    ("[60]", r"providers\.openai\.endpoints\[0\]\.limits must be a mapping"),
])
def test_bad_endpoint_limits_stop_the_start_naming_the_field(
    tmp_path: Path, limits: str, message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path,
             f"providers: {{openai: {{endpoints: [{{api_key: k, limits: {limits}}}]}}}}\n")


def test_the_queue_bound_defaults_and_is_configured_in_server(tmp_path: Path) -> None:
    assert load(tmp_path, "{}\n").queue_max_waiting == 1000
    assert load(tmp_path, "server: {queue_max_waiting: 5}\n").queue_max_waiting == 5
    with pytest.raises(ConfigError, match=r"server\.queue_max_waiting must be an integer >= 0"):
        load(tmp_path, "server: {queue_max_waiting: -1}\n")
