"""The worklist's index on each course: when its flags can show.

Existing courses get none (NULL): the worklist reads them every time, as before, until the
course next changes or ``Compliance.migrate`` works the index out for them. The indexes let the
worklist find the few courses it must read without reading the others.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("attention_from", "attention_until", "attention_checked")
_INDEXED = ("attention_checked", "attention_from", "pregnancy_actions")
_WAITING = sa.text("reversed_at IS NULL AND dispensed_at IS NULL")


def upgrade() -> None:
    for name in _COLUMNS:
        op.add_column("courses", sa.Column(name, sa.Date(), nullable=True))
    for name in _INDEXED:
        op.create_index(f"ix_courses_{name}", "courses", [name])
    op.create_index(
        "ix_authorizations_waiting",
        "authorizations",
        ["course_id"],
        sqlite_where=_WAITING,
        postgresql_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_authorizations_waiting", table_name="authorizations")
    for name in _INDEXED:
        op.drop_index(f"ix_courses_{name}", table_name="courses")
    # A plain column drops in place on both backends (SQLite since 3.35); a batch copy would
    # drop ``courses`` while records, tests and prescriptions still refer to it.
    for name in _COLUMNS:
        op.execute(f"ALTER TABLE courses DROP COLUMN {name}")
