"""`outlay policy set/update --loop-guard N/S --on-loop refuse|revoke`."""

from __future__ import annotations

import pytest

from .fakes import FakeAdmin, RunCli


async def test_the_loop_guard_flags_become_the_policy_fields(
        fake_admin: FakeAdmin, run_cli: RunCli) -> None:
    stored = {"loop_guard": {"max_repeats": 20, "window_s": 60}, "on_loop": "revoke",
              "on_breach": "block"}
    fake_admin.answer("PUT", "/admin/v1/policies/agent:bot", stored)
    result = await run_cli("policy", "set", "agent:bot", "--loop-guard", "20/60",
                           "--on-loop", "revoke")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"loop_guard": {"max_repeats": 20, "window_s": 60},
                                    "on_loop": "revoke"}
    assert "max_repeats: 20" in result.stdout
    fake_admin.answer("PATCH", "/admin/v1/policies/agent:bot", stored)
    result = await run_cli("policy", "update", "agent:bot", "--loop-guard", " 5/10 ")
    assert result.exit_code == 0, result.output
    assert fake_admin.last.body == {"loop_guard": {"max_repeats": 5, "window_s": 10}}


@pytest.mark.parametrize(("args", "message"), [
    (["--loop-guard", "20"], "MAX_REPEATS/WINDOW_S"),
    (["--loop-guard", "20/a"], "MAX_REPEATS/WINDOW_S"),
    (["--loop-guard", "-1/60"], "MAX_REPEATS/WINDOW_S"),
    (["--on-loop", "ban"], "'ban' is not one of"),
])
async def test_bad_loop_guard_flags_are_refused_locally(
        fake_admin: FakeAdmin, run_cli: RunCli, args: list[str], message: str) -> None:
    result = await run_cli("policy", "set", "agent:bot", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake_admin.calls == []
