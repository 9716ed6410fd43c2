"""The Lua scripts of the replicated backend, read from the package's `lua/` directory. A
line `-- @<name>.lua` in a script stands for that script's text (functions several scripts
share, or a script another one wraps)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r"^-- @([a-z_]+\.lua)$", re.MULTILINE)


@cache
def script_text(name: str) -> str:
    text = (resources.files("outlay.state.redis") / "lua" / name).read_text()
    return _INCLUDE.sub(lambda m: script_text(m.group(1)), text)
