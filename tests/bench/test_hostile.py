"""The hostile clients of the benchmark (bench/hostile.py) and their report. No benchmark
runs here: the clients talk to a stand-in server on loopback for a fraction of a second."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bench.test_measure import BENCH, _load

sys.path.insert(0, str(BENCH))  # hostile imports its neighbours by name
hostile = _load("hostile")
measure = sys.modules["bench_measure"]


def test_the_body_is_4_mib_of_tiny_messages() -> None:
    body = hostile.hostile_body()
    assert hostile.BODY_BYTES - 64 < len(body) <= hostile.BODY_BYTES
    data = json.loads(body)
    assert data["model"] == "gpt-4o-mini"
    assert len(data["messages"]) > 100_000
    assert data["messages"][0] == {"role": "user", "content": "x"}


def test_the_request_declares_its_body() -> None:
    request = hostile.hostile_request("/v1/chat/completions", b'{"a":1}')
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer olk_not-a-key" in head
    assert b"Content-Length: 7" in head
    assert body == b'{"a":1}'


@pytest.mark.parametrize(("line", "status"), [
    (b"HTTP/1.1 401 Unauthorized", 401), (b"HTTP/1.0 400 Bad Request", 400),
    (b"", None), (b"garbage", None), (b"HTTP/1.1 abc", None),
])
def test_the_status_is_read_from_the_first_line(line: bytes, status: int | None) -> None:
    assert hostile.status_of(line) == status


@pytest.fixture(params=["drops the body", "leaves the body unread"])
def refusing_server(request: pytest.FixtureRequest) -> Iterator[int]:
    """Answers each request 401 after its head, then reads (and drops) the rest until the
    client closes, or reads nothing more and waits for the client to close."""
    drains = request.param == "drops the body"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                data += chunk
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            if not drains:  # the client must stop sending, read its answer and close
                conn.settimeout(None)
                select.select([], [], [], 2)
            with contextlib.suppress(OSError):
                while conn.recv(1 << 20):
                    pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    listener.close()


def test_the_clients_send_until_stopped_and_tally_the_answers(refusing_server: int) -> None:
    with hostile.hostile_clients("127.0.0.1", refusing_server, "/v1/chat/completions") as tally:
        time.sleep(0.3)
    assert tally.requests >= hostile.CLIENTS
    assert set(tally.statuses) == {401}
    assert len(tally.times_ms) == tally.requests
    assert tally.seconds >= 0.3
    assert max(tally.times_ms) < 1000  # never stuck sending a body nobody reads


def _wrk(p50: float, p99: float) -> Any:
    return measure.WrkResult(requests=100, duration_s=1.0, errors=0, non_2xx=0, p50_ms=p50,
                             p90_ms=p99, p99_ms=p99, mean_ms=p50, max_ms=p99)


def test_the_table_gives_the_ratios_of_the_medians() -> None:
    tally = hostile.Tally(seconds=10.0)
    for status, ms in ((401, 2.0), (401, 4.0), (None, 3.0)):
        tally.add(status, ms)
    row = hostile.HostileRow("Outlay, embedded store",
                             quiet=[_wrk(0.5, 1.0), _wrk(0.7, 2.0), _wrk(0.6, 1.5)],
                             loud=[_wrk(0.9, 3.0), _wrk(1.2, 4.5), _wrk(1.5, 6.0)],
                             tallies=[tally])
    table = hostile.hostile_table([row])
    lines = table.splitlines()
    assert lines[0].startswith("| Scenario | p50 alone | p50 beside 2 hostile | ratio |")
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells == ["Outlay, embedded store", "0.60 ms", "1.20 ms", "× 2.00", "1.50 ms",
                     "4.50 ms", "× 3.00", "0.3/s (2 × 401, 1 × closed)", "3.00 ms"]


def test_a_run_that_answered_no_paying_call_is_left_out_and_said() -> None:
    silent = measure.WrkResult(requests=0, duration_s=5.0, errors=1, non_2xx=0, p50_ms=0.0,
                               p90_ms=0.0, p99_ms=0.0, mean_ms=0.0, max_ms=0.0)
    row = hostile.HostileRow("baseline", quiet=[_wrk(1.0, 2.0)],
                             loud=[_wrk(900.0, 1000.0), silent, _wrk(1100.0, 3000.0)])
    cells = [c.strip() for c in hostile.hostile_table([row]).splitlines()[2].split("|")[1:-1]]
    assert cells[0] == "baseline (1 of 4 runs answered no paying call: left out)"
    assert cells[1:7] == ["1.00 ms", "1,000.00 ms", "× 1,000.00", "2.00 ms", "2,000.00 ms",
                          "× 1,000.00"]


def test_a_row_without_runs_shows_dashes() -> None:
    cells = hostile.hostile_table([hostile.HostileRow("x")]).splitlines()[2].split("|")[2:-1]
    assert {c.strip() for c in cells} == {"–"}
