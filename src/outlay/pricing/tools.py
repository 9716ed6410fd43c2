"""The server-side tools an LLM request offers: their fees, the most uses the call can make
(Anthropic's `max_uses` on each tool, OpenAI Responses' `max_tool_calls` over all of them),
and the bound Outlay sets where the request gives none.

Every use may start another server-side iteration, which reads the whole context again: the
input bound of such a call is its context window once per iteration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from outlay.policy.errors import invalid_request
from outlay.values import value

# The most uses Outlay lets a call make when the request sets no bound (and the budget
# allows as many): tool loops run a handful of searches; their input bound grows per use.
DEFAULT_MAX_USES = 10
# Anthropic server tools by type prefix (`web_search_20250305`) -> their fee's name
_ANTHROPIC = (("web_search_", "web_search"), ("web_fetch_", "web_fetch"),
              ("code_execution_", "code_execution"))
# OpenAI Responses built-in tools run by the provider (a dated variant has a suffix);
# computer use, local shell, functions and custom tools run on the client
_OPENAI = frozenset({"web_search", "web_search_preview", "file_search", "code_interpreter",
                     "mcp", "image_generation"})
_DATED = re.compile(r"_\d{4}_\d{2}_\d{2}$")
# The usage each OpenAI tool's calls are counted under (openai_tool_uses)
_OPENAI_KIND = {"web_search_preview": "web_search"}


@value
class ServerTool:
    fee_name: str  # its fee in the price table
    kind: str  # what its uses are reported as
    index: int  # its place in `tools`
    max_uses: int | None  # the request's own bound on it (Anthropic), None when unbounded


@value
class ServerTools:
    """The server-side tools of one request and the bounds on their uses."""

    tools: tuple[ServerTool, ...] = ()
    shared: bool = False  # OpenAI: one bound over every tool's calls, `max_tool_calls`
    max_tool_calls: int | None = None
    per_container: tuple[str, ...] = ()  # fee names charged once per tool, not per use

    @property
    def unbounded(self) -> tuple[ServerTool, ...]:
        """The tools whose uses no field of the request bounds."""
        if not self.tools:
            return ()
        if self.shared:
            return self.tools if self.max_tool_calls is None else ()
        return tuple(t for t in self.tools if t.max_uses is None)


_NONE = ServerTools()  # the routes without server-side tools (a value: never changed)
_WITH_SERVER_TOOLS = ("anthropic.messages", "openai.responses")


def server_tools(route: str, body: Mapping[str, Any]) -> ServerTools:
    """The server-side tools of a (validated) request; raises BadRequest for a bound that
    is not a non-negative integer."""
    if route not in _WITH_SERVER_TOOLS:
        return _NONE
    tools = body.get("tools")
    if not isinstance(tools, list):
        tools = []
    if route == "anthropic.messages":
        return ServerTools(tuple(_anthropic(tools)))
    if route == "openai.responses":
        found = tuple(_openai(tools))
        limit = body.get("max_tool_calls")
        _non_negative(limit, "max_tool_calls")
        per_container = tuple(t.fee_name for t in found if t.fee_name == "code_interpreter")
        return ServerTools(found, True, limit, per_container)
    return _NONE


def with_uses(route: str, body: Mapping[str, Any], tools: ServerTools, n: int
              ) -> dict[str, Any]:
    """The body fields that bound the call to `n` uses of each unbounded tool (Anthropic) or
    `n` tool calls in all (OpenAI)."""
    if route == "openai.responses":
        return {"max_tool_calls": n}
    unbounded = {t.index for t in tools.unbounded}
    given: Sequence[Any] = body["tools"]
    return {"tools": [{**tool, "max_uses": n} if i in unbounded else tool
                      for i, tool in enumerate(given)]}


def _anthropic(tools: list[Any]) -> list[ServerTool]:
    found = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if not isinstance(kind, str) or not isinstance(tool, Mapping):
            continue
        for prefix, name in _ANTHROPIC:
            if kind.startswith(prefix):
                limit = tool.get("max_uses")
                _non_negative(limit, f"tools[{i}].max_uses")
                found.append(ServerTool(name, name, i, limit))
    return found


def _openai(tools: list[Any]) -> list[ServerTool]:
    found = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if not isinstance(kind, str):
            continue
        name = _DATED.sub("", kind)
        if name in _OPENAI:
            found.append(ServerTool(name, _OPENAI_KIND.get(name, name), i, None))
    return found


def _non_negative(limit: object, field: str) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 0):
        raise invalid_request(f"`{field}` must be a non-negative integer, got {limit!r}.",
                              field)
