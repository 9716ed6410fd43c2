"""Seeds an embedded-store file with many keys and a long ledger, before Outlay starts on it,
to show that the cost of a call does not grow with them.

The rows are written straight into SQLite with executemany in one transaction, in the
shapes the store itself writes (outlay.state.sqlite.schema, outlay.state.keys): going
through the admin API would take hours for a million ledger rows.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from outlay.policy.model import parse_policy
from outlay.state.keys import hash_secret, new_secret
from outlay.state.ledger_sql import period_start_of
from outlay.state.sqlite.schema import apply

DAY_MS = 86_400_000
LABELS = json.dumps({"seeded": "yes"})


@dataclass(frozen=True)
class Seeded:
    keys: int
    agents: int
    ledger_rows: int
    seconds: float


def _policy_body(raw: dict[str, object]) -> str:
    # the exact text SqliteStore._put_policy stores
    return json.dumps(parse_policy(raw).to_dict(), sort_keys=True)


def seed(path: str, *, keys: int, ledger_rows: int, keys_per_agent: int = 100,
         now_ms: int | None = None, rng: random.Random | None = None) -> Seeded:
    """Write ``keys`` keys (each with a policy), their agents (each with a budget), and
    ``ledger_rows`` audit rows spread over the last 60 days, with the month's counters."""
    started = time.perf_counter()
    rng = rng or random.Random(7)
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    agents = max(1, keys // keys_per_agent)
    key_policy = _policy_body({"rpm": 600, "tpm": 1_000_000,
                               "budgets": [{"usd": 100, "period": "month", "mode": "hard"}]})
    agent_policy = _policy_body({"budgets": [{"usd": 1000, "period": "month", "mode": "hard"},
                                             {"usd": 100, "period": "day", "mode": "soft"}]})
    key_ids = [f"key_{i:016x}" for i in range(keys)]
    agent_of = [f"seed-agent-{i % agents:05d}" for i in range(keys)]
    group_of_agent = {f"seed-agent-{a:05d}": f"seed-group-{a % 10}" for a in range(agents)}

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        apply(conn)
        conn.execute("BEGIN IMMEDIATE")
        created = now - 60 * DAY_MS
        conn.executemany("INSERT OR IGNORE INTO groups(name, created_ms) VALUES (?, ?)",
                         [(g, created) for g in set(group_of_agent.values())])
        conn.executemany("INSERT INTO agents(name, grp, created_ms) VALUES (?, ?, ?)",
                         [(a, g, created) for a, g in group_of_agent.items()])
        conn.executemany(
            "INSERT INTO keys(id, hash, agent, name, labels, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
            ((kid, hash_secret(new_secret()), agent, None, LABELS, created)
             for kid, agent in zip(key_ids, agent_of, strict=True)))
        conn.executemany("INSERT INTO policies(scope, body, updated_ms) VALUES (?, ?, ?)",
                         ((f"key:{kid}", key_policy, created) for kid in key_ids))
        conn.executemany("INSERT INTO policies(scope, body, updated_ms) VALUES (?, ?, ?)",
                         ((f"agent:{a}", agent_policy, created) for a in group_of_agent))
        conn.executemany(
            "INSERT INTO ledger(request_id, ts_ms, key_id, agent, grp, labels, vendor, model, "
            "route, decision, code, scope, status, reserved, cost, settlement, spent, cap) "
            "VALUES (?, ?, ?, ?, ?, ?, 'openai', 'gpt-4o-mini', 'openai.chat', ?, ?, ?, ?, ?, "
            "?, ?, ?, ?)",
            _ledger(rng, ledger_rows, now, key_ids, agent_of, group_of_agent))
        # the month's counters, as admissions and settlements would have left them
        month = period_start_of("month", now)
        for kind, column in (("key", "key_id"), ("agent", "agent")):
            conn.execute(
                f"INSERT INTO counters(scope, period, period_start, spent, reserved) "  # noqa: S608 (fixed names)
                f"SELECT '{kind}:' || {column}, 'month', ?, SUM(cost), 0 FROM ledger "
                f"WHERE ts_ms >= ? AND decision = 'allowed' GROUP BY {column}",
                (month, month))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return Seeded(keys, agents, ledger_rows, time.perf_counter() - started)


def _ledger(
    rng: random.Random, rows: int, now: int, key_ids: list[str], agent_of: list[str],
    group_of_agent: dict[str, str],
) -> Iterator[tuple[object, ...]]:
    start = now - 60 * DAY_MS
    step = (now - 60_000 - start) / max(1, rows)
    for i in range(rows):
        # random ids, as Outlay makes them: the unique index grows by random inserts
        request_id = f"req_{rng.getrandbits(96):024x}"
        k = rng.randrange(len(key_ids))
        agent = agent_of[k]
        ts = int(start + i * step)
        if rng.random() < 0.02:  # a few refusals, as a real ledger has
            yield (request_id, ts, key_ids[k], agent, group_of_agent[agent], LABELS,
                   "refused", "rate_limit_exceeded", f"key:{key_ids[k]}", 429, 0, 0, "none",
                   None, None)
        else:
            cost = rng.randrange(5, 60)
            yield (request_id, ts, key_ids[k], agent, group_of_agent[agent], LABELS,
                   "allowed", None, None, 200, 80, cost, "settled", None, 100_000_000)
