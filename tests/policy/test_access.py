"""Allow-lists: model names, aliases and globs; vendor names and globs."""

from __future__ import annotations

import pytest

from outlay.policy.access import model_matches, vendor_matches

ALIASES = {"fast": "gpt-4o-mini", "smart": "claude-sonnet-4-5", "sonnet": "claude-sonnet-4-5"}


@pytest.mark.parametrize(
    ("patterns", "requested", "resolved", "allowed"),
    [
        (["gpt-4o-mini"], "gpt-4o-mini", "gpt-4o-mini", True),
        (["gpt-4o-mini"], "gpt-4o", "gpt-4o", False),
        # a pattern that is an alias allows the model it stands for, under either name
        (["fast"], "gpt-4o-mini", "gpt-4o-mini", True),
        (["fast"], "fast", "gpt-4o-mini", True),
        (["fast"], "gpt-4o", "gpt-4o", False),
        # a canonical name allows its aliases (the request resolves to it)
        (["gpt-4o-mini"], "fast", "gpt-4o-mini", True),
        (["claude-sonnet-4-5"], "smart", "claude-sonnet-4-5", True),
        # globs match the requested name or the resolved one
        (["claude-*"], "claude-3-5-haiku", "claude-3-5-haiku", True),
        (["claude-*"], "smart", "claude-sonnet-4-5", True),
        (["claude-*"], "gpt-4o", "gpt-4o", False),
        (["gpt-4o-*"], "gpt-4o", "gpt-4o", False),
        (["gpt-4o*"], "gpt-4o", "gpt-4o", True),
        (["s*"], "smart", "claude-sonnet-4-5", True),
        (["*"], "anything", None, True),
        (["gpt-?o"], "gpt-4o", None, True),
        # unknown models (no resolved name) match only on what was asked for
        (["my-local-model"], "my-local-model", None, True),
        (["gpt-4o-mini"], "my-local-model", None, False),
        # matching is case-sensitive, like the providers' model ids
        (["GPT-4o-mini"], "gpt-4o-mini", "gpt-4o-mini", False),
        ([], "gpt-4o-mini", "gpt-4o-mini", False),
        (["fast", "smart"], "sonnet", "claude-sonnet-4-5", True),
    ],
)
def test_model_matches(
    patterns: list[str], requested: str, resolved: str | None, allowed: bool
) -> None:
    assert model_matches(patterns, requested, resolved, ALIASES) is allowed


def test_model_matches_without_aliases() -> None:
    assert not model_matches(["fast"], "gpt-4o-mini", "gpt-4o-mini", {})


@pytest.mark.parametrize(
    ("patterns", "vendor", "allowed"),
    [
        (["openai", "stripe"], "stripe", True),
        (["openai", "stripe"], "twilio", False),
        (["*"], "resend", True),
        (["open*"], "openai", True),
        (["Stripe"], "stripe", False),
        ([], "openai", False),
    ],
)
def test_vendor_matches(patterns: list[str], vendor: str, allowed: bool) -> None:
    assert vendor_matches(patterns, vendor) is allowed
