"""`outlay serve`: prepare the state once, then run one or more worker processes that share
one listening socket."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from aiohttp import web

from outlay.gateway import client_errors, redaction
from outlay.gateway.app import create_app, store_for
from outlay.gateway.context import GATEWAY
from outlay.gateway.h1 import H1Site, Limits
from outlay.gateway.handoff import MAX_HEAD_BYTES
from outlay.gateway.llm import llm_handlers
from outlay.gateway.stop import CUT_S, Stop
from outlay.gateway.wiring import vendor_headers_of, vendor_pricing, vendors_from_settings
from outlay.policy.model import parse_policy, parse_scope
from outlay.pricing.table import load_table
from outlay.settings import Settings
from outlay.state.base import StateError

log = logging.getLogger("outlay")
# The cyclic garbage collector's youngest generation is collected after this many more
# container objects were made than freed (Python's default: 700). A call in flight keeps a
# few hundred alive (its task, futures, headers, the decision's objects), so at the
# default, with tens of calls in flight, a collection came every few dozen calls and walked
# thousands of live objects each time: about 6 % of a loaded worker's CPU. The few
# cycles a call leaves are collected as surely, later, in a bounded young generation.
GC_YOUNG_THRESHOLD = 50_000
# files a worker holds besides its agents' connections: the store, connections to
# providers and vendors, the log
FILES_BESIDE_CONNECTIONS = 256


async def prepare_state(settings: Settings) -> str | None:
    """Create the schema, apply the policies of the config; return a newly made admin token.

    The file manages the scopes it names; every other scope's policy is the admin API's and
    is left as it is. A scope the file no longer names keeps its last policy, which the admin
    API manages from now on: the log says so."""
    store = store_for(settings)
    await store.open()
    try:
        token = await store.init_admin_token(settings.admin_token)
        policies = {parse_scope(scope): parse_policy(dict(raw))
                    for scope, raw in settings.policies.items()}
        released = await store.apply_config_policies(settings.config_file, policies)
        for scope in released:
            log.warning("the policy of %s is no longer in %s: it keeps its last policy, now "
                        "managed through the admin API", scope,
                        settings.config_file or "a configuration file")
        return token
    finally:
        await store.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"cannot listen on {where}: address already in use "
                          "(another outlay serve, or another program?); choose another "
                          "port with --port (or `listen:`), e.g. --port 0 for any free "
                          "one") from None
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (the default on Linux and macOS): the asyncio API on
    libuv, with less overhead per read, write and callback than the pure-Python loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(settings: Settings, sock: socket.socket, metrics_dir: str | None = None) -> None:
    """Serve on `sock` until SIGTERM or SIGINT, then stop within STOP_S (gateway/stop.py):
    finish the answers in progress, close the store."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings, metrics_dir=metrics_dir)
    stop = app[GATEWAY].stop
    # the connections handed to aiohttp were given the stop's grace with the site's own
    # (H1Site.stop): what the runner's wait finds after that is cut soon
    runner = web.AppRunner(app, handle_signals=True, access_log=None, shutdown_timeout=CUT_S,
                           **runner_options(settings))
    try:
        loop.run_until_complete(_start(runner, sock, settings))
        loop.run_forever()
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        stop.begin()
        loop.run_until_complete(runner.cleanup())
        _cancel_leftovers(loop, stop)
        log.info("%s", stop.report())
        loop.close()


def settle_garbage_collector() -> None:
    """Once the worker is up: what start-up made (modules, settings, the price table, the
    app) lives as long as the process, so it is moved out of the collector's sight
    (gc.freeze), and the young generation is collected less often (GC_YOUNG_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def runner_options(settings: Settings) -> dict[str, Any]:
    """aiohttp's server as `outlay serve` runs it behind gateway/h1.py (gateway/handoff.py
    says why): idle connections end after `idle_timeout_s`; a body left unread and not all
    received closes its connection at once (no lingering to drain it); a head's size is
    limited by the handoff watch (431), not by aiohttp's line limits first (400)."""
    return {"keepalive_timeout": settings.idle_timeout_s, "lingering_time": 0,
            "max_line_size": MAX_HEAD_BYTES, "max_field_size": MAX_HEAD_BYTES}


async def _start(runner: web.AppRunner, sock: socket.socket, settings: Settings) -> None:
    await runner.setup()
    gw = runner.app[GATEWAY]
    await H1Site(runner, sock, llm_handlers(gw), Limits.of(settings), gw.stop,
                 gw.queue.close).start()
    # inside the running loop: uvloop listens for signals only while a loop runs, and a
    # SIGTERM during the collection, between run_until_complete and run_forever, was lost
    settle_garbage_collector()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, stop: Stop) -> None:
    """Cancel what still runs, and wait for it what is left of the stop (at least CUT_S): a
    task that will not end is left to the process's exit."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        started = time.monotonic()
        _, late = loop.run_until_complete(
            asyncio.wait(tasks, timeout=max(CUT_S, stop.left())))
        stop.took("leftover tasks", time.monotonic() - started, cut=bool(late))
    loop.run_until_complete(loop.shutdown_asyncgens())


def open_files_wanted(soft: int, hard: int, max_connections: int) -> int:
    """The soft open-file limit that lets `max_connections` be open beside the worker's other
    files, within the hard limit, and never lower than it is."""
    want = max_connections + FILES_BESIDE_CONNECTIONS
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    return max(soft, want)


def _raise_open_files(max_connections: int) -> None:
    """Past the open-file limit a connection fails when accepted, before gateway/h1.py can
    close it at once and serve the others: raise the limit so max_connections come first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = open_files_wanted(soft, hard, max_connections)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    if soft < max_connections + FILES_BESIDE_CONNECTIONS:
        log.warning("the open-file limit (%d) is below server.max_connections (%d) + %d: "
                    "raise it (ulimit -n) or lower max_connections", soft, max_connections,
                    FILES_BESIDE_CONNECTIONS)


def serve(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    redaction.install(redaction.secrets_of(settings))  # before anything can log a request
    client_errors.install()
    _raise_open_files(settings.max_connections)
    try:
        # bad prices or vendor sections stop start-up with a clear message
        load_table(settings.prices, settings.price_snapshot)
        vendor_pricing(settings.vendors)
        vendor_headers_of(settings)
        vendors_from_settings(settings)
        token = asyncio.run(prepare_state(settings))
        sock = bind(settings.host, settings.port)
    except (ValueError, StateError, OSError) as exc:
        sys.exit(f"outlay serve: {exc}")
    if token:
        print(f"Outlay made an admin token (shown once, stored hashed): {token}", flush=True)
    host, port = sock.getsockname()[:2]
    simulated = settings.simulated_upstreams()
    mode = (f"simulated: {', '.join(simulated)}; answers carry X-Outlay-Simulated: true"
            if simulated else "nothing simulated")
    print(f"Outlay listening on http://{host}:{port} ({settings.workers} worker(s), "
          f"state {settings.state}, {mode})", flush=True)
    if settings.workers <= 1:
        run_worker(settings, sock)
        return
    _supervise(settings, sock)


def _supervise(settings: Settings, sock: socket.socket) -> None:
    """Fork the workers, restart one that dies, stop them all on SIGTERM/SIGINT."""
    children: set[int] = set()
    stopping = False
    # the workers' counts for /metrics, summed by whichever worker a scrape reaches
    metrics_dir = tempfile.mkdtemp(prefix="outlay-metrics-")

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:
            # not the supervisor's handler: a SIGTERM before the worker's own (aiohttp's)
            # is installed ends the worker instead of being swallowed
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                run_worker(settings, sock, metrics_dir)
            finally:
                os._exit(0)
        children.add(pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(settings.workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            log.error("worker %d exited (status %d); starting another", pid, status)
            time.sleep(0.2)
            spawn()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(0)
