"""The tables. Short ids are for people; UUIDs are the keys; audit rows are append-only."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from compliance.db.base import Base, Ident, Name, ShortId, Status, UUIDPk


def index_conditions(dialect: str) -> None:
    """Give each partial index (``info["where"]``) its condition for ``dialect``.

    Written into the index at class definition (``postgresql_where=``), a condition made
    SQLAlchemy import every dialect it names, so a SQLite command paid for the whole PostgreSQL
    package, its drivers and asyncio. The schema itself comes from the migrations, which spell
    these indexes out; the models' conditions serve Alembic's comparison, whose environment
    (``migrations/env.py``) calls this for the dialect it connects with."""
    for table in Base.metadata.tables.values():
        for index in table.indexes:
            where = index.info.get("where")
            if where is not None:
                index.dialect_kwargs[f"{dialect}_where"] = text(where)


class Administrator(Base):
    __tablename__ = "administrators"

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    status: Mapped[Status]
    created_at: Mapped[datetime]


class Prescriber(Base):
    __tablename__ = "prescribers"
    __table_args__ = (UniqueConstraint("id_system", "external_id"),)

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    id_system: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[Ident]
    status: Mapped[Status]
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    # The clinic's own IANA zone (None: not configured; the ruleset's zone governs).
    time_zone: Mapped[str | None] = mapped_column(String(64))


class Designee(Base):
    __tablename__ = "designees"

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    status: Mapped[Status]
    created_at: Mapped[datetime]


class DesigneeGrant(Base):
    """Lets a designee act for one prescriber, for the listed actions, until expiry/revocation."""

    __tablename__ = "designee_grants"
    __table_args__ = (Index(None, "designee_id", "prescriber_id"),)

    id: Mapped[UUIDPk]
    designee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("designees.id"))
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescribers.id"))
    scopes: Mapped[list[str]]
    granted_at: Mapped[datetime]
    granted_by: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Pharmacy(Base):
    __tablename__ = "pharmacies"
    __table_args__ = (UniqueConstraint("id_system", "external_id"),)

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    id_system: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[Ident]
    time_zone: Mapped[str] = mapped_column(String(64))
    status: Mapped[Status]
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    activation_expires_on: Mapped[date | None]


class Pharmacist(Base):
    __tablename__ = "pharmacists"

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    pharmacy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pharmacies.id"), index=True)
    status: Mapped[Status]
    created_at: Mapped[datetime]


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (Index(None, "name_key", "date_of_birth"),)

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    name_key: Mapped[str] = mapped_column(String(200))
    date_of_birth: Mapped[date]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(16))


class PatientExternalId(Base):
    __tablename__ = "patient_external_ids"
    __table_args__ = (UniqueConstraint("system", "value"),)

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[Ident]


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


# Ids are drawn before the insert because the id is part of the hashed content.
AUDIT_ID_SEQUENCE = Sequence("audit_event_id_seq", metadata=Base.metadata)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain_id", "chain_seq"),
        Index(None, "occurred_at"),
        Index(None, "actor_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        AUDIT_ID_SEQUENCE,
        primary_key=True,
        autoincrement=False,
    )
    chain_id: Mapped[str] = mapped_column(String(64))
    chain_seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    actor_id: Mapped[str | None] = mapped_column(String(64))
    on_behalf_of: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    subjects: Mapped[list[str]]
    state_before: Mapped[str | None] = mapped_column(String(32))
    state_after: Mapped[str | None] = mapped_column(String(32))
    reason_codes: Mapped[list[str]]
    ruleset_id: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditSubject(Base):
    """Index of every subject an event names, so the log filters by subject without a scan."""

    __tablename__ = "audit_event_subjects"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("audit_events.id"),
        primary_key=True,
    )


class AuditChainHead(Base):
    """The last event of each chain; locked per append, so chains append independently."""

    __tablename__ = "audit_chain_heads"

    chain_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    last_event_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    checkpointed_seq: Mapped[int] = mapped_column(Integer, default=0)


class Course(Base):
    """One treatment course of one patient, governed by one ruleset at a time; only an audited
    migration (``Compliance.migrate_courses``) moves it to another version of its programme."""

    __tablename__ = "courses"
    __table_args__ = (
        # At most one open course per patient, enforced by the database itself.
        Index(
            "uq_courses_open_patient",
            "patient_id",
            unique=True,
            info={"where": "is_open"},
        ),
        # The worklist finds the courses it must read through these (compliance.api.worklist).
        Index("ix_courses_attention_checked", "attention_checked"),
        Index("ix_courses_attention_from", "attention_from"),
        Index("ix_courses_pregnancy_actions", "pregnancy_actions"),
    )

    id: Mapped[UUIDPk]
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescribers.id"), index=True)
    ruleset_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(24), index=True)
    is_open: Mapped[bool]
    cycle: Mapped[int] = mapped_column(Integer)
    enrolled_on: Mapped[date]
    category: Mapped[str | None] = mapped_column(String(32))
    category_reason: Mapped[str | None] = mapped_column(String(48))
    first_dispensed_on: Mapped[date | None]
    last_dose_on: Mapped[date | None]
    pregnancy_actions: Mapped[bool]
    # Orders the course's records, tests and prescriptions even when they share an instant.
    last_seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The worklist's index (compliance.api.worklist), derived after every change of the
    # course: the first day a flag is due, the last day a flag can show when every flag ends
    # (windows closing), and the day this was worked out (NULL: not yet, always examined).
    attention_from: Mapped[date | None]
    attention_until: Mapped[date | None]
    attention_checked: Mapped[date | None]


class CourseRecord(Base):
    """A dated fact about a course that needs no table of its own: consent, counselling,
    comprehension, contraception entries and confirmations, category changes, reports."""

    __tablename__ = "course_records"
    __table_args__ = (Index(None, "course_id", "kind"),)

    id: Mapped[UUIDPk]
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"))
    kind: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    effective_on: Mapped[date]
    payload: Mapped[dict[str, Any]]
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(16))


class PregnancyTest(Base):
    __tablename__ = "pregnancy_tests"

    id: Mapped[UUIDPk]
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    specimen_date: Mapped[date]
    setting: Mapped[str] = mapped_column(String(8))
    clia: Mapped[bool]
    sensitivity_miu_ml: Mapped[float]
    result: Mapped[str] = mapped_column(String(8))
    home_opt_in: Mapped[bool]
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(16))


class HomeTestingPolicy(Base):
    """A prescriber's opt-in to home pregnancy tests, with their anti-falsification procedure."""

    __tablename__ = "home_testing_policies"

    id: Mapped[UUIDPk]
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescribers.id"), index=True)
    procedure: Mapped[str] = mapped_column(String(2000))
    enabled_on: Mapped[date]
    disabled_on: Mapped[date | None]
    recorded_at: Mapped[datetime]


class Prescription(Base):
    __tablename__ = "prescriptions"

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"), index=True)
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescribers.id"))
    seq: Mapped[int] = mapped_column(Integer)
    cycle: Mapped[int] = mapped_column(Integer)
    written_on: Mapped[date]
    office_visit_on: Mapped[date]
    days_supply: Mapped[int] = mapped_column(Integer)
    refills: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class Authorization(Base):
    """A dispense authorization (RMA). The database holds at most one live authorization per
    course cycle, whatever races between pharmacy terminals."""

    __tablename__ = "authorizations"
    __table_args__ = (
        Index(
            "uq_authorizations_live_cycle",
            "course_id",
            "cycle",
            unique=True,
            info={"where": "reversed_at IS NULL"},
        ),
        # The authorizations still waiting for their pickup (few, whatever the history).
        Index(
            "ix_authorizations_waiting",
            "course_id",
            info={"where": "reversed_at IS NULL AND dispensed_at IS NULL"},
        ),
        Index(
            "uq_authorizations_idempotency",
            "pharmacy_id",
            "idempotency_key",
            unique=True,
            info={"where": "idempotency_key IS NOT NULL"},
        ),
    )

    number: Mapped[str] = mapped_column(String(24), primary_key=True)
    course_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("courses.id"), index=True)
    prescription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prescriptions.id"), index=True)
    pharmacy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pharmacies.id"), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(16))
    do_not_dispense_after: Mapped[datetime | None]
    test_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pregnancy_tests.id"))
    days_supply: Mapped[int] = mapped_column(Integer)
    reversed_at: Mapped[datetime | None]
    reversed_by: Mapped[str | None] = mapped_column(String(16))
    reversal_reason: Mapped[str | None] = mapped_column(String(200))
    dispensed_at: Mapped[datetime | None]
    dispensed_by: Mapped[str | None] = mapped_column(String(16))
    # A pharmacy's own request id: a retried request returns the authorization it produced.
    idempotency_key: Mapped[str | None] = mapped_column(String(64))


class ApiClient(Base):
    """A calling system (pharmacy terminal, prescriber's system, administrator's tool), bound to
    one party by its short id; ``scopes`` narrow what that party's role allows."""

    __tablename__ = "api_clients"

    id: Mapped[UUIDPk]
    short_id: Mapped[ShortId]
    name: Mapped[Name]
    kind: Mapped[str] = mapped_column(String(32))
    party: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None]


class ApiKey(Base):
    """One key of a client: only the keyed hash of its secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[UUIDPk]
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_clients.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    pepper_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
