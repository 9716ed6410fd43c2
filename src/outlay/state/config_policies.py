"""Which scopes' policies the configuration file manages, as both durable stores keep it: one
record in their `meta` table, written when `outlay serve` applies the file's `policies:`.

A scope the file names is managed by the file: the admin API refuses to change it (409
`policy_managed_by_config`). Every other scope is managed through the API and is never
written at start-up. A scope the file no longer names keeps its last policy and is managed
through the API from then on (`released`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

META_KEY = "config_policies"


class PolicyManaged(Exception):
    """An admin change to a policy the configuration file manages."""

    def __init__(self, scope: str, file: str | None) -> None:
        where = file or "the configuration file"
        super().__init__(
            f"The policy of {scope} is set by {where}: change it there and restart Outlay, or "
            f"remove {scope} from its `policies:` to manage it through the admin API.")
        self.scope, self.file = scope, file


@dataclass(frozen=True)
class ConfigPolicies:
    """The file that last applied its policies, and the scopes it names."""

    file: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def check(self, scope: str) -> None:
        """Refuse an admin change to `scope` if the file manages it."""
        if scope in self.scopes:
            raise PolicyManaged(scope, self.file)

    def released(self, scopes: frozenset[str]) -> list[str]:
        """The scopes this record managed that a file naming `scopes` no longer does."""
        return sorted(self.scopes - scopes)

    def dump(self) -> str:
        return json.dumps({"file": self.file, "scopes": sorted(self.scopes)})


def parse(text: str | None) -> ConfigPolicies:
    """The stored record (None: no file ever applied policies)."""
    if not text:
        return ConfigPolicies()
    data = json.loads(text)
    return ConfigPolicies(data.get("file"), frozenset(data.get("scopes") or ()))
