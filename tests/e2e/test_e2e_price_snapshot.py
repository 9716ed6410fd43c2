"""A newer price snapshot, written by `outlay prices update` and named by `price_snapshot:`,
is what a real gateway prices and charges with, and a bad one stops the start."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import openai
import pytest
import yaml

from .harness import Launch, micros, outlay_bin, price_cost_micros, server_env, unique

pytestmark = pytest.mark.e2e

MODEL = "gpt-5.6-luna"  # openai-agents' default model


def test_a_newer_snapshot_prices_the_calls(launch: Launch, tmp_path: Path) -> None:
    snapshot = tmp_path / "prices.snapshot.yaml"
    done = subprocess.run([outlay_bin(), "prices", "update", "--out", str(snapshot)],
                          env=server_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(snapshot.read_text("utf-8"))
    doc["version"] = "0.0.1-newer"
    doc["models"][MODEL]["input"] = "7"
    doc["models"][MODEL]["output"] = "9"
    snapshot.write_text(yaml.safe_dump(doc), encoding="utf-8")

    gateway = launch({"price_snapshot": str(snapshot)})
    checked = gateway.admin.get(f"/admin/v1/prices/{MODEL}").json()
    assert (checked["input"], checked["output"]) == ("7", "9")
    assert checked["source"]["prices"].startswith("genai-prices 0.0.1-newer")
    minted = gateway.mint_key(unique("snapshot"))
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=minted["key"]) as client:
        answer = client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=64)
    assert answer.usage is not None
    expected = price_cost_micros({"input": "7", "output": "9"}, answer.usage.input_tokens,
                                 answer.usage.output_tokens)
    deadline = time.monotonic() + 10  # the call settles just after its answer is written
    [entry] = gateway.audit(f"key:{minted['id']}")
    while entry["settlement"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
        [entry] = gateway.audit(f"key:{minted['id']}")
    assert entry["settlement"] == "settled"
    assert micros(entry["cost_usd"]) == expected


def test_an_unreadable_snapshot_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "outlay.yaml"
    config.write_text(yaml.safe_dump({"listen": "127.0.0.1:0",
                                      "price_snapshot": str(tmp_path / "missing.yaml")}))
    done = subprocess.run([outlay_bin(), "serve", "--config", str(config), "--state",
                           f"sqlite:///{tmp_path / 'state.db'}"], env=server_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "price_snapshot: cannot read" in done.stderr + done.stdout
