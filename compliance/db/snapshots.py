"""Two sessions that read exactly the same moment of the database, so that a long read (the
trail's verification) can be split over two connections, and so over two cores, and still
answer for one snapshot.

PostgreSQL exports the reading transaction's snapshot and a second transaction imports it.
SQLite has no such call in its Python driver; there, both read transactions begin while a third
connection holds the write lock (it writes nothing), so that no commit can fall between them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from compliance.db.engine import BUSY_TIMEOUT_MS

# How long the SQLite lock holder waits for a writer that holds the lock before giving up (and
# the work is done on one connection instead).
LOCK_WAIT_MS = 2_000
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?")
_REPEATABLE = frozenset({"REPEATABLE READ", "SERIALIZABLE"})
FIRST_READ = text("SELECT count(*) FROM sqlite_schema")
T = TypeVar("T")


def engine_of(session: Session) -> Engine | None:
    """The engine a session reads through (None for a session bound to a connection)."""
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else None


def exported(session: Session) -> str | None:
    """PostgreSQL: the identifier of the session's snapshot, for another transaction to import
    while this one is open; None where the transaction has no one snapshot (READ COMMITTED
    reads each statement's own moment)."""
    connection = session.connection()
    if connection.get_isolation_level() not in _REPEATABLE:
        return None
    snapshot = str(connection.execute(text("SELECT pg_export_snapshot()")).scalar_one())
    return snapshot if _SNAPSHOT_ID.fullmatch(snapshot) else None


def importing(engine: Engine, snapshot: str) -> Session:
    """PostgreSQL: a read-only session on an exported snapshot."""
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"not a snapshot identifier: {snapshot!r}")
    session = Session(
        engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    )
    # The transaction's first statement; the identifier is checked above (SET binds nothing).
    session.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
    return session


def begun(engine: Engine) -> Session:
    """SQLite: a read-only session whose snapshot is taken now (a read transaction takes it at
    its first read, not at BEGIN)."""
    session = Session(engine.execution_options(sqlite_begin="DEFERRED"))
    session.execute(FIRST_READ)
    return session


@contextmanager
def pair(session: Session) -> Iterator[tuple[Session, Session | None]]:
    """``(main, other)``: two read-only sessions on one snapshot, or ``(session, None)`` where
    that cannot be had (a session bound to a connection, a PostgreSQL transaction that is not
    a snapshot, a SQLite file whose write lock cannot be taken). On PostgreSQL ``main`` is
    ``session`` itself; on SQLite both are new, begun together, and ``session`` (whose snapshot
    began earlier) is left as it is. The caller closes neither."""
    engine = engine_of(session)
    opened: list[Session] = []
    try:
        found = None
        if engine is not None and engine.dialect.name == "postgresql":
            snapshot = exported(session)
            if snapshot is not None:
                opened.append(importing(engine, snapshot))
                found = session, opened[0]
        elif engine is not None and engine.dialect.name == "sqlite":
            with writers_held(engine) as held:
                if held:
                    opened.extend(begun(engine) for _ in range(2))
                    found = opened[0], opened[1]
        yield found or (session, None)
    finally:
        for other in opened:
            other.close()


@contextmanager
def writers_held(engine: Engine) -> Iterator[bool]:
    """Whether the write lock was taken: while inside, no other connection can commit."""
    raw = engine.raw_connection()
    cursor: Any = raw.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_MS}")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except engine.dialect.loaded_dbapi.Error:
            yield False  # busy, or a file opened read-only
            return
        try:
            yield True
        finally:
            cursor.execute("ROLLBACK")
    finally:
        with suppress(Exception):
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.close()
        raw.close()


class Background(Generic[T]):
    """``work(session)`` on a thread of its own (the driver waits on the database without the
    interpreter's lock, so the two overlap); ``result`` waits for it and raises what it raised,
    ``cancel`` interrupts the statement it is running."""

    def __init__(self, work: Callable[[Session], T], session: Session) -> None:
        # Taken here, in the caller's thread: a session is not to be shared between threads.
        self._driver: Any = session.connection().connection.driver_connection
        self._value: list[T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(work, session), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[Session], T], session: Session) -> None:
        try:
            self._value.append(work(session))
        except BaseException as exc:  # handed to the caller's thread by ``result``
            self._error.append(exc)

    def result(self) -> T:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._value[0]

    def cancel(self) -> None:
        """Stop the work and wait for its thread; its outcome is dropped. The statement running
        is interrupted, again until the thread ends (an interrupt between two statements, or
        before the first has begun, stops nothing)."""
        driver = self._driver  # sqlite3 interrupts; psycopg cancels on the server
        stop = getattr(driver, "interrupt", None) or getattr(driver, "cancel_safe", None)
        while self._thread.is_alive():
            with suppress(Exception):
                (stop or driver.cancel)()
            self._thread.join(0.05)
