"""The clinic's view: one course's checklist, and the worklist of flags across courses.

The checklist is derived from the gates' reasons, so it can never disagree with what they would
decide: where the status is judged at the pharmacy's request (iPLEDGE), from everything the
request will judge, not only what writing the prescription needs.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.api.authz import Actor
from compliance.api.courses import (
    authorization_info,
    course_info,
    course_of,
    facts,
    prescription_info,
    ruleset_of,
)
from compliance.api.results_course import ChecklistItem, CourseStatus, Flag
from compliance.db import models as m
from compliance.db.rows import CourseFields
from compliance.domain import reasons as rc
from compliance.domain import timing
from compliance.domain.course import CourseState
from compliance.domain.facts import CourseFacts
from compliance.domain.gates import Decision, prescribe_gate, readiness, scheduled_test_due
from compliance.domain.next_step import next_month_on, next_step, prescription_last_day
from compliance.domain.pregnancy_tests import (
    end_of_treatment_test_done,
    post_treatment_due,
    post_treatment_test_done,
)
from compliance.domain.timing import today_in, zone_for
from compliance.programs.model import Anchor, Cadence

# Checklist items and the reason codes that mean "missing".
ITEMS: tuple[tuple[str, frozenset[str]], ...] = (
    ("category", frozenset({rc.CATEGORY_NOT_ASSIGNED, rc.INVALID_CATEGORY_REASON})),
    ("consent", frozenset({rc.CONSENT_NOT_SIGNED})),
    ("counselling", frozenset({rc.COUNSELING_NOT_DOCUMENTED})),
    ("comprehension", frozenset({rc.COMPREHENSION_NOT_DONE})),
    (
        "contraception",
        frozenset(
            {
                rc.CONTRACEPTION_NOT_DOCUMENTED,
                rc.CONTRACEPTION_INSUFFICIENT,
                rc.NO_PRIMARY_METHOD,
                rc.CONTRACEPTION_LEAD_IN_NOT_MET,
            }
        ),
    ),
    (
        "contraception_confirmed",
        frozenset({rc.CONTRACEPTION_NOT_CONFIRMED, rc.CONTRACEPTION_MISMATCH}),
    ),
    (
        "pregnancy_test",
        frozenset(
            {
                rc.PRETREATMENT_TESTS_INCOMPLETE,
                rc.PRETREATMENT_TEST_SPACING,
                rc.NO_NEGATIVE_TEST_IN_WINDOW,
                rc.PREGNANCY_TEST_POSITIVE,
                rc.TEST_SETTING_NOT_PERMITTED,
                rc.TEST_SENSITIVITY_INSUFFICIENT,
                rc.LOCKOUT_19D,
            }
        ),
    ),
    ("prescriber_confirmation", frozenset({rc.PRESCRIBER_CONFIRMATION_MISSING})),
)


def _required(item: str, f: CourseFacts) -> bool:
    # No valid category: every item a patient who can get pregnant needs (the safe side).
    category = f.ruleset.judged_category(f.category, f.category_reason)
    return {
        "category": True,
        "consent": bool(category.consent_forms),
        "counselling": category.counselling is not Cadence.NONE,
        "comprehension": category.comprehension is not Cadence.NONE,
        "contraception": category.contraception,
        "contraception_confirmed": category.contraception
        and f.ruleset.contraception.patient_confirmation is not Cadence.NONE,
        "pregnancy_test": category.pregnancy_testing,
        "prescriber_confirmation": category.pregnancy_testing
        and f.ruleset.testing.prescriber_confirms_result,
    }[item]


_ENDED = frozenset(
    {
        CourseState.TREATMENT_ENDED,
        CourseState.POST_TREATMENT,
        CourseState.COMPLETED,
        CourseState.WITHDRAWN,
        CourseState.LOST_TO_FOLLOW_UP,
    }
)


def checklist(
    f: CourseFacts, decision: Decision, zone: ZoneInfo | None = None
) -> tuple[ChecklistItem, ...]:
    """This cycle's items; once treatment has ended, the tests still owed instead of the
    prescription and authorization; after a pickup, next month's dates."""
    by_code = {r.code: r for r in decision.reasons}
    due = decision.window.last_day if decision.window else None
    if f.state is CourseState.DISPENSED and zone is not None:
        due = next_month_on(f, zone) or due
    items = []
    for item, codes in ITEMS:
        if not _required(item, f):
            items.append(ChecklistItem(item, "not_required"))
            continue
        failing = [by_code[c] for c in codes if c in by_code]
        if failing and item == "pregnancy_test" and f.state is CourseState.DISPENSED:
            # Just picked up: next month's test is what is missing, due when the supply ends.
            items.append(
                ChecklistItem(
                    item,
                    "missing",
                    "next month's test is not on file yet",
                    "collect next month's pregnancy test",
                    due,
                )
            )
        elif failing:
            items.append(
                ChecklistItem(
                    item,
                    "missing",
                    "; ".join(r.message for r in failing),
                    failing[0].next_step,
                    failing[0].earliest,
                )
            )
        else:
            items.append(
                ChecklistItem(item, "done", due_by=due if item == "pregnancy_test" else None)
            )
    state = f.state
    if state in _ENDED:
        return tuple(items) + _after_treatment_items(f)
    prescribed = state in {CourseState.QUALIFIED, CourseState.AUTHORIZED}
    items.append(
        ChecklistItem(
            "prescription",
            "done" if prescribed else "missing",
            None if prescribed else "no prescription for this cycle yet",
            None if prescribed else "the prescriber writes the prescription",
            due_by=due,
        )
    )
    authorized = state is CourseState.AUTHORIZED
    items.append(
        ChecklistItem(
            "authorization",
            "done" if authorized else "missing",
            None if authorized else "no dispense authorization yet",
            None if authorized else "the pharmacy requests an authorization",
            due_by=due,
        )
    )
    return tuple(items)


def _after_treatment_items(f: CourseFacts) -> tuple[ChecklistItem, ...]:
    category = f.ruleset.judged_category(f.category, f.category_reason)
    ended = "treatment ended"
    items = [
        ChecklistItem("prescription", "not_required", ended),
        ChecklistItem("authorization", "not_required", ended),
    ]
    if not category.pregnancy_testing:
        return tuple(items)
    if f.ruleset.testing.end_of_treatment_required:
        items.append(_owed("end_of_treatment", end_of_treatment_test_done(f), f.last_dose_on))
    if category.post_treatment:
        items.append(_owed("post_treatment", post_treatment_test_done(f), post_treatment_due(f)))
    return tuple(items)


def _owed(kind: str, done: bool, due: date | None) -> ChecklistItem:
    """A test still owed after the last dose (or on file)."""
    label = kind.replace("_", "-")
    if done:
        return ChecklistItem(f"{kind}_test", "done")
    return ChecklistItem(
        f"{kind}_test",
        "missing",
        f"no {label} test on file",
        f"record the {label} pregnancy test",
        due,
    )


def status(session: Session, actor: Actor, now: datetime, patient_ref: object) -> CourseStatus:
    patient, course = course_of(session, actor, patient_ref)
    f = facts(session, course)
    decision = prescribe_gate(f, now)
    rx_rows = (
        session.execute(
            select(m.Prescription)
            .where(m.Prescription.course_id == course.id, m.Prescription.cycle == course.cycle)
            .order_by(m.Prescription.seq.desc())
            .limit(1)
        )
        .scalars()
        .all()
    )
    live = (
        session.execute(
            select(m.Authorization).where(
                m.Authorization.course_id == course.id,
                m.Authorization.reversed_at.is_(None),
                m.Authorization.dispensed_at.is_(None),
            )
        )
        .scalars()
        .first()
    )
    current = rx_rows[0] if rx_rows and course.state in {"qualified", "authorized"} else None
    zone = zone_for(f.ruleset, None, f.prescriber_zone)
    ready = readiness(f, now)
    items = checklist(f, ready, zone)
    missing = next((i for i in items if i.status == "missing"), None)
    category = f.ruleset.judged_category(f.category, f.category_reason)
    held = authorization_info(session, live, patient.short_id) if live else None
    # The pickup deadline is a day on the calendar that judges it: the pharmacy's (EU/UK).
    pickup_by = (
        held.do_not_dispense_after.astimezone(ZoneInfo(held.zone)).date()
        if held is not None and held.do_not_dispense_after is not None
        else None
    )
    window_last_day = ready.window.last_day if ready.window else None
    written = f.prescription(current.short_id) if current is not None else None
    if written is not None:
        window_last_day = prescription_last_day(f, written) or window_last_day
    step = next_step(
        f,
        zone,
        testing=category.pregnancy_testing,
        first_missing=(missing.next_step or missing.detail or missing.item, missing.due_by)
        if missing
        else None,
        window_last_day=window_last_day,
        pickup_by=pickup_by,
    )
    return CourseStatus(
        next=step,
        course=course_info(session, course),
        decision=decision,
        checklist=items,
        open_authorization=held,
        current_prescription=prescription_info(session, current, patient.short_id)
        if current
        else None,
        flags=tuple(flags_for(session, course, patient.short_id, f, now, 7)),
    )


def flags_for(
    session: Session,
    course: CourseFields,
    patient: str,
    f: CourseFacts,
    now: datetime,
    within_days: int,
) -> list[Flag]:
    ruleset = ruleset_of(course)
    zone = zone_for(ruleset, None, f.prescriber_zone)
    today = today_in(zone, now)
    horizon = today + timedelta(days=within_days)
    flags: list[Flag] = []

    def add(
        code: str, due: date | None = None, reference: str | None = None, detail: str | None = None
    ) -> None:
        message = rc.MESSAGES[code] + (f": {detail}" if detail else "")
        flags.append(Flag(code, patient, message, due, reference))

    if course.pregnancy_actions:
        add(rc.PREGNANCY_ACTIONS, today)
    for a in f.authorizations:
        if not a.live:
            continue
        overdue = (a.do_not_dispense_after is not None and now > a.do_not_dispense_after) or (
            a.do_not_dispense_after is None
            and now
            > a.issued_at + timedelta(days=ruleset.authorization.reverse_unpicked_after_days)
        )
        if overdue and ruleset.authorization.reverse_unpicked:
            add(rc.RMA_REVERSAL_REQUIRED, today, a.number, "not picked up")
    category = ruleset.judged_category(course.category, course.category_reason)
    if course.is_open:
        state = CourseState(course.state)
        # Only a qualified course has a window to close: the gates run for nothing else.
        window = readiness(f, now).window if state is CourseState.QUALIFIED else None
        closing = window is not None and window.contains(now) and window.last_day <= horizon
        if state is CourseState.QUALIFIED and window is not None and closing:
            add(rc.WINDOW_CLOSING, window.last_day, None, f"last day {window.last_day.isoformat()}")
        rule = category.window
        if state is CourseState.QUALIFIED and rule and rule.anchor is Anchor.PRESCRIPTION_DATE:
            current = [p for p in f.prescriptions if p.cycle == f.cycle]
            if current:
                validity = timing.window(current[-1].written_on, rule.days, zone)
                if validity.contains(now) and validity.last_day <= horizon:
                    last_day = validity.last_day
                    add(rc.WINDOW_CLOSING, last_day, current[-1].id, f"valid to {last_day}")
        scheduled = scheduled_test_due(f, today, horizon) if category.pregnancy_testing else None
        if scheduled is not None:
            when, late = scheduled
            add(rc.TEST_DUE_SOON, when, None, "a scheduled test" + (" (overdue)" if late else ""))
        elif category.pregnancy_testing and state is CourseState.DISPENSED:
            last = max(
                (a for a in f.authorizations if a.dispensed_at is not None),
                key=lambda a: a.dispensed_at or now,
                default=None,
            )
            if last is not None and last.dispensed_at is not None:
                due = today_in(zone, last.dispensed_at) + timedelta(days=last.days_supply)
                if due <= horizon:
                    add(rc.TEST_DUE_SOON, due, None, "the next monthly test")
        if state in {CourseState.TREATMENT_ENDED, CourseState.POST_TREATMENT}:
            for code, when, detail in _after_treatment(f, state, today, horizon):
                add(code, when, None, detail)
    return flags


def _after_treatment(
    f: CourseFacts, state: CourseState, today: date, horizon: date
) -> list[tuple[str, date, str | None]]:
    """The tests a course whose treatment ended still waits for: the end-of-treatment test
    (the course cannot move on without it) and the post-treatment test, overdue after its
    due day (last dose + the ruleset's days)."""
    flags: list[tuple[str, date, str | None]] = []
    if state is CourseState.TREATMENT_ENDED and f.last_dose_on is not None:
        late = " (overdue)" if today > f.last_dose_on else ""
        flags.append((rc.TEST_DUE_SOON, f.last_dose_on, "the end-of-treatment test" + late))
    due = post_treatment_due(f)
    if due is not None and not post_treatment_test_done(f):
        if today > due:
            flags.append((rc.OVERDUE_POST_TREATMENT_TEST, due, None))
        elif due <= horizon:
            flags.append((rc.TEST_DUE_SOON, due, "the post-treatment test"))
    return flags
