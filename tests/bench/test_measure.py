"""The pure helpers of the benchmark harness (bench/): wrk's output, percentiles, memory of a
process tree, and the py-spy summary. No benchmark runs here."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


measure = _load("measure")
hotspots = _load("hotspots")

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8001/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.61ms    1.20ms  30.81ms   90.12%
  Latency Distribution
     50%    6.40ms
     99%   13.09ms
  47132 requests in 10.00s, 52.01MB read
Requests/sec:   4712.31
BENCH_WRK {"requests":47132,"duration_us":10001843,"connect":0,"read":0,"write":0,\
"status":3,"timeout":1,"p50_us":6402,"p90_us":7710,"p99_us":13090,"mean_us":6611.4,\
"max_us":30810}
"""


def test_parse_wrk_reads_the_done_hook_line() -> None:
    result = measure.parse_wrk(WRK_OUTPUT)
    assert result.requests == 47132
    assert result.rps == pytest.approx(4712.3, abs=0.1)
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (6.402, 13.09, 30.81)
    assert result.mean_ms == pytest.approx(6.6114)
    assert (result.errors, result.non_2xx) == (1, 3)
    assert not result.clean


def test_parse_wrk_without_the_line_names_what_it_saw() -> None:
    with pytest.raises(ValueError, match="unable to connect"):
        measure.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_script_quotes_anything_verbatim() -> None:
    body = '{"content": "a ]] b \\" c"}'
    script = measure.wrk_script("/v1/chat/completions", body, ["olk_a", "olk_b"],
                                [("Accept", "text/event-stream")])
    assert "[=[" + body + "]=]" in script  # the first level the body does not close
    assert '[[olk_a]], [[olk_b]]' in script
    assert '[ [[Accept]] ] = [[text/event-stream]]' in script
    assert measure.WRK_MARK in script
    with pytest.raises(ValueError, match="at least one bearer token"):
        measure.wrk_script("/", "{}", [])


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert measure.percentile(values, 50) == 50
    assert measure.percentile(values, 99) == 99
    assert measure.percentile([3.0], 99) == 3.0
    assert measure.median([4, 1, 3, 2]) == 2.5
    with pytest.raises(ValueError, match="no values"):
        measure.percentile([], 50)


def test_tree_rss_counts_this_process() -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc")
    assert os.getpid() in measure.process_tree(os.getpid())
    assert measure.tree_rss_bytes(os.getpid()) > 1 << 20
    assert measure.rss_bytes(2**22 + 1) == 0  # no such process


PROFILE = """\
<module> (outlay:8);run (aiohttp/web.py:10);Runner.run (asyncio/runners.py:118);\
BaseEventLoop._run_once (asyncio/base_events.py:1898);select (selectors.py:468) 60
<module> (outlay:8);run (aiohttp/web.py:10);proxy (outlay/gateway/llm.py:90);\
SqliteStore.reserve (outlay/state/sqlite/store.py:280) 25
<module> (outlay:8);run (aiohttp/web.py:10);proxy (outlay/gateway/llm.py:80);\
hash_secret (outlay/state/keys.py:18) 5
<module> (outlay:8);run (aiohttp/web.py:10);RequestHandler.start \
(aiohttp/web_protocol.py:500) 10
Thread._bootstrap (threading.py:995);Checkpointer._run (outlay/state/sqlite/checkpoint.py:80);\
Event.wait (threading.py:622);Condition.wait (threading.py:331) 50
"""


def test_summarize_separates_idle_and_charges_leaves() -> None:
    profile = hotspots.summarize(PROFILE.splitlines())
    # the event loop in epoll and a thread waiting for its next turn are idle
    assert (profile.total, profile.idle, profile.active) == (150, 110, 40)
    assert profile.share(profile.self_by_package["outlay/state"]) == pytest.approx(75.0)
    assert profile.inclusive_by_function["proxy (outlay/gateway/llm.py)"] == 30
    assert profile.self_by_line["SqliteStore.reserve (outlay/state/sqlite/store.py:280)"] == 25
    text = hotspots.report(profile, top=3)
    assert "| 62.5 | `SqliteStore.reserve (outlay/state/sqlite/store.py)` |" in text


def test_package_of() -> None:
    assert hotspots.package_of("outlay/state/sqlite/store.py") == "outlay/state"
    assert hotspots.package_of("/x/site-packages/aiohttp/web_protocol.py") == "aiohttp"
    assert hotspots.package_of("aiohttp/web_protocol.py") == "aiohttp"
    assert hotspots.package_of("selectors.py") == "(stdlib) selectors.py"


def test_cpu_times_counts_iowait_as_idle() -> None:
    busy, total = measure.cpu_times("cpu  100 5 50 800 40 3 2 0 7 0\n")
    assert (busy, total) == (160, 1000)


def test_cpu_seconds_reads_utime_and_stime_after_an_odd_command_name(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    tick = os.sysconf("SC_CLK_TCK")
    # comm may hold spaces and parentheses; utime and stime are fields 14 and 15
    (tmp_path / "7" / "stat").write_text(
        f"7 (outlay: worker (1)) S 1 7 7 0 -1 4194560 100 0 0 0 {3 * tick} {tick} 0 0 20 0 "
        "1 0 100 1000 10\n")
    assert measure.cpu_seconds(7, str(tmp_path)) == pytest.approx(4.0)
    assert measure.cpu_seconds(8, str(tmp_path)) == 0.0  # gone


def test_tree_cpu_counts_this_process() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    before = measure.tree_cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))  # some CPU for the counter to see
    assert measure.tree_cpu_seconds(os.getpid()) > before


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiting_for_a_gateway_to_go_quiet() -> None:
    t = FakeTime()
    # busy (a full core) for 2 s after its load stopped, then idle
    def cpu() -> float:
        return min(t.now, 2.0)

    waited = measure.wait_quiet(cpu, sleep=t.sleep, clock=lambda: t.now)
    assert waited == pytest.approx(2.25)


def test_a_gateway_that_never_goes_quiet_is_waited_for_a_bounded_time() -> None:
    t = FakeTime()
    waited = measure.wait_quiet(lambda: t.now, limit_s=3.0, sleep=t.sleep, clock=lambda: t.now)
    assert waited == pytest.approx(3.0)


def test_an_idle_gateway_is_not_waited_for_long() -> None:
    t = FakeTime()
    waited = measure.wait_quiet(lambda: 1.0, sleep=t.sleep, clock=lambda: t.now)
    assert waited == pytest.approx(0.25)
