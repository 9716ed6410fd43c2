"""Admin access commands: admin tokens (roles and scopes), the admin audit trail, which token
is in use (`whoami`), and re-sealing stored secrets under a new OUTLAY_SECRET_KEY."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import click

from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import NONE, table, when

ROLES = ("viewer", "operator", "admin")


@click.group("admin-tokens")
def admin_tokens() -> None:
    """Make, list and revoke admin tokens with a role (viewer, operator, admin) and scopes."""


@admin_tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="viewer reads; operator also mints keys, sets policies, decides "
                   "approvals; admin does everything.")
@click.option("--scope", "scopes", multiple=True, metavar="group:<name>|agent:<name>",
              help="Act only on these groups or agents (repeatable); none: every fleet.")
@admin_command
def tokens_create(admin: Admin, name: str, role: str, scopes: tuple[str, ...]) -> None:
    """Make an admin token; its secret is printed only now."""
    answer = admin.client.post("/admin-tokens",
                               {"name": name, "role": role, "scopes": list(scopes)})
    admin.emit(answer, lambda a: (
        f"Created admin token {a.get('id')} ({a.get('role')}, "
        f"{', '.join(a.get('scopes') or []) or 'every fleet'}).\n"
        f"Token (shown once): {a.get('token')}"))


@admin_tokens.command("list")
@admin_command
def tokens_list(admin: Admin) -> None:
    """List admin tokens (never their secrets)."""
    admin.emit(admin.client.get("/admin-tokens"), lambda a: table(
        ["ID", "NAME", "ROLE", "SCOPES", "CREATED", "REVOKED"],
        ([t.get("id"), t.get("name"), t.get("role"), ", ".join(t.get("scopes") or []) or NONE,
          when(t.get("created_at")), when(t.get("revoked_at"))]
         for t in a.get("admin_tokens", [])), "(no admin tokens)"))


@admin_tokens.command("revoke")
@click.argument("token_id")
@admin_command
def tokens_revoke(admin: Admin, token_id: str) -> None:
    """Revoke an admin token: every replica refuses it from now."""
    answer = admin.client.post(f"/admin-tokens/{segment(token_id)}/revoke", {})
    admin.emit(answer, lambda a: f"Revoked admin token {a.get('id')} ({a.get('name')}).")


def _short(value: Any) -> str:
    if value is None:
        return NONE
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


@click.command("admin-audit")
@click.option("--target", help="Only writes on this target: key:<id>, agent:<name>, "
                               "group:<name>, policy:<scope>, approval:<id>, webhook:<id>, "
                               "admin-token:<id>.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@admin_command
def admin_audit(admin: Admin, target: str | None, limit: int) -> None:
    """Admin writes, newest first: who, when, what, and the value before and after."""
    admin.emit(admin.client.get("/admin-audit", target=target, limit=limit), lambda a: table(
        ["TIME", "TOKEN", "ACTION", "TARGET", "BEFORE", "AFTER"],
        ([when(e.get("time")), e.get("token_name"), e.get("action"), e.get("target"),
          _short(e.get("before")), _short(e.get("after"))] for e in a.get("entries", [])),
        "(no admin writes)"))


@click.command()
@admin_command
def whoami(admin: Admin) -> None:
    """The admin token in use: its name, role and scopes."""
    admin.emit(admin.client.get("/whoami"), lambda a: (
        f"{a.get('name')}: role {a.get('role')}, "
        f"{'scopes ' + ', '.join(a['scopes']) if a.get('scopes') else 'every fleet'}"))


@click.command("rotate-secret-key")
@click.option("--config", type=click.Path(dir_okay=False),
              help="YAML config file [default: $OUTLAY_CONFIG, else ./outlay.yaml if present].")
@click.option("--state", help="State store URL [default: the config's `state`].")
@click.option("--database", help="PostgreSQL URL beside a redis state.")
def rotate_secret_key(config: str | None, state: str | None, database: str | None) -> None:
    """Seal every stored secret again with OUTLAY_SECRET_KEY.

    Set OUTLAY_SECRET_KEY to the new key and OUTLAY_OLD_SECRET_KEYS to the key(s) that
    sealed what is stored (nothing, when secrets are kept in clear); the gateways read
    both until restarted with the new key alone. Unset OUTLAY_SECRET_KEY and give the old
    key in OUTLAY_OLD_SECRET_KEYS to store the secrets in clear again."""
    from outlay.gateway.app import sealer_for
    from outlay.settings import ConfigError, load_settings
    from outlay.state.access import AccessStore
    from outlay.state.base import StateError
    from outlay.state.open import store_from_url

    try:
        settings = load_settings(config, os.environ, state=state, database=database)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sealer = sealer_for(settings)

    async def reseal() -> int:
        store = store_from_url(settings.state, database=settings.database, sealer=sealer)
        await store.open()
        try:
            if not isinstance(store, AccessStore):
                raise click.ClickException("this state backend keeps no secrets")
            return await store.reseal_secrets(sealer)
        finally:
            await store.close()

    try:
        count = asyncio.run(reseal())
    except (StateError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    how = "sealed with OUTLAY_SECRET_KEY" if sealer.sealing else "kept in clear"
    click.echo(f"{count} stored secret(s) now {how}.")


COMMANDS = [admin_tokens, admin_audit, whoami, rotate_secret_key]
