"""Two sessions on one snapshot: whatever commits around them, both read the same moment; where
that cannot be had the work stays on one session; work beside the caller returns, raises and
stops as asked. On both backends, real databases."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, func, insert, select, text
from sqlalchemy.orm import Session

from compliance.db import snapshots
from compliance.db.engine import make_engine

METADATA = MetaData()
ROWS = Table("snapshot_rows", METADATA, Column("n", Integer, primary_key=True))
COUNT = select(func.count()).select_from(ROWS)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    name = "empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    made = make_engine(url)
    METADATA.create_all(made)
    with made.begin() as conn:
        conn.execute(insert(ROWS), [{"n": n} for n in range(3)])
    try:
        yield made
    finally:
        made.dispose()


def _snapshot_session(engine: Engine) -> Session:
    """A read-only snapshot as the service opens one, its snapshot already taken."""
    if engine.dialect.name == "postgresql":
        bind = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    else:
        bind = engine.execution_options(sqlite_begin="DEFERRED")
    session = Session(bind)
    session.execute(COUNT)
    return session


def _commit_elsewhere(url: str, n: int) -> bool:
    """Commit a row on a connection of the test's own, without waiting for a lock: whether it
    committed."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            conn.execute("INSERT INTO snapshot_rows (n) VALUES (?)", (n,))
            return True
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return False
        finally:
            conn.close()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as pg:
        pg.execute("INSERT INTO snapshot_rows (n) VALUES (%s)", (n,))
    return True


def test_both_read_one_moment_whatever_commits_between(engine: Engine, url: str) -> None:
    """A writer tries to commit at the very moment each of the pair takes its snapshot: on
    SQLite it cannot (the lock is held), on PostgreSQL it may, and neither session sees it."""
    session = _snapshot_session(engine)
    committed: list[bool] = []
    attempts = iter(range(100, 110))

    @event.listens_for(engine, "before_cursor_execute")
    def _race(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "sqlite_schema" in statement or "SET TRANSACTION SNAPSHOT" in statement:
            committed.append(_commit_elsewhere(url, next(attempts)))

    try:
        with snapshots.pair(session) as (main, other):
            assert other is not None
            seen = main.execute(COUNT).scalar_one(), other.execute(COUNT).scalar_one()
            later = _commit_elsewhere(url, 200)
            again = main.execute(COUNT).scalar_one(), other.execute(COUNT).scalar_one()
    finally:
        event.remove(engine, "before_cursor_execute", _race)
        session.close()
    assert committed, "the pair took no snapshot of its own"
    if engine.dialect.name == "sqlite":
        assert committed == [False, False]  # no commit can fall between the two
        assert main is not session
    else:
        assert committed == [True] and main is session
    assert later
    assert seen[0] == seen[1] == again[0] == again[1]
    # PostgreSQL's pair is the caller's own snapshot, taken before any of these commits.
    assert seen[0] == (3 if engine.dialect.name == "postgresql" else 3 + sum(committed))


def test_no_pair_for_a_transaction_without_one_snapshot(engine: Engine, url: str) -> None:
    # PostgreSQL's READ COMMITTED reads each statement's own moment; on SQLite, a session bound
    # to its caller's connection.
    postgres = engine.dialect.name == "postgresql"
    session = Session(engine) if postgres else Session(engine.connect())
    try:
        session.execute(COUNT)
        with snapshots.pair(session) as (main, other):
            assert main is session and other is None
    finally:
        bind = session.get_bind()
        session.close()
        if not isinstance(bind, Engine):
            bind.close()


def test_no_pair_while_another_writer_holds_the_lock(
    url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL imports a snapshot without any lock")
    monkeypatch.setattr(snapshots, "LOCK_WAIT_MS", 50)
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    session = _snapshot_session(engine)
    try:
        with snapshots.pair(session) as (main, other):
            assert main is session and other is None
            assert main.execute(COUNT).scalar_one() == 3
    finally:
        session.close()
        writer.execute("ROLLBACK")
        writer.close()
    # The lock holder gave its connection back with the engine's own busy timeout.
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000


def _long_statement(engine: Engine) -> Any:
    if engine.dialect.name == "postgresql":
        return text("SELECT pg_sleep(600)")
    return text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    )


def test_work_beside_returns_raises_and_stops(engine: Engine) -> None:
    session = _snapshot_session(engine)
    try:
        with snapshots.pair(session) as (_, other):
            assert other is not None
            done = snapshots.Background(lambda s: s.execute(COUNT).scalar_one(), other)
            assert done.result() == 3
            done.cancel()  # once finished, nothing to stop

            def fails(s: Session) -> int:
                raise LookupError("from the other thread")

            with pytest.raises(LookupError, match="from the other thread"):
                snapshots.Background(fails, other).result()

            started, outcome = threading.Event(), []

            def long(s: Session) -> None:
                started.set()
                try:
                    s.execute(_long_statement(engine))
                except Exception as exc:
                    outcome.append(exc)
                    raise

            endless = snapshots.Background(long, other)
            started.wait()
            endless.cancel()
            assert "interrupt" in str(outcome[0]).lower() or "cancel" in str(outcome[0]).lower()
    finally:
        session.close()
