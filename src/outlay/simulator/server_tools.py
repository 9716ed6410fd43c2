"""The service tier and the server-side tools of a simulated call, as the real APIs report
them: the tier a request lands in, and tools that use every use the request allows (the
worst case a bound must cover), each use adding its results to the input that the next
iteration reads again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Tokens each search or fetch adds to the context of the iterations after it
RESULT_TOKENS = 200
# Uses a simulated model makes of a tool whose request sets no bound
DEFAULT_USES = 3
_ANTHROPIC = (("web_search_", "web_search"), ("web_fetch_", "web_fetch"))
_OPENAI = {"web_search": "web_search_call", "web_search_preview": "web_search_call",
           "file_search": "file_search_call", "code_interpreter": "code_interpreter_call"}
_DATED = re.compile(r"_\d{4}_\d{2}_\d{2}$")


def openai_tier(payload: Mapping[str, Any], account: str | None) -> str:
    """The tier an OpenAI answer reports: the one asked for, or the project's for `auto`."""
    asked = payload.get("service_tier")
    if isinstance(asked, str) and asked != "auto":
        return asked
    return account or "default"


def anthropic_tier(payload: Mapping[str, Any], account: str | None) -> str:
    """Anthropic runs `auto` (the default) on priority capacity when the account has it."""
    if payload.get("service_tier") == "standard_only":
        return "standard"
    return account or "standard"


def iterations_input(first: int, uses: int) -> int:
    """Input tokens over every iteration: the first reads the prompt, each use's iteration
    reads it again with every result so far."""
    return sum(first + i * RESULT_TOKENS for i in range(uses + 1))


def anthropic_uses(payload: Mapping[str, Any]) -> list[str]:
    """The server tools an Anthropic call uses, one entry per use, in order."""
    uses: list[str] = []
    tools = payload.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        for prefix, name in _ANTHROPIC:
            if isinstance(kind, str) and kind.startswith(prefix):
                limit = tool.get("max_uses")
                uses += [name] * (limit if isinstance(limit, int) else DEFAULT_USES)
    return uses


def anthropic_blocks(uses: list[str], new_id: Any) -> list[dict[str, Any]]:
    """The server_tool_use and result blocks of those uses."""
    blocks: list[dict[str, Any]] = []
    for n, name in enumerate(uses):
        use_id = new_id("srvtoolu_")
        query = f"simulated query {n + 1}"
        blocks.append({"type": "server_tool_use", "id": use_id, "name": name,
                       "input": {"query": query} if name == "web_search"
                       else {"url": f"https://example.com/{n + 1}"}})
        if name == "web_search":
            blocks.append({"type": "web_search_tool_result", "tool_use_id": use_id,
                           "content": [{"type": "web_search_result", "title": query,
                                        "url": f"https://example.com/{n + 1}",
                                        "encrypted_content": "c2ltdWxhdGVk",
                                        "page_age": None}]})
        else:
            blocks.append({"type": "web_fetch_tool_result", "tool_use_id": use_id,
                           "content": {"type": "web_fetch_result",
                                       "url": f"https://example.com/{n + 1}",
                                       "content": {"type": "document", "source": {
                                           "type": "text", "media_type": "text/plain",
                                           "data": "simulated page"}},
                                       "retrieved_at": "2025-01-01T00:00:00Z"}})
    return blocks


def anthropic_usage_of(uses: list[str]) -> dict[str, int]:
    return {"web_search_requests": uses.count("web_search"),
            "web_fetch_requests": uses.count("web_fetch")}


def openai_calls(payload: Mapping[str, Any], new_id: Any) -> list[dict[str, Any]]:
    """The output items of the built-in tools an OpenAI Responses call runs: `max_tool_calls`
    of them (DEFAULT_USES without one), taken from its tools in turn."""
    offered = []
    tools = payload.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        name = _DATED.sub("", kind) if isinstance(kind, str) else None
        if name in _OPENAI:
            offered.append(name)
    if not offered:
        return []
    limit = payload.get("max_tool_calls")
    count = limit if isinstance(limit, int) else DEFAULT_USES
    container = new_id("cntr_")
    items = []
    for n in range(count):
        name = offered[n % len(offered)]
        item: dict[str, Any] = {"id": new_id(name[:2] + "_"), "type": _OPENAI[name],
                                "status": "completed"}
        if name.startswith("web_search"):
            item["action"] = {"type": "search", "query": f"simulated query {n + 1}"}
        elif name == "file_search":
            item.update(queries=[f"simulated query {n + 1}"], results=None)
        else:
            item.update(code="print(1)", container_id=container, outputs=None)
        items.append(item)
    return items
