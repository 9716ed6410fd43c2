"""Policies as both durable stores keep them: validated JSON text."""

from __future__ import annotations

import json
from functools import lru_cache

from outlay.policy.model import Policy, parse_policy


@lru_cache(maxsize=4096)
def parse_stored_policy(body: str) -> Policy:
    # policies are stored as validated JSON text; parsing the same text twice is wasted work
    return parse_policy(json.loads(body))
