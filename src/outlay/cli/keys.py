"""`outlay keys create|list|show|update|revoke`: mint and manage agent keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import click

from outlay.cli import params
from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import fields, indent, moment, table, when
from outlay.cli.policies import policy_from_options, render_policy

C = TypeVar("C", bound=Callable[..., Any])


def _status(key: dict[str, Any]) -> str:
    if key.get("status"):
        return str(key["status"])
    if key.get("revoked") or key.get("revoked_at"):
        return "revoked"
    expires = moment(key.get("expires_at"))
    return "expired" if expires is not None and expires <= datetime.now(UTC) else "active"


def _render_key(key: dict[str, Any]) -> str:
    record = fields(
        [
            ("id", key.get("id")),
            ("agent", key.get("agent")),
            ("name", key.get("name")),
            ("status", _status(key)),
            ("labels", key.get("labels")),
            ("created", when(key.get("created_at"))),
            ("expires", when(key.get("expires_at"))),
        ]
    )
    policy = key.get("policy")
    return f"{record}\npolicy:\n{indent(render_policy(policy))}" if policy else record


def _render_keys(answer: dict[str, Any]) -> str:
    rows = (
        [
            key.get("id"),
            key.get("agent"),
            key.get("name"),
            _status(key),
            key.get("labels"),
            when(key.get("created_at")),
            when(key.get("expires_at")),
        ]
        for key in answer.get("keys", [])
    )
    return table(
        ["ID", "AGENT", "NAME", "STATUS", "LABELS", "CREATED", "EXPIRES"], rows, "(no keys)"
    )


def _render_created_key(answer: dict[str, Any]) -> str:
    created = []
    if answer.get("agent_created"):
        given = " with the configured default_policy" if answer.get("default_policy") else ""
        created = [f"Created agent {answer.get('agent')}{given} (it did not exist).", ""]
    return "\n".join(
        [
            *created,
            _render_key(answer),
            "",
            f"secret:  {answer.get('key')}",
            "",
            "This secret is shown only now: the gateway keeps only its hash. Store it safely.",
        ]
    )


def _policy_options(command: C) -> C:
    """--policy and --policy-file, shared by `keys create` and `keys update`."""
    command = click.option(
        "--policy", "policy_text", metavar="JSON", help="Policy for this key, as JSON or YAML."
    )(command)
    return click.option(
        "--policy-file",
        type=click.File("r"),
        help="Read the key's policy from a file (- for stdin).",
    )(command)


@click.group()
def keys() -> None:
    """Mint, list, show, update and revoke agent keys."""


@keys.command("create")
@click.option("--agent", required=True, help="Agent that owns the key (made if new).")
@click.option("--name", help="A name for the key, e.g. the run it serves.")
@click.option(
    "--ttl",
    callback=params.duration,
    metavar="DURATION",
    help="Expire after this long: 3600, 90s, 30m, 12h, 7d.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    callback=params.labels,
    metavar="KEY=VALUE",
    help="Repeatable.",
)
@_policy_options
@admin_command
def keys_create(
    admin: Admin,
    agent: str,
    name: str | None,
    ttl: int | None,
    labels: dict[str, str],
    policy_file: IO[str] | None,
    policy_text: str | None,
) -> None:
    """Mint a key for an agent; its secret is printed once."""
    body: dict[str, Any] = {"agent": agent}
    if name is not None:
        body["name"] = name
    if ttl is not None:
        body["ttl_seconds"] = ttl
    if labels:
        body["labels"] = labels
    policy = policy_from_options(policy_file, policy_text)
    if policy is not None:
        body["policy"] = policy
    admin.emit(admin.client.post("/keys", body), _render_created_key)


@keys.command("list")
@click.option("--agent", help="Only the keys of this agent.")
@click.option("--limit", type=click.IntRange(1, 10_000),
              help="Only the newest this many, newest first.")
@click.option("--active", is_flag=True, help="Only keys neither revoked nor expired.")
@admin_command
def keys_list(admin: Admin, agent: str | None, limit: int | None, active: bool) -> None:
    """List keys (never their secrets), oldest first."""
    admin.emit(admin.client.get("/keys", agent=agent, limit=limit,
                                active="true" if active else None), _render_keys)


@keys.command("show")
@click.argument("key_id")
@admin_command
def keys_show(admin: Admin, key_id: str) -> None:
    """Show one key."""
    admin.emit(admin.client.get(f"/keys/{segment(key_id)}"), _render_key)


@keys.command("update")
@click.argument("key_id")
@click.option("--name", help="New name.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    callback=params.labels,
    metavar="KEY=VALUE",
    help="Repeatable.",
)
@_policy_options
@admin_command
def keys_update(
    admin: Admin,
    key_id: str,
    name: str | None,
    labels: dict[str, str],
    policy_file: IO[str] | None,
    policy_text: str | None,
) -> None:
    """Change a key's name, labels or policy."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if labels:
        body["labels"] = labels
    policy = policy_from_options(policy_file, policy_text)
    if policy is not None:
        body["policy"] = policy
    if not body:
        raise click.UsageError("nothing to update: give --name, --label or a policy")
    admin.emit(admin.client.patch(f"/keys/{segment(key_id)}", body), _render_key)


@keys.command("revoke")
@click.argument("key_id")
@admin_command
def keys_revoke(admin: Admin, key_id: str) -> None:
    """Revoke a key; every replica refuses it within a second."""
    answer = admin.client.post(f"/keys/{segment(key_id)}/revoke")
    admin.emit(answer, lambda _: f"Revoked key {key_id}.")
