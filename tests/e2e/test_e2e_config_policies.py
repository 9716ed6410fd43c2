"""Configuration and the admin API never overwrite each other, across restarts of a real
`outlay serve`: a policy set through the API survives a restart unchanged; a policy in the
file is refused to the API (409 naming the file) and to `outlay policy set`; a scope taken
out of the file keeps its last policy, managed through the API from then on, and the start
log says so."""

from __future__ import annotations

import subprocess

import pytest

from .harness import ADMIN_TOKEN, Launch, outlay_bin, server_env, unique

pytestmark = pytest.mark.e2e


def day_cap(usd: int) -> dict[str, object]:
    return {"budgets": [{"usd": usd, "period": "day", "mode": "hard"}]}


def test_restarts_keep_each_policy_where_its_owner_put_it(launch: Launch) -> None:
    filed, api = f"agent:{unique('filed')}", f"agent:{unique('by-api')}"
    config = {"policies": {filed: day_cap(100)}}
    gateway = launch(config, workers=2, name="config-policies")
    gateway.set_policy(api, day_cap(100))
    lowered = gateway.admin.put(f"/admin/v1/policies/{api}", json=day_cap(10))
    assert lowered.status_code == 200, lowered.text

    refused = gateway.admin.put(f"/admin/v1/policies/{filed}", json=day_cap(10))
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["file"]) == ("policy_managed_by_config",
                                              str(gateway.config_path.resolve()))
    assert str(gateway.config_path.resolve()) in error["message"]
    assert gateway.admin.delete(f"/admin/v1/policies/{filed}").status_code == 409
    cli = subprocess.run(
        [outlay_bin(), "policy", "set", filed, "--budget", "10/day", "--url", gateway.url,
         "--token", ADMIN_TOKEN], env=server_env(), capture_output=True, text=True, timeout=30)
    assert cli.returncode == 1
    assert "policy_managed_by_config" in cli.stderr
    assert str(gateway.config_path.resolve()) in cli.stderr

    gateway.stop()
    gateway.start()  # the same file, the same state
    shown = gateway.admin.get(f"/admin/v1/policies/{api}").json()
    assert (shown["budgets"][0]["usd"], shown["managed_by"]) == ("10", None)
    shown = gateway.admin.get(f"/admin/v1/policies/{filed}").json()
    assert (shown["budgets"][0]["usd"], shown["managed_by"]) == (
        "100", str(gateway.config_path.resolve()))

    gateway.stop()
    gateway.config = {key: value for key, value in gateway.config.items()
                      if key != "policies"}
    gateway.start()  # the scope is out of the file now
    log = gateway.log()
    assert f"the policy of {filed} is no longer in {gateway.config_path.resolve()}" in log
    assert "now managed through the admin API" in log
    shown = gateway.admin.get(f"/admin/v1/policies/{filed}").json()
    assert (shown["budgets"][0]["usd"], shown["managed_by"]) == ("100", None)
    changed = gateway.admin.put(f"/admin/v1/policies/{filed}", json=day_cap(10))
    assert changed.status_code == 200, changed.text
