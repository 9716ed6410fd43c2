"""The Lua scripts of the replicated backend, read from the package's `lua/` directory."""

from __future__ import annotations

from importlib import resources


def script_text(name: str) -> str:
    return (resources.files("outlay.state.redis") / "lua" / name).read_text()
