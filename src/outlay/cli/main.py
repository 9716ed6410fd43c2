"""The `outlay` command group: `serve` runs the gateway, `demo` shows it offline."""

from __future__ import annotations

import os

import click
import httpx

from outlay.cli.access import COMMANDS as ACCESS_COMMANDS
from outlay.cli.admin import COMMANDS
from outlay.cli.catalogue import catalogue
from outlay.cli.client import AdminClient, CliHooks
from outlay.cli.demo import run_demo, simulated_gateway
from outlay.cli.policies import policy
from outlay.cli.webhooks import webhooks
from outlay.settings import ConfigError, load_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Outlay: rate limits and USD budgets for the paid APIs your agents call.

    Admin commands talk to a running gateway: set --url (or OUTLAY_URL) and --token
    (or OUTLAY_ADMIN_TOKEN). They print tables; add --json for scripts.
    """


SERVE_EPILOG = """\b
Environment (overridden by the flags above):
  OUTLAY_CONFIG, OUTLAY_LISTEN (host:port), OUTLAY_STATE, OUTLAY_DATABASE,
  OUTLAY_ADMIN_TOKEN, OUTLAY_WORKERS, OUTLAY_MAX_BODY_BYTES,
  OUTLAY_SIMULATED_LATENCY_MS, OUTLAY_RESERVATION_LEASE_S, OUTLAY_HEADER_TIMEOUT_S,
  OUTLAY_IDLE_TIMEOUT_S, OUTLAY_BODY_TIMEOUT_S, OUTLAY_MAX_CONNECTIONS,
  OUTLAY_METRICS_TOKEN, OUTLAY_SECRET_KEY, OUTLAY_OLD_SECRET_KEYS;
  OPENAI_API_KEY / ANTHROPIC_API_KEY for a provider the config file leaves out.
"""


@main.command(epilog=SERVE_EPILOG)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="YAML config file [default: $OUTLAY_CONFIG, else ./outlay.yaml if present].",
)
@click.option("--state", help="State store URL: sqlite:///outlay.db or redis://host:6379/0.")
@click.option("--database", help="Durable store beside a redis state: postgresql://…")
@click.option("--host", help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on [default: 8800].")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes [default: 1].")
def serve(
    config: str | None,
    state: str | None,
    database: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
) -> None:
    """Run the gateway. Flags override OUTLAY_* variables, which override the config file."""
    try:
        settings = load_settings(
            config,
            os.environ,
            state=state,
            database=database,
            host=host,
            port=port,
            workers=workers,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    # Imported here so that admin commands start fast and never load the server stack.
    from outlay.gateway.server import serve as run_gateway

    run_gateway(settings)


@main.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="YAML config file [default: $OUTLAY_CONFIG, else ./outlay.yaml if present].",
)
@click.option("--database", help="PostgreSQL URL [default: the config's `database`].")
def migrate(config: str | None, database: str | None) -> None:
    """Bring the PostgreSQL schema up to date (`outlay serve` also does it on start)."""
    try:
        settings = load_settings(config, os.environ, database=database)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.database:
        raise click.ClickException(
            "no PostgreSQL database to migrate: pass --database postgresql://… "
            "(or set OUTLAY_DATABASE, or `database:` in the config)")
    import asyncio

    from outlay.state.base import StateError
    from outlay.state.postgres.schema import migrate as apply_migrations

    try:
        applied = asyncio.run(apply_migrations(settings.database))
    except StateError as exc:
        raise click.ClickException(str(exc)) from None
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))}")
    else:
        click.echo("the schema is up to date")


@main.command()
@click.option("--model", default="gpt-4o-mini", show_default=True, help="Model to call.")
@click.option("--calls", type=click.IntRange(min=1), default=60, show_default=True)
def demo(model: str, calls: int) -> None:
    """Watch a budget stop an agent, offline, on a simulated gateway."""
    hooks = click.get_current_context().find_object(CliHooks) or CliHooks()
    click.echo("Starting a simulated gateway (no real provider is called)...")
    with simulated_gateway() as (url, token):
        click.echo(f"Gateway up at {url}.")
        admin = AdminClient(url, token, transport=hooks.transport)
        with httpx.Client(base_url=url, transport=hooks.transport, timeout=30.0) as gateway:
            run_demo(admin, gateway, model=model, calls=calls)
    click.echo("Gateway stopped; its scratch state is deleted.")


main.add_command(policy)
main.add_command(catalogue)
main.add_command(webhooks)
for command in COMMANDS + ACCESS_COMMANDS:
    main.add_command(command)


if __name__ == "__main__":
    main(prog_name="outlay")
