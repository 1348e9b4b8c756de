"""Shared setup of the acceptance run: the parties are registered once per backend in a
template database, and each timeline replays on its own fresh copy of it (a SQLite file copied,
a PostgreSQL database created from the template), so no timeline sees another's records."""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance import Compliance, FixedClock
from tests.acceptance.driver import Parties, register_parties
from tests.conftest import _admin_conn, _pg_url, create_pg_database, drop_pg_database

# Before the first timeline of every ruleset (the earliest starts in March 2026).
SETUP_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _register(url: str) -> Parties:
    with Compliance.open(url, FixedClock(SETUP_AT)) as app:
        return register_parties(app)


@pytest.fixture(scope="session")
def sqlite_parties(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Parties]:
    path = tmp_path_factory.mktemp("acceptance") / "parties.db"
    shutil.copy(sqlite_template, path)
    return path, _register(f"sqlite:///{path}")


@pytest.fixture(scope="session")
def pg_parties(pg_template: str) -> Iterator[tuple[str, Parties]]:
    name = create_pg_database(template=pg_template)
    try:
        yield name, _register(_pg_url(name))
    finally:
        drop_pg_database(name)


class FreshDatabases:
    """Fresh PostgreSQL databases copied from the parties' template, made one step ahead and
    dropped behind in a worker thread, so the server's copying and dropping overlaps the
    replaying. Commits in them are not waited for on disk (``synchronous_commit = off``): a
    test database needs no durability, and every transaction is still a transaction."""

    AHEAD = 2

    def __init__(self, template: str) -> None:
        self.template = template
        self.worker = ThreadPoolExecutor(max_workers=1)
        self.ready: deque[Future[str]] = deque()
        self.pending: list[Future[None]] = []

    def _make(self) -> str:
        name = create_pg_database(template=self.template)
        with _admin_conn() as conn:
            conn.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        return name

    def take(self) -> str:
        while len(self.ready) <= self.AHEAD:
            self.ready.append(self.worker.submit(self._make))
        return self.ready.popleft().result()

    def give_back(self, name: str) -> None:
        self.pending.append(self.worker.submit(drop_pg_database, name))

    def close(self) -> None:
        for made in self.ready:
            self.pending.append(self.worker.submit(drop_pg_database, made.result()))
        for done in self.pending:
            done.result()
        self.worker.shutdown()


@pytest.fixture(scope="session")
def fresh_pg(pg_parties: tuple[str, Parties]) -> Iterator[FreshDatabases]:
    pool = FreshDatabases(pg_parties[0])
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def timeline_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Parties]]:
    """A fresh database with the parties in it, on each backend in turn."""
    if backend == "sqlite":
        template, parties = request.getfixturevalue("sqlite_parties")
        path = tmp_path / "timeline.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}", parties
        return
    _, parties = request.getfixturevalue("pg_parties")
    pool: FreshDatabases = request.getfixturevalue("fresh_pg")
    name = pool.take()
    try:
        yield _pg_url(name), parties
    finally:
        pool.give_back(name)
