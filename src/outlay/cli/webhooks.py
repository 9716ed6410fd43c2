"""`outlay webhooks add|list|remove|rotate|enable|test|deliveries`: endpoints that receive
Outlay's events (SPEC §5), and what was delivered to them."""

from __future__ import annotations

from typing import Any

import click

from outlay.cli import params
from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import fields, table, when
from outlay.webhooks.events import ALL, EVENT_TYPES


def _status(endpoint: dict[str, Any]) -> str:
    return "disabled" if endpoint.get("disabled_at") else "active"


def _render_endpoint(endpoint: dict[str, Any]) -> str:
    pairs: list[tuple[str, object]] = [
        ("id", endpoint.get("id")),
        ("url", endpoint.get("url")),
        ("events", endpoint.get("events")),
        ("status", _status(endpoint)),
        ("created", when(endpoint.get("created_at"))),
    ]
    if endpoint.get("disabled_at"):
        pairs.append(("disabled", f"{when(endpoint['disabled_at'])}: "
                                  f"{endpoint.get('disabled_reason')}"))
    return fields(pairs)


def _render_added(answer: dict[str, Any]) -> str:
    return "\n".join([
        _render_endpoint(answer), "", f"secret:  {answer.get('secret')}", "",
        "This secret is shown only now. Give it to the receiver: it verifies the "
        "webhook-signature of every delivery with it (Standard Webhooks).",
    ])


def _render_endpoints(answer: dict[str, Any]) -> str:
    rows = ([e.get("id"), e.get("url"), e.get("events"), _status(e), e.get("pending"),
             e.get("failed"), when(e.get("created_at"))] for e in answer.get("webhooks", []))
    return table(["ID", "URL", "EVENTS", "STATUS", "PENDING", "FAILED", "CREATED"], rows,
                 "(no webhook endpoints)")


def _render_deliveries(answer: dict[str, Any]) -> str:
    rows = []
    for d in answer.get("deliveries", []):
        last = d.get("attempt_log") or [{}]
        rows.append([
            d.get("event_id"), d.get("type"), d.get("endpoint_id"), d.get("state"),
            d.get("attempts"), d.get("last_status") or d.get("last_error"),
            when(last[-1].get("at")), when(d.get("next_attempt_at")),
        ])
    return table(["EVENT", "TYPE", "ENDPOINT", "STATE", "ATTEMPTS", "LAST RESULT",
                  "LAST ATTEMPT", "NEXT ATTEMPT"], rows, "(no deliveries)")


def _overlap(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A duration, or 0 to stop signing with the old secret at once."""
    if value is not None and value.strip() in ("0", "0s", "0m", "0h", "0d"):
        return 0
    return params.duration(ctx, param, value)


@click.group()
def webhooks() -> None:
    """Endpoints that receive Outlay's events, signed per Standard Webhooks."""


@webhooks.command("add")
@click.argument("endpoint_url", metavar="URL")  # --url is the gateway's
@click.option("--event", "events", multiple=True, type=click.Choice([*EVENT_TYPES, ALL]),
              help="An event type to receive; repeatable [default: every event].")
@admin_command
def webhooks_add(admin: Admin, endpoint_url: str, events: tuple[str, ...]) -> None:
    """Register URL to receive events; its signing secret is printed once."""
    body: dict[str, Any] = {"url": endpoint_url}
    if events:
        body["events"] = list(events)
    admin.emit(admin.client.post("/webhooks", body), _render_added)


@webhooks.command("list")
@admin_command
def webhooks_list(admin: Admin) -> None:
    """List endpoints (never their secrets)."""
    admin.emit(admin.client.get("/webhooks"), _render_endpoints)


@webhooks.command("show")
@click.argument("endpoint_id")
@admin_command
def webhooks_show(admin: Admin, endpoint_id: str) -> None:
    """Show one endpoint."""
    admin.emit(admin.client.get(f"/webhooks/{segment(endpoint_id)}"), _render_endpoint)


@webhooks.command("remove")
@click.argument("endpoint_id")
@admin_command
def webhooks_remove(admin: Admin, endpoint_id: str) -> None:
    """Remove an endpoint; what it had not yet received is dropped."""
    answer = admin.client.request("DELETE", f"/webhooks/{segment(endpoint_id)}")
    admin.emit(answer, lambda _: f"Removed webhook endpoint {endpoint_id}.")


@webhooks.command("rotate")
@click.argument("endpoint_id")
@click.option("--overlap", callback=_overlap, metavar="DURATION",
              help="How long the old secret keeps signing beside the new one: 30m, 12h, "
                   "7d, or 0 [default: 24h].")
@admin_command
def webhooks_rotate(admin: Admin, endpoint_id: str, overlap: int | None) -> None:
    """Give an endpoint a new secret, printed once."""
    body = {} if overlap is None else {"overlap_seconds": overlap}
    answer = admin.client.post(f"/webhooks/{segment(endpoint_id)}/rotate", body)

    def render(a: dict[str, Any]) -> str:
        until = a.get("previous_secret_expires_at")
        old = (f"The old secret also signs until {when(until)}." if until
               else "The old secret no longer signs.")
        return (f"New secret for {a.get('id')}:  {a.get('secret')}\n\n{old} "
                "This secret is shown only now.")

    admin.emit(answer, render)


@webhooks.command("enable")
@click.argument("endpoint_id")
@admin_command
def webhooks_enable(admin: Admin, endpoint_id: str) -> None:
    """Deliver to a disabled endpoint again (a 410 Gone answer disables one)."""
    answer = admin.client.post(f"/webhooks/{segment(endpoint_id)}/enable")
    admin.emit(answer, lambda _: f"Webhook endpoint {endpoint_id} is enabled.")


@webhooks.command("test")
@click.argument("endpoint_id")
@admin_command
def webhooks_test(admin: Admin, endpoint_id: str) -> None:
    """Send a webhook.test event to one endpoint."""
    answer = admin.client.post(f"/webhooks/{segment(endpoint_id)}/test")
    admin.emit(answer, lambda a: (
        f"Queued test event {a.get('event_id')} for {endpoint_id}; see "
        f"`outlay webhooks deliveries {endpoint_id}` for how it went."))


@webhooks.command("deliveries")
@click.argument("endpoint_id", required=False)
@click.option("--event", "event_id", metavar="EVENT_ID", help="Only this event's deliveries.")
@click.option("--limit", type=click.IntRange(1, 1000), help="At most this many [default: 100].")
@admin_command
def webhooks_deliveries(
    admin: Admin, endpoint_id: str | None, event_id: str | None, limit: int | None
) -> None:
    """Deliveries, newest first: of one endpoint, one event, or all."""
    if endpoint_id is not None and event_id is None:
        answer = admin.client.get(f"/webhooks/{segment(endpoint_id)}/deliveries", limit=limit)
    else:
        answer = admin.client.get("/deliveries", endpoint_id=endpoint_id, event_id=event_id,
                                  limit=limit)
    admin.emit(answer, _render_deliveries)
