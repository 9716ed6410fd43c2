"""`outlay policy set --on-rate-limit queue --queue-max-wait SECONDS`."""

from __future__ import annotations

import pytest

from .fakes import FakeAdmin, RunCli


async def test_policy_set_queues_rate_refusals_from_flags(
    fake_admin: FakeAdmin, run_cli: RunCli,
) -> None:
    stored = {"rpm": 60, "on_rate_limit": "queue", "queue_max_wait_s": 30.0}
    fake_admin.answer("PUT", "/admin/v1/policies/agent:bot", stored)
    result = await run_cli("policy", "set", "agent:bot", "--rpm", "60",
                           "--on-rate-limit", "queue", "--queue-max-wait", "30")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"rpm": 60, "on_rate_limit": "queue",
                                    "queue_max_wait_s": 30.0}
    assert "on_rate_limit: queue" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--queue-max-wait", "-1"], "queue_max_wait_s"),
    (["--queue-max-wait", "601"], "queue_max_wait_s"),
    (["--on-rate-limit", "wait"], "--on-rate-limit"),
    (['{"on_rate_limit": "queue", "queue_max_wait_s": 0}'], "queue_max_wait_s"),
])
async def test_bad_queue_flags_are_refused_locally_naming_the_field(
    fake_admin: FakeAdmin, run_cli: RunCli, args: list[str], message: str,
) -> None:
    result = await run_cli("policy", "set", "global", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake_admin.calls == []
