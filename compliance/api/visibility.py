"""Minimum necessary access: which records each role may read, as SQL conditions.

The permission table says which actions a role may take; this module says which rows those
actions reach. Administrators see everything. A prescriber sees their own patients (a course
with them, or registered by them or for them) and their own designees and grants; a designee
sees only the grantor's patients, and themselves and their grants; a pharmacist sees their own
pharmacy and its pharmacists, and reaches a patient only through the prescription in hand (the
dispense steps), never by name. A record out of reach is refused as ``OUT_OF_SCOPE`` when it was
asked for by id, and left out when a list was asked for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import Session

from compliance.api.authz import Actor, refuse
from compliance.db import models as m
from compliance.domain import reasons as rc
from compliance.domain.ids import Kind
from compliance.domain.roles import Action, Role


def patients(actor: Actor) -> ColumnElement[bool]:
    """The patients ``actor`` may look up or correct."""
    if actor.role is Role.ADMINISTRATOR:
        return true()
    if actor.role in {Role.PRESCRIBER, Role.DESIGNEE}:
        owner = actor.prescriber_uuid  # a designee's: the grantor's
        if owner is None:
            return false()
        prescriber_id = select(m.Prescriber.short_id).where(m.Prescriber.id == owner)
        course = exists().where(
            m.Course.patient_id == m.Patient.id, m.Course.prescriber_id == owner
        )
        registered = exists().where(
            m.AuditSubject.subject == m.Patient.short_id,
            m.AuditEvent.id == m.AuditSubject.event_id,
            m.AuditEvent.action == Action.PATIENT_REGISTER.value,
            m.AuditEvent.outcome == "ok",
            or_(
                m.AuditEvent.actor_id.in_(prescriber_id),
                m.AuditEvent.on_behalf_of.in_(prescriber_id),
            ),
        )
        return or_(course, registered)
    if actor.role is Role.PATIENT:
        return m.Patient.id == actor.uuid
    return false()


def require_patient(session: Session, actor: Actor, action: Action, patient: m.Patient) -> None:
    if actor.role is Role.ADMINISTRATOR:
        return
    visible = session.execute(
        select(m.Patient.id).where(m.Patient.id == patient.id, patients(actor))
    ).first()
    if visible is None:
        raise refuse(action, [rc.OUT_OF_SCOPE], (patient.short_id,), actor.on_behalf_of)


def _grants_of(actor: Actor) -> ColumnElement[bool]:
    if actor.role is Role.PRESCRIBER:
        return m.DesigneeGrant.prescriber_id == actor.uuid
    if actor.role is Role.DESIGNEE:
        return m.DesigneeGrant.designee_id == actor.uuid
    return false()


def grants(actor: Actor) -> ColumnElement[bool]:
    """The designee grants ``actor`` may read: their own, given or held."""
    if actor.role is Role.ADMINISTRATOR:
        return true()
    if actor.role in {Role.PRESCRIBER, Role.DESIGNEE}:
        return _grants_of(actor)
    raise refuse(Action.PARTY_READ, [rc.OUT_OF_SCOPE], (), actor.on_behalf_of)


def people(actor: Actor, kind: Kind, model: Any) -> ColumnElement[bool]:
    """The people (or pharmacies) of ``kind`` ``actor`` may list; refused when there could be
    none."""
    condition = _people(actor, kind, model)
    if condition is None:
        raise refuse(Action.PARTY_READ, [rc.OUT_OF_SCOPE], (), actor.on_behalf_of)
    return condition


def require_person(session: Session, actor: Actor, kind: Kind, model: Any, row: Any) -> None:
    """Refuse, naming the record, a person or pharmacy asked for by id that ``actor`` may not
    read."""
    condition = _people(actor, kind, model)
    reachable = condition is not None and (
        session.execute(select(model.id).where(model.id == row.id, condition)).first()
    )
    if not reachable:
        raise refuse(Action.PARTY_READ, [rc.OUT_OF_SCOPE], (row.short_id,), actor.on_behalf_of)


def _people(actor: Actor, kind: Kind, model: Any) -> ColumnElement[bool] | None:
    role = actor.role
    ident: ColumnElement[Any] = model.id
    if role is Role.ADMINISTRATOR:
        return true()
    if (kind, role) in {(Kind.PRESCRIBER, Role.PRESCRIBER), (Kind.DESIGNEE, Role.DESIGNEE)}:
        return ident == actor.uuid  # themselves
    if (kind, role) == (Kind.DESIGNEE, Role.PRESCRIBER):
        return ident.in_(select(m.DesigneeGrant.designee_id).where(_grants_of(actor)))
    if (kind, role) == (Kind.PRESCRIBER, Role.DESIGNEE):
        return ident.in_(select(m.DesigneeGrant.prescriber_id).where(_grants_of(actor)))
    if (kind, role) == (Kind.PHARMACIST, Role.PHARMACIST):
        pharmacy: ColumnElement[Any] = model.pharmacy_id
        return pharmacy == actor.pharmacy_uuid  # colleagues at the same pharmacy
    if (kind, role) == (Kind.PHARMACY, Role.PHARMACIST):
        return ident == actor.pharmacy_uuid
    return None
