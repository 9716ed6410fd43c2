"""Paying calls beside hostile ones (`run.py --hostile`): clients without a valid key
sending 4 MiB bodies of tiny messages as fast as the gateway lets them, and what that does
to a paying call's latency. Standard library only, so tests can load this file.

Each hostile client opens a connection, sends one request (a key that does not exist, then
the body 64 KiB at a time until an answer comes), reads the status of the answer and closes,
over and over: a gateway that reads and parses the body before refusing it costs the
client the whole body and itself the parse; one that refuses from the head costs both the
head and what the kernel took in meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from measure import median, percentile

BODY_BYTES = 4 * 1024 * 1024
CLIENTS = 2
PIECE = 64 * 1024  # sent at a time, looking for an early answer in between
TIMEOUT_S = 30.0
_TINY = {"role": "user", "content": "x"}


def hostile_body(size: int = BODY_BYTES) -> bytes:
    """A chat request of `size` bytes or just under: as many one-letter messages as fit,
    the most work per byte for a JSON parser."""
    one = len(json.dumps(_TINY, separators=(",", ":"))) + 1
    head = '{"model":"gpt-4o-mini","messages":['
    count = (size - len(head) - 2) // one
    return json.dumps({"model": "gpt-4o-mini", "messages": [_TINY] * count},
                      separators=(",", ":")).encode()


def hostile_request(path: str, body: bytes, key: str = "olk_not-a-key") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def status_of(first_line: bytes) -> int | None:
    """The status of an answer from its first line; None when it is not one."""
    parts = first_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


@dataclass
class Tally:
    """What the hostile clients got: statuses (None: the connection closed or reset before
    a status came) and the time from connecting to the answer, in ms."""

    statuses: dict[int | None, int] = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, status: int | None, ms: float) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.times_ms.append(ms)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def _send_until_answered(sock: socket.socket, request: bytes) -> None:
    """Send `request` a piece at a time, stopping early once an answer (or the end of the
    connection) is there to read: a client does not go on sending a body already refused."""
    view = memoryview(request)
    sent = 0
    # non-blocking while sending: a blocking send into a full buffer would wait for a server
    # that has answered and stopped reading, however soon its answer came
    sock.setblocking(False)
    try:
        while sent < len(view):
            readable, writable, _ = select.select([sock], [sock], [], TIMEOUT_S)
            if readable:
                return
            if not writable:
                raise TimeoutError("the server neither read nor answered")
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(view[sent:sent + PIECE])
    finally:
        sock.settimeout(TIMEOUT_S)


def _one(host: str, port: int, request: bytes) -> int | None:
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
        # refused (reset) before all of it went: the answer may be there all the same
        with contextlib.suppress(OSError):
            _send_until_answered(sock, request)
        line = b""
        try:
            while b"\r\n" not in line:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                line += chunk
        except OSError:
            pass
        return status_of(line.partition(b"\r\n")[0])


def _client(host: str, port: int, request: bytes, stop: threading.Event, tally: Tally) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            status = _one(host, port, request)
        except OSError:
            status = None
        tally.add(status, (time.perf_counter() - started) * 1000)


@contextlib.contextmanager
def hostile_clients(host: str, port: int, path: str, clients: int = CLIENTS
                    ) -> Iterator[Tally]:
    """`clients` threads sending hostile requests until the block ends."""
    request = hostile_request(path, hostile_body())
    stop, tally = threading.Event(), Tally()
    threads = [threading.Thread(target=_client, args=(host, port, request, stop, tally),
                                daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        yield tally
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT_S + 5)
        tally.seconds = time.monotonic() - started


# --- the report ---------------------------------------------------------------------------


class Latency(Protocol):
    """A wrk run's figures, as far as this report reads them."""

    @property
    def requests(self) -> int: ...

    @property
    def p50_ms(self) -> float: ...

    @property
    def p99_ms(self) -> float: ...


@dataclass
class HostileRow:
    """One gateway, measured quiet and beside the hostile clients, round after round."""

    title: str
    quiet: list[Latency] = field(default_factory=list)
    loud: list[Latency] = field(default_factory=list)
    tallies: list[Tally] = field(default_factory=list)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f} ms"


def _times(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"× {a / b:,.2f}"


def _med(runs: Sequence[Latency], attr: str) -> float | None:
    """The median over the runs that answered any call (wrk reports 0 ms for none)."""
    answered = [getattr(r, attr) for r in runs if r.requests]
    return median(answered) if answered else None


def _silent(runs: Sequence[Latency]) -> int:
    return sum(1 for r in runs if not r.requests)


def hostile_table(rows: Sequence[HostileRow], clients: int = CLIENTS) -> str:
    """Paying calls' p50 and p99 at one connection, without and with the hostile clients
    (medians of the rounds), their ratio, and what the hostile requests got."""
    out = [f"| Scenario | p50 alone | p50 beside {clients} hostile | ratio | p99 alone "
           f"| p99 beside {clients} hostile | ratio | hostile requests answered | "
           "their answer p50 |",
           "|---|" + "---:|" * 8]
    for r in rows:
        q50, l50 = _med(r.quiet, "p50_ms"), _med(r.loud, "p50_ms")
        q99, l99 = _med(r.quiet, "p99_ms"), _med(r.loud, "p99_ms")
        requests = sum(t.requests for t in r.tallies)
        seconds = sum(t.seconds for t in r.tallies)
        statuses: dict[int | None, int] = {}
        for t in r.tallies:
            for status, n in t.statuses.items():
                statuses[status] = statuses.get(status, 0) + n
        got = ", ".join(f"{n:,} × {'closed' if s is None else s}" for s, n in
                        sorted(statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
        per_s = requests / seconds if seconds else 0.0
        rate = f"{per_s:,.{0 if per_s >= 10 else 1}f}/s ({got})" if requests else "–"
        times = [ms for t in r.tallies for ms in t.times_ms]
        silent = _silent(r.loud) + _silent(r.quiet)
        title = r.title + (f" ({silent} of {len(r.loud) + len(r.quiet)} runs answered no "
                           "paying call: left out)" if silent else "")
        out.append(f"| {title} | {_ms(q50)} | {_ms(l50)} | {_times(l50, q50)} | "
                   f"{_ms(q99)} | {_ms(l99)} | {_times(l99, q99)} | {rate} | "
                   f"{_ms(percentile(times, 50) if times else None)} |")
    return "\n".join(out)
