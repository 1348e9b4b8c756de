"""Treatment courses: courses, their records, pregnancy tests, home-testing opt-ins,
prescriptions and dispense authorizations (one live authorization per course cycle).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "courses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("prescriber_id", sa.Uuid(), nullable=False),
        sa.Column("ruleset_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("enrolled_on", sa.Date(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("category_reason", sa.String(length=48), nullable=True),
        sa.Column("first_dispensed_on", sa.Date(), nullable=True),
        sa.Column("last_dose_on", sa.Date(), nullable=True),
        sa.Column("pregnancy_actions", sa.Boolean(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_courses_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["prescriber_id"], ["prescribers.id"], name=op.f("fk_courses_prescriber_id_prescribers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_courses")),
    )
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_courses_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_courses_prescriber_id"), ["prescriber_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_courses_state"), ["state"], unique=False)
        batch_op.create_index(
            "uq_courses_open_patient",
            ["patient_id"],
            unique=True,
            sqlite_where=sa.text("is_open"),
            postgresql_where=sa.text("is_open"),
        )

    op.create_table(
        "home_testing_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("prescriber_id", sa.Uuid(), nullable=False),
        sa.Column("procedure", sa.String(length=2000), nullable=False),
        sa.Column("enabled_on", sa.Date(), nullable=False),
        sa.Column("disabled_on", sa.Date(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prescriber_id"],
            ["prescribers.id"],
            name=op.f("fk_home_testing_policies_prescriber_id_prescribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home_testing_policies")),
    )
    with op.batch_alter_table("home_testing_policies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_home_testing_policies_prescriber_id"), ["prescriber_id"], unique=False
        )

    op.create_table(
        "course_records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_course_records_course_id_courses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_course_records")),
    )
    with op.batch_alter_table("course_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_course_records_course_id"), ["course_id", "kind"], unique=False
        )

    op.create_table(
        "pregnancy_tests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("specimen_date", sa.Date(), nullable=False),
        sa.Column("setting", sa.String(length=8), nullable=False),
        sa.Column("clia", sa.Boolean(), nullable=False),
        sa.Column("sensitivity_miu_ml", sa.Double(), nullable=False),
        sa.Column("result", sa.String(length=8), nullable=False),
        sa.Column("home_opt_in", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_pregnancy_tests_course_id_courses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pregnancy_tests")),
    )
    with op.batch_alter_table("pregnancy_tests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pregnancy_tests_course_id"), ["course_id"], unique=False
        )

    op.create_table(
        "prescriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("short_id", sa.String(length=16), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("prescriber_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("written_on", sa.Date(), nullable=False),
        sa.Column("office_visit_on", sa.Date(), nullable=False),
        sa.Column("days_supply", sa.Integer(), nullable=False),
        sa.Column("refills", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_prescriptions_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["prescriber_id"],
            ["prescribers.id"],
            name=op.f("fk_prescriptions_prescriber_id_prescribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescriptions")),
        sa.UniqueConstraint("short_id", name=op.f("uq_prescriptions_short_id")),
    )
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prescriptions_course_id"), ["course_id"], unique=False)

    op.create_table(
        "authorizations",
        sa.Column("number", sa.String(length=24), nullable=False),
        sa.Column("course_id", sa.Uuid(), nullable=False),
        sa.Column("prescription_id", sa.Uuid(), nullable=False),
        sa.Column("pharmacy_id", sa.Uuid(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by", sa.String(length=16), nullable=False),
        sa.Column("do_not_dispense_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("test_id", sa.Uuid(), nullable=True),
        sa.Column("days_supply", sa.Integer(), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_by", sa.String(length=16), nullable=True),
        sa.Column("reversal_reason", sa.String(length=200), nullable=True),
        sa.Column("dispensed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispensed_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"], ["courses.id"], name=op.f("fk_authorizations_course_id_courses")
        ),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"],
            ["pharmacies.id"],
            name=op.f("fk_authorizations_pharmacy_id_pharmacies"),
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_authorizations_prescription_id_prescriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["pregnancy_tests.id"],
            name=op.f("fk_authorizations_test_id_pregnancy_tests"),
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_authorizations")),
    )
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorizations_course_id"), ["course_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_authorizations_pharmacy_id"), ["pharmacy_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_authorizations_prescription_id"), ["prescription_id"], unique=False
        )
        batch_op.create_index(
            "uq_authorizations_live_cycle",
            ["course_id", "cycle"],
            unique=True,
            sqlite_where=sa.text("reversed_at IS NULL"),
            postgresql_where=sa.text("reversed_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("authorizations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_authorizations_live_cycle",
            sqlite_where=sa.text("reversed_at IS NULL"),
            postgresql_where=sa.text("reversed_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_authorizations_prescription_id"))
        batch_op.drop_index(batch_op.f("ix_authorizations_pharmacy_id"))
        batch_op.drop_index(batch_op.f("ix_authorizations_course_id"))

    op.drop_table("authorizations")
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prescriptions_course_id"))

    op.drop_table("prescriptions")
    with op.batch_alter_table("pregnancy_tests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pregnancy_tests_course_id"))

    op.drop_table("pregnancy_tests")
    with op.batch_alter_table("course_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_course_records_course_id"))

    op.drop_table("course_records")
    with op.batch_alter_table("home_testing_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_home_testing_policies_prescriber_id"))

    op.drop_table("home_testing_policies")
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_courses_open_patient",
            sqlite_where=sa.text("is_open"),
            postgresql_where=sa.text("is_open"),
        )
        batch_op.drop_index(batch_op.f("ix_courses_state"))
        batch_op.drop_index(batch_op.f("ix_courses_prescriber_id"))
        batch_op.drop_index(batch_op.f("ix_courses_patient_id"))

    op.drop_table("courses")
