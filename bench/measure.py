"""Pure measuring helpers of the benchmark: wrk's Lua script and its output, percentiles,
the resident memory of a process tree. Standard library only, so tests can load this file.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# wrk prints one line of JSON from the script's done() hook: exact microseconds, no units
# to parse back out of the human-readable summary.
WRK_MARK = "BENCH_WRK "

_LUA = """\
-- written by bench/run.py: one POST, requests prebuilt in init() so every scenario pays the
-- same (near zero) Lua cost per request, whatever its number of keys
local path = {path}
local body = {body}
local auths = {{ {auths} }}
local extra = {{ {extra} }}
local reqs = {{}}
local n = 0

init = function(args)
  for i, auth in ipairs(auths) do
    local headers = {{ ["Content-Type"] = "application/json" }}
    if auth ~= "" then headers["Authorization"] = "Bearer " .. auth end
    for name, value in pairs(extra) do headers[name] = value end
    reqs[i] = wrk.format("POST", path, headers, body)
  end
end

request = function()
  n = n % #reqs + 1
  return reqs[n]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""


def _lua_string(text: str) -> str:
    # a long bracket string takes the text verbatim, quotes and backslashes included
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def wrk_script(
    path: str, body: str, bearer_tokens: Sequence[str] = ("",),
    headers: Sequence[tuple[str, str]] = (),
) -> str:
    """A wrk Lua script POSTing ``body`` to ``path``, cycling through the bearer tokens."""
    if not bearer_tokens:
        raise ValueError("give at least one bearer token ('' for none)")
    auths = ", ".join(_lua_string(token) for token in bearer_tokens)
    extra = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers)
    return _LUA.format(path=_lua_string(path), body=_lua_string(body), auths=auths,
                       extra=extra, mark=WRK_MARK)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # socket errors (connect, read, write, timeout)
    non_2xx: int  # answers with a status outside 2xx/3xx
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def clean(self) -> bool:
        return self.requests > 0 and self.errors == 0 and self.non_2xx == 0


def parse_wrk(output: str) -> WrkResult:
    """Read the figures of one wrk run from its output (the line our done() hook writes)."""
    for line in reversed(output.splitlines()):
        if line.startswith(WRK_MARK):
            data = json.loads(line[len(WRK_MARK):])
            break
    else:
        tail = output.strip().splitlines()[-3:]
        raise ValueError(f"no {WRK_MARK.strip()} line in wrk's output: {' | '.join(tail)}")
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        errors=int(data["connect"] + data["read"] + data["write"] + data["timeout"]),
        non_2xx=int(data["status"]),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0 < q <= 100) by nearest rank, as wrk's histogram reports it."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# --- memory ---------------------------------------------------------------------------


def _parent_of(pid: int, proc: str) -> int | None:
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name sits in parentheses and may itself hold spaces or parentheses
    return int(stat[stat.rfind(")") + 2:].split()[1])


def process_tree(root: int, proc: str = "/proc") -> list[int]:
    """root and every descendant of it that is alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir(proc):
        if entry.isdigit():
            parent = _parent_of(int(entry), proc)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def rss_bytes(pid: int, proc: str = "/proc") -> int:
    try:
        with open(f"{proc}/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0  # gone between listing and reading


def tree_rss_bytes(root: int, proc: str = "/proc") -> int:
    """Resident memory of a process and all its descendants, summed."""
    return sum(rss_bytes(pid, proc) for pid in process_tree(root, proc))


def cpu_seconds(pid: int, proc: str = "/proc") -> float:
    """User plus system CPU time a process has used, in seconds (0 when it is gone)."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()  # fields from the third on: state, ppid, …
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def tree_cpu_seconds(root: int, proc: str = "/proc") -> float:
    """CPU time of a process and all its descendants alive now, summed."""
    return sum(cpu_seconds(pid, proc) for pid in process_tree(root, proc))


def wait_quiet(cpu_of: Callable[[], float], *, share: float = 0.02, interval_s: float = 0.25,
               limit_s: float = 30.0, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> float:
    """Wait until a process (`cpu_of`: its CPU seconds so far) uses less than `share` of a
    core over `interval_s`, or `limit_s` passed; the seconds waited. A gateway may go on
    working after its load stops (Redis + PostgreSQL drains its ledger into PostgreSQL):
    that work is its own, and must not land in the next scenario's measurement."""
    started = clock()
    before = cpu_of()
    while clock() - started < limit_s:
        sleep(interval_s)
        now = cpu_of()
        if now - before < share * interval_s:
            return clock() - started
        before = now
    return clock() - started


def cpu_times(stat: str | None = None) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat's first line."""
    if stat is None:
        with open("/proc/stat", encoding="ascii") as f:
            stat = f.readline()
    fields = [int(v) for v in stat.split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total
