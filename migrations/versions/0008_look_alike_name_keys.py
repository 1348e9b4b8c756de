"""Patients' duplicate-warning keys fold look-alike characters across scripts.

The key is derived data, used only to warn about a possible duplicate and to search by name:
every existing patient's key is recomputed from the stored name. Downgrading keeps the new keys,
which the earlier code reads the same way (a wider fold, still only a warning).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from compliance.domain.validate import name_key

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_patients = sa.table(
    "patients",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_patients.c.id, _patients.c.name, _patients.c.name_key)).all()
    keys = [(row.id, row.name_key, name_key(row.name)) for row in rows]
    changed = [{"row_id": pk, "key": new} for pk, old, new in keys if new != old]
    if changed:
        bind.execute(
            _patients.update()
            .where(_patients.c.id == sa.bindparam("row_id"))
            .values(name_key=sa.bindparam("key")),
            changed,
        )


def downgrade() -> None:
    """Nothing to undo: the schema is unchanged and the wider keys remain valid keys."""
