"""`outlay policy set|update|show|list|delete`, and reading a policy from a file, text or flags.

Policies are checked here with the same parser the gateway uses, so a typo is reported
before anything is sent.
"""

from __future__ import annotations

import re
from typing import IO, Any

import click
import yaml

from outlay.cli.client import Admin, admin_command, segment
from outlay.cli.output import indent
from outlay.policy.model import PERIODS, PolicyError, parse_policy, parse_scope


def load_policy(text: str, source: str) -> dict[str, Any]:
    """Parse JSON or YAML policy text (JSON is YAML) and validate it."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"not valid JSON or YAML: {exc}", param_hint=source) from None
    return checked({} if raw is None else raw, source)


def checked(raw: Any, source: str) -> dict[str, Any]:
    """``raw`` if it is a valid policy; a BadParameter naming ``source`` otherwise."""
    try:
        parse_policy(raw)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint=source) from None
    assert isinstance(raw, dict)  # parse_policy accepts only objects
    return raw


def scope_argument(value: str) -> str:
    try:
        return parse_scope(value)
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="SCOPE") from None


def parse_budget_flag(text: str) -> dict[str, Any]:
    """``[out:]USD[/PERIOD[/MODE[/WARN_AT]]]``, e.g. ``50/month/hard/0.8``; period month,
    mode hard; ``out:`` makes it a money-out budget (flow out: refunds, transfers, payouts)."""
    flow, sep, rest = text.strip().partition(":")
    if not sep:
        flow, rest = "spend", text.strip()
    parts = rest.split("/")
    if flow not in ("spend", "out") or not 1 <= len(parts) <= 4 or not parts[0]:
        raise click.BadParameter(
            f"{text!r}: use [out:]USD[/PERIOD[/MODE[/WARN_AT]]], e.g. 50/month/hard or "
            "out:50/day",
            param_hint="--budget",
        )
    budget: dict[str, Any] = {"usd": parts[0].lstrip("$")}
    if flow == "out":
        budget["flow"] = "out"
    if len(parts) > 1:
        budget["period"] = parts[1]
    if len(parts) > 2:
        budget["mode"] = parts[2]
    if len(parts) > 3:
        try:
            budget["warn_at"] = float(parts[3])
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: WARN_AT must be a fraction such as 0.8", param_hint="--budget"
            ) from None
    return budget


def parse_loop_guard_flag(text: str | None) -> dict[str, int] | None:
    """``MAX_REPEATS/WINDOW_S``, e.g. ``20/60``: the same request at most 20 times a minute
    (the gateway checks the bounds and names the field it refuses)."""
    if text is None:
        return None
    repeats, sep, window = text.strip().partition("/")
    if not sep or not repeats.strip().isdigit() or not window.strip().isdigit():
        raise click.BadParameter(f"{text!r}: use MAX_REPEATS/WINDOW_S, e.g. 20/60",
                                 param_hint="--loop-guard")
    return {"max_repeats": int(repeats), "window_s": int(window)}


def per_vendor(entries: tuple[str, ...], flag: str) -> dict[str, list[str]]:
    """``VENDOR=ENTRY`` flags as the policy's mapping of vendor to entries."""
    out: dict[str, list[str]] = {}
    for text in entries:
        vendor, sep, entry = text.partition("=")
        if not sep or not vendor.strip() or not entry.strip():
            raise click.BadParameter(f"{text!r}: use VENDOR=ENTRY, e.g. "
                                     "'stripe=POST /v1/payment_intents'", param_hint=flag)
        out.setdefault(vendor.strip(), []).append(entry.strip())
    return out


def policy_from_options(policy_file: IO[str] | None, policy_text: str | None) -> Any:
    """The policy given by --policy-file or --policy, or None when neither was given."""
    if policy_file is not None and policy_text is not None:
        raise click.UsageError("give either --policy-file or --policy, not both")
    if policy_file is not None:
        return load_policy(policy_file.read(), "--policy-file")
    if policy_text is not None:
        return load_policy(policy_text, "--policy")
    return None


_DECIMAL = re.compile(r"^\d+(\.\d+)?$")


class _Usd(str):
    """A USD amount sent by the API as an exact decimal string."""

    __slots__ = ()


class _PolicyDumper(yaml.SafeDumper):
    """Writes USD amounts without quotes, as a person would write them in outlay.yaml."""


def _represent_usd(dumper: yaml.SafeDumper, value: _Usd) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:float" if "." in value else "tag:yaml.org,2002:int"
    return dumper.represent_scalar(tag, str(value))  # the text itself: no precision is lost


_PolicyDumper.add_representer(_Usd, _represent_usd)


def _mark_amounts(policy: dict[str, Any]) -> dict[str, Any]:
    budgets = policy.get("budgets")
    if not isinstance(budgets, list):
        return policy
    marked = [
        {**b, "usd": _Usd(b["usd"])}
        if isinstance(b, dict) and isinstance(b.get("usd"), str) and _DECIMAL.match(b["usd"])
        else b
        for b in budgets
    ]
    return {**policy, "budgets": marked}


def render_policy(policy: Any) -> str:
    """A stored policy as the YAML a person would write in outlay.yaml, under a comment
    naming the configuration file when that file manages it."""
    managed_by = None
    if isinstance(policy, dict) and "scope" in policy:
        # The API answers {"scope", "managed_by", ...policy}; the scope is already on the
        # command line.
        managed_by = policy.get("managed_by")
        policy = policy.get("policy", {k: v for k, v in policy.items()
                                       if k not in ("scope", "managed_by")})
    if not policy:
        return "(no policy)"
    if isinstance(policy, dict):
        policy = _mark_amounts(policy)
    text: str = yaml.dump(policy, Dumper=_PolicyDumper, sort_keys=False, default_flow_style=False)
    if managed_by:
        text = f"# managed by {managed_by}: change it there (read-only here)\n{text}"
    return text.rstrip()


@click.group()
def policy() -> None:
    """Set, show, list and delete policies.

    A scope is key:ID, agent:NAME, group:NAME, vendor:NAME or global.
    """


def _policy_fields(command: Any) -> Any:
    """The flags that give policy fields, shared by `policy set` and `policy update`."""
    for option in reversed([
        click.argument("scope", callback=lambda _ctx, _param, value: scope_argument(value)),
        click.argument("inline", required=False, metavar="[POLICY]"),
        click.option("--file", "policy_file", type=click.File("r"),
                     help="Read the policy (YAML/JSON)."),
        click.option("--rpm", type=click.IntRange(min=0), help="Requests per rolling minute."),
        click.option("--rph", type=click.IntRange(min=0), help="Requests per rolling hour."),
        click.option("--rpd", type=click.IntRange(min=0), help="Requests per rolling day."),
        click.option("--tpm", type=click.IntRange(min=0), help="LLM tokens per rolling minute."),
        click.option("--max-parallel", type=click.IntRange(min=0),
                     help="Calls in flight at once."),
        click.option("--budget", "budgets", multiple=True,
                     help=f"[out:]USD[/PERIOD[/MODE[/WARN_AT]]], repeatable; PERIOD one of "
                     f"{', '.join(PERIODS)}; out: caps money moved out (refunds, transfers, "
                     "payouts) instead of spend."),
        click.option("--model", "models", multiple=True,
                     help="Allowed model (name, alias, glob)."),
        click.option("--vendor", "vendors", multiple=True, help="Allowed vendor, repeatable."),
        click.option("--free-models-only", is_flag=True, default=None,
                     help="Allow only free models."),
        click.option("--on-breach", type=click.Choice(["block", "alert", "require_approval"])),
        click.option("--on-rate-limit", type=click.Choice(["reject", "queue"]),
                     help="queue: a call over a rate window waits in the gateway for room "
                     "instead of a 429 at once."),
        click.option("--queue-max-wait", "queue_max_wait_s", type=float, metavar="SECONDS",
                     help="How long a queued call waits at most (default 30, at most 600)."),
        click.option("--clamp-max-tokens", type=click.IntRange(min=1), metavar="FLOOR",
                     help="Lower the maximum output of LLM calls to fit the hard budgets "
                     "down to FLOOR tokens (default 256; a policy file's "
                     "`clamp_max_tokens: false` refuses instead)."),
        click.option("--loop-guard", metavar="MAX_REPEATS/WINDOW_S",
                     callback=lambda _ctx, _param, value: parse_loop_guard_flag(value),
                     help="Refuse the same request (key, route, body) admitted MAX_REPEATS "
                     "times within WINDOW_S seconds, e.g. 20/60 (429 loop_detected)."),
        click.option("--on-loop", type=click.Choice(["refuse", "revoke"]),
                     help="What a loop does: refuse its calls (default) or revoke its key."),
        click.option("--allow-unpriced", is_flag=True,
                     help="Allow models in --model that are neither priced nor aliases."),
        click.option("--operation", "operations", multiple=True, metavar="VENDOR=METHOD PATH",
                     help="An operation the scope may call on VENDOR, e.g. "
                     "'stripe=POST /v1/payment_intents'; repeatable."),
        click.option("--account", "accounts", multiple=True, metavar="VENDOR=ACCOUNT",
                     help="A connected account the scope may name, e.g. stripe=acct_1Nabc; "
                     "repeatable."),
        click.option("--destination", "destinations", multiple=True, metavar="VENDOR=WHERE",
                     help="A country (twilio=US) or recipient pattern (resend=*@example.com) "
                     "the scope may send to; repeatable."),
    ]):
        command = option(command)
    return command


def _given_policy(inline: str | None, policy_file: IO[str] | None, budgets: tuple[str, ...],
                  models: tuple[str, ...], vendors: tuple[str, ...],
                  limits: dict[str, Any]) -> dict[str, Any]:
    lists = {name: limits.pop(name, ()) for name in ("operations", "accounts", "destinations")}
    from_flags: dict[str, Any] = {
        name: value for name, value in limits.items() if value is not None
    }
    for name, flag in (("operations", "--operation"), ("accounts", "--account"),
                       ("destinations", "--destination")):
        if lists[name]:
            from_flags[name] = per_vendor(lists[name], flag)
    if budgets:
        from_flags["budgets"] = [parse_budget_flag(text) for text in budgets]
    if models:
        from_flags["models"] = list(models)
    if vendors:
        from_flags["vendors"] = list(vendors)
    given = [bool(from_flags), inline is not None, policy_file is not None]
    if sum(given) != 1:
        raise click.UsageError("give the policy one way: --file, an inline POLICY, or flags")
    if policy_file is not None:
        raw = load_policy(policy_file.read(), "--file")
    elif inline is not None:
        raw = load_policy(inline, "POLICY")
    else:
        raw = checked(from_flags, "flags")
    return raw


def _removed_text(name: str, value: Any) -> str:
    if name == "budgets" and isinstance(value, list):
        return "budgets (" + ", ".join(
            f"${b.get('usd')}/{b.get('period')} {b.get('mode')}"
            + (" out" if b.get("flow") == "out" else "") for b in value) + ")"
    return f"{name} ({value})"


def render_stored(scope: str, stored: dict[str, Any]) -> str:
    """The stored policy, then what the change removed and any warning."""
    policy = {k: v for k, v in stored.items() if k not in ("removed", "warning")}
    lines = [f"Policy of {scope}:", render_policy(policy)]
    removed = stored.get("removed") or {}
    if removed:
        lines.append("Removed: " + "; ".join(
            _removed_text(name, value) for name, value in removed.items()))
    if stored.get("warning"):
        lines.append(f"Warning: {stored['warning']}")
    return "\n".join(lines)


def _flags(allow_unpriced: bool, yes: bool = False) -> dict[str, Any]:
    return {"allow_unpriced": "true" if allow_unpriced else None,
            "drop_budgets": "true" if yes else None}


@policy.command("set")
@_policy_fields
@click.option("--yes", is_flag=True, help="Remove budgets the new policy does not name.")
@admin_command
def policy_set(
    admin: Admin,
    scope: str,
    inline: str | None,
    policy_file: IO[str] | None,
    budgets: tuple[str, ...],
    models: tuple[str, ...],
    vendors: tuple[str, ...],
    allow_unpriced: bool,
    yes: bool,
    **limits: Any,
) -> None:
    """Replace the whole policy of SCOPE (what it does not name is removed, and said).

    The policy is given as a file (--file), as inline JSON/YAML, or through flags; a
    budget the new policy drops is refused without --yes (`policy update` keeps it):

    \b
      outlay policy set agent:bot --rpm 60 --budget 50/month/hard/0.8 --model gpt-4o-mini
      outlay policy set agent:payer --operation 'stripe=POST /v1/payment_intents'
      outlay policy set agent:bot --loop-guard 20/60 --on-loop revoke
      outlay policy set agent:bot --rpm 60 --on-rate-limit queue --queue-max-wait 30
      outlay policy set global '{"budgets": [{"usd": 1000, "period": "month"}]}'
    """
    body = _given_policy(inline, policy_file, budgets, models, vendors, limits)
    answer = admin.client.request("PUT", f"/policies/{segment(scope)}", body=body,
                                  params=_flags(allow_unpriced, yes))
    admin.emit(answer, lambda stored: render_stored(scope, stored))


@policy.command("update")
@_policy_fields
@admin_command
def policy_update(
    admin: Admin,
    scope: str,
    inline: str | None,
    policy_file: IO[str] | None,
    budgets: tuple[str, ...],
    models: tuple[str, ...],
    vendors: tuple[str, ...],
    allow_unpriced: bool,
    **limits: Any,
) -> None:
    """Change only the fields given for SCOPE; the rest of its policy is kept:

    \b
      outlay policy update agent:bot --rpm 120
    """
    body = _given_policy(inline, policy_file, budgets, models, vendors, limits)
    answer = admin.client.request("PATCH", f"/policies/{segment(scope)}", body=body,
                                  params=_flags(allow_unpriced))
    admin.emit(answer, lambda stored: render_stored(scope, stored))


@policy.command("show")
@click.argument("scope", callback=lambda _ctx, _param, value: scope_argument(value))
@admin_command
def policy_show(admin: Admin, scope: str) -> None:
    """Show the policy of SCOPE."""
    answer = admin.client.get(f"/policies/{segment(scope)}")
    admin.emit(answer, render_policy)


@policy.command("list")
@admin_command
def policy_list(admin: Admin) -> None:
    """Every scope that has a policy, with its policy."""
    answer = admin.client.get("/policies")
    admin.emit(
        answer,
        lambda answer: (
            "\n\n".join(
                f"{p.get('scope')}:\n{indent(render_policy(p))}" for p in answer.get("policies", [])
            )
            or "(no policies)"
        ),
    )


@policy.command("delete")
@click.argument("scope", callback=lambda _ctx, _param, value: scope_argument(value))
@admin_command
def policy_delete(admin: Admin, scope: str) -> None:
    """Remove the policy of SCOPE; the other scopes a call is charged to still apply."""
    answer = admin.client.request("DELETE", f"/policies/{segment(scope)}")
    admin.emit(answer, lambda _: f"Deleted the policy of {scope}.")
