"""Audit signing: SQLite rejects every statement form that would replace an audit row.

``INSERT OR REPLACE``, ``REPLACE INTO`` (and an upsert's conflict resolution) delete the row in the
way before inserting, and that implicit delete fires no DELETE trigger unless ``recursive_triggers``
is on, which no connection can be relied on to set: a BEFORE INSERT trigger refuses any insert that
collides with an existing event (id, chain position or hash) or index row. Signed checkpoints live
in the checkpoint events' payload and need no column. PostgreSQL already rejects these through its
row triggers (``ON CONFLICT DO UPDATE`` is an UPDATE); nothing changes there.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NO_REPLACE = {
    "audit_events": (
        "SELECT 1 FROM audit_events WHERE id = NEW.id "
        "OR (chain_id = NEW.chain_id AND chain_seq = NEW.chain_seq) OR hash = NEW.hash"
    ),
    "audit_event_subjects": (
        "SELECT 1 FROM audit_event_subjects "
        "WHERE subject = NEW.subject AND event_id = NEW.event_id"
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, clash in _NO_REPLACE.items():
        op.execute(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS ({clash}) "
            f"BEGIN SELECT RAISE(ABORT, 'append-only table {table}: REPLACE is not allowed'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _NO_REPLACE:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
