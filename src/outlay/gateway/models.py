"""GET /v1/models: the models this key may use, in OpenAI's list shape."""

from __future__ import annotations

from aiohttp import web

from outlay.gateway.context import GATEWAY
from outlay.gateway.errors import error_response
from outlay.gateway.intake import agent_key
from outlay.gateway.llm import new_request_id, unavailable
from outlay.policy.access import model_matches
from outlay.policy.decide import authenticate
from outlay.policy.decision import call_scopes
from outlay.state.base import StateError
from outlay.state.keys import hash_secret


async def list_models(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rid = new_request_id()
    secret = agent_key(request)
    try:
        key = await gw.store.key_by_hash(hash_secret(secret)) if secret else None
        refusal = authenticate(key, gw.clock())
        if refusal is not None:
            return error_response(refusal, "openai", rid)
        assert key is not None  # authenticate refuses a missing key
        policies = [await gw.store.get_policy(s) for s in call_scopes(key, "openai")]
    except StateError as exc:
        return error_response(unavailable(exc), "openai", rid)
    aliases = gw.aliases
    free = set(gw.free_models)
    allowed = []
    for name in gw.prices.names():
        ok = all(
            (p.models is None or model_matches(p.models, name, name, aliases))
            and (not p.free_models_only or name in free)
            for p in policies if p is not None
        )
        if ok:
            allowed.append(name)
    return web.json_response(
        {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": price.provider}
            for name in allowed if (price := gw.prices.resolve(name)) is not None
        ]},
        headers={"X-Outlay-Request-Id": rid},
    )
