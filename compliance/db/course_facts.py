"""Build the pure ``CourseFacts`` of a course from its stored records."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.db import models as m
from compliance.domain.course import CourseState
from compliance.domain.facts import (
    AuthorizationRecord,
    CourseFacts,
    MethodRecord,
    PrescriptionRecord,
    TestRecord,
    TestResult,
)
from compliance.domain.lifecycle import PrescriberStatus
from compliance.programs.loader import get
from compliance.programs.model import Setting, TestKind

CONSENT = "consent"
COUNSELLING = "counselling"
COMPREHENSION = "comprehension"
CONTRACEPTION = "contraception"
CONFIRMATION = "contraception_confirmation"
CATEGORY = "category"
PREGNANCY_REPORT = "pregnancy_report"
TEST_SCHEDULE = "test_schedule"
NOTE = "note"


def test_record(row: m.PregnancyTest) -> TestRecord:
    return TestRecord(
        id=str(row.id),
        kind=TestKind(row.kind),
        specimen_date=row.specimen_date,
        setting=Setting(row.setting),
        clia=row.clia,
        sensitivity_miu_ml=row.sensitivity_miu_ml,
        result=TestResult(row.result),
        cycle=row.cycle,
        home_opt_in=row.home_opt_in,
    )


def load(session: Session, course: m.Course) -> CourseFacts:
    records = session.execute(
        select(m.CourseRecord)
        .where(m.CourseRecord.course_id == course.id)
        .order_by(m.CourseRecord.seq)
    ).scalars()
    consents: set[str] = set()
    counselling: set[int] = set()
    comprehension: set[int] = set()
    methods: tuple[MethodRecord, ...] = ()
    confirmed: dict[int, frozenset[str]] = {}
    reported: date | None = None
    category: str | None = None
    category_since = 1
    test_schedule: str | None = None
    for r in records:
        if r.kind == CATEGORY and r.payload.get("category") != category:
            category, category_since = str(r.payload.get("category")), r.cycle
        if r.kind == CONSENT:
            consents.add(str(r.payload["form"]))
        elif r.kind == COUNSELLING:
            counselling.add(r.cycle)
        elif r.kind == COMPREHENSION:
            comprehension.add(r.cycle)
        elif r.kind == CONTRACEPTION:
            methods = tuple(
                MethodRecord(str(x["method"]), date.fromisoformat(str(x["start_date"])))
                for x in r.payload["methods"]
            )
        elif r.kind == CONFIRMATION:
            confirmed[r.cycle] = frozenset(str(x) for x in r.payload["methods"])
        elif r.kind == PREGNANCY_REPORT:
            reported = r.effective_on
        elif r.kind == TEST_SCHEDULE:
            test_schedule = str(r.payload["schedule"])
    tests = tuple(
        test_record(t)
        for t in session.execute(
            select(m.PregnancyTest)
            .where(m.PregnancyTest.course_id == course.id)
            .order_by(m.PregnancyTest.specimen_date, m.PregnancyTest.seq)
        ).scalars()
    )
    prescriptions = tuple(
        PrescriptionRecord(
            id=rx.short_id,
            cycle=rx.cycle,
            written_on=rx.written_on,
            office_visit_on=rx.office_visit_on,
            days_supply=rx.days_supply,
            refills=rx.refills,
            prescriber_certified=status == PrescriberStatus.ACTIVATED,
        )
        for rx, status in session.execute(
            select(m.Prescription, m.Prescriber.status)
            .join(m.Prescriber, m.Prescriber.id == m.Prescription.prescriber_id)
            .where(m.Prescription.course_id == course.id)
            .order_by(m.Prescription.seq)
        )
    )
    authorizations = tuple(
        AuthorizationRecord(
            number=a.number,
            prescription_id=rx_short,
            cycle=a.cycle,
            issued_at=a.issued_at,
            do_not_dispense_after=a.do_not_dispense_after,
            test_id=str(a.test_id) if a.test_id else None,
            days_supply=a.days_supply,
            reversed_at=a.reversed_at,
            dispensed_at=a.dispensed_at,
        )
        for a, rx_short in session.execute(
            select(m.Authorization, m.Prescription.short_id)
            .join(m.Prescription, m.Prescription.id == m.Authorization.prescription_id)
            .where(m.Authorization.course_id == course.id)
            .order_by(m.Authorization.issued_at)
        )
    )
    return CourseFacts(
        ruleset=get(course.ruleset_id),
        state=CourseState(course.state),
        cycle=course.cycle,
        enrolled_on=course.enrolled_on,
        category=course.category,
        category_reason=course.category_reason,
        consents=frozenset(consents),
        counselling_cycles=frozenset(counselling),
        comprehension_cycles=frozenset(comprehension),
        methods=methods,
        patient_confirmed=confirmed,
        tests=tests,
        prescriptions=prescriptions,
        authorizations=authorizations,
        first_dispensed_on=course.first_dispensed_on,
        last_dose_on=course.last_dose_on,
        pregnancy_reported_on=reported,
        category_since_cycle=category_since,
        test_schedule=test_schedule,
    )
