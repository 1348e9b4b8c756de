"""The tables. Short ids are for people; UUIDs are the keys; audit rows are append-only."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Sequence, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from compliance.db.base import Base, Ident, Name, ShortId, Status, UUIDPk


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
