"""Patients: registered under an internal UUID and a short id, never matched by name and birth
date. A shared name and birth date only produces a warning for the clinic to look at."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.api import visibility
from compliance.api.authz import Actor
from compliance.api.parties import _flush_unique, _unique_short_id, load, record
from compliance.api.results import PatientInfo, PatientRegistration
from compliance.db import models as m
from compliance.domain import validate as v
from compliance.domain.ids import Kind, normalise
from compliance.domain.roles import Action
from compliance.errors import Conflict, InvalidInput, NotFound

# Birth dates are judged against the earliest calendar date anywhere, so a patient born "today"
# in the Pacific is never refused as born in the future.
_EARLIEST_ZONE = ZoneInfo("Etc/GMT+12")
MAX_EXTERNAL_IDS = 10
MAX_SYSTEM = 32


def info(session: Session, row: m.Patient) -> PatientInfo:
    ext = session.execute(
        select(m.PatientExternalId.system, m.PatientExternalId.value)
        .where(m.PatientExternalId.patient_id == row.id)
        .order_by(m.PatientExternalId.system)
    ).all()
    return PatientInfo(
        id=row.short_id,
        uuid=row.id,
        name=row.name,
        date_of_birth=row.date_of_birth,
        external_ids=dict(ext),
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _external_ids(raw: Mapping[str, object] | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("external_ids", "must map an id system to a value")
    if len(raw) > MAX_EXTERNAL_IDS:
        raise InvalidInput("external_ids", f"at most {MAX_EXTERNAL_IDS} external ids")
    cleaned: dict[str, str] = {}
    for system, value in raw.items():
        key = v.scheme("external_ids", system)
        if len(key) > MAX_SYSTEM:
            raise InvalidInput("external_ids", f"id system {key!r} is longer than {MAX_SYSTEM}")
        if key in cleaned:
            raise InvalidInput("external_ids", f"names the id system {key} twice")
        cleaned[key] = v.identifier(f"external_ids.{key}", value)
    return cleaned


def register(
    session: Session,
    actor: Actor,
    now: datetime,
    name: object,
    date_of_birth: object,
    external_ids: Mapping[str, object] | None = None,
) -> PatientRegistration:
    name = v.text("name", name)
    born = v.birth_date("date_of_birth", date_of_birth, now.astimezone(_EARLIEST_ZONE).date())
    ext = _external_ids(external_ids)
    key = v.name_key(name)
    similar = (
        session.execute(
            select(m.Patient.short_id)
            .where(m.Patient.name_key == key, m.Patient.date_of_birth == born)
            .order_by(m.Patient.short_id)
        )
        .scalars()
        .all()
    )
    row = m.Patient(
        short_id=_unique_short_id(session, Kind.PATIENT),
        name=name,
        name_key=key,
        date_of_birth=born,
        created_at=now,
        created_by=actor.short_id,
    )
    session.add(row)
    session.flush()
    for system, value in ext.items():
        session.add(m.PatientExternalId(patient_id=row.id, system=system, value=value))
    _flush_unique(session, "an external id given for this patient")
    record(
        session,
        actor,
        now,
        Action.PATIENT_REGISTER,
        subjects=[row.short_id],
        payload={
            "name": name,
            "date_of_birth": born.isoformat(),
            "external_ids": ext,
            "possible_duplicates": list(similar),
        },
    )
    return PatientRegistration(info(session, row), tuple(similar))


def add_external_id(
    session: Session, actor: Actor, now: datetime, ref: object, system: object, value: object
) -> PatientInfo:
    row = load(session, Kind.PATIENT, ref, "patient", lock=True)
    visibility.require_patient(session, actor, Action.PATIENT_UPDATE, row)
    ext = _external_ids({str(system): value}) if isinstance(system, str) else None
    if not ext:
        raise InvalidInput("system", "must be an id system name")
    ((key, val),) = ext.items()
    existing = session.get(m.PatientExternalId, (row.id, key))
    if existing is not None:
        raise Conflict(f"patient {row.short_id} already has a {key} id ({existing.value})")
    session.add(m.PatientExternalId(patient_id=row.id, system=key, value=val))
    _flush_unique(session, f"{key} id {val}")
    record(
        session,
        actor,
        now,
        Action.PATIENT_UPDATE,
        subjects=[row.short_id],
        payload={"external_id": {key: val}},
    )
    return info(session, row)


def show(session: Session, actor: Actor, ref: object) -> PatientInfo:
    """One patient, found by any of their ids, if ``actor`` may see them."""
    row = find_one(session, ref)
    visibility.require_patient(session, actor, Action.PATIENT_READ, row)
    return info(session, row)


def find_one(session: Session, ref: object) -> m.Patient:
    """By short id, internal UUID, or ``SYSTEM:VALUE`` external id."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("patient", "must be a patient id, UUID, or SYSTEM:VALUE external id")
    text = ref.strip()
    if normalise(text).startswith(f"{Kind.PATIENT.value}-"):
        return load(session, Kind.PATIENT, text, "patient")  # type: ignore[no-any-return]
    if ":" in text:
        system, _, value = text.partition(":")
        row = session.execute(
            select(m.Patient)
            .join(m.PatientExternalId, m.PatientExternalId.patient_id == m.Patient.id)
            .where(
                m.PatientExternalId.system == v.scheme("patient", system),
                m.PatientExternalId.value == v.identifier("patient", value),
            )
        ).scalar_one_or_none()
    else:
        row = session.get(m.Patient, v.uuid_value("patient", text))
    if row is None:
        raise NotFound("patient", text)
    return row


def search(
    session: Session, actor: Actor, name: object | None, date_of_birth: object | None, limit: int
) -> list[PatientInfo]:
    """The patients ``actor`` may see that match; others are left out, never counted."""
    v.whole_number("limit", limit, 1, 1000)
    stmt = (
        select(m.Patient)
        .where(visibility.patients(actor))
        .order_by(m.Patient.name_key, m.Patient.short_id)
        .limit(limit)
    )
    if name is not None:
        key = v.name_key(v.text("name", name))
        escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(m.Patient.name_key.like(f"%{escaped}%", escape="\\"))
    if date_of_birth is not None:
        stmt = stmt.where(
            m.Patient.date_of_birth == v.calendar_date("date_of_birth", date_of_birth)
        )
    return [info(session, row) for row in session.execute(stmt).scalars()]


def correct(
    session: Session,
    actor: Actor,
    now: datetime,
    ref: object,
    reason: object,
    name: object = None,
    date_of_birth: object = None,
) -> PatientInfo:
    """Correct a misspelt name or a wrong date of birth. The record changes; the audit event
    keeps what it was, what it became and why, so history is never rewritten."""
    why = v.text("reason", reason, max_len=500)
    if name is None and date_of_birth is None:
        raise InvalidInput("name", "give the corrected name or date of birth (or both)")
    row = load(session, Kind.PATIENT, ref, "patient", lock=True)
    visibility.require_patient(session, actor, Action.PATIENT_CORRECT, row)
    changes: dict[str, dict[str, str]] = {}
    if name is not None:
        new_name = v.text("name", name)
        if new_name != row.name:
            changes["name"] = {"from": row.name, "to": new_name}
            row.name, row.name_key = new_name, v.name_key(new_name)
    if date_of_birth is not None:
        today = now.astimezone(_EARLIEST_ZONE).date()
        born = v.birth_date("date_of_birth", date_of_birth, today)
        if born != row.date_of_birth:
            changes["date_of_birth"] = {
                "from": row.date_of_birth.isoformat(),
                "to": born.isoformat(),
            }
            row.date_of_birth = born
    if not changes:
        raise Conflict(f"patient {row.short_id} already has that name and date of birth")
    session.flush()
    record(
        session,
        actor,
        now,
        Action.PATIENT_CORRECT,
        subjects=[row.short_id],
        payload={"changes": changes, "reason": why},
    )
    return info(session, row)
