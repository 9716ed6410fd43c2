"""A throwaway PostgreSQL for the tests: its own cluster in a temporary directory (initdb),
listening on a free loopback port with its unix socket inside that directory; never the
machine's own PostgreSQL. Nothing is synced to disk (fsync off): it dies with the test.

The server is a child process of the test run (no pg_ctl daemon) and is told to shut down
when the test process dies, however it dies. initdb and postgres refuse to run as root; as
root, the cluster belongs to an unprivileged user (`postgres`, else `nobody`) and they run
as that user through setpriv.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
import pytest
from psycopg import sql

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# a cluster in memory when there is room for it: making a database there is ~3x faster
_SHM = "/dev/shm"  # noqa: S108 (not a shared temp dir: mkdtemp makes a private one in it)
_SHM_NEEDED = 1 << 30
# Without fsync a commit still reaches the OS before it returns (synchronous_commit stays
# on), so what committed survives a crash of the server process, as the restart tests need.
# Each new database is written to the WAL whole (~8 MB): frequent checkpoints keep the WAL
# small instead of letting it grow to the default 1 GB.
SETTINGS = {
    "listen_addresses": "127.0.0.1", "fsync": "off", "full_page_writes": "off",
    "max_connections": "200", "shared_buffers": "32MB", "max_wal_size": "96MB",
    "min_wal_size": "32MB",
}


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL installed under /usr/lib/postgresql (Debian's layout), or the
    directory of pg_ctl on PATH."""
    candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "initdb").exists()]
    if candidates:
        return max(candidates, key=lambda d: _version(d.parent.name))
    found = shutil.which("pg_ctl")
    if found is not None and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed; the "
                "PostgreSQL tests start their own (Debian/Ubuntu: apt-get install postgresql)")


def _roomy(directory: str) -> bool:
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return os.access(directory, os.W_OK) and stat.f_bavail * stat.f_frsize >= _SHM_NEEDED


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _run_as() -> pwd.struct_passwd | None:
    """Who runs the cluster when we are root (initdb refuses root); None: ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.fail("running as root and neither a postgres nor a nobody user exists to own "
                "the test PostgreSQL cluster")


class PostgresServer:
    """One PostgreSQL cluster: start it, make fresh databases in it, stop it."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(
            prefix="outlay-pg-", dir=_SHM if _roomy(_SHM) else None))
        self._own_dir = directory is None
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.bin = postgres_bin_dir()
        self.user = _run_as()
        self._port = 0
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._finished: list[str] = []  # databases to drop

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """Launch the server (recovering the data a stop left behind) and wait until it
        accepts connections."""
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        for attempt in range(3):  # another process may take the free port before we bind it
            if attempt or not self._port:  # a restart keeps its port if it can
                self._port = free_port()
            self._launch()
            admin = self._wait_ready()
            if admin is not None:
                self._admin = admin
                return self
        pytest.fail(f"PostgreSQL did not start:\n{self.log()}")

    def _as_user(self, argv: list[str], *, die_with_us: bool = False) -> list[str]:
        """argv run as the cluster's owner; `die_with_us`: signalled (SIGINT, a fast
        shutdown) when this process dies, so a killed test run leaves no server behind."""
        wrapper = []
        if self.user is not None:
            wrapper = [f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                       "--clear-groups"]
        if die_with_us and shutil.which("setpriv"):
            wrapper.append("--pdeathsig=INT")
        return ["setpriv", *wrapper, *argv] if wrapper else argv

    def _initdb(self) -> None:
        argv = self._as_user([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                              "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              cwd=self.dir, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            pytest.fail(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def _launch(self) -> None:
        # postgres itself, not pg_ctl: a child of ours rather than a daemon
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.dir),
                "-c", f"port={self._port}", *(a for k, v in SETTINGS.items()
                                             for a in ("-c", f"{k}={v}"))]
        with self.log_path.open("ab") as log:
            log.write(f"--- port {self._port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(self._as_user(argv, die_with_us=True), cwd=self.dir,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)

    def _wait_ready(self) -> psycopg.Connection[tuple[object, ...]] | None:
        """The admin connection once the server answers; None if it exited (its port was
        taken, say)."""
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=2)
            except psycopg.OperationalError:
                if self._proc.poll() is not None:
                    self._proc = None
                    return None
                if time.monotonic() > deadline:
                    self.stop(remove=False)
                    pytest.fail(f"PostgreSQL did not accept connections in {START_TIMEOUT_S} "
                                f"s:\n{self.log()}")
                time.sleep(0.05)

    def stop(self, remove: bool = True, mode: str = "fast") -> None:
        """Stop the server: "fast" (its sessions ended, its memory released) or
        "immediate" (as a crash would; the next start recovers). Then delete the cluster
        if this server made it, unless `remove` is False (to start it again)."""
        if self._proc is not None and self._proc.poll() is None:
            self.resume()  # a paused server would not see the signal
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if remove and self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def pause(self) -> None:
        """SIGSTOP the server and every backend: a hung database, which keeps its
        connections open and answers nothing until resume()."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in reversed(self._processes()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        """The postmaster (setpriv execs it: the child's pid) and its children."""
        assert self._proc is not None, "the server is not running"
        postmaster = self._proc.pid
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                # the fields after the command's closing parenthesis: state, then ppid
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- databases --------------------------------------------------------------------
    def new_database(self, template: str = "template0") -> str:
        """A fresh database (a copy of `template`, by default empty); returns its DSN."""
        self._drop_finished()
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)))
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database made by new_database, once whoever used it has gone: the next
        new_database drops it. (Dropping it now would wait ~100 ms for the backends of the
        connections just closed to exit.)"""
        self._finished.append(str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]))

    def _drop_finished(self) -> None:
        while self._finished:
            name = self._finished.pop()
            self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))

    @property
    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        assert self._admin is not None, "the server has not been started"
        return self._admin

    # -- where it is ------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._port, "the server has not been started"
        return self._port

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
