"""Operations on people and pharmacies. Each runs inside the caller's transaction and writes its
audit event there, so the change and its record commit or vanish together."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compliance.api import changed_courses, visibility
from compliance.api.authz import Actor, grant_active, pharmacy_today, refuse
from compliance.api.results import (
    GrantInfo,
    PersonInfo,
    PharmacyInfo,
)
from compliance.audit.store import EventDraft, append
from compliance.db import models as m
from compliance.domain import reasons as rc
from compliance.domain import validate as v
from compliance.domain.ids import (
    Kind,
    check_mismatch,
    kind_of,
    near_misses,
    new_short_id,
    normalise,
)
from compliance.domain.lifecycle import (
    PHARMACY_LIFECYCLE,
    PRESCRIBER_LIFECYCLE,
    STAFF_LIFECYCLE,
    PharmacyStatus,
    PrescriberStatus,
    StaffStatus,
)
from compliance.domain.roles import DELEGABLE, Action, Role
from compliance.errors import Conflict, InvalidInput, NotFound

Row = TypeVar("Row", m.Administrator, m.Prescriber, m.Designee, m.Pharmacist, m.Pharmacy, m.Patient)

_KIND_MODEL: dict[Kind, Any] = {
    Kind.ADMINISTRATOR: m.Administrator,
    Kind.PRESCRIBER: m.Prescriber,
    Kind.DESIGNEE: m.Designee,
    Kind.PHARMACIST: m.Pharmacist,
    Kind.PHARMACY: m.Pharmacy,
    Kind.PATIENT: m.Patient,
    Kind.PRESCRIPTION: m.Prescription,
}
_LABEL = {
    Kind.ADMINISTRATOR: "administrator",
    Kind.PRESCRIBER: "prescriber",
    Kind.DESIGNEE: "designee",
    Kind.PHARMACIST: "pharmacist",
    Kind.PHARMACY: "pharmacy",
    Kind.PATIENT: "patient",
    Kind.PRESCRIPTION: "prescription",
    Kind.CLIENT: "API client",
}


def record(session: Session, actor: Actor, now: datetime, action: Action, **fields: Any) -> None:
    append(
        session,
        EventDraft(
            action=action.value,
            outcome="ok",
            actor_id=actor.short_id,
            on_behalf_of=actor.on_behalf_of,
            **fields,
        ),
        now,
    )


def checked_ref(kind: Kind, ref: object, field: str, session: Session | None = None) -> str:
    """``ref`` as a well-formed short id of ``kind``; the field name goes into the error. A wrong
    check symbol is reported as a typo, with the ids on record one typo away when ``session``
    is given to look them up."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput(field, f"must be a {_LABEL[kind]} id such as {kind.value}-XXXXXXXX")
    short = normalise(ref)
    if kind_of(short) is not kind:
        if short.startswith(f"{kind.value}-") and check_mismatch(short):
            raise InvalidInput(field, _typo(session, kind, short))
        raise InvalidInput(field, f"{ref!r} is not a {_LABEL[kind]} id ({kind.value}-XXXXXXXX)")
    return short


def _typo(session: Session | None, kind: Kind, short: str) -> str:
    said = f"{short}: the check character does not match (a typo?)"
    if session is None:
        return said
    model = _KIND_MODEL[kind]
    candidates = near_misses(short)
    known = session.execute(
        select(model.short_id).where(model.short_id.in_(candidates)).order_by(model.short_id)
    ).scalars()
    close = list(known)
    if not close:
        return f"{said}; no {_LABEL[kind]} id one typo away is on record"
    return f"{said}; did you mean {' or '.join(close)}?"


def load(session: Session, kind: Kind, ref: object, field: str, *, lock: bool = False) -> Any:
    """Fetch a row by its short id; the field name goes into the error when ``ref`` is bad."""
    short = checked_ref(kind, ref, field, session)
    model = _KIND_MODEL[kind]
    stmt = select(model).where(model.short_id == short)
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFound(_LABEL[kind], short)
    return row


def _flush_unique(session: Session, what: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"{what} is already registered") from None


def person_info(row: Any, role: Role, pharmacy: str | None = None) -> PersonInfo:
    return PersonInfo(
        id=row.short_id,
        uuid=row.id,
        role=role,
        name=row.name,
        status=(
            PrescriberStatus(row.status) if role is Role.PRESCRIBER else StaffStatus(row.status)
        ),
        created_at=row.created_at,
        id_system=getattr(row, "id_system", None),
        external_id=getattr(row, "external_id", None),
        pharmacy=pharmacy,
        time_zone=getattr(row, "time_zone", None),
    )


def pharmacy_info(row: m.Pharmacy) -> PharmacyInfo:
    return PharmacyInfo(
        id=row.short_id,
        uuid=row.id,
        name=row.name,
        id_system=row.id_system,
        external_id=row.external_id,
        time_zone=row.time_zone,
        status=PharmacyStatus(row.status),
        created_at=row.created_at,
        activation_expires_on=row.activation_expires_on,
    )


def _unique_short_id(session: Session, kind: Kind) -> str:
    model = _KIND_MODEL[kind]
    while True:
        candidate = new_short_id(kind)
        if session.execute(select(model.id).where(model.short_id == candidate)).first() is None:
            return candidate


# --- administrators ---------------------------------------------------------------------------


def create_first_administrator(session: Session, name: object, now: datetime) -> PersonInfo:
    name = v.text("name", name)
    if session.execute(select(func.count()).select_from(m.Administrator)).scalar_one():
        raise Conflict("this database already has an administrator; use 'compliance admin add'")
    row = m.Administrator(
        short_id=_unique_short_id(session, Kind.ADMINISTRATOR),
        name=name,
        status=StaffStatus.ACTIVE,
        created_at=now,
    )
    session.add(row)
    session.flush()
    me = Actor(row.short_id, row.id, Role.ADMINISTRATOR)
    record(
        session,
        me,
        now,
        Action.ADMINISTRATOR_CREATE,
        subjects=[row.short_id],
        state_after=row.status,
        payload={"name": name, "bootstrap": True},
    )
    return person_info(row, Role.ADMINISTRATOR)


def add_administrator(session: Session, actor: Actor, now: datetime, name: object) -> PersonInfo:
    name = v.text("name", name)
    row = m.Administrator(
        short_id=_unique_short_id(session, Kind.ADMINISTRATOR),
        name=name,
        status=StaffStatus.ACTIVE,
        created_at=now,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        now,
        Action.ADMINISTRATOR_CREATE,
        subjects=[row.short_id],
        state_after=row.status,
        payload={"name": name},
    )
    return person_info(row, Role.ADMINISTRATOR)


def deactivate_administrator(
    session: Session, actor: Actor, now: datetime, ref: object
) -> PersonInfo:
    row = load(session, Kind.ADMINISTRATOR, ref, "administrator", lock=True)
    before = row.status
    row.status = STAFF_LIFECYCLE.next_state(row.status, "deactivate")
    active = session.execute(
        select(func.count())
        .select_from(m.Administrator)
        .where(m.Administrator.status == StaffStatus.ACTIVE, m.Administrator.id != row.id)
    ).scalar_one()
    if not active:
        raise Conflict("cannot deactivate the last active administrator")
    record(
        session,
        actor,
        now,
        Action.ADMINISTRATOR_DEACTIVATE,
        subjects=[row.short_id],
        state_before=before,
        state_after=row.status,
    )
    return person_info(row, Role.ADMINISTRATOR)


# --- prescribers ------------------------------------------------------------------------------


def register_prescriber(
    session: Session,
    actor: Actor,
    now: datetime,
    name: object,
    external_id: object,
    id_system: object = "NPI",
    time_zone: object = None,
) -> PersonInfo:
    name = v.text("name", name)
    system = v.scheme("id_system", id_system)
    ext = v.external_id("external_id", system, external_id)
    zone = None if time_zone is None else v.time_zone("time_zone", time_zone)
    row = m.Prescriber(
        short_id=_unique_short_id(session, Kind.PRESCRIBER),
        name=name,
        id_system=system,
        external_id=ext,
        status=PrescriberStatus.REGISTERED,
        created_at=now,
        time_zone=zone,
    )
    session.add(row)
    _flush_unique(session, f"prescriber {system} {ext}")
    payload = {"name": name, "id_system": system, "external_id": ext}
    if zone is not None:
        payload["time_zone"] = zone
    record(
        session,
        actor,
        now,
        Action.PRESCRIBER_REGISTER,
        subjects=[row.short_id],
        state_after=row.status,
        payload=payload,
    )
    return person_info(row, Role.PRESCRIBER)


def set_prescriber_zone(
    session: Session, actor: Actor, now: datetime, ref: object, time_zone: object
) -> PersonInfo:
    """The clinic's own zone, where the ruleset judges the clinic's steps there; None clears it
    (the ruleset's zone then governs). Courses in flight are judged in the new zone from now on:
    their recorded dates do not move."""
    row = load(session, Kind.PRESCRIBER, ref, "prescriber", lock=True)
    zone = None if time_zone is None else v.time_zone("time_zone", time_zone)
    before = row.time_zone
    row.time_zone = zone
    changed_courses.note_prescriber(session, row.id)
    record(
        session,
        actor,
        now,
        Action.PRESCRIBER_ZONE_SET,
        subjects=[row.short_id],
        payload={"time_zone_before": before, "time_zone": zone},
    )
    return person_info(row, Role.PRESCRIBER)


_PRESCRIBER_EVENTS = {
    Action.PRESCRIBER_ACTIVATE: "activate",
    Action.PRESCRIBER_SUSPEND: "suspend",
    Action.PRESCRIBER_REINSTATE: "reinstate",
    Action.PRESCRIBER_DEACTIVATE: "deactivate",
}


def change_prescriber(
    session: Session,
    actor: Actor,
    now: datetime,
    action: Action,
    ref: object,
    note: str | None = None,
) -> PersonInfo:
    row = load(session, Kind.PRESCRIBER, ref, "prescriber", lock=True)
    before = row.status
    row.status = PRESCRIBER_LIFECYCLE.next_state(before, _PRESCRIBER_EVENTS[action])
    if action is Action.PRESCRIBER_ACTIVATE:
        row.activated_at = now
    changed_courses.note_prescriber(session, row.id)
    payload = {"note": v.text("note", note, max_len=500)} if note else {}
    record(
        session,
        actor,
        now,
        action,
        subjects=[row.short_id],
        state_before=before,
        state_after=row.status,
        payload=payload,
    )
    return person_info(row, Role.PRESCRIBER)


# --- designees and grants ---------------------------------------------------------------------


def register_designee(session: Session, actor: Actor, now: datetime, name: object) -> PersonInfo:
    name = v.text("name", name)
    row = m.Designee(
        short_id=_unique_short_id(session, Kind.DESIGNEE),
        name=name,
        status=StaffStatus.ACTIVE,
        created_at=now,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        now,
        Action.DESIGNEE_REGISTER,
        subjects=[row.short_id],
        state_after=row.status,
        payload={"name": name},
    )
    return person_info(row, Role.DESIGNEE)


def deactivate_designee(session: Session, actor: Actor, now: datetime, ref: object) -> PersonInfo:
    row = load(session, Kind.DESIGNEE, ref, "designee", lock=True)
    before = row.status
    row.status = STAFF_LIFECYCLE.next_state(before, "deactivate")
    record(
        session,
        actor,
        now,
        Action.DESIGNEE_DEACTIVATE,
        subjects=[row.short_id],
        state_before=before,
        state_after=row.status,
    )
    return person_info(row, Role.DESIGNEE)


def _own_prescriber_only(actor: Actor, action: Action, prescriber: m.Prescriber) -> None:
    if actor.role is Role.PRESCRIBER and actor.uuid != prescriber.id:
        raise refuse(action, [rc.OUT_OF_SCOPE], (prescriber.short_id,))


def grant_info(grant: m.DesigneeGrant, designee: str, prescriber: str, now: datetime) -> GrantInfo:
    return GrantInfo(
        designee=designee,
        prescriber=prescriber,
        scopes=tuple(grant.scopes),
        granted_at=grant.granted_at,
        granted_by=grant.granted_by,
        expires_at=grant.expires_at,
        revoked_at=grant.revoked_at,
        active=grant_active(grant, now),
    )


def _live_grant(
    session: Session, designee: m.Designee, prescriber: m.Prescriber, now: datetime
) -> m.DesigneeGrant | None:
    grants = session.execute(
        select(m.DesigneeGrant)
        .where(
            m.DesigneeGrant.designee_id == designee.id,
            m.DesigneeGrant.prescriber_id == prescriber.id,
        )
        .with_for_update()
    ).scalars()
    return next((g for g in grants if grant_active(g, now)), None)


def _chosen_scopes(scopes: list[str] | None) -> list[str]:
    """The delegable actions a grant covers (all of them when ``scopes`` is None)."""
    delegable = sorted(a.value for a in DELEGABLE)
    if scopes is not None and (
        isinstance(scopes, str) or not all(isinstance(x, str) for x in scopes)
    ):
        raise InvalidInput("scopes", "must be a list of action names")
    chosen = delegable if scopes is None else sorted(set(scopes))
    unknown = [s for s in chosen if s not in delegable]
    if unknown or not chosen:
        raise InvalidInput(
            "scopes",
            f"choose from {', '.join(delegable)}" + (f"; unknown: {unknown}" if unknown else ""),
        )
    return chosen


def grant_designee(
    session: Session,
    actor: Actor,
    now: datetime,
    designee_ref: object,
    prescriber_ref: object,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> GrantInfo:
    prescriber = load(session, Kind.PRESCRIBER, prescriber_ref, "prescriber")
    _own_prescriber_only(actor, Action.GRANT_CREATE, prescriber)
    designee = load(session, Kind.DESIGNEE, designee_ref, "designee")
    if designee.status != StaffStatus.ACTIVE:
        raise Conflict(f"designee {designee.short_id} is {designee.status}")
    chosen = _chosen_scopes(scopes)
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expires_at", "must be in the future")
    if _live_grant(session, designee, prescriber, now) is not None:
        raise Conflict(
            f"{designee.short_id} already holds a grant from {prescriber.short_id}; revoke it first"
        )
    grant = m.DesigneeGrant(
        designee_id=designee.id,
        prescriber_id=prescriber.id,
        scopes=chosen,
        granted_at=now,
        granted_by=actor.short_id,
        expires_at=expires_at,
    )
    session.add(grant)
    session.flush()
    record(
        session,
        actor,
        now,
        Action.GRANT_CREATE,
        subjects=[designee.short_id, prescriber.short_id],
        payload={"scopes": chosen, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return grant_info(grant, designee.short_id, prescriber.short_id, now)


def amend_grant(
    session: Session,
    actor: Actor,
    now: datetime,
    designee_ref: object,
    prescriber_ref: object,
    reason: object,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    clear_expiry: bool = False,
) -> GrantInfo:
    """Correct a live grant's scope or expiry. The grant keeps when and by whom it was given;
    the audit event records what changed, from what, and why."""
    why = v.text("reason", reason, max_len=500)
    if scopes is None and expires_at is None and not clear_expiry:
        raise InvalidInput("scopes", "give the corrected scopes, expiry, or both")
    if clear_expiry and expires_at is not None:
        raise InvalidInput("expires_at", "give an expiry or clear it, not both")
    prescriber = load(session, Kind.PRESCRIBER, prescriber_ref, "prescriber")
    _own_prescriber_only(actor, Action.GRANT_AMEND, prescriber)
    designee = load(session, Kind.DESIGNEE, designee_ref, "designee")
    grant = _live_grant(session, designee, prescriber, now)
    if grant is None:
        raise NotFound("live grant", f"{designee.short_id} from {prescriber.short_id}")
    changes: dict[str, dict[str, object]] = {}
    if scopes is not None:
        chosen = _chosen_scopes(scopes)
        if chosen != sorted(grant.scopes):
            changes["scopes"] = {"from": sorted(grant.scopes), "to": chosen}
            grant.scopes = chosen
    if expires_at is not None or clear_expiry:
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("expires_at", "must be in the future")
        if expires_at != grant.expires_at:
            before = grant.expires_at.isoformat() if grant.expires_at else None
            after = expires_at.isoformat() if expires_at else None
            changes["expires_at"] = {"from": before, "to": after}
            grant.expires_at = expires_at
    if not changes:
        raise Conflict("the grant already has that scope and expiry")
    session.flush()
    record(
        session,
        actor,
        now,
        Action.GRANT_AMEND,
        subjects=[designee.short_id, prescriber.short_id],
        payload={"changes": changes, "reason": why},
    )
    return grant_info(grant, designee.short_id, prescriber.short_id, now)


def revoke_grant(
    session: Session, actor: Actor, now: datetime, designee_ref: object, prescriber_ref: object
) -> GrantInfo:
    prescriber = load(session, Kind.PRESCRIBER, prescriber_ref, "prescriber")
    _own_prescriber_only(actor, Action.GRANT_REVOKE, prescriber)
    designee = load(session, Kind.DESIGNEE, designee_ref, "designee")
    grant = _live_grant(session, designee, prescriber, now)
    if grant is None:
        raise NotFound("active grant", f"{designee.short_id} for {prescriber.short_id}")
    grant.revoked_at = now
    record(
        session, actor, now, Action.GRANT_REVOKE, subjects=[designee.short_id, prescriber.short_id]
    )
    return grant_info(grant, designee.short_id, prescriber.short_id, now)


def list_grants(
    session: Session, actor: Actor, now: datetime, designee_ref: object | None
) -> list[GrantInfo]:
    stmt = (
        select(m.DesigneeGrant, m.Designee.short_id, m.Prescriber.short_id)
        .join(m.Designee, m.Designee.id == m.DesigneeGrant.designee_id)
        .join(m.Prescriber, m.Prescriber.id == m.DesigneeGrant.prescriber_id)
        .where(visibility.grants(actor))
        .order_by(m.DesigneeGrant.granted_at)
    )
    if designee_ref is not None:
        designee = load(session, Kind.DESIGNEE, designee_ref, "designee")
        stmt = stmt.where(m.DesigneeGrant.designee_id == designee.id)
    return [grant_info(g, d, p, now) for g, d, p in session.execute(stmt)]


# --- pharmacies and pharmacists ---------------------------------------------------------------


def register_pharmacy(
    session: Session,
    actor: Actor,
    now: datetime,
    name: object,
    external_id: object,
    time_zone: object,
    id_system: object = "NCPDP",
) -> PharmacyInfo:
    name = v.text("name", name)
    system = v.scheme("id_system", id_system)
    ext = v.external_id("external_id", system, external_id)
    zone = v.time_zone("time_zone", time_zone)
    row = m.Pharmacy(
        short_id=_unique_short_id(session, Kind.PHARMACY),
        name=name,
        id_system=system,
        external_id=ext,
        time_zone=zone,
        status=PharmacyStatus.REGISTERED,
        created_at=now,
    )
    session.add(row)
    _flush_unique(session, f"pharmacy {system} {ext}")
    record(
        session,
        actor,
        now,
        Action.PHARMACY_REGISTER,
        subjects=[row.short_id],
        state_after=row.status,
        payload={"name": name, "id_system": system, "external_id": ext, "time_zone": zone},
    )
    return pharmacy_info(row)


def one_year_after(day: date) -> date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


def activate_pharmacy(
    session: Session, actor: Actor, now: datetime, ref: object, expires_on: object | None = None
) -> PharmacyInfo:
    row = load(session, Kind.PHARMACY, ref, "pharmacy", lock=True)
    before = row.status
    row.status = PHARMACY_LIFECYCLE.next_state(before, "activate")
    today = pharmacy_today(row, now)
    expiry = (
        one_year_after(today) if expires_on is None else v.calendar_date("expires_on", expires_on)
    )
    if expiry <= today:
        raise InvalidInput(
            "expires_on", f"{expiry.isoformat()} is not after today ({today.isoformat()})"
        )
    row.activated_at, row.activation_expires_on = now, expiry
    record(
        session,
        actor,
        now,
        Action.PHARMACY_ACTIVATE,
        subjects=[row.short_id],
        state_before=before,
        state_after=row.status,
        payload={"activation_expires_on": expiry.isoformat()},
    )
    return pharmacy_info(row)


def deactivate_pharmacy(session: Session, actor: Actor, now: datetime, ref: object) -> PharmacyInfo:
    row = load(session, Kind.PHARMACY, ref, "pharmacy", lock=True)
    before = row.status
    row.status = PHARMACY_LIFECYCLE.next_state(before, "deactivate")
    record(
        session,
        actor,
        now,
        Action.PHARMACY_DEACTIVATE,
        subjects=[row.short_id],
        state_before=before,
        state_after=row.status,
    )
    return pharmacy_info(row)


def register_pharmacist(
    session: Session, actor: Actor, now: datetime, name: object, pharmacy_ref: object
) -> PersonInfo:
    name = v.text("name", name)
    pharmacy = load(session, Kind.PHARMACY, pharmacy_ref, "pharmacy")
    if pharmacy.status == PharmacyStatus.DEACTIVATED:
        raise Conflict(f"pharmacy {pharmacy.short_id} is deactivated")
    row = m.Pharmacist(
        short_id=_unique_short_id(session, Kind.PHARMACIST),
        name=name,
        pharmacy_id=pharmacy.id,
        status=StaffStatus.ACTIVE,
        created_at=now,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        now,
        Action.PHARMACIST_REGISTER,
        subjects=[row.short_id, pharmacy.short_id],
        state_after=row.status,
        payload={"name": name},
    )
    return person_info(row, Role.PHARMACIST, pharmacy.short_id)


def deactivate_pharmacist(session: Session, actor: Actor, now: datetime, ref: object) -> PersonInfo:
    row = load(session, Kind.PHARMACIST, ref, "pharmacist", lock=True)
    before = row.status
    row.status = STAFF_LIFECYCLE.next_state(before, "deactivate")
    pharmacy = session.get(m.Pharmacy, row.pharmacy_id)
    record(
        session,
        actor,
        now,
        Action.PHARMACIST_DEACTIVATE,
        subjects=[row.short_id],
        state_before=before,
        state_after=row.status,
    )
    return person_info(row, Role.PHARMACIST, pharmacy.short_id if pharmacy else None)


# --- reading people ---------------------------------------------------------------------------

_PERSON_KINDS = {
    Kind.ADMINISTRATOR: Role.ADMINISTRATOR,
    Kind.PRESCRIBER: Role.PRESCRIBER,
    Kind.DESIGNEE: Role.DESIGNEE,
    Kind.PHARMACIST: Role.PHARMACIST,
}


def _person(session: Session, kind: Kind, row: Any) -> PersonInfo:
    pharmacy = None
    if kind is Kind.PHARMACIST:
        pharmacy_row = session.get(m.Pharmacy, row.pharmacy_id)
        pharmacy = pharmacy_row.short_id if pharmacy_row else None
    return person_info(row, _PERSON_KINDS[kind], pharmacy)


def show_person(session: Session, actor: Actor, ref: object, kind: Kind) -> PersonInfo:
    row = load(session, kind, ref, kind.name.lower())
    visibility.require_person(session, actor, kind, _KIND_MODEL[kind], row)
    return _person(session, kind, row)


_STATUSES = {
    Kind.ADMINISTRATOR: [s.value for s in StaffStatus],
    Kind.PRESCRIBER: [s.value for s in PrescriberStatus],
    Kind.DESIGNEE: [s.value for s in StaffStatus],
    Kind.PHARMACIST: [s.value for s in StaffStatus],
    Kind.PHARMACY: [s.value for s in PharmacyStatus],
}


def list_people(
    session: Session, actor: Actor, kind: Kind, status: str | None = None
) -> list[PersonInfo]:
    if status is not None:
        v.choice("status", status, _STATUSES[kind])
    model = _KIND_MODEL[kind]
    stmt = (
        select(model)
        .where(visibility.people(actor, kind, model))
        .order_by(model.created_at, model.short_id)
    )
    if status is not None:
        stmt = stmt.where(model.status == status)
    return [_person(session, kind, row) for row in session.execute(stmt).scalars()]


def show_pharmacy(session: Session, actor: Actor, ref: object) -> PharmacyInfo:
    row = load(session, Kind.PHARMACY, ref, "pharmacy")
    visibility.require_person(session, actor, Kind.PHARMACY, m.Pharmacy, row)
    return pharmacy_info(row)


def list_pharmacies(
    session: Session, actor: Actor, status: str | None = None
) -> list[PharmacyInfo]:
    if status is not None:
        v.choice("status", status, _STATUSES[Kind.PHARMACY])
    stmt = (
        select(m.Pharmacy)
        .where(visibility.people(actor, Kind.PHARMACY, m.Pharmacy))
        .order_by(m.Pharmacy.created_at, m.Pharmacy.short_id)
    )
    if status is not None:
        stmt = stmt.where(m.Pharmacy.status == status)
    return [pharmacy_info(row) for row in session.execute(stmt).scalars()]
