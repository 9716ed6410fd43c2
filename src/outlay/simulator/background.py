"""Background responses as OpenAI runs them (`background: true`): answered `queued` with no
usage, then retrieved (`GET /responses/{id}`) as `in_progress` once and `completed` with its
usage after; `POST /responses/{id}/cancel` stops one not yet finished, which reports what it
ran up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.simulator.common import SimContext, SimRejection, SimReply, json_reply


def queued(final: dict[str, Any], ctx: SimContext) -> dict[str, Any]:
    """Keep a background response's final object; the answer that it is queued."""
    ctx.stored[final["id"]] = {"final": {**final, "background": True}, "polls": 0}
    return {**final, "background": True, "status": "queued", "output": [], "usage": None,
            "incomplete_details": None}


def route(method: str, path: str, ctx: SimContext, headers: Mapping[str, str]) -> SimReply:
    """GET /responses/{id} and POST /responses/{id}/cancel."""
    rest = path.removeprefix("/responses/")
    response_id, _, action = rest.partition("/")
    kept = ctx.stored.get(response_id)
    if kept is None or (method, action) not in (("GET", ""), ("POST", "cancel")):
        raise SimRejection(404, f"No response found with id '{response_id}'.")
    final: dict[str, Any] = kept["final"]
    if action == "cancel":
        if kept.get("done"):
            raise SimRejection(400, "Cannot cancel a response that has finished.")
        usage = dict(final["usage"])
        usage["output_tokens"] = max(1, usage["output_tokens"] // 2)
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        kept["final"] = {**final, "status": "cancelled", "output": [], "usage": usage}
        kept["done"] = True
        return json_reply(200, kept["final"], headers)
    kept["polls"] += 1
    if kept.get("done") or kept["polls"] > 1:
        kept["done"] = True
        return json_reply(200, kept["final"], headers)
    return json_reply(200, {**final, "status": "in_progress", "output": [], "usage": None,
                            "incomplete_details": None}, headers)
