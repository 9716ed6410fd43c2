"""GET /v1/models: the models this key may use, in OpenAI's list shape."""

from __future__ import annotations

from aiohttp import web

from outlay.gateway.admission import new_request_id, unavailable
from outlay.gateway.context import GATEWAY
from outlay.gateway.errors import error_response
from outlay.gateway.intake import agent_key
from outlay.policy.access import model_matches, vendor_matches
from outlay.policy.decide import authenticate
from outlay.policy.decision import call_scopes
from outlay.state.base import StateError
from outlay.state.keys import hash_secret


async def list_models(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rid = new_request_id()
    secret = agent_key(request.headers)
    try:
        key = await gw.store.key_by_hash(hash_secret(secret)) if secret else None
        refusal = authenticate(key, gw.clock())
        if refusal is not None:
            return error_response(refusal, "openai", rid)
        assert key is not None  # authenticate refuses a missing key
        # a call to a model is charged to its provider's vendor scope: list it the same way
        models = [m for name in gw.prices.names() if (m := gw.prices.resolve(name))]
        scopes = {m.provider: call_scopes(key, m.provider) for m in models}
        policies = {s: await gw.store.get_policy(s) for s in set().union(*scopes.values())}
    except StateError as exc:
        return error_response(unavailable(gw, exc), "openai", rid)
    aliases = gw.aliases
    free = set(gw.free_models)
    allowed = [
        m for m in models
        if all(
            (p.vendors is None or vendor_matches(p.vendors, m.provider))
            and (p.models is None or model_matches(p.models, m.name, m.name, aliases))
            and (not p.free_models_only or m.name in free)
            for s in scopes[m.provider] if (p := policies[s]) is not None
        )
    ]
    return web.json_response(
        {"object": "list", "data": [
            {"id": m.name, "object": "model", "created": 0, "owned_by": m.provider}
            for m in allowed
        ]},
        headers={"X-Outlay-Request-Id": rid},
    )
