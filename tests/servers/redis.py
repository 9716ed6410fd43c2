"""A throwaway `redis-server` for the tests: loopback only, on a free port it keeps across
restarts, its files and log in a directory of its own; never the machine's Redis on 6379.

No snapshot is ever taken on its own (`--save ""`), so a restart starts empty unless the
test asks for the data to survive it: `restart(flush=False)` runs SAVE first, and the new
process loads that dump from the same directory (as it loads one `save()` left, or the
append-only file of a server started with `--appendonly yes`). `pause()` and `resume()`
stop and continue the process (SIGSTOP, SIGCONT), as a hung server.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_DUMP = "dump.rdb"


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_server_bin() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is not on PATH; the Redis tests start their own "
                    "(Debian/Ubuntu: apt-get install redis-server)")
    return found


class RedisServer:
    """One redis-server process: start, stop, kill -9 and restart it on the same port."""

    def __init__(self, directory: Path, extra: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.extra = extra
        self.log_path = directory / "redis.log"
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> RedisServer:
        """Launch the server (loading a dump SAVE left in the directory) and wait for PING."""
        if self.running:
            return self
        binary = redis_server_bin()
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self._port:
            self._port = free_port()
        argv = [binary, "--port", str(self._port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--dbfilename", _DUMP,
                "--daemonize", "no", *self.extra]
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(argv, cwd=self.dir, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self._proc.returncode}:\n{self.log()}")
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError,
                                     redis.BusyLoadingError), self._client(timeout=0.5) as probe:
                if probe.ping():
                    return
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"redis-server did not answer PING in {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM and wait (it saves nothing: no save points); SIGKILL if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused server would not see the SIGTERM
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._proc = None

    def kill(self) -> None:
        """kill -9: a crash, whatever was in memory is gone."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # SIGKILL ends a paused process too
        proc.wait(timeout=STOP_TIMEOUT_S)
        self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets (connections stay open, commands queue in
        its buffers) but answers nothing until resume()."""
        assert self._proc is not None
        assert self.running
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: the paused process runs what queued meanwhile, then answers again."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def save(self) -> None:
        """SAVE: a snapshot of every key now, which the next start() loads."""
        with self._client() as client:
            client.save()

    def restart(self, flush: bool = True) -> RedisServer:
        """Stop and start again on the same port: empty, or (flush=False) with every key."""
        if flush:
            self.stop()
            (self.dir / _DUMP).unlink(missing_ok=True)
        else:
            assert self.running, "restart(flush=False) saves the data of a running server"
            with self._client() as client:
                client.save()
            self.stop()
        return self.start()

    def flushall(self) -> None:
        with self._client() as client:
            client.flushall()

    def _client(self, timeout: float = 5.0) -> redis.Redis:
        # no retries: the readiness loop does its own, and a test wants the first error
        return redis.Redis(host="127.0.0.1", port=self._port, socket_timeout=timeout,
                           socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- where it is ------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._port, "the server has not been started"
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


class RedisClusterServers:
    """A Redis Cluster of three masters (no replicas) on free loopback ports, every slot
    assigned; its URL names one node, the cluster client finds the others."""

    def __init__(self, directory: Path) -> None:
        # the bus port is given too: its default, the port + 10000, may be past 65535
        self.nodes = [RedisServer(directory / f"node{i}", (
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000", "--cluster-port", str(free_port())))
            for i in range(3)]

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not on PATH (it comes with redis-server)")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False)
        if created.returncode != 0:
            self.stop()
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.nodes[0]._client() as probe:
                info = probe.execute_command("CLUSTER INFO")  # parsed into a dict
                if info.get("cluster_state") == "ok":
                    return self
            time.sleep(0.05)
        self.stop()
        pytest.fail("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
