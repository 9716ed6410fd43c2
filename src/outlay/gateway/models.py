"""GET /v1/models and /v1/models/{id}: the models this key may use on every provider, from
the price table (a named provider's as `<provider>/<model>`, `owned_by` the provider), in
OpenAI's shape, or in Anthropic's (its provider's models only, paginated as Anthropic's API
is) to a request that carries `anthropic-version` or `x-api-key`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from outlay.gateway.admission import new_request_id, unavailable
from outlay.gateway.context import GATEWAY, Gateway
from outlay.gateway.errors import Flavor, error_response
from outlay.gateway.intake import agent_key
from outlay.policy.access import model_matches, vendor_matches
from outlay.policy.decide import authenticate
from outlay.policy.decision import call_scopes
from outlay.policy.errors import NotFound, OutlayError, invalid_request
from outlay.pricing.providers import provider_price
from outlay.pricing.table import ModelPrice
from outlay.state.base import StateError
from outlay.state.keys import hash_secret

# the models carry no release date: the Unix epoch, as OpenAI's `created: 0`
EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000  # Anthropic's page sizes


def flavor_of(headers: Mapping[str, str]) -> Flavor:
    return "anthropic" if "anthropic-version" in headers or "x-api-key" in headers \
        else "openai"


async def list_models(request: web.Request) -> web.Response:
    flavor = flavor_of(request.headers)
    rid = new_request_id()
    found = await _usable(request, flavor, rid)
    if isinstance(found, web.Response):
        return found
    headers = {"X-Outlay-Request-Id": rid}
    if flavor == "openai":
        return web.json_response({"object": "list", "data": [
            _openai(name, m) for name, m in found]}, headers=headers)
    ids = [name for name, m in found if m.provider == "anthropic"]
    try:
        page = anthropic_page(ids, request.query)
    except OutlayError as err:
        if err.status == 404:  # a page boundary that names no model of the list
            err.error_type = "not_found_error"
        return error_response(err, flavor, rid)
    return web.json_response(page, headers=headers)


async def retrieve_model(request: web.Request) -> web.Response:
    flavor = flavor_of(request.headers)
    rid = new_request_id()
    found = await _usable(request, flavor, rid)
    if isinstance(found, web.Response):
        return found
    model_id = request.match_info["model_id"]
    price = request.app[GATEWAY].prices.resolve(model_id)
    usable = dict(found)
    if price is not None and price.name in usable:
        price = usable[price.name]
    else:  # an Azure deployment's model, listed by its provider's name
        price = usable.get(model_id)
    if price is None or (flavor == "anthropic" and price.provider != "anthropic"):
        err = NotFound("model_not_found",
                       f"The model '{model_id}' does not exist or this key may not use it.",
                       param="model")
        if flavor == "anthropic":
            err.error_type = "not_found_error"
        return error_response(err, flavor, rid)
    body = _anthropic(model_id) if flavor == "anthropic" else _openai(model_id, price)
    return web.json_response(body, headers={"X-Outlay-Request-Id": rid})


def _openai(model_id: str, price: ModelPrice) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": price.provider}


def _anthropic(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": display_name(model_id),
            "created_at": EPOCH}


def display_name(model_id: str) -> str:
    """A model's name as Anthropic shows it: claude-3-5-haiku is "Claude 3.5 Haiku",
    claude-opus-4-1 "Claude Opus 4.1"."""
    words: list[str] = []
    for part in model_id.split("-"):
        if part.isdigit() and len(part) < 3 and words and words[-1][-1:].isdigit():
            words[-1] += f".{part}"  # a version's minor number
        else:
            words.append(part[:1].upper() + part[1:])
    return " ".join(words)


def anthropic_page(ids: list[str], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of `ids` as Anthropic's list answers it: `limit` (1 to 1000, default 20),
    and at most one of `after_id` (the page after that model) and `before_id` (the page
    before it). 400 for a bad parameter, 404 for a boundary that is not in the list."""
    raw = query.get("limit", str(DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise invalid_request(f"limit must be an integer from 1 to {MAX_LIMIT}.", "limit")
    limit = int(raw)
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise invalid_request("Give after_id or before_id, not both.", "before_id")
    boundary = after if after is not None else before
    if boundary is not None and boundary not in ids:
        raise NotFound("not_found", f"{'after_id' if after is not None else 'before_id'}: no "
                       f"model '{boundary}' in the list.",
                       param="after_id" if after is not None else "before_id")
    if before is not None:
        end = ids.index(before)
        start = max(0, end - limit)
        data, more = ids[start:end], start > 0
    else:
        start = 0 if after is None else ids.index(after) + 1
        data, more = ids[start:start + limit], start + limit < len(ids)
    return {"data": [_anthropic(i) for i in data], "has_more": more,
            "first_id": data[0] if data else None, "last_id": data[-1] if data else None}


def _listed(gw: Gateway) -> list[tuple[str, ModelPrice]]:
    """Every model a call can reach, by the name that reaches it: the table's models of the
    configured providers (OpenAI's and Anthropic's always), and each Azure deployment's."""
    specs = gw.routing.specs
    found = [(name, m) for name in gw.prices.names()
             if (m := gw.prices.resolve(name)) and m.provider in specs]
    for spec in specs.values():
        for model, _ in spec.deployments:
            key = f"{spec.name}/{model}"
            price = provider_price(gw.prices, spec.name, model, key, azure=True, free=spec.free)
            if price is not None and gw.prices.resolve(key) is None:
                found.append((key, price))
    return found


async def _usable(request: web.Request, flavor: Flavor, rid: str
                  ) -> list[tuple[str, ModelPrice]] | web.Response:
    """The models the request's key may call, by name, or the refusal to answer."""
    gw = request.app[GATEWAY]
    secret = agent_key(request.headers)
    try:
        key = await gw.store.key_by_hash(hash_secret(secret)) if secret else None
        refusal = authenticate(key, gw.clock())
        if refusal is not None:
            return error_response(refusal, flavor, rid)
        assert key is not None  # authenticate refuses a missing key
        # a call to a model is charged to its provider's vendor scope: list it the same way
        models = _listed(gw)
        scopes = {m.provider: call_scopes(key, m.provider) for _, m in models}
        policies = {s: await gw.store.get_policy(s) for s in set().union(*scopes.values())}
    except StateError as exc:
        return error_response(unavailable(gw, exc), flavor, rid)
    aliases = gw.aliases
    free = set(gw.free_models)
    return [
        (name, m) for name, m in models
        if all(
            (p.vendors is None or vendor_matches(p.vendors, m.provider))
            and (p.models is None or model_matches(p.models, name, m.name, aliases))
            and (not p.free_models_only or m.name in free)
            for s in scopes[m.provider] if (p := policies[s]) is not None
        )
    ]
