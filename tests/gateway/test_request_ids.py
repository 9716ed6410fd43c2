"""Request ids: unique, and in the order they were made (millisecond resolution)."""

from __future__ import annotations

import os
import re
import time

from outlay.gateway.admission import new_request_id


def test_request_ids_are_unique_and_well_formed() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)


def test_request_ids_sort_by_the_time_they_were_made() -> None:
    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    assert first < second
    assert int(second[4:16], 16) - time.time_ns() // 1_000_000 <= 0


def test_forked_workers_draw_different_ids() -> None:
    # `outlay serve --workers N` forks: each worker's generator must be its own
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out
        os.write(write, " ".join(new_request_id()[16:] for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    parent = {new_request_id()[16:] for _ in range(5)}
    assert len(child) == 5
    assert not child & parent
