"""Alembic environment, shared by the ``alembic`` command and the library's own migrate calls.

From code, the caller passes an open connection in ``config.attributes["connection"]``; from the
command line, the URL comes from ``COMPLIANCE_DATABASE_URL`` (default ``sqlite:///compliance.db``).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from compliance.db.engine import make_engine
from compliance.db.models import Base, index_conditions

config = context.config
target_metadata = Base.metadata


def _configure(connection: Any) -> None:
    index_conditions(connection.dialect.name)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


connection = config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
if connection is not None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
