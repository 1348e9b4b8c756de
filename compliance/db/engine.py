"""Engines for the two supported databases, set up for durability.

SQLite: WAL, ``synchronous=FULL``, ``foreign_keys=ON`` and a busy timeout on every connection, and
write transactions that begin with ``BEGIN IMMEDIATE`` so a read-then-write never fails half-way
with "database is locked". A new database file is created readable by its owner only.
PostgreSQL: psycopg 3, with a lock timeout (``COMPLIANCE_LOCK_TIMEOUT_MS``, default 10 s) so a
writer blocked behind another never waits forever: the timeout is retried, then reported busy.
A pooled connection is pinged before use only after it sat idle (``PING_AFTER_IDLE``), not on
every checkout as ``pool_pre_ping`` would: a busy service saves a round trip per transaction,
and a connection that a restart or failover dropped while idle is still replaced unseen.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError

from compliance.db.direct import Direct
from compliance.errors import DatabaseNotReady, InvalidInput

DEFAULT_URL = "sqlite:///compliance.db"
URL_ENV = "COMPLIANCE_DATABASE_URL"
BUSY_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_ENV = "COMPLIANCE_LOCK_TIMEOUT_MS"
DEFAULT_LOCK_TIMEOUT_MS = 10_000
#: The scheme spellings accepted for PostgreSQL (libpq and most tools also write ``postgres://``).
POSTGRES_SPELLINGS = frozenset({"postgresql", "postgres", "pgsql"})
#: Seconds a pooled PostgreSQL connection may sit unused before it is pinged at checkout.
PING_AFTER_IDLE = 10.0


def resolve_url(url: str | None = None) -> str:
    """Explicit URL, else ``COMPLIANCE_DATABASE_URL``, else ``compliance.db`` in this folder."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
        _ = parsed.port  # a port that is not a number fails only when read
    except (ArgumentError, ValueError):
        raise InvalidInput("database URL", f"{url!r} is not a database URL") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in POSTGRES_SPELLINGS:
        if driver not in {"", "psycopg"}:
            raise InvalidInput("database URL", "PostgreSQL is supported through psycopg 3 only")
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise InvalidInput("database URL", f"unsupported database {backend!r}")
    return parsed


def make_engine(url: str | None = None, *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``; with ``create=False`` a missing SQLite file is an error, not made."""
    parsed = parse_url(resolve_url(url))
    if parsed.get_backend_name() == "sqlite":
        if create:
            _create_private_file(parsed)
        else:
            _require_file(parsed)
        engine = create_engine(parsed, **kwargs)
        configure_sqlite(engine)
        return engine
    timeout = lock_timeout_ms()
    engine = create_engine(parsed, connect_args={"options": f"-c lock_timeout={timeout}"}, **kwargs)
    ping_when_idle(engine)
    return engine


def ping_when_idle(engine: Engine, after: float = PING_AFTER_IDLE) -> None:
    """Ping a connection at checkout if it was idle for ``after`` seconds; a dead one is
    replaced by the pool (up to three tries), as ``pool_pre_ping`` does for every checkout.

    A connection used within the last ``after`` seconds is trusted: if the server dropped it
    in that moment, the call fails as ``DatabaseNotReady`` (HTTP 503 with ``Retry-After``) and
    the pool discards every connection of that generation.
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi: Any, record: Any) -> None:
        record.info["compliance_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _maybe_ping(dbapi: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("compliance_idle_since")
        if since is None or time.monotonic() - since < after:
            return
        try:
            alive = engine.dialect.do_ping(dbapi)
        except Exception:  # whatever the driver raises, the connection is gone
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection was dropped while idle")


def lock_timeout_ms() -> int:
    """How long a PostgreSQL writer waits for a row lock before the attempt is retried."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, str(DEFAULT_LOCK_TIMEOUT_MS))
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(
            LOCK_TIMEOUT_ENV, f"{raw!r} is not a whole number of milliseconds"
        ) from None
    if not 1 <= value <= 600_000:
        raise InvalidInput(LOCK_TIMEOUT_ENV, "must be between 1 and 600000 milliseconds")
    return value


def _file_of(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _require_file(url: URL) -> None:
    path = _file_of(url)
    if path is None:
        return
    try:
        found = path.is_file()
        folder = path.parent.is_dir()
    except OSError as exc:
        raise InvalidInput("database URL", f"cannot open {str(path)!r}: {exc.strerror}") from None
    if not folder:
        raise InvalidInput("database URL", f"folder {str(path.parent)!r} does not exist")
    if len(path.name) > 255:
        raise InvalidInput("database URL", f"file name {path.name[:20]!r}... is too long")
    if not found:
        raise DatabaseNotReady(
            f"no database at {str(path)!r}: check --db (or COMPLIANCE_DATABASE_URL), "
            "or create one with 'compliance init'"
        )


def _create_private_file(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    try:
        if path.exists():
            return
        if not path.parent.exists():
            raise InvalidInput("database URL", f"folder {str(path.parent)!r} does not exist")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise InvalidInput("database URL", f"cannot create {database!r}: {exc.strerror}") from None
    os.close(fd)


# Every transaction starts with one of these: run on the driver's cursor (``Direct``).
_BEGIN = {mode: Direct(text(f"BEGIN {mode}")) for mode in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE")}


def configure_sqlite(engine: Engine) -> None:
    """Set the durability pragmas and take the write lock at BEGIN. Idempotent per engine."""
    if getattr(engine, "_compliance_sqlite", False):
        return
    engine._compliance_sqlite = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below, not the driver, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        _BEGIN[mode].run(conn, {})
