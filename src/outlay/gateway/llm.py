"""The LLM routes (OpenAI- and Anthropic-compatible): the request path in one straight line.

parse → authenticate, decide and reserve (one atomic store call) → forward → settle → record;
a key already refused in the head is answered before its body is read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from outlay.gateway.abandoned import read_on
from outlay.gateway.admission import (
    admit,
    cleared_to_send,
    new_request_id,
    refuse_invalid,
    refuse_unread,
)
from outlay.gateway.background import held_response
from outlay.gateway.context import Flight, Gateway
from outlay.gateway.errors import error_answer
from outlay.gateway.exchange import Exchange
from outlay.gateway.forward import request_headers, response_headers
from outlay.gateway.header_values import approval_id
from outlay.gateway.headers import limit_headers
from outlay.gateway.intake import agent_key, parse_json_object
from outlay.gateway.llm_routes import ROUTES, Route
from outlay.gateway.pacing import paused
from outlay.gateway.settle import Settler
from outlay.gateway.usage_tap import UsageHider, UsageTap
from outlay.policy.approvals import request_shape
from outlay.policy.decision import Call
from outlay.policy.errors import OutlayError, Unavailable, invalid_request
from outlay.policy.money import micros_to_usd
from outlay.policy.pacing import endpoint_index
from outlay.policy.tags import TAGS_HEADER, parse_tags
from outlay.pricing.estimate import USES_FIELDS, Estimate, beta_names, clamp_patch, estimate
from outlay.pricing.providers import provider_price
from outlay.pricing.table import ModelPrice
from outlay.state.base import Reservation, Settled, Ticket
from outlay.telemetry.trace_context import TRACEPARENT
from outlay.upstream.base import (
    UpstreamBroken,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamUnreachable,
)
from outlay.upstream.providers import RouteError, Target


@dataclass(frozen=True)
class Again:
    """What lets an admitted call be released and decided again rather than answered."""

    unreachable: bool = False  # nothing was sent, and another endpoint may take it
    paused: bool = False  # its endpoint answered 429, and another endpoint or the queue may


# each of the four, made once: (unreachable, paused) -> Again
_AGAIN = {(u, p): Again(unreachable=u, paused=p) for u in (False, True) for p in (False, True)}


def llm_handlers(gw: Gateway) -> dict[str, Callable[[Exchange], Awaitable[None]]]:
    """The LLM routes by path, for a server that carries Exchanges (gateway/h1.py)."""
    return {path: functools.partial(proxy, gw=gw, route=route) for path, route in ROUTES.items()}


async def proxy(ex: Exchange, gw: Gateway, route: Route) -> None:
    metrics = gw.metrics
    metrics.in_flight += 1
    start = time.perf_counter()
    try:
        if gw.telemetry is None:
            await _proxy(ex, gw, route)
        else:
            with gw.telemetry.call(route.kind, route.provider, ex.headers.get(TRACEPARENT),
                                   llm=True):
                await _proxy(ex, gw, route)
    finally:
        metrics.in_flight -= 1
        metrics.observe(route.kind, time.perf_counter() - start)


async def _proxy(ex: Exchange, gw: Gateway, route: Route) -> None:
    rid = new_request_id()
    secret = agent_key(ex.headers)
    key_hash = gw.keys.hash_of(secret) if secret else None
    if await gw.keys.refusal(key_hash, gw.clock()) is not None:
        # refused whatever the body says: answered without reading it
        refusal = await refuse_unread(gw, Ticket(rid, key_hash, Call(vendor=route.provider),
                                                 route.kind))
        if refusal is not None:
            await ex.send(*error_answer(refusal, route.flavor, rid))
            return
        rid = new_request_id()
    model: str | None = None
    try:
        approval = approval_id(ex.headers)
        tags = parse_tags(ex.headers.get(TAGS_HEADER))
        raw = await ex.body(gw.settings.max_body_bytes)
        body = parse_json_object(ex.content_type, raw)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        target = _target(gw, route, model, body)
        # the call is the provider's: its vendor scope, endpoints, metrics and errors
        if target.name != route.provider:
            route = dataclasses.replace(route, provider=target.name)
        price = _price(gw, target) if model else None
        betas = beta_names(ex.headers.get("anthropic-beta")) if route.flavor == "anthropic" \
            else ()
        est = estimate(route.kind, body, price, betas=betas,
                       tier_default=gw.settings.service_tier_defaults.get(route.provider))
    except OutlayError as err:
        ticket = Ticket(rid, key_hash, Call(vendor=route.provider, model=model), route.kind)
        refusal = await refuse_invalid(gw, ticket, err)
        await ex.send(*error_answer(refusal, route.flavor, rid))
        return

    def priced(name: str | None, price: ModelPrice | None, est: Estimate) -> Call:
        return Call(
            vendor=route.provider, model=name, model_resolved=price.name if price else None,
            free=bool(price and price.free), cost_micros=est.cost_micros,
            tokens=est.input_tokens + est.output_tokens, clamp=est.clamp,
            unpriced=est.unpriced)

    def on(name: str) -> tuple[Target, ModelPrice, Estimate] | None:
        """The call on another model of its provider (on_exceeded.downgrade_to)."""
        try:
            there = gw.routing.route(name, route.flavor, _agent_path(route))
        except RouteError:
            return None
        other = _price(gw, there)
        if other is None or there.name != route.provider:
            return None
        return there, other, estimate(route.kind, {**body, "model": name}, other, betas=betas,
                                      tier_default=gw.settings.service_tier_defaults.get(
                                          route.provider))

    def reprice(models: tuple[str, ...]) -> dict[str, Call]:
        return {name: priced(name, *found[1:]) for name in models if (found := on(name))}

    call = priced(model, price, est)
    path = f"{route.path}?{ex.query}" if ex.query else route.path
    ticket = Ticket(rid, key_hash, call, route.kind, gw.aliases, gw.free_models,
                    approval_id=approval, shape=request_shape("POST", path, raw),
                    may_wait=True, tags=tags, endpoints=gw.pacing.slots(route.provider),
                    may_queue=True)
    paused = False  # an endpoint answered 429 and was paused (tried again once only)
    while True:
        reservation = await admit(gw, ticket, reprice=reprice, gone=ex.gone)
        if not isinstance(reservation, Reservation):
            await ex.send(*error_answer(reservation, route.flavor, ticket.request_id))
            return
        # nothing sent (unreachable, circuit open) is tried on another endpoint; an upstream
        # 429 once more where another endpoint or the queue may take it; else the agent
        # gets the answer (502, or the provider's own 429)
        others = len(ticket.endpoints) > 1
        again = _AGAIN[others, not paused and (others or reservation.queues)]
        why = await _send(ex, gw, route, reservation, body, raw, model, target, price, est,
                          on, again)
        if why is None:
            return
        # released, not charged: decided again for the endpoints left
        paused = paused or why == "paused"
        ticket = replace(ticket, request_id=new_request_id(), endpoints=tuple(
            s for s in ticket.endpoints if s.scope != reservation.endpoint or not others))


async def _send(
    ex: Exchange, gw: Gateway, route: Route, reservation: Reservation, body: dict[str, Any],
    raw: bytes, model: str | None, target: Target, price: ModelPrice | None, est: Estimate,
    on: Callable[[str], tuple[Target, ModelPrice, Estimate] | None], again: Again,
) -> str | None:
    """Forward the admitted call and answer it; or, as `again` allows, not: why (released,
    nothing charged), for the call to be decided again."""
    ours = limit_headers(reservation.limits, gw.clock(), reservation.id)
    if reservation.queued_ms:
        ours["X-Outlay-Queued-Ms"] = str(reservation.queued_ms)
    downgraded = reservation.downgraded_to
    if downgraded is not None and (found := on(downgraded)):
        # a budget sent the call to a cheaper model: forwarded, priced and settled as that
        ours["X-Outlay-Downgraded"] = f"{model} -> {downgraded}"
        target, price, est = found
    renamed = model is not None and target.model != model
    if renamed:  # the provider's own name for the model: `groq/` removed, or the downgrade
        body = {**body, "model": target.model}
    patch = est.body_patch
    if reservation.clamped_to is not None and est.max_field is not None:
        # the call fits the budget only with a lower bound than the request's own default
        patch = {**patch, **clamp_patch(route.kind, body, est, reservation.clamped_to)}
        if est.max_field not in USES_FIELDS:
            ours["X-Outlay-Max-Tokens-Clamped"] = str(reservation.clamped_to)
    if est.max_field in USES_FIELDS and est.clamp is not None:
        # Outlay bounded the uses of server-side tools the request left open
        ours["X-Outlay-Max-Tool-Uses"] = str(reservation.clamped_to or est.clamp.limit)
    forward_body = orjson.dumps({**body, **patch}) if patch or renamed else raw
    stream = body.get("stream") is True
    outgoing = UpstreamRequest(
        provider=route.provider, method="POST", path=route.path,
        headers=request_headers(ex.headers), body=forward_body, stream=stream,
        query=ex.query, deployment=target.deployment,
        endpoint=None if reservation.endpoint is None
        else endpoint_index(reservation.endpoint),
    )
    task = asyncio.current_task(gw.loop)
    if task is not None:
        gw.streams.add(reservation.key.id, task, Flight(
            reservation.key.expires_at_ms, reservation.id, reservation.started_ms))
    try:
        hide_usage = stream and _usage_patched_in(est, body)
        return await _forward(ex, gw, route, reservation, outgoing, ours, price, est,
                              hide_usage, again)
    finally:
        if task is not None:
            gw.streams.remove(reservation.key.id, task)


def _target(gw: Gateway, route: Route, model: str | None, body: dict[str, Any]) -> Target:
    """The provider a call goes to, and its name for the model; 400 for a provider that
    does not serve the route."""
    try:
        target = gw.routing.route(model, route.flavor, _agent_path(route))
    except RouteError as exc:
        raise invalid_request(str(exc), "model") from None
    if route.kind == "openai.responses" and body.get("background") is True \
            and target.name != "openai":
        # a held response is polled, retrieved and cancelled at OpenAI (background.py)
        raise invalid_request(f"Background responses are served on provider 'openai' only, "
                              f"not '{target.name}'.", "background")
    return target


def _agent_path(route: Route) -> str:
    return route.path if route.path.startswith("/v1/") else f"/v1{route.path}"


def _price(gw: Gateway, target: Target) -> ModelPrice | None:
    spec = target.provider
    return provider_price(gw.prices, spec.name, target.model, target.price_key,
                          azure=spec.type == "azure", free=spec.free)


async def _forward(
    ex: Exchange, gw: Gateway, route: Route, reservation: Reservation,
    outgoing: UpstreamRequest, ours: dict[str, str], price: ModelPrice | None, est: Estimate,
    hide_usage: bool, again: Again = Again(),
) -> str | None:
    refusal = await cleared_to_send(gw, reservation)
    if refusal is not None:
        await ex.send(*error_answer(refusal, route.flavor, reservation.id, ours))
        return None
    settle = Settler(gw, reservation, route, price, est, wait=False)
    try:
        answer = await gw.upstream.send(outgoing)
    except UpstreamUnreachable as exc:
        await settle.finish(502, "void")
        if again.unreachable:
            return "unreachable"
        await ex.send(*error_answer(Unavailable(
            "upstream_unavailable", f"No {route.provider} endpoint could be reached: {exc}",
            status=502), route.flavor, reservation.id, ours))
        return None
    except asyncio.CancelledError:
        await settle.finish(0, "unsettled")
        raise
    except UpstreamBroken as broke:
        await settle.finish(502, "unsettled")
        await ex.send(*_broken(route, reservation, ours, broke))
        return None
    if answer.status == 429 and await paused(gw.store, gw.clock(), reservation, answer) \
            and again.paused:
        await answer.close()
        await settle.finish(429, "void")  # the provider did no work: nothing is owed
        return "paused"
    if outgoing.stream and 200 <= answer.status < 300:
        await _stream(ex, settle, answer, ours, UsageHider() if hide_usage else None)
    else:
        await _whole(ex, settle, answer, ours)
    return None


def _broken(
    route: Route, reservation: Reservation, ours: dict[str, str], exc: UpstreamBroken
) -> tuple[int, dict[str, str], bytes]:
    return error_answer(Unavailable(
        "upstream_unavailable", f"The {route.provider} connection broke: {exc}",
        status=502), route.flavor, reservation.id, ours)


async def _whole(
    ex: Exchange, settle: Settler, answer: UpstreamResponse, ours: dict[str, str]
) -> None:
    try:
        data = await answer.read()
    except asyncio.CancelledError:
        await settle.finish(answer.status, "unsettled")
        raise
    except UpstreamBroken as exc:
        # the request was sent and part of an answer came: charged in full, and the agent
        # gets a clear 502 rather than a server error
        await settle.finish(502, "unsettled")
        await ex.send(*_broken(settle.route, settle.reservation, ours, exc))
        return
    finally:
        await answer.close()
    if not 200 <= answer.status < 300:
        # the provider refused before doing any work: nothing is owed
        outcome: tuple[Settled, int, int] = ("void", 0, 0)
    else:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            document = None
        if settle.route.kind == "openai.responses" and (held := held_response(document)):
            # a background response: its reservation stays held until it finishes
            _hold(settle, held)
            await ex.send(answer.status, response_headers(answer.headers, ours), data)
            return
        outcome = settle.answer(document if isinstance(document, dict) else None, len(data))
        if outcome[0] in ("settled", "settled_estimate"):
            # ours are this answer's alone (each try of a call makes its own)
            ours["X-Outlay-Cost-USD"] = micros_to_usd(outcome[1])
    try:
        # the agent has its answer first: the money stays held until the settlement
        # commits, and a crash in between is charged in full by the reaper
        await ex.send(answer.status, response_headers(answer.headers, ours), data)
    finally:
        await settle.finish(answer.status, *outcome)


def _hold(settle: Settler, response_id: str) -> None:
    reservation = settle.reservation

    async def finish(status: int, document: dict[str, Any], size: int) -> None:
        await settle.finish(status, *settle.answer(document, size))

    lease_ms = int(settle.gw.settings.reservation_lease_s * 1000)
    settle.gw.background.hold(response_id, reservation.key.id,
                              reservation.started_ms + lease_ms, finish)


def _usage_patched_in(est: Estimate, body: dict[str, Any]) -> bool:
    """True when Outlay, not the agent, asked an OpenAI stream for its usage chunk."""
    if "stream_options" not in est.body_patch:
        return False
    asked = body.get("stream_options")
    return not (isinstance(asked, dict) and asked.get("include_usage") is True)


async def _stream(
    ex: Exchange, settle: Settler, answer: UpstreamResponse, ours: dict[str, str],
    hider: UsageHider | None,
) -> None:
    tap = UsageTap()
    chunks = answer.iter_chunks()
    try:
        await ex.start(answer.status, response_headers(answer.headers, ours))
        async for chunk in chunks:
            tap.feed(chunk)
            if hider is not None:
                chunk = hider.feed(chunk)
                if not chunk:
                    continue
            await ex.write(chunk)
        if hider is not None and (rest := hider.flush()):
            await ex.write(rest)
    except asyncio.CancelledError:
        # cut by the kill switch or the server stopping: what it used is unknown
        await settle.finish(answer.status, "unsettled")
        raise
    except UpstreamBroken:
        await settle.finish(answer.status, "unsettled")
        # cut the agent's connection too: ending the body cleanly would pass a truncated
        # answer off as a whole one
        ex.abort()
        return
    except ConnectionError:
        # the agent hung up: the provider bills what it generates, so its usage is read from
        # the rest of the stream, within bounds; else what it showed is counted
        settings = settle.gw.settings
        try:
            await read_on(chunks, tap, settings.abandoned_stream_s,
                          settings.abandoned_stream_bytes)
        finally:
            await answer.close()
            await settle.finish(answer.status, *settle.stream(tap))
        return
    finally:
        await answer.close()
    outcome = settle.stream(tap)
    try:
        await ex.end()  # as for whole answers: the agent first, then the books
    except ConnectionError:
        pass  # the agent hung up after the last event (SDKs do, at [DONE]): it has them all
    finally:
        await settle.finish(answer.status, *outcome)
