"""Per-call tags and the tag scopes they charge (`tag:<name>=<value>`, `tag:<name>=*`).

An agent tags a call with `X-Outlay-Tags: workflow=nightly-billing, customer=acme`; the
tags join its key's labels (the key's labels win on a clash), and every label of the call
is a scope the call is charged to, `tag:<name>=<value>`. A policy set on `tag:<name>=*`
applies to each value of the tag separately, as if set on each `tag:<name>=<value>` that
has no policy of its own. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from outlay.policy.errors import BadRequest, RateLimited, invalid_request
from outlay.policy.model import TAG_NAME as NAME
from outlay.policy.model import TAG_VALUE as VALUE
from outlay.policy.model import Period, Policy

TAGS_HEADER = "X-Outlay-Tags"
MAX_TAGS = 8
WILDCARD = "*"
# how long the values a `*` policy tracks are kept: its longest budget period (a value that
# spent in it must keep its bucket), a day when it has no budget
_PERIOD_ORDER: tuple[Period, ...] = ("hour", "day", "week", "month", "total")


def parse_tags(header: str | None) -> dict[str, str]:
    """The tags of an `X-Outlay-Tags` value (`name=value` pairs separated by commas); an
    empty dict when absent or blank. A malformed value is a 400 naming the header."""
    if header is None or not header.strip():
        return {}
    tags: dict[str, str] = {}
    for part in header.split(","):
        pair = part.strip()
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not NAME.fullmatch(name) or not VALUE.fullmatch(value):
            raise _bad("must be name=value pairs separated by commas; a name is 1-64 of "
                       "A-Z a-z 0-9 _ . - (not starting with . or -), a value 1-128 of "
                       "A-Z a-z 0-9 _ . : @ / + -")
        if name in tags:
            raise _bad(f"names the tag {name!r} twice")
        tags[name] = value
    if len(tags) > MAX_TAGS:
        raise _bad(f"carries {len(tags)} tags; at most {MAX_TAGS} are allowed")
    return tags


def _bad(rule: str) -> BadRequest:
    return invalid_request(f"The `{TAGS_HEADER}` header {rule}.", TAGS_HEADER)


def merged(tags: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, str]:
    """The call's labels: its tags under its key's labels (the key's win on a clash)."""
    if not tags:
        return dict(labels)
    return {**tags, **labels}


def tag_scope(name: str, value: str) -> str:
    return f"tag:{name}={value}"


def tag_scopes(labels: Mapping[str, str]) -> tuple[str, ...]:
    """The tag scopes a call with these labels is charged to, in name order."""
    return tuple(tag_scope(n, labels[n]) for n in sorted(labels))


def split(scope: str) -> tuple[str, str] | None:
    """(name, value) of a `tag:` scope, else None."""
    if not scope.startswith("tag:"):
        return None
    name, sep, value = scope[4:].partition("=")
    return (name, value) if sep else None


def wildcard_of(scope: str) -> str | None:
    """The `tag:<name>=*` scope whose policy a `tag:<name>=<value>` scope falls back on."""
    parts = split(scope)
    if parts is None or parts[1] == WILDCARD:
        return None
    return tag_scope(parts[0], WILDCARD)


def is_wildcard(scope: str) -> bool:
    parts = split(scope)
    return parts is not None and parts[1] == WILDCARD


def with_wildcards(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes and the `*` scope of each tag scope among them: what to read policies of."""
    out = tuple(scopes)
    wild = [w for s in out if s.startswith("tag:") and (w := wildcard_of(s)) is not None]
    return (*out, *wild) if wild else out


def resolve(scopes: Iterable[str], policies: Mapping[str, Policy]) -> dict[str, Policy]:
    """Each scope's policy in force: its own, or for a tag value with none, its `*`'s."""
    out: dict[str, Policy] = {}
    for scope in scopes:
        policy = policies.get(scope)
        if policy is None and scope.startswith("tag:"):
            wild = wildcard_of(scope)
            policy = None if wild is None else policies.get(wild)
        if policy is not None:
            out[scope] = policy
    return out


def tracked(scopes: Iterable[str], policies: Mapping[str, Policy]) -> list[tuple[str, str]]:
    """(name, value) of each tag scope whose policy in force is its `*`'s: the values a `*`
    policy tracks, and bounds by its `max_values`."""
    out = []
    for scope in scopes:
        wild = wildcard_of(scope)
        if wild is not None and scope not in policies and wild in policies:
            parts = split(scope)
            assert parts is not None
            out.append(parts)
    return out


def tracking_period(policy: Policy) -> Period:
    """The period whose values a `*` policy counts against `max_values`: its longest budget
    period, else a day."""
    periods = [b.period for b in policy.budgets]
    return max(periods, key=_PERIOD_ORDER.index) if periods else "day"


def missing_tags(policies: Iterable[tuple[str, Policy]], labels: Mapping[str, str]
                 ) -> BadRequest | None:
    """The 400 `missing_tag` of a call without a tag a policy in force requires."""
    for scope, policy in policies:
        for name in policy.required_tags or ():
            if name not in labels:
                return BadRequest(
                    "missing_tag",
                    f"{scope} requires every call to carry the tag {name!r}: send "
                    f"`{TAGS_HEADER}: {name}=<value>`.",
                    tag=name, scope=scope)
    return None


def too_many_values(name: str, limit: int) -> RateLimited:
    """The 429 of a call with a new value of a tag whose `*` policy tracks `max_values`."""
    return RateLimited(
        "too_many_tag_values",
        f"tag:{name}=* already tracks {limit} distinct values (its max_values) this period; "
        "a call with a new value is refused until the period turns.",
        scope=tag_scope(name, WILDCARD), limit=limit, tag=name, retry_after=60)
