"""Course operations: enrol, record what the clinic documents, prescribe, end treatment.

Every operation locks the course row (``FOR UPDATE`` on PostgreSQL), evaluates the governing
ruleset on the facts as they are at that moment, fires the state-machine event that the facts
allow, and writes its audit event in the same transaction. A rule refusal raises
``RuleRefusal`` carrying the whole decision; the caller records it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.api import changed_courses, settings
from compliance.api.authz import Actor, refuse
from compliance.api.parties import load, record
from compliance.api.results_course import (
    AuthorizationInfo,
    CourseInfo,
    Prescribed,
    PrescriptionInfo,
    StepResult,
)
from compliance.db import course_facts as cf
from compliance.db import models as m
from compliance.db.rows import CourseFields, Named
from compliance.domain import reasons as rc
from compliance.domain import validate as v
from compliance.domain.authorization_number import formatted
from compliance.domain.course import CourseState, next_state
from compliance.domain.evaluation import Evaluation, Outcome
from compliance.domain.facts import CourseFacts, TestResult
from compliance.domain.gates import Decision, course_is_open, prescribe_gate, test_problems
from compliance.domain.ids import Kind, new_short_id
from compliance.domain.pregnancy_tests import end_of_treatment_test_done, post_treatment_test_done
from compliance.domain.roles import Action, Role
from compliance.domain.timing import clinic_zone, today_in, zone_for
from compliance.errors import Conflict, InvalidInput, Refused
from compliance.programs import loader
from compliance.programs.model import Ruleset, Setting, TestKind

SCHEDULE_KEY = "rules.schedule"
# Specimen and other clinical dates may not be later than today anywhere on Earth.
_LATEST_ZONE = ZoneInfo("Etc/GMT-14")


class RuleRefusal(Refused):
    """The programme rules refuse the step; ``decision`` says why and what to do next."""


def refusal(decision: Decision, course: CourseFields, patient: str) -> RuleRefusal:
    listed = ", ".join(decision.codes)
    return RuleRefusal(
        f"{decision.gate} refused under {decision.ruleset_id}: {listed}",
        decision.codes,
        subjects=(patient,),
        ruleset_id=decision.ruleset_id,
        state=course.state,
        decision=decision,
    )


def rule_refusal(code: str, detail: str, course: CourseFields | None, patient: str) -> RuleRefusal:
    return RuleRefusal(
        f"{rc.MESSAGES[code]}: {detail}",
        (code,),
        subjects=(patient,),
        ruleset_id=course.ruleset_id if course else None,
        state=course.state if course else None,
    )


# --- loading and small helpers ---------------------------------------------------------------


def schedule(session: Session) -> dict[str, date]:
    merged = dict(loader.default_schedule())
    override = settings.get(session, SCHEDULE_KEY) or {}
    merged.update({rid: date.fromisoformat(str(day)) for rid, day in override.items()})
    return merged


# Calendar arithmetic (windows, lead-ins, post-treatment months) must never run off the start
# of the calendar: no ruleset takes effect that early.
EARLIEST_YEAR = 1900


def set_schedule(
    session: Session, actor: Actor, now: datetime, ruleset_id: str, effective: object
) -> dict[str, date]:
    ruleset = loader.get(ruleset_id)
    day = v.calendar_date("effective", effective)
    if day.year < EARLIEST_YEAR:  # a far-future date is allowed: it means "not yet"
        raise InvalidInput("effective", f"must not be before {EARLIEST_YEAR}")
    current = settings.get_for_update(session, SCHEDULE_KEY, now) or {}
    before = schedule(session).get(ruleset.id)
    current[ruleset.id] = day.isoformat()
    settings.put(session, SCHEDULE_KEY, current, now)
    record(
        session,
        actor,
        now,
        Action.RULES_SCHEDULE,
        ruleset_id=ruleset.id,
        payload={"effective": day.isoformat(), "previous": before.isoformat() if before else None},
    )
    return schedule(session)


def course_info(session: Session, course: CourseFields) -> CourseInfo:
    patient = session.get(m.Patient, course.patient_id)
    prescriber = session.get(m.Prescriber, course.prescriber_id)
    assert patient is not None
    assert prescriber is not None
    return course_info_of(course, patient.short_id, prescriber.short_id)


def course_info_of(course: CourseFields, patient: str, prescriber: str) -> CourseInfo:
    """From the course and the short ids of its patient and prescriber, already known."""
    return CourseInfo(
        id=str(course.id),
        patient=patient,
        prescriber=prescriber,
        ruleset=course.ruleset_id,
        state=CourseState(course.state),
        cycle=course.cycle,
        enrolled_on=course.enrolled_on,
        category=course.category,
        category_reason=course.category_reason,
        first_dispensed_on=course.first_dispensed_on,
        last_dose_on=course.last_dose_on,
        pregnancy_actions=course.pregnancy_actions,
        open=course.is_open,
    )


def prescription_info(session: Session, rx: m.Prescription, patient: str) -> PrescriptionInfo:
    prescriber = session.get(m.Prescriber, rx.prescriber_id)
    assert prescriber is not None
    return PrescriptionInfo(
        rx.short_id,
        patient,
        rx.cycle,
        rx.written_on,
        rx.office_visit_on,
        rx.days_supply,
        rx.refills,
        prescriber.short_id,
    )


def authorization_info(session: Session, a: m.Authorization, patient: str) -> AuthorizationInfo:
    rx = session.get(m.Prescription, a.prescription_id)
    pharmacy = session.get(m.Pharmacy, a.pharmacy_id)
    course = session.get(m.Course, a.course_id)
    assert rx is not None
    assert pharmacy is not None
    assert course is not None
    return AuthorizationInfo(
        number=a.number,
        formatted=formatted(a.number),
        patient=patient,
        prescription=rx.short_id,
        pharmacy=pharmacy.short_id,
        cycle=a.cycle,
        issued_at=a.issued_at,
        do_not_dispense_after=a.do_not_dispense_after,
        test=str(a.test_id) if a.test_id else None,
        days_supply=a.days_supply,
        reversed_at=a.reversed_at,
        reversal_reason=a.reversal_reason,
        dispensed_at=a.dispensed_at,
        zone=zone_for(ruleset_of(course), pharmacy.time_zone).key,
        kind=authorization_kind(ruleset_of(course)),
    )


def authorization_kind(ruleset: Ruleset) -> str:
    """A central service's authorization, or a local dispense record where there is none."""
    return "authorization" if ruleset.authorization.central else "dispense_record"


def open_course(session: Session, patient: m.Patient, *, lock: bool = True) -> m.Course | None:
    stmt = select(m.Course).where(m.Course.patient_id == patient.id, m.Course.is_open)
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def latest_course(session: Session, patient: m.Patient) -> m.Course | None:
    return session.execute(
        select(m.Course)
        .where(m.Course.patient_id == patient.id)
        .order_by(m.Course.is_open.desc(), m.Course.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def check_scope(
    actor: Actor, action: Action, course: CourseFields, patient: m.Patient | Named
) -> None:
    """Each acts on its own: a patient on their own course, a prescriber on the courses they
    run, a designee on the grantor's."""
    if actor.role is Role.PATIENT and actor.uuid != patient.id:
        raise refuse(action, [rc.OUT_OF_SCOPE], (patient.short_id,))
    clinic = actor.role in {Role.PRESCRIBER, Role.DESIGNEE}
    if clinic and actor.prescriber_uuid != course.prescriber_id:
        raise refuse(action, [rc.OUT_OF_SCOPE], (patient.short_id,), actor.on_behalf_of)


def active(
    session: Session, actor: Actor, action: Action, patient_ref: object
) -> tuple[m.Patient, m.Course]:
    patient = load(session, Kind.PATIENT, patient_ref, "patient")
    own_patient_only(actor, action, patient)
    course = open_course(session, patient)
    if course is None:
        raise rule_refusal(
            rc.NO_ACTIVE_COURSE, f"patient {patient.short_id}", None, patient.short_id
        )
    check_scope(actor, action, course, patient)
    return patient, course


def own_patient_only(actor: Actor, action: Action, patient: m.Patient) -> None:
    """Checked before anything about the course is looked at: a patient learns nothing of
    another patient, not even whether they are under treatment."""
    if actor.role is Role.PATIENT and actor.uuid != patient.id:
        raise refuse(action, [rc.OUT_OF_SCOPE], (patient.short_id,))


def ruleset_of(course: CourseFields) -> Ruleset:
    return loader.get(course.ruleset_id)


def clinic_zone_of(session: Session, course: CourseFields) -> ZoneInfo:
    """The zone of the clinic's steps for ``course``: the prescriber's own where the ruleset
    says so and one is configured, otherwise the ruleset's."""
    return clinic_zone(ruleset_of(course), cf.prescriber_zone(session, course))


def today(session: Session, course: CourseFields, now: datetime) -> date:
    """The clinic's "today" for ``course``."""
    return today_in(clinic_zone_of(session, course), now)


def clinic_latest(session: Session, course: CourseFields, now: datetime) -> ZoneInfo:
    """Where "today" is for the dates the clinic enters: the clinic's own zone when one is
    configured for the prescriber (whatever zone the ruleset judges windows in: a specimen
    cannot be collected on a day that has not begun where the clinic is), otherwise the zone
    the ruleset judges the clinic's steps in."""
    return _clinic_here(ruleset_of(course), cf.prescriber_zone(session, course))


def _clinic_here(ruleset: Ruleset, prescriber_zone: str | None) -> ZoneInfo:
    return ZoneInfo(prescriber_zone) if prescriber_zone else clinic_zone(ruleset, None)


def clinical_date(
    field: str,
    value: object,
    now: datetime,
    *,
    default: date | None = None,
    not_before: date | None = None,
    latest: ZoneInfo | None = None,
) -> date:
    """A date the clinic enters: not later than today in ``latest`` (anywhere on Earth when
    None), nor before ``not_before``."""
    if value is None:
        if default is None:
            raise InvalidInput(field, "is required")
        return default
    day = v.calendar_date(field, value)
    today_there = now.astimezone(latest or _LATEST_ZONE).date()
    if day > today_there:
        where = (
            f" (today is {today_there.isoformat()} in {latest.key}, the clinic's zone; a clinic"
            " elsewhere has its own zone set on the prescriber)"
            if latest is not None
            else ""
        )
        raise InvalidInput(field, f"{day.isoformat()} is in the future{where}")
    if not_before is not None and day < not_before:
        raise InvalidInput(field, f"{day.isoformat()} is before {not_before.isoformat()}")
    return day


def fire(course: CourseFields, event: str, now: datetime) -> str:
    before = course.state
    course.state = next_state(CourseState(course.state), event).value
    course.updated_at = now
    if CourseState(course.state) in {
        CourseState.COMPLETED,
        CourseState.WITHDRAWN,
        CourseState.LOST_TO_FOLLOW_UP,
    }:
        course.is_open = False
    return before


def audit(
    session: Session,
    actor: Actor,
    now: datetime,
    action: Action,
    course: CourseFields,
    patient: m.Patient | Named,
    before: str,
    payload: Mapping[str, Any] | None = None,
    reasons: Iterable[str] = (),
    facts_after: CourseFacts | None = None,
) -> None:
    """Audit a step on ``course`` (and note it changed; ``facts_after``: its facts now, if the
    step holds them)."""
    known = None if facts_after is None else changed_courses.Known(course, facts_after)
    changed_courses.note(session, course.id, known)
    record(
        session,
        actor,
        now,
        action,
        subjects=[patient.short_id],
        state_before=before,
        state_after=course.state,
        ruleset_id=course.ruleset_id,
        reason_codes=list(reasons),
        payload={"course": str(course.id), "cycle": course.cycle, **(payload or {})},
    )


def next_seq(course: m.Course) -> int:
    """The next number in the course's own sequence (the course row is locked)."""
    course.last_seq += 1
    return course.last_seq


def add_record(
    session: Session,
    course: m.Course,
    kind: str,
    effective_on: date,
    payload: Mapping[str, Any],
    actor: Actor,
    now: datetime,
) -> m.CourseRecord:
    row = m.CourseRecord(
        course_id=course.id,
        kind=kind,
        seq=next_seq(course),
        cycle=course.cycle,
        effective_on=effective_on,
        payload=dict(payload),
        recorded_at=now,
        recorded_by=actor.short_id,
    )
    session.add(row)
    session.flush()
    return row


def facts(
    session: Session, course: CourseFields, prescriber_zone: str | cf.Unread | None = cf.UNREAD
) -> CourseFacts:
    """``prescriber_zone``: the prescriber's zone when the caller read it with the course."""
    session.flush()  # whatever the session's autoflush: the facts include this call's changes
    return cf.load(session.connection(), course, prescriber_zone)


def outcome(
    session: Session, course: CourseFields, record: Mapping[str, Any] | None = None
) -> StepResult:
    return StepResult(course=course_info(session, course), record=record or {})


# --- enrolment and category -------------------------------------------------------------------


def enrol(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    programme: str = "ipledge",
    enrolled_on: object = None,
) -> StepResult:
    patient = load(session, Kind.PATIENT, patient_ref, "patient")
    if open_course(session, patient) is not None:
        raise Conflict(f"patient {patient.short_id} already has an open course")
    prescriber_id = actor.prescriber_uuid
    assert prescriber_id is not None
    plan = schedule(session)
    programmes = sorted({rid.split("/")[0] for rid in loader.all_rulesets()})
    v.choice("programme", programme, programmes)
    first_guess = loader.in_force(programme, now.date(), plan)
    own_zone = session.get(m.Prescriber, prescriber_id)
    prescriber_zone = own_zone.time_zone if own_zone is not None else None
    guess_day = today_in(clinic_zone(first_guess, prescriber_zone), now)
    latest = _clinic_here(first_guess, prescriber_zone)
    day = clinical_date("enrolled_on", enrolled_on, now, default=guess_day, latest=latest)
    ruleset = loader.in_force(programme, day, plan)
    course = m.Course(
        id=uuid.uuid4(),
        patient_id=patient.id,
        prescriber_id=prescriber_id,
        ruleset_id=ruleset.id,
        state=CourseState.ENROLLED.value,
        is_open=True,
        cycle=1,
        enrolled_on=day,
        pregnancy_actions=False,
        last_seq=0,
        created_at=now,
        updated_at=now,
    )
    session.add(course)
    session.flush()
    audit(
        session,
        actor,
        now,
        Action.COURSE_ENROL,
        course,
        patient,
        "",
        {"enrolled_on": day.isoformat(), "programme": programme},
    )
    return outcome(session, course)


def assign_category(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    category: object,
    reason: object,
) -> StepResult:
    patient, course = active(session, actor, Action.CATEGORY_ASSIGN, patient_ref)
    ruleset = ruleset_of(course)
    name = v.text("category", category, max_len=32)
    rules = ruleset.category(name)
    if rules is None:
        raise InvalidInput("category", f"must be one of {', '.join(ruleset.categories)}")
    why = v.text("reason", reason, max_len=48).upper()
    if why not in ruleset.reason_catalogue:
        raise InvalidInput("reason", f"must be one of {', '.join(ruleset.reason_catalogue)}")
    if why not in rules.reasons:
        raise rule_refusal(
            rc.INVALID_CATEGORY_REASON,
            f"{why} cannot support '{rules.label}' under {ruleset.id}",
            course,
            patient.short_id,
        )
    state = CourseState(course.state)
    if state is CourseState.AUTHORIZED:
        raise Conflict("an authorization is open: it must be dispensed or reversed first")
    event = "assign_category" if state is CourseState.ENROLLED else "change_category"
    previous = (course.category, course.category_reason)
    before = fire(course, event, now)
    course.category, course.category_reason = name, why
    add_record(
        session,
        course,
        cf.CATEGORY,
        today(session, course, now),
        {"category": name, "reason": why},
        actor,
        now,
    )
    audit(
        session,
        actor,
        now,
        Action.CATEGORY_ASSIGN,
        course,
        patient,
        before,
        {"category": name, "reason": why, "previous": list(previous)},
    )
    return outcome(session, course)


# --- what the clinic documents ----------------------------------------------------------------


def _simple_record(
    session: Session,
    actor: Actor,
    now: datetime,
    action: Action,
    patient_ref: object,
    kind: str,
    on: object,
    payload: Mapping[str, Any] | Callable[[m.Course], Mapping[str, Any]],
    date_field: str = "date",
) -> StepResult:
    patient, course = active(session, actor, action, patient_ref)
    fields = payload(course) if callable(payload) else payload
    day = clinical_date(
        date_field,
        on,
        now,
        default=today(session, course, now),
        latest=clinic_latest(session, course, now),
    )
    add_record(session, course, kind, day, fields, actor, now)
    audit(
        session,
        actor,
        now,
        action,
        course,
        patient,
        course.state,
        {"kind": kind, "on": day.isoformat(), **fields},
    )
    return outcome(session, course, record={"kind": kind, "on": day.isoformat(), **fields})


def record_consent(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    form: object,
    signed_on: object = None,
) -> StepResult:
    def consent(course: m.Course) -> dict[str, Any]:
        name = v.text("form", form, max_len=64).upper()
        known = ruleset_of(course).consent_catalogue
        if name not in known:
            raise InvalidInput("form", f"must be one of {', '.join(known)}")
        return {"form": name}

    return _simple_record(
        session,
        actor,
        now,
        Action.CONSENT_RECORD,
        patient_ref,
        cf.CONSENT,
        signed_on,
        consent,
        "signed_on",
    )


def record_counselling(
    session: Session, actor: Actor, now: datetime, patient_ref: object, counselled_on: object = None
) -> StepResult:
    return _simple_record(
        session,
        actor,
        now,
        Action.COUNSELLING_RECORD,
        patient_ref,
        cf.COUNSELLING,
        counselled_on,
        {},
        date_field="counselled_on",
    )


def set_test_schedule(
    session: Session, actor: Actor, now: datetime, patient_ref: object, schedule: object
) -> StepResult:
    """The ruleset's named testing schedule for this patient (e.g. irregular cycles), chosen
    by the prescriber with the category."""

    def chosen(course: m.Course) -> dict[str, Any]:
        names = list(ruleset_of(course).testing.schedules)
        if not names:
            raise InvalidInput("schedule", f"{course.ruleset_id} has no testing schedules")
        return {"schedule": v.choice("schedule", schedule, names)}

    return _simple_record(
        session, actor, now, Action.TEST_SCHEDULE_SET, patient_ref, cf.TEST_SCHEDULE, None, chosen
    )


def record_comprehension(
    session: Session, actor: Actor, now: datetime, patient_ref: object
) -> StepResult:
    return _simple_record(
        session, actor, now, Action.COMPREHENSION_RECORD, patient_ref, cf.COMPREHENSION, None, {}
    )


def _method_names(ruleset: Ruleset, raw: Iterable[object], field: str) -> list[str]:
    names = []
    for item in raw:
        name = v.text(field, item, max_len=48).lower()
        if not ruleset.contraception.known(name):
            rules = ruleset.contraception
            known = ", ".join([*rules.methods, *rules.waivers])
            raise InvalidInput(field, f"{name!r} is not a method of {ruleset.id}: {known}")
        names.append(name)
    if not names:
        raise InvalidInput(field, "name at least one method")
    if len(set(names)) != len(names):
        raise InvalidInput(field, "lists a method twice")
    return names


def record_contraception(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    methods: Mapping[str, object],
) -> StepResult:
    """The prescriber's entry of the patient's methods (each with its start date)."""
    patient, course = active(session, actor, Action.CONTRACEPTION_RECORD, patient_ref)
    if not isinstance(methods, Mapping) or len(methods) > 6:
        raise InvalidInput("methods", "map each method to its start date (at most 6)")
    names = _method_names(ruleset_of(course), methods.keys(), "methods")
    entries = [
        {
            "method": name,
            "start_date": clinical_date(
                f"methods.{name}",
                methods[key],
                now,
                not_before=patient.date_of_birth,
                latest=clinic_latest(session, course, now),
            ).isoformat(),
        }
        for name, key in zip(names, methods.keys(), strict=True)
    ]
    add_record(
        session,
        course,
        cf.CONTRACEPTION,
        today(session, course, now),
        {"methods": entries},
        actor,
        now,
    )
    audit(
        session,
        actor,
        now,
        Action.CONTRACEPTION_RECORD,
        course,
        patient,
        course.state,
        {"methods": entries},
    )
    return outcome(session, course, record={"methods": entries})


def confirm_contraception(
    session: Session, actor: Actor, now: datetime, patient_ref: object, methods: Iterable[object]
) -> StepResult:
    """The patient's own confirmation, this cycle, of the methods they use."""
    patient, course = active(session, actor, Action.CONTRACEPTION_CONFIRM, patient_ref)
    if isinstance(methods, str | bytes) or not isinstance(methods, Iterable):
        raise InvalidInput("methods", "must be a list of method names")
    names = _method_names(ruleset_of(course), list(methods), "methods")
    add_record(
        session,
        course,
        cf.CONFIRMATION,
        today(session, course, now),
        {"methods": sorted(names)},
        actor,
        now,
    )
    audit(
        session,
        actor,
        now,
        Action.CONTRACEPTION_CONFIRM,
        course,
        patient,
        course.state,
        {"methods": sorted(names)},
    )
    return outcome(session, course, record={"methods": sorted(names)})


def _home_opt_in(session: Session, prescriber_id: uuid.UUID, on: date) -> bool:
    policies = session.execute(
        select(m.HomeTestingPolicy).where(m.HomeTestingPolicy.prescriber_id == prescriber_id)
    ).scalars()
    return any(
        p.enabled_on <= on and (p.disabled_on is None or p.disabled_on > on) for p in policies
    )


def set_home_testing(
    session: Session,
    actor: Actor,
    now: datetime,
    enabled: bool,
    procedure: object | None,
    on: object = None,
) -> dict[str, Any]:
    enabled = v.flag("enabled", enabled)
    # The opt-in is the prescriber's, not a course's: dated in their own zone where configured.
    own = session.get(m.Prescriber, actor.uuid)
    zone = ZoneInfo(own.time_zone if own is not None and own.time_zone else "UTC")
    here = zone if own is not None and own.time_zone else None
    day = clinical_date("on", on, now, default=today_in(zone, now), latest=here)
    policies = (
        session.execute(
            select(m.HomeTestingPolicy)
            .where(
                m.HomeTestingPolicy.prescriber_id == actor.uuid,
                m.HomeTestingPolicy.disabled_on.is_(None),
            )
            .with_for_update()
        )
        .scalars()
        .all()
    )
    if enabled:
        text = v.text("procedure", procedure, max_len=2000)
        if policies:
            raise Conflict("home testing is already enabled: disable it first to change it")
        session.add(
            m.HomeTestingPolicy(
                prescriber_id=actor.uuid, procedure=text, enabled_on=day, recorded_at=now
            )
        )
        payload: dict[str, Any] = {"enabled": True, "procedure": text, "on": day.isoformat()}
    else:
        if not policies:
            raise Conflict("home testing is not enabled")
        for p in policies:
            p.disabled_on = day
        payload = {"enabled": False, "on": day.isoformat()}
    session.flush()
    record(session, actor, now, Action.HOME_TESTING_SET, subjects=[actor.short_id], payload=payload)
    return payload


def _reverse_open(
    session: Session, course: m.Course, actor: Actor, now: datetime, why: str
) -> list[str]:
    live = (
        session.execute(
            select(m.Authorization).where(
                m.Authorization.course_id == course.id,
                m.Authorization.reversed_at.is_(None),
                m.Authorization.dispensed_at.is_(None),
            )
        )
        .scalars()
        .all()
    )
    for a in live:
        a.reversed_at, a.reversed_by, a.reversal_reason = now, actor.short_id, why
    return [a.number for a in live]


def _suspend(session: Session, course: m.Course, actor: Actor, now: datetime, why: str) -> str:
    before = course.state
    if CourseState(course.state) is not CourseState.SUSPENDED:
        fire(course, "suspend", now)
    course.pregnancy_actions = True
    _reverse_open(session, course, actor, now, why)
    return before


def record_test(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    *,
    kind: object,
    specimen_date: object,
    setting: object,
    result: object,
    sensitivity_miu_ml: object = 25,
    clia: bool = False,
) -> StepResult:
    patient, course = active(session, actor, Action.TEST_RECORD, patient_ref)
    ruleset = ruleset_of(course)
    test_kind = _choice("kind", kind, TestKind, ruleset.testing.names)
    test_setting = _choice("setting", setting, Setting)
    test_result = _choice("result", result, TestResult)
    day = clinical_date(
        "specimen_date",
        specimen_date,
        now,
        not_before=course.enrolled_on - timedelta(days=90),
        latest=clinic_latest(session, course, now),
    )
    clia = v.flag("clia", clia)
    if isinstance(sensitivity_miu_ml, bool) or not isinstance(sensitivity_miu_ml, int | float):
        raise InvalidInput("sensitivity_miu_ml", "must be a number (mIU/mL)")
    if not 1 <= sensitivity_miu_ml <= 1000:
        raise InvalidInput("sensitivity_miu_ml", "must be between 1 and 1000 mIU/mL")
    row = m.PregnancyTest(
        course_id=course.id,
        seq=next_seq(course),
        cycle=course.cycle,
        kind=test_kind.value,
        specimen_date=day,
        setting=test_setting.value,
        clia=bool(clia),
        sensitivity_miu_ml=float(sensitivity_miu_ml),
        result=test_result.value,
        home_opt_in=_home_opt_in(session, course.prescriber_id, day),
        recorded_at=now,
        recorded_by=actor.short_id,
    )
    session.add(row)
    session.flush()
    test = cf.test_record(row)
    problems = test_problems(ruleset, test)
    before = course.state
    state = CourseState(course.state)
    flags: list[str] = []
    if test_result is TestResult.POSITIVE:
        before = _suspend(session, course, actor, now, "positive pregnancy test")
        flags = [rc.PREGNANCY_ACTIONS]
    elif state in {CourseState.TREATMENT_ENDED, CourseState.POST_TREATMENT}:
        advance_after_treatment(session, course, now)
    payload = {
        "test": str(row.id),
        "kind": test_kind.value,
        "specimen_date": day.isoformat(),
        "setting": test_setting.value,
        "clia": bool(clia),
        "sensitivity_miu_ml": float(sensitivity_miu_ml),
        "result": test_result.value,
        "home_opt_in": row.home_opt_in,
        "problems": problems,
    }
    audit(
        session,
        actor,
        now,
        Action.TEST_RECORD,
        course,
        patient,
        before,
        payload,
        reasons=problems + flags,
    )
    return outcome(session, course, record=payload)


def confirm_patient(
    session: Session, actor: Actor, now: datetime, patient_ref: object
) -> StepResult:
    """The prescriber confirms the patient in the programme for the latest negative result on
    file (workflows.md 1.1 step 4). The confirmation names that result: a new test needs a new
    confirmation. Refused with its reasons when there is no negative result to confirm (none
    entered yet: a pending result is not on file) or the course is suspended or not open.
    Whether the rules accept the test (setting, CLIA, sensitivity) is judged at the request,
    with its own code; the confirmation records what it found."""
    patient, course = active(session, actor, Action.PATIENT_CONFIRM, patient_ref)
    ruleset = ruleset_of(course)
    if not ruleset.testing.prescriber_confirms_result:
        raise Conflict(f"{ruleset.id} has no prescriber confirmation of a result")
    f = facts(session, course)
    ev = Evaluation(f, now, None)
    course_is_open(ev)
    if not ev.stop:
        negatives = [t for t in f.tests if t.result is TestResult.NEGATIVE]
        if not negatives:
            ev.add(
                rc.NO_NEGATIVE_TEST_IN_WINDOW,
                "no negative result has been entered to confirm",
                "enter the result once it is known, then confirm the patient",
                ev.today,
            )
    if ev.reasons:
        decision = Decision(
            gate="confirm_patient",
            outcome=Outcome.REFUSE,
            reasons=tuple(ev.reasons),
            ruleset_id=ruleset.id,
            evaluated_at=now,
            today=ev.today,
            cycle=course.cycle,
        )
        raise refusal(decision, course, patient.short_id)
    test = negatives[-1]
    payload = {
        "test": test.id,
        "specimen_date": test.specimen_date.isoformat(),
        "problems": test_problems(ruleset, test),
    }
    add_record(
        session, course, cf.PATIENT_CONFIRMATION, today(session, course, now), payload, actor, now
    )
    audit(session, actor, now, Action.PATIENT_CONFIRM, course, patient, course.state, payload)
    return outcome(session, course, record=payload)


def advance_after_treatment(session: Session, course: m.Course, now: datetime) -> None:
    """After the last dose, move the course as far as the tests on file allow, whatever order
    they were recorded in: to the post-treatment month once the end-of-treatment test is in,
    and to completion once the post-treatment test is (workflows.md 1.4)."""
    f = facts(session, course)
    if f.state is CourseState.TREATMENT_ENDED and end_of_treatment_test_done(f):
        fire(course, "start_post_treatment", now)
    if CourseState(course.state) is CourseState.POST_TREATMENT and post_treatment_test_done(f):
        fire(course, "complete", now)


def _choice(field: str, value: object, enum: Any, names: Mapping[str, Any] | None = None) -> Any:
    """A member of ``enum``, or the member a ruleset's own ``names`` give it."""
    given = str(value).strip().lower()
    if names and given in names:
        return names[given]
    try:
        return enum(given)
    except ValueError:
        allowed = [*(e.value for e in enum), *(names or ())]
        raise InvalidInput(field, f"must be one of {', '.join(allowed)}") from None


# --- prescribing and ending -------------------------------------------------------------------


def _count(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be a whole number")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}, not {value}")
    return value


def prescribe(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    days_supply: object,
    refills: object = 0,
    written_on: object = None,
    office_visit_on: object = None,
) -> Prescribed:
    patient, course = active(session, actor, Action.PRESCRIBE, patient_ref)
    supply = _count("days_supply", days_supply, 1, 366)
    repeats = _count("refills", refills, 0, 99)
    latest = clinic_latest(session, course, now)
    day = clinical_date(
        "written_on",
        written_on,
        now,
        default=today(session, course, now),
        not_before=course.enrolled_on,
        latest=latest,
    )
    visit = clinical_date(
        "office_visit_on",
        office_visit_on,
        now,
        default=day,
        not_before=course.enrolled_on,
        latest=latest,
    )
    if visit > day:
        raise InvalidInput("office_visit_on", "is after the date written on the prescription")
    decision = prescribe_gate(facts(session, course), now, supply, repeats, day)
    if not decision.allowed:
        raise refusal(decision, course, patient.short_id)
    if decision.test_id is not None and decision.window and day < decision.window.first_day:
        raise InvalidInput(
            "written_on",
            f"{day.isoformat()} is before the specimen date of the test the prescription "
            f"relies on ({decision.window.first_day.isoformat()})",
        )
    rx = m.Prescription(
        seq=next_seq(course),
        short_id=_rx_id(session),
        course_id=course.id,
        prescriber_id=actor.uuid,
        cycle=course.cycle,
        written_on=day,
        office_visit_on=visit,
        days_supply=supply,
        refills=repeats,
        created_at=now,
    )
    session.add(rx)
    before = fire(course, "prescribe", now)
    session.flush()
    info = prescription_info(session, rx, patient.short_id)
    audit(
        session,
        actor,
        now,
        Action.PRESCRIBE,
        course,
        patient,
        before,
        {
            "prescription": rx.short_id,
            "days_supply": supply,
            "refills": repeats,
            "written_on": day.isoformat(),
            "decision": decision.to_dict(),
        },
    )
    return Prescribed(course=course_info(session, course), decision=decision, prescription=info)


def _rx_id(session: Session) -> str:
    while True:
        candidate = new_short_id(Kind.PRESCRIPTION)
        taken = session.execute(
            select(m.Prescription.id).where(m.Prescription.short_id == candidate)
        ).first()
        if taken is None:
            return candidate


def end_treatment(
    session: Session, actor: Actor, now: datetime, patient_ref: object, last_dose_on: object
) -> StepResult:
    patient, course = active(session, actor, Action.TREATMENT_END, patient_ref)
    if CourseState(course.state) is CourseState.AUTHORIZED:
        raise Conflict("an authorization is open: it must be dispensed or reversed first")
    day = clinical_date(
        "last_dose_on",
        last_dose_on,
        now,
        not_before=course.enrolled_on,
        latest=clinic_latest(session, course, now),
    )
    before = fire(course, "end_treatment", now)
    course.last_dose_on = day
    ruleset = ruleset_of(course)
    # No valid category: judged as a patient who can get pregnant (the safe side).
    category = ruleset.judged_category(course.category, course.category_reason)
    testing = ruleset.testing
    if not category.post_treatment:
        fire(course, "complete", now)
    else:
        if not testing.end_of_treatment_required:
            fire(course, "start_post_treatment", now)
        advance_after_treatment(session, course, now)
    due = day + timedelta(days=testing.post_treatment_days_after_last_dose)
    audit(
        session,
        actor,
        now,
        Action.TREATMENT_END,
        course,
        patient,
        before,
        {
            "last_dose_on": day.isoformat(),
            "post_treatment_test_due": due.isoformat() if course.is_open else None,
        },
    )
    return outcome(session, course)


def report_pregnancy(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    reported_on: object = None,
    note: object = None,
) -> StepResult:
    patient, course = active(session, actor, Action.PREGNANCY_REPORT, patient_ref)
    day = clinical_date(
        "reported_on",
        reported_on,
        now,
        default=today(session, course, now),
        latest=clinic_latest(session, course, now),
    )
    text = v.text("note", note, max_len=500) if note else None
    add_record(session, course, cf.PREGNANCY_REPORT, day, {"note": text}, actor, now)
    before = _suspend(session, course, actor, now, "pregnancy reported")
    audit(
        session,
        actor,
        now,
        Action.PREGNANCY_REPORT,
        course,
        patient,
        before,
        {"reported_on": day.isoformat(), "note": text},
        reasons=[rc.PREGNANCY_ACTIONS],
    )
    return outcome(session, course)


def change_state(
    session: Session,
    actor: Actor,
    now: datetime,
    action: Action,
    patient_ref: object,
    event: str,
    note: object = None,
) -> StepResult:
    """Resume a suspended course, withdraw it, or mark it lost to follow-up."""
    patient, course = active(session, actor, action, patient_ref)
    text = v.text("note", note, max_len=500) if note else None
    if event == "resume" and text is None:
        raise InvalidInput("note", "say why the course may resume (kept in the audit trail)")
    before = fire(course, event, now)
    reversed_numbers = _reverse_open(session, course, actor, now, f"course {course.state}")
    if event == "resume":
        course.pregnancy_actions = False
    add_record(
        session,
        course,
        cf.NOTE,
        today(session, course, now),
        {"event": event, "note": text},
        actor,
        now,
    )
    audit(
        session,
        actor,
        now,
        action,
        course,
        patient,
        before,
        {"event": event, "note": text, "reversed": reversed_numbers},
    )
    return outcome(session, course)


def course_of(session: Session, actor: Actor, patient_ref: object) -> tuple[m.Patient, m.Course]:
    """The patient's open course, else their latest one, once the actor is known to be in scope.
    A pharmacist reads a course only through the prescription in hand (the dispense check),
    never by the patient."""
    patient = load(session, Kind.PATIENT, patient_ref, "patient")
    own_patient_only(actor, Action.COURSE_READ, patient)
    if actor.role is Role.PHARMACIST:
        raise refuse(Action.COURSE_READ, [rc.OUT_OF_SCOPE], (patient.short_id,))
    course = latest_course(session, patient)
    if course is None:
        raise rule_refusal(
            rc.NO_ACTIVE_COURSE,
            f"patient {patient.short_id} was never enrolled",
            None,
            patient.short_id,
        )
    check_scope(actor, Action.COURSE_READ, course, patient)
    return patient, course


def check_prescribe(
    session: Session,
    actor: Actor,
    now: datetime,
    patient_ref: object,
    days_supply: int | None = None,
    refills: int = 0,
) -> Decision:
    supply = None if days_supply is None else _count("days_supply", days_supply, 1, 366)
    repeats = _count("refills", refills, 0, 99)
    course = course_of(session, actor, patient_ref)[1]
    return prescribe_gate(facts(session, course), now, supply, repeats)
