"""Several `outlay serve` processes sharing one installation: the same state URL (redis://…)
and database DSN (postgresql://…), as replicas behind a load balancer are deployed.

A replica is a harness Gateway started with those two settings instead of a SQLite file; it
keeps its port across restarts, so a test can kill -9 one and find it again at its address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .harness import Gateway, outlay_bin


class Replica(Gateway):
    """One replica: its own directory, config file, log and port; the state is shared."""

    def __init__(self, directory: Path, config: dict[str, Any], workers: int, *,
                 state_url: str, database: str | None) -> None:
        super().__init__(directory, config, workers)
        self.state_url = state_url
        self.database = database

    def argv(self) -> list[str]:
        argv = [outlay_bin(), "serve", "--config", str(self.config_path),
                "--state", self.state_url, "--workers", str(self.workers)]
        if self.database is not None:
            argv += ["--database", self.database]
        return argv

    def start(self) -> Replica:
        super().start()
        # The log is appended to, so the first "listening" line would name the first port
        # forever: pin it instead, and a restarted replica is back at the same address.
        self.config["listen"] = f"127.0.0.1:{self.port}"
        return self

    def restart(self) -> Replica:
        """SIGTERM, wait, and start again on the same port."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Replicas:
    """n replicas of one installation, started in order; a context manager stops them all.

    Replicas(tmp_path, 2, state_url=redis_url, database=dsn) as group: group[0].mint_key(…),
    group.kill9(1), group.start(1), group.restart(0), group.urls.
    """

    def __init__(self, directory: Path, n: int, *, state_url: str, database: str | None,
                 config: dict[str, Any] | None = None, workers: int = 1,
                 name: str = "replica") -> None:
        assert n >= 1
        self.members = [
            Replica(directory / f"{name}-{i}", dict(config or {}), workers,
                    state_url=state_url, database=database)
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> Replica:
        return self.members[i]

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.members)

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.members]

    def start(self, i: int) -> Replica:
        return self.members[i].start()

    def kill9(self, i: int) -> None:
        """kill -9 every process of replica i: a crash; start(i) brings it back."""
        self.members[i].kill()

    def restart(self, i: int) -> Replica:
        return self.members[i].restart()

    def start_all(self) -> Replicas:
        # one after the other: the first one to start sets the shared state up
        for replica in self.members:
            replica.start()
        return self

    def stop_all(self) -> None:
        """Stop every replica; one that ignored SIGTERM is reported after all are stopped."""
        errors = []
        for replica in self.members:
            try:
                replica.stop()
            except AssertionError as exc:
                errors.append(f"{replica.name}: {exc}")
        assert not errors, "\n".join(errors)

    def logs(self) -> str:
        return "\n".join(f"--- {replica.name}\n{replica.log()}" for replica in self.members)

    def __enter__(self) -> Replicas:
        try:
            return self.start_all()
        except BaseException:
            # __exit__ is not called when __enter__ fails: stop those that did start, and
            # let the start-up failure (with its log) be the one reported
            with contextlib.suppress(AssertionError):
                self.stop_all()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop_all()
