"""The clinic's own time zone on each prescriber.

Existing prescribers get none: their courses keep being judged in their ruleset's zone, as
before, until an administrator sets one.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("prescribers", sa.Column("time_zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Both backends drop a plain column in place (SQLite since 3.35): a batch copy of the table
    # would drop ``prescribers`` while courses and grants still refer to it.
    op.execute("ALTER TABLE prescribers DROP COLUMN time_zone")
