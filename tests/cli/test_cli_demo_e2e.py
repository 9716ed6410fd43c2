"""`outlay demo` for real: it starts `outlay serve` in a subprocess and spends a budget."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.e2e
def test_demo_runs_offline_until_the_budget_refuses(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "outlay.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "call  1: gpt-4o-mini answered" in done.stdout
    assert "refused:" in done.stdout
    assert "budget_exceeded" in done.stdout
    assert "max_tokens lowered to" in done.stdout  # the budget is used by clamping
    share = re.search(r"Spent \$[\d.]+ of the \$[\d.]+ budget \(([\d.]+) %\) before the "
                      r"first refusal\.", done.stdout)
    assert share is not None, done.stdout
    assert float(share[1]) >= 90.0
    assert "Usage of agent:demo-agent" in done.stdout
    assert list(tmp_path.iterdir()) == []  # the scratch state lives elsewhere and is gone
