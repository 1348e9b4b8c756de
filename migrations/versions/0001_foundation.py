"""Foundation: parties and roles, settings, the hash-chained audit trail and its triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANT = sa.DateTime(timezone=True)
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Tables whose rows may never change or disappear once written.
APPEND_ONLY = ("audit_events", "audit_event_subjects")


def _person_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("short_id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "administrators",
        *_person_columns(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_administrators")),
        sa.UniqueConstraint("short_id", name=op.f("uq_administrators_short_id")),
    )
    op.create_table(
        "prescribers",
        *_person_columns(),
        sa.Column("id_system", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("activated_at", INSTANT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescribers")),
        sa.UniqueConstraint(
            "id_system", "external_id", name=op.f("uq_prescribers_id_system_external_id")
        ),
        sa.UniqueConstraint("short_id", name=op.f("uq_prescribers_short_id")),
    )
    op.create_table(
        "designees",
        *_person_columns(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_designees")),
        sa.UniqueConstraint("short_id", name=op.f("uq_designees_short_id")),
    )
    op.create_table(
        "designee_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("designee_id", sa.Uuid(), nullable=False),
        sa.Column("prescriber_id", sa.Uuid(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("granted_at", INSTANT, nullable=False),
        sa.Column("granted_by", sa.String(16), nullable=False),
        sa.Column("expires_at", INSTANT, nullable=True),
        sa.Column("revoked_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(
            ["designee_id"], ["designees.id"], name=op.f("fk_designee_grants_designee_id_designees")
        ),
        sa.ForeignKeyConstraint(
            ["prescriber_id"],
            ["prescribers.id"],
            name=op.f("fk_designee_grants_prescriber_id_prescribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_designee_grants")),
    )
    op.create_index(
        op.f("ix_designee_grants_designee_id"), "designee_grants", ["designee_id", "prescriber_id"]
    )
    op.create_table(
        "pharmacies",
        *_person_columns(),
        sa.Column("id_system", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("activated_at", INSTANT, nullable=True),
        sa.Column("activation_expires_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacies")),
        sa.UniqueConstraint(
            "id_system", "external_id", name=op.f("uq_pharmacies_id_system_external_id")
        ),
        sa.UniqueConstraint("short_id", name=op.f("uq_pharmacies_short_id")),
    )
    op.create_table(
        "pharmacists",
        *_person_columns(),
        sa.Column("pharmacy_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"], ["pharmacies.id"], name=op.f("fk_pharmacists_pharmacy_id_pharmacies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pharmacists")),
        sa.UniqueConstraint("short_id", name=op.f("uq_pharmacists_short_id")),
    )
    op.create_index(op.f("ix_pharmacists_pharmacy_id"), "pharmacists", ["pharmacy_id"])
    op.create_table(
        "patients",
        *_person_columns(),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("created_by", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("short_id", name=op.f("uq_patients_short_id")),
    )
    op.create_index(op.f("ix_patients_name_key"), "patients", ["name_key", "date_of_birth"])
    op.create_table(
        "patient_external_ids",
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(32), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_patient_external_ids_patient_id_patients"),
        ),
        sa.PrimaryKeyConstraint("patient_id", "system", name=op.f("pk_patient_external_ids")),
        sa.UniqueConstraint("system", "value", name=op.f("uq_patient_external_ids_system_value")),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_settings")),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.CreateSequence(sa.Sequence("audit_event_id_seq")))
    op.create_table(
        "audit_events",
        sa.Column("id", EVENT_ID, autoincrement=False, nullable=False),
        sa.Column("chain_id", sa.String(64), nullable=False),
        sa.Column("chain_seq", sa.Integer(), nullable=False),
        sa.Column("occurred_at", INSTANT, nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("on_behalf_of", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("state_before", sa.String(32), nullable=True),
        sa.Column("state_after", sa.String(32), nullable=True),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("ruleset_id", sa.String(32), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint(
            "chain_id", "chain_seq", name=op.f("uq_audit_events_chain_id_chain_seq")
        ),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    op.create_index(op.f("ix_audit_events_actor_id"), "audit_events", ["actor_id"])
    op.create_index(op.f("ix_audit_events_occurred_at"), "audit_events", ["occurred_at"])
    op.create_table(
        "audit_event_subjects",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("event_id", EVENT_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["audit_events.id"],
            name=op.f("fk_audit_event_subjects_event_id_audit_events"),
        ),
        sa.PrimaryKeyConstraint("subject", "event_id", name=op.f("pk_audit_event_subjects")),
    )
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain_id", sa.String(64), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_event_id", EVENT_ID, nullable=False),
        sa.Column("checkpointed_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_audit_chain_heads")),
    )
    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION compliance_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'append-only table %: % is not allowed', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION compliance_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only()"
            )
        op.execute(
            "CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads "
            "FOR EACH ROW EXECUTE FUNCTION compliance_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_chain_heads_no_truncate BEFORE TRUNCATE ON audit_chain_heads "
            "FOR EACH STATEMENT EXECUTE FUNCTION compliance_append_only()"
        )
    else:
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'append-only table {table}: {verb} is not allowed'); END"
                )
        op.execute(
            "CREATE TRIGGER audit_chain_heads_no_delete BEFORE DELETE ON audit_chain_heads "
            "BEGIN SELECT RAISE(ABORT, 'append-only table audit_chain_heads: DELETE is not allowed'); END"
        )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_heads_no_delete ON audit_chain_heads")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_heads_no_truncate ON audit_chain_heads")
        op.execute("DROP FUNCTION IF EXISTS compliance_append_only()")
    else:
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_heads_no_delete")


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("audit_chain_heads")
    op.drop_table("audit_event_subjects")
    op.drop_index(op.f("ix_audit_events_occurred_at"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_actor_id"), table_name="audit_events")
    op.drop_table("audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("audit_event_id_seq")))
    op.drop_table("settings")
    op.drop_table("patient_external_ids")
    op.drop_index(op.f("ix_patients_name_key"), table_name="patients")
    op.drop_table("patients")
    op.drop_index(op.f("ix_pharmacists_pharmacy_id"), table_name="pharmacists")
    op.drop_table("pharmacists")
    op.drop_table("pharmacies")
    op.drop_index(op.f("ix_designee_grants_designee_id"), table_name="designee_grants")
    op.drop_table("designee_grants")
    op.drop_table("designees")
    op.drop_table("prescribers")
    op.drop_table("administrators")
