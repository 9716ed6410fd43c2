"""Admin routes for approvals and for the kill switch over a whole agent or group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from outlay.admin.common import PREFIX, dump, read_json
from outlay.gateway.context import GATEWAY
from outlay.policy.approvals import STATES
from outlay.policy.errors import invalid_request


async def list_approvals(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise invalid_request(f"state must be one of {', '.join(STATES)}", "state")
    return dump({"approvals": await request.app[GATEWAY].store.list_approvals(state)})


async def show_approval(request: web.Request) -> web.Response:
    return dump(await request.app[GATEWAY].store.get_approval(request.match_info["id"]))


async def _decide(request: web.Request, approve: bool) -> web.Response:
    body = await read_json(request, ("note",))
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise invalid_request("note must be a string", "note")
    try:
        decided = await request.app[GATEWAY].store.decide_approval(
            request.match_info["id"], approve, note)
    except ValueError as exc:  # already decided
        return web.json_response(
            {"error": {"message": str(exc), "type": "admin_error", "code": "conflict",
                       "param": None}}, status=409)
    return dump(decided)


async def approve(request: web.Request) -> web.Response:
    return await _decide(request, True)


async def deny(request: web.Request) -> web.Response:
    return await _decide(request, False)


def _revoke_all(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The kill switch over an agent or a group: revoke every live key, cut its calls."""
    async def revoke(request: web.Request) -> web.Response:
        await read_json(request, ())  # takes no fields: a body naming one is a mistake
        gw = request.app[GATEWAY]
        name = request.match_info["name"]
        ids = await gw.store.revoke_keys(**{kind: name})
        for key_id in ids:
            gw.streams.cut(key_id)
        return dump({kind: name, "revoked": ids})

    return revoke


def add_approval_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/approvals", list_approvals)
    r.add_get(f"{PREFIX}/approvals/{{id}}", show_approval)
    r.add_post(f"{PREFIX}/approvals/{{id}}/approve", approve)
    r.add_post(f"{PREFIX}/approvals/{{id}}/deny", deny)
    r.add_post(f"{PREFIX}/agents/{{name}}/revoke", _revoke_all("agent"))
    r.add_post(f"{PREFIX}/groups/{{name}}/revoke", _revoke_all("group"))
