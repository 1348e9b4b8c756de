"""The pharmacy's side: ask for a dispense authorization, reverse it, record the pickup.

An authorization is issued only when the dispense gate passes at that instant. The database
allows one live authorization per course cycle (a partial unique index), and the course row is
locked while the gate runs, so two terminals racing for the same prescription cannot both win.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from compliance.api.authz import Actor, pharmacy_problems, refuse
from compliance.api.courses import (
    RuleRefusal,
    audit,
    authorization_info,
    authorization_kind,
    check_scope,
    course_info,
    course_info_of,
    facts,
    fire,
    prescription_info,
    refusal,
    rule_refusal,
    ruleset_of,
)
from compliance.api.parties import checked_ref
from compliance.api.results_course import (
    AuthorizationInfo,
    AuthorizationUpdated,
    Authorized,
    PrescriptionInfo,
)
from compliance.db import models as m
from compliance.db.base import table_of
from compliance.db.direct import Direct
from compliance.db.rows import COURSE_COLUMNS, CourseRow, Named, PharmacyRow
from compliance.domain import reasons as rc
from compliance.domain import validate as v
from compliance.domain.authorization_number import formatted, is_valid, new_number, normalise
from compliance.domain.course import CourseState
from compliance.domain.facts import AuthorizationRecord, CourseFacts
from compliance.domain.gates import Decision, DispenseRequest, dispense_gate
from compliance.domain.ids import Kind
from compliance.domain.pickup import Pickup, PickupRefusal, pickup_gate
from compliance.domain.pregnancy_tests import suspending_test
from compliance.domain.roles import Action
from compliance.domain.timing import clinic_zone, today_in, zone_for
from compliance.errors import Conflict, InvalidInput, NotFound

_RX = table_of(m.Prescription)
_COURSE = table_of(m.Course)
_PATIENT = table_of(m.Patient)
_PRESCRIBER = table_of(m.Prescriber)
_AUTHORIZATION = table_of(m.Authorization)
# The prescription, its course (locked: the course row serialises every operation on the course)
# and the course's patient and prescriber (with the clinic's zone its facts carry), in one
# statement built once.
_PRESCRIPTION = Direct(
    select(
        _RX.c.id,
        _RX.c.short_id,
        _RX.c.days_supply,
        _PATIENT.c.short_id,
        _PRESCRIBER.c.short_id,
        _PRESCRIBER.c.time_zone,
        *(_COURSE.c[name] for name in COURSE_COLUMNS),
    )
    .select_from(
        _RX.join(_COURSE, _COURSE.c.id == _RX.c.course_id)
        .join(_PATIENT, _PATIENT.c.id == _COURSE.c.patient_id)
        .join(_PRESCRIBER, _PRESCRIBER.c.id == _COURSE.c.prescriber_id)
    )
    .where(_RX.c.short_id == bindparam("ref"))
    .with_for_update(of=_COURSE)
)
_ADD_AUTHORIZATION = Direct(insert(_AUTHORIZATION), [c.key for c in _AUTHORIZATION.c])
_MOVE_COURSE = Direct(
    update(_COURSE)
    .where(_COURSE.c.id == bindparam("course"))
    .values(state=bindparam("new_state"), is_open=bindparam("open"), updated_at=bindparam("at"))
)


@dataclass(frozen=True, slots=True)
class Prescribed:
    """A prescription as dispensing sees it, with its locked course and the course's people."""

    id: uuid.UUID
    short_id: str
    days_supply: int
    course: CourseRow
    patient: Named
    prescriber: str  # the course's prescriber, by short id
    prescriber_zone: str | None  # the zone configured for that prescriber's clinic


def _prescription(session: Session, ref: object) -> Prescribed:
    short = checked_ref(Kind.PRESCRIPTION, ref, "prescription", session)
    row = _PRESCRIPTION.first(session, {"ref": short})
    if row is None:
        raise NotFound("prescription", short)
    course = CourseRow(*row[6:])
    patient = Named(course.patient_id, row[3])
    return Prescribed(row[0], row[1], row[2], course, patient, row[4], row[5])


def _pharmacy(actor: Actor) -> PharmacyRow:
    """The acting pharmacist's pharmacy, as ``authorize`` read it in this transaction."""
    assert actor.pharmacy is not None
    return actor.pharmacy


def stated_supply(value: object) -> int | None:
    """The days' supply the pharmacy states it dispenses; None: the prescription's own."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("days_supply", "must be a whole number of days")
    if not 1 <= value <= 366:
        raise InvalidInput("days_supply", f"must be between 1 and 366, not {value}")
    return value


def evaluate(
    session: Session,
    actor: Actor,
    now: datetime,
    prescription_ref: object,
    days_supply: int | None = None,
) -> tuple[Decision, Prescribed, PharmacyRow, CourseFacts]:
    rx = _prescription(session, prescription_ref)
    pharmacy = _pharmacy(actor)
    request = DispenseRequest(
        rx.short_id, pharmacy.time_zone, tuple(pharmacy_problems(pharmacy, now)), days_supply
    )
    known = facts(session, rx.course, rx.prescriber_zone)
    return dispense_gate(known, now, request), rx, pharmacy, known


def check_dispense(
    session: Session,
    actor: Actor,
    now: datetime,
    prescription_ref: object,
    days_supply: object = None,
) -> Decision:
    """The pharmacist's own pharmacy is judged too; anyone else sees the course's side only."""
    supply = stated_supply(days_supply)
    if actor.pharmacy_uuid is not None:
        return evaluate(session, actor, now, prescription_ref, supply)[0]
    rx = _prescription(session, prescription_ref)
    check_scope(actor, Action.COURSE_READ, rx.course, rx.patient)
    # No pharmacy is named: judged in the clinic's zone.
    course_facts = facts(session, rx.course, rx.prescriber_zone)
    zone = clinic_zone(ruleset_of(rx.course), course_facts.prescriber_zone).key
    request = DispenseRequest(rx.short_id, zone, days_supply=supply)
    return dispense_gate(course_facts, now, request)


def request_authorization(
    session: Session,
    actor: Actor,
    now: datetime,
    prescription_ref: object,
    idempotency_key: object = None,
    days_supply: object = None,
) -> Authorized:
    """Ask for an authorization stating the days' supply dispensed (by default the
    prescription's); the authorization records the supply stated."""
    key = _idempotency_key(idempotency_key)
    supply = stated_supply(days_supply)
    if key is not None:
        # Take the course lock first: a request racing one with the same key then sees its
        # authorization and replays it, instead of being refused behind it.
        _prescription(session, prescription_ref)
        replay = _replay(session, actor, prescription_ref, key)
        if replay is not None:
            return replay
    decision, rx, pharmacy, known = evaluate(session, actor, now, prescription_ref, supply)
    course, patient = rx.course, rx.patient
    dispensed_supply = rx.days_supply if supply is None else supply
    if not decision.allowed:
        raise refusal(decision, course, patient.short_id)
    # A fresh number is all but certainly free (66 random bits); the primary key refuses the
    # rare collision and the whole call is retried with another number.
    number = new_number()
    test_id = uuid.UUID(decision.test_id) if decision.test_id else None
    last_instant = decision.window.last_instant if decision.window else None
    _ADD_AUTHORIZATION.run(
        session,
        {
            "number": number,
            "course_id": course.id,
            "prescription_id": rx.id,
            "pharmacy_id": pharmacy.id,
            "cycle": course.cycle,
            "issued_at": now,
            "issued_by": actor.short_id,
            "do_not_dispense_after": last_instant,
            "test_id": test_id,
            "days_supply": dispensed_supply,
            "reversed_at": None,
            "reversed_by": None,
            "reversal_reason": None,
            "dispensed_at": None,
            "dispensed_by": None,
            "idempotency_key": key,
        },
    )
    before = fire(course, "authorize", now)
    _MOVE_COURSE.run(
        session,
        {"course": course.id, "new_state": course.state, "open": course.is_open, "at": now},
    )
    issued = AuthorizationRecord(
        number, rx.short_id, course.cycle, now, last_instant, decision.test_id, dispensed_supply
    )
    after = replace(
        known, state=CourseState(course.state), authorizations=(*known.authorizations, issued)
    )
    info = AuthorizationInfo(
        number=number,
        formatted=formatted(number),
        patient=patient.short_id,
        prescription=rx.short_id,
        pharmacy=pharmacy.short_id,
        cycle=course.cycle,
        issued_at=now,
        do_not_dispense_after=last_instant,
        test=str(test_id) if test_id else None,
        days_supply=dispensed_supply,
        reversed_at=None,
        reversal_reason=None,
        dispensed_at=None,
        zone=zone_for(ruleset_of(course), pharmacy.time_zone).key,
        kind=authorization_kind(ruleset_of(course)),
    )
    audit(
        session,
        actor,
        now,
        Action.AUTHORIZATION_REQUEST,
        course,
        patient,
        before,
        {
            "authorization": number,
            "prescription": rx.short_id,
            "pharmacy": pharmacy.short_id,
            "do_not_dispense_after": last_instant.isoformat() if last_instant else None,
            "test": decision.test_id,
            "days_supply": dispensed_supply,
            "prescribed_days_supply": rx.days_supply,
            "idempotency_key": key,
            "decision": decision.to_dict(),
        },
        facts_after=after,
    )
    return Authorized(
        course=course_info_of(course, patient.short_id, rx.prescriber),
        decision=decision,
        authorization=info,
    )


def _idempotency_key(value: object) -> str | None:
    if value is None:
        return None
    return v.identifier("idempotency_key", value)


def _replay(
    session: Session, actor: Actor, prescription_ref: object, key: str
) -> Authorized | None:
    """The authorization an earlier request with the same key produced, unchanged."""
    found = session.execute(
        select(m.Authorization).where(
            m.Authorization.pharmacy_id == actor.pharmacy_uuid,
            m.Authorization.idempotency_key == key,
        )
    ).scalar_one_or_none()
    if found is None:
        return None
    rx = _prescription(session, prescription_ref)
    if found.prescription_id != rx.id:
        raise Conflict(f"idempotency key {key!r} was used for another prescription")
    info = authorization_info(session, found, rx.patient.short_id)
    return Authorized(
        course=course_info(session, rx.course),
        authorization=info,
        decision=None,
        replayed=True,
        record={"replayed": True},
    )


def _authorization(
    session: Session, actor: Actor, action: Action, ref: object
) -> tuple[m.Authorization, m.Course, m.Patient]:
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("authorization", "must be an authorization number")
    number = normalise(ref)
    if not is_valid(number):
        raise InvalidInput(
            "authorization", f"{ref!r} is not a valid authorization number (21 digits, check digit)"
        )
    found = session.execute(
        select(m.Authorization).where(m.Authorization.number == number).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise refuse_not_found(number)
    course = session.execute(
        select(m.Course).where(m.Course.id == found.course_id).with_for_update()
    ).scalar_one()
    patient = session.get(m.Patient, course.patient_id)
    assert patient is not None
    if found.pharmacy_id != actor.pharmacy_uuid:
        raise refuse(action, [rc.OUT_OF_SCOPE], (patient.short_id,))
    check_scope(actor, action, course, patient)
    return found, course, patient


def refuse_not_found(number: str) -> Exception:
    from compliance.api.courses import RuleRefusal

    return RuleRefusal(
        f"{rc.MESSAGES[rc.AUTHORIZATION_NOT_FOUND]}: {number}", (rc.AUTHORIZATION_NOT_FOUND,)
    )


def reverse_authorization(
    session: Session, actor: Actor, now: datetime, number: object, reason: object
) -> AuthorizationUpdated:
    found, course, patient = _authorization(session, actor, Action.AUTHORIZATION_REVERSE, number)
    why = v.text("reason", reason, max_len=200)
    if found.dispensed_at is not None:
        raise Conflict(
            f"authorization {found.number} was dispensed at "
            f"{found.dispensed_at.isoformat()}: it cannot be reversed"
        )
    if found.reversed_at is not None:
        raise rule_refusal(
            rc.AUTHORIZATION_REVERSED,
            f"reversed at {found.reversed_at.isoformat()}",
            course,
            patient.short_id,
        )
    found.reversed_at, found.reversed_by, found.reversal_reason = now, actor.short_id, why
    before = course.state
    if CourseState(course.state) is CourseState.AUTHORIZED:
        fire(course, "reverse", now)
    session.flush()
    info = authorization_info(session, found, patient.short_id)
    audit(
        session,
        actor,
        now,
        Action.AUTHORIZATION_REVERSE,
        course,
        patient,
        before,
        {"authorization": found.number, "reason": why},
    )
    return AuthorizationUpdated(course=course_info(session, course), authorization=info)


def _pickup_refusal(
    session: Session, found: m.Authorization, course: m.Course, now: datetime
) -> PickupRefusal | None:
    suspended = course.state == CourseState.SUSPENDED
    pickup = Pickup(
        state=CourseState(course.state),
        reversed_at=found.reversed_at,
        do_not_dispense_after=found.do_not_dispense_after,
        # The course's facts are read only when its suspension needs a cause.
        suspending_test=suspending_test(facts(session, course)) if suspended else None,
    )
    return pickup_gate(pickup, now)


def record_dispense(
    session: Session, actor: Actor, now: datetime, number: object
) -> AuthorizationUpdated:
    found, course, patient = _authorization(session, actor, Action.DISPENSE_RECORD, number)
    if found.dispensed_at is not None:
        raise Conflict(
            f"authorization {found.number} was already dispensed at "
            f"{found.dispensed_at.isoformat()}"
        )
    refusal = _pickup_refusal(session, found, course, now)
    if refusal is not None:
        raise RuleRefusal(
            refusal.message,
            refusal.codes,
            subjects=(patient.short_id,),
            ruleset_id=course.ruleset_id,
            state=course.state,
        )
    ruleset = ruleset_of(course)
    pharmacy = _pharmacy(actor)
    dispensed_on = today_in(zone_for(ruleset, pharmacy.time_zone), now)
    found.dispensed_at, found.dispensed_by = now, actor.short_id
    before = fire(course, "dispense", now)
    if course.first_dispensed_on is None:
        course.first_dispensed_on = dispensed_on
    course.cycle += 1
    session.flush()
    info = authorization_info(session, found, patient.short_id)
    audit(
        session,
        actor,
        now,
        Action.DISPENSE_RECORD,
        course,
        patient,
        before,
        {
            "authorization": found.number,
            "dispensed_on": dispensed_on.isoformat(),
            "days_supply": found.days_supply,
            "supply_ends_on": (dispensed_on + timedelta(days=found.days_supply)).isoformat(),
        },
    )
    return AuthorizationUpdated(course=course_info(session, course), authorization=info)


def find_prescription(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    date_of_birth: object,
    prescriber_npi: object,
) -> PrescriptionInfo:
    """The prescription a pharmacy holds on paper, found from what is written on it: the
    patient's programme id and date of birth and the prescriber's NPI. The latest prescription
    of that prescriber for that patient not yet dispensed; NotFound, without saying which part
    failed to match, when there is none."""
    patient_id = checked_ref(Kind.PATIENT, patient_ref, "patient")
    born = v.calendar_date("date_of_birth", date_of_birth)
    npi = v.npi("prescriber_npi", prescriber_npi)
    dispensed = (
        select(_AUTHORIZATION.c.number)
        .where(
            _AUTHORIZATION.c.prescription_id == m.Prescription.id,
            _AUTHORIZATION.c.dispensed_at.is_not(None),
        )
        .exists()
    )
    found = session.execute(
        select(m.Prescription)
        .join(m.Course, m.Course.id == m.Prescription.course_id)
        .join(m.Patient, m.Patient.id == m.Course.patient_id)
        .join(m.Prescriber, m.Prescriber.id == m.Prescription.prescriber_id)
        .where(
            m.Patient.short_id == patient_id,
            m.Patient.date_of_birth == born,
            m.Prescriber.id_system == "NPI",
            m.Prescriber.external_id == npi,
            ~dispensed,
        )
        .order_by(m.Prescription.created_at.desc(), m.Prescription.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("prescription", "no undispensed prescription matches what was given")
    return prescription_info(session, found, patient_id)
