"""The application factory: one explicit Gateway per worker, routes, and upkeep tasks."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from outlay.admin.routes import add_admin_routes
from outlay.gateway.admission import new_request_id
from outlay.gateway.background_routes import background_routes
from outlay.gateway.context import GATEWAY, Gateway
from outlay.gateway.errors import Flavor, error_response
from outlay.gateway.exchange import AiohttpExchange
from outlay.gateway.handoff import watch_requests
from outlay.gateway.health import HealthEvents
from outlay.gateway.llm import proxy
from outlay.gateway.llm_routes import ROUTES, Route
from outlay.gateway.metrics import CONTENT_TYPE, Snapshots, exposition, keep_writing
from outlay.gateway.models import list_models, retrieve_model
from outlay.gateway.stop import STORE_CLOSE_S
from outlay.gateway.vendor_errors import vendor_refusal
from outlay.gateway.vendors import vendor_proxy
from outlay.gateway.wiring import (
    upstream_from_settings,
    vendor_accounts,
    vendor_headers_of,
    vendor_pricing,
    vendors_from_settings,
)
from outlay.policy.errors import AuthError, OutlayError
from outlay.policy.money import micros_to_usd
from outlay.pricing.table import PriceTable, load_table
from outlay.settings import Settings
from outlay.state.base import StateError, StateStore
from outlay.state.clock import wall_ms
from outlay.state.open import store_from_url
from outlay.state.sealing import Sealer
from outlay.telemetry.export import Exporter
from outlay.ui import add_ui_routes
from outlay.upstream.base import Upstream
from outlay.webhooks.delivery import attach_deliverer, delivery_settings

log = logging.getLogger("outlay")

HEARTBEAT_S = 1.0
KILL_SWITCH_S = 0.25  # revoked keys' streams are cut within this, well inside SPEC's 1 s


def _route(route: Route) -> Callable[[web.Request], object]:
    async def handler(request: web.Request) -> web.StreamResponse:
        ex = AiohttpExchange(request)
        await proxy(ex, request.app[GATEWAY], route)
        if ex.response is None:
            raise RuntimeError(f"{route.kind}: the route ended without an answer")
        return ex.response

    return handler


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and wrong methods answer in the error shape the client expects."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/admin/"):
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "invalid_request")
        flavor: Flavor = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        error = OutlayError(code, f"{exc.reason}: {request.method} {request.path}")
        error.status = exc.status
        error.error_type = "not_found_error" if flavor == "anthropic" and exc.status == 404 else (
            "invalid_request_error")
        vendor = request.path.split("/")[2] if request.path.startswith("/vendors/") else None
        response = (error_response(error, flavor, new_request_id()) if vendor is None
                    else vendor_refusal(error, vendor, new_request_id()))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def bearer_matches(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    # bytes: a header value may hold any byte (aiohttp keeps them as surrogates)
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode())


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    token = gw.settings.metrics_token
    if token is not None and not bearer_matches(request.headers.get("Authorization"), token):
        refusal = AuthError("invalid_metrics_token", "GET /metrics needs the metrics token "
                            "(Authorization: Bearer <server.metrics_token>).")
        return error_response(refusal, "openai", new_request_id(),
                              {"WWW-Authenticate": 'Bearer realm="metrics"'})
    try:
        budgets = await gw.store.budgets()
    except StateError:
        budgets = None  # the counts still answer; outlay_state_up says the store did not
    return web.Response(body=exposition(gw.metrics, gw.snapshots, budgets).encode(),
                        headers={"Content-Type": CONTENT_TYPE})


async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        await gw.store.heartbeat()
    except StateError as exc:
        return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
    return web.json_response({"status": "ready"})


def store_for(settings: Settings) -> StateStore:
    """The state backend the settings name (unopened)."""
    return store_from_url(settings.state, database=settings.database,
                          lease_s=settings.reservation_lease_s,
                          approval_ttl_s=settings.approval_ttl, sealer=sealer_for(settings))


def sealer_for(settings: Settings) -> Sealer:
    """What seals the webhook secrets the store keeps: OUTLAY_SECRET_KEY, when set."""
    return Sealer(settings.secret_key, settings.old_secret_keys)


def create_app(
    settings: Settings,
    *,
    store: StateStore | None = None,
    upstream: Upstream | None = None,
    vendors: Upstream | None = None,
    prices: PriceTable | None = None,
    clock: Callable[[], int] = wall_ms,
    metrics_dir: str | None = None,
) -> web.Application:
    """Build a worker's application. Store and upstreams are injectable for tests;
    `metrics_dir` is where the workers of one server share their counts."""
    health = HealthEvents()
    gw = Gateway(
        settings=settings,
        store=store or store_for(settings),
        upstream=upstream or upstream_from_settings(settings, health),
        prices=prices or load_table(settings.prices, settings.price_snapshot),
        clock=clock,
        vendors=vendors or vendors_from_settings(settings),
        vendor_pricing=vendor_pricing(settings.vendors),
        vendor_accounts=vendor_accounts(settings),
        vendor_headers=vendor_headers_of(settings),
        snapshots=None if metrics_dir is None else Snapshots(metrics_dir),
        telemetry=None if settings.telemetry is None else Exporter(settings.telemetry),
        pause_before_forward_s=float(os.environ.get("OUTLAY_TEST_PAUSE_BEFORE_FORWARD_S")
                                     or 0),
    )
    health.store = gw.store
    app = web.Application(client_max_size=settings.max_body_bytes + 1,
                          middlewares=[watch_requests(settings.body_timeout_s), json_errors])
    app[GATEWAY] = gw
    for path, route in ROUTES.items():
        app.router.add_post(path, _route(route))  # type: ignore[arg-type]
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id}", retrieve_model)
    background_routes(app)
    app.router.add_route("*", "/vendors/{vendor}/{path:.*}", vendor_proxy)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_admin_routes(app)
    add_ui_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    # after _lifecycle: runs while the store is open
    attach_deliverer(app, gw.store, clock, delivery_settings(settings), step=gw.stop.step)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    gw.loop = asyncio.get_running_loop()
    await gw.store.open()
    tasks = [asyncio.create_task(_upkeep(gw)), asyncio.create_task(_kill_switch(gw))]
    if gw.snapshots is not None:
        tasks.append(asyncio.create_task(keep_writing(gw.snapshots, gw.metrics)))
    if gw.telemetry is not None:
        gw.telemetry.start()
    yield
    stop = gw.stop
    stop.begin()
    gw.queue.close()  # calls still waiting are decided now (gateway/queue.py)
    for task in tasks:
        task.cancel()
    await stop.step("upkeep", asyncio.gather(*tasks, return_exceptions=True))
    await stop.step("background responses", gw.background.close())
    if gw.telemetry is not None:
        await stop.step("telemetry", gw.telemetry.close())
    await stop.step("upstream connections", gw.upstream.close())
    await stop.step("vendor connections", gw.vendors.close())
    # its queued settlements are written first thing: never cut before it begins
    await stop.step("state store", gw.store.close(), at_least_s=STORE_CLOSE_S)


async def _upkeep(gw: Gateway) -> None:
    """Heartbeat (so others know this worker lives) and reap what dead workers held."""
    while True:
        try:
            await gw.store.heartbeat()
            # a call still running past half its lease keeps its reservation held
            due = gw.streams.due(gw.clock(), int(gw.settings.reservation_lease_s * 1000))
            if due:
                await gw.store.renew(due)
            for line in await gw.store.reap():
                gw.metrics.reaped_from(line)
                log.warning("reaped %s: %d reservations charged in full ($%s), %d voided "
                            "(never sent, or answered 503 before they were made)",
                            line.worker, line.charged, micros_to_usd(line.micros), line.voided)
        except StateError as exc:
            log.error("state store unavailable during upkeep: %s", exc)
        await asyncio.sleep(HEARTBEAT_S)


async def _kill_switch(gw: Gateway) -> None:
    """Cut the streams of keys revoked elsewhere (another worker, the admin API) or expired."""
    while True:
        await asyncio.sleep(KILL_SWITCH_S)
        gw.streams.cut_expired(gw.clock())
        live = list(gw.streams.by_key)
        if not live:
            continue
        try:
            for key_id in await gw.store.revoked_among(live):
                gw.streams.cut(key_id)
        except StateError as exc:
            log.error("state store unavailable for the kill switch: %s", exc)
