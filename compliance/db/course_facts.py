"""Build the pure ``CourseFacts`` of a course from its stored records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from enum import Enum
from typing import Any

from sqlalchemy import ARRAY, String, Text, Uuid, any_, bindparam, cast, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from compliance.db import models as m
from compliance.db.base import table_of
from compliance.db.direct import Direct, connection_of
from compliance.db.rows import CourseFields
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
PATIENT_CONFIRMATION = "patient_confirmation"  # the prescriber confirms a negative result
CATEGORY = "category"
PREGNANCY_REPORT = "pregnancy_report"
TEST_SCHEDULE = "test_schedule"
NOTE = "note"
# Records whose payload ``_build`` never reads.
_PLAIN_KINDS = frozenset({COUNSELLING, COMPREHENSION, PREGNANCY_REPORT})

_RECORD = table_of(m.CourseRecord)
_TEST = table_of(m.PregnancyTest)
_RX = table_of(m.Prescription)
_PRESCRIBER = table_of(m.Prescriber)
_AUTHORIZATION = table_of(m.Authorization)
# Facts are read on every gate evaluation: only the columns they need, with statements built once.
# ``_build`` unpacks each row by position: a column added here is added there, in its place.
_RECORDS = (
    select(
        _RECORD.c.kind, _RECORD.c.cycle, _RECORD.c.effective_on, _RECORD.c.payload, _RECORD.c.seq
    )
    .where(_RECORD.c.course_id == bindparam("course"))
    .order_by(_RECORD.c.seq)
)
_TESTS = (
    select(
        _TEST.c.id,
        _TEST.c.kind,
        _TEST.c.specimen_date,
        _TEST.c.setting,
        _TEST.c.clia,
        _TEST.c.sensitivity_miu_ml,
        _TEST.c.result,
        _TEST.c.cycle,
        _TEST.c.home_opt_in,
        _TEST.c.seq,
    )
    .where(_TEST.c.course_id == bindparam("course"))
    .order_by(_TEST.c.specimen_date, _TEST.c.seq)
)
_PRESCRIPTIONS = (
    select(
        _RX.c.short_id,
        _RX.c.cycle,
        _RX.c.written_on,
        _RX.c.office_visit_on,
        _RX.c.days_supply,
        _RX.c.refills,
        _PRESCRIBER.c.status,
    )
    .join_from(_RX, _PRESCRIBER, _PRESCRIBER.c.id == _RX.c.prescriber_id)
    .where(_RX.c.course_id == bindparam("course"))
    .order_by(_RX.c.seq)
)
_PRESCRIBER_ZONE = select(_PRESCRIBER.c.time_zone).where(
    _PRESCRIBER.c.id == bindparam("prescriber")
)
_AUTHORIZATIONS = (
    select(
        _AUTHORIZATION.c.number,
        _RX.c.short_id,
        _AUTHORIZATION.c.cycle,
        _AUTHORIZATION.c.issued_at,
        _AUTHORIZATION.c.do_not_dispense_after,
        _AUTHORIZATION.c.test_id,
        _AUTHORIZATION.c.days_supply,
        _AUTHORIZATION.c.reversed_at,
        _AUTHORIZATION.c.dispensed_at,
    )
    .join_from(_AUTHORIZATION, _RX, _RX.c.id == _AUTHORIZATION.c.prescription_id)
    .where(_AUTHORIZATION.c.course_id == bindparam("course"))
    .order_by(_AUTHORIZATION.c.issued_at)
)


def test_record(row: Any) -> TestRecord:
    """From a ``PregnancyTest`` or a result row with the same column names."""
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
        seq=row.seq,
    )


_ONE_COURSE = tuple(Direct(s) for s in (_RECORDS, _TESTS, _PRESCRIPTIONS, _AUTHORIZATIONS))
_ZONE_OF = Direct(_PRESCRIBER_ZONE)


class Unread(Enum):
    """A value the caller did not read: ``load`` reads it."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


def load(
    session: Session | Connection,
    course: CourseFields,
    zone: str | Unread | None = UNREAD,
) -> CourseFacts:
    """``zone``: the prescriber's configured zone, when the caller read it with the course (one
    statement fewer on the dispense path)."""
    conn = connection_of(session)
    key = {"course": course.id}
    records, tests, prescriptions, authorizations = (s.rows(conn, key) for s in _ONE_COURSE)
    if zone is UNREAD:
        zone = prescriber_zone(conn, course)
    return _build(course, records, tests, prescriptions, authorizations, zone)


# For many courses at once (worklists, dry runs): the same columns, for a set of courses,
# grouped by course. Five queries for each chunk of courses instead of five for each course.
CHUNK = 500


def _text_key(column: Any) -> Any:
    """The course of a bulk row as text (hex on SQLite, the dashed form on PostgreSQL): rows
    are grouped on a string, hashed in C, and each group's key is converted once."""
    return cast(column, String()).label("of_course")


def _of_courses(column: Any, postgres: bool) -> Any:
    """``column`` among the chunk's courses, given as one parameter (the statement text stays
    the same for every chunk, and runs as a ``Direct`` statement): an array on PostgreSQL, a
    JSON array of the ids as SQLite stores them (hex) elsewhere."""
    if postgres:
        return column == any_(bindparam("courses", type_=ARRAY(Uuid())))
    listed = func.json_each(bindparam("courses", type_=Text())).table_valued("value")
    return column.in_(select(listed.c.value))


# The payload as text: decoded by ``_build`` only for the kinds that read it.
_PAYLOAD_TEXT = cast(_RECORD.c.payload, Text()).label("payload")


def _bulk_statements(postgres: bool) -> tuple[Any, ...]:
    """The records, tests, prescriptions and authorizations of a chunk of courses, in ``_build``'s
    column order with ``of_course`` last, ordered by course as ``load`` orders each course."""
    records = (
        select(
            _RECORD.c.kind,
            _RECORD.c.cycle,
            _RECORD.c.effective_on,
            _PAYLOAD_TEXT,
            _RECORD.c.seq,
            _text_key(_RECORD.c.course_id),
        )
        .where(_of_courses(_RECORD.c.course_id, postgres))
        .order_by(_RECORD.c.course_id, _RECORD.c.seq)
    )
    tests = (
        select(*_TESTS.selected_columns, _text_key(_TEST.c.course_id))
        .where(_of_courses(_TEST.c.course_id, postgres))
        .order_by(_TEST.c.course_id, _TEST.c.specimen_date, _TEST.c.seq)
    )
    prescriptions = (
        select(
            *_PRESCRIPTIONS.selected_columns,
            cast(_RX.c.id, String()).label("rx_key"),
            _text_key(_RX.c.course_id),
        )
        .join_from(_RX, _PRESCRIBER, _PRESCRIBER.c.id == _RX.c.prescriber_id)
        .where(_of_courses(_RX.c.course_id, postgres))
        .order_by(_RX.c.course_id, _RX.c.seq)
    )
    # Each authorization's prescription as its key, not joined: ``load_many`` names it by the
    # short id from the prescriptions read beside it (the join made PostgreSQL hash the whole
    # prescriptions table for every chunk).
    auth_columns = list(_AUTHORIZATIONS.selected_columns)
    auth_columns[1] = cast(_AUTHORIZATION.c.prescription_id, String()).label("rx_key")
    authorizations = (
        select(*auth_columns, _text_key(_AUTHORIZATION.c.course_id))
        .where(_of_courses(_AUTHORIZATION.c.course_id, postgres))
        .order_by(_AUTHORIZATION.c.course_id, _AUTHORIZATION.c.issued_at)
    )
    return records, tests, prescriptions, authorizations


# On SQLite the rows come straight from the driver (``Direct``: a third of the read's time was
# SQLAlchemy's per-row work); psycopg's rows already hold most values as their Python types,
# and measured no faster that way.
_SQLITE_MANY = tuple(Direct(statement) for statement in _bulk_statements(False))
_POSTGRES_MANY = _bulk_statements(True)


def _bulk_rows(session: Session, postgres: bool, ids: dict[str, Any]) -> Iterator[Sequence[Any]]:
    """The rows of each bulk statement in turn, for one chunk's ids."""
    if postgres:
        for statement in _POSTGRES_MANY:
            yield session.execute(statement, ids).all()
    else:
        conn = connection_of(session)
        for direct in _SQLITE_MANY:
            yield direct.rows(conn, ids)


_ZONES = select(_PRESCRIBER.c.id, _PRESCRIBER.c.time_zone).where(
    _PRESCRIBER.c.id.in_(bindparam("prescribers", expanding=True))
)
_SHORT_IDS = select(cast(_RX.c.id, String()), _RX.c.short_id).where(
    _RX.c.id.in_(bindparam("prescriptions", expanding=True))
)


def _named_prescriptions(
    session: Session, auths: dict[Any, list[Any]], rxs: dict[Any, list[Any]]
) -> dict[Any, list[Any]]:
    """The authorization rows with their prescription's key replaced by its short id, as
    ``_AUTHORIZATIONS`` reads it: from the chunk's prescriptions (the second to last column of
    their rows is the key), or read for any prescription outside the chunk."""
    short_of = {row[-2]: row[0] for rows in rxs.values() for row in rows}
    missing = {row[1] for rows in auths.values() for row in rows} - short_of.keys()
    if missing:
        found = session.execute(_SHORT_IDS, {"prescriptions": [uuid.UUID(k) for k in missing]})
        short_of.update((key, short_id) for key, short_id in found.all())
    return {
        course: [(row[0], short_of[row[1]], *row[2:]) for row in rows]
        for course, rows in auths.items()
    }


def load_many(
    session: Session, courses: Sequence[CourseFields], chunk_size: int | None = None
) -> Iterator[CourseFacts]:
    """The facts of each of ``courses``, in their order, the same as ``load`` gives one by one,
    read in a few queries per chunk of ``chunk_size`` courses (default ``CHUNK``)."""
    size = CHUNK if chunk_size is None else chunk_size
    postgres = session.get_bind().dialect.name == "postgresql"
    for start in range(0, len(courses), size):
        chunk = courses[start : start + size]
        listed = [c.id for c in chunk]
        ids = {"courses": listed if postgres else json.dumps([i.hex for i in listed])}
        by_text = {c.id.hex: c.id for c in chunk} | {str(c.id): c.id for c in chunk}
        grouped: list[dict[Any, list[Any]]] = []
        for rows in _bulk_rows(session, postgres, ids):
            raw: dict[str, list[Any]] = {}
            for row in rows:
                raw.setdefault(row[-1], []).append(row)  # ``of_course``, the last column
            grouped.append({by_text[key]: rows for key, rows in raw.items()})
        zones = dict(
            session.execute(_ZONES, {"prescribers": list({c.prescriber_id for c in chunk})}).all()
        )
        records, tests, rxs, keyed_auths = grouped
        auths = _named_prescriptions(session, keyed_auths, rxs)
        for c in chunk:
            key = c.id
            zone = zones.get(c.prescriber_id)
            yield _build(
                c,
                records.get(key, ()),
                tests.get(key, ()),
                rxs.get(key, ()),
                auths.get(key, ()),
                None if zone is None else str(zone),
            )


def _build(
    course: CourseFields,
    records: Iterable[Any],
    test_rows: Iterable[Any],
    rx_rows: Iterable[Any],
    auth_rows: Iterable[Any],
    zone: str | None,
) -> CourseFacts:
    """The rows are unpacked by position, in the order of the columns of ``_RECORDS``,
    ``_TESTS``, ``_PRESCRIPTIONS`` and ``_AUTHORIZATIONS`` (a row's attribute costs several
    times its place in a tuple; the bulk statements add ``of_course`` after them)."""
    consents: set[str] = set()
    counselling: set[int] = set()
    comprehension: set[int] = set()
    methods: tuple[MethodRecord, ...] = ()
    methods_cycle: int | None = None
    confirmed_tests: set[str] = set()
    confirmed: dict[int, frozenset[str]] = {}
    reported: date | None = None
    category: str | None = None
    category_since = 1
    test_schedule: str | None = None
    resumed: int | None = None
    for kind, cycle, effective_on, stored, seq, *_ in records:
        payload = stored  # the bulk read's is text, decoded only where it is read
        if isinstance(stored, str) and kind not in _PLAIN_KINDS:
            payload = json.loads(stored)
        if kind == CATEGORY and payload.get("category") != category:
            category, category_since = str(payload.get("category")), cycle
        if kind == CONSENT:
            consents.add(str(payload["form"]))
        elif kind == COUNSELLING:
            counselling.add(cycle)
        elif kind == COMPREHENSION:
            comprehension.add(cycle)
        elif kind == CONTRACEPTION:
            methods = tuple(
                MethodRecord(str(x["method"]), date.fromisoformat(str(x["start_date"])))
                for x in payload["methods"]
            )
            methods_cycle = cycle
        elif kind == PATIENT_CONFIRMATION:
            confirmed_tests.add(str(payload["test"]))
        elif kind == CONFIRMATION:
            confirmed[cycle] = frozenset(str(x) for x in payload["methods"])
        elif kind == PREGNANCY_REPORT:
            reported = effective_on
        elif kind == TEST_SCHEDULE:
            test_schedule = str(payload["schedule"])
        elif kind == NOTE and payload.get("event") == "resume":
            resumed = seq
    tests = tuple(
        TestRecord(
            id=str(test_id),
            kind=TestKind(kind),
            specimen_date=specimen_date,
            setting=Setting(setting),
            clia=clia,
            sensitivity_miu_ml=sensitivity,
            result=TestResult(result),
            cycle=cycle,
            home_opt_in=home_opt_in,
            seq=seq,
        )
        for (
            test_id,
            kind,
            specimen_date,
            setting,
            clia,
            sensitivity,
            result,
            cycle,
            home_opt_in,
            seq,
            *_,
        ) in test_rows
    )
    prescriptions = tuple(
        PrescriptionRecord(
            id=short_id,
            cycle=cycle,
            written_on=written_on,
            office_visit_on=office_visit_on,
            days_supply=days_supply,
            refills=refills,
            prescriber_certified=status == PrescriberStatus.ACTIVATED,
        )
        for short_id, cycle, written_on, office_visit_on, days_supply, refills, status, *_ in (
            rx_rows
        )
    )
    authorizations = tuple(
        AuthorizationRecord(
            number=number,
            prescription_id=rx_id,
            cycle=cycle,
            issued_at=issued_at,
            do_not_dispense_after=do_not_dispense_after,
            test_id=str(test_id) if test_id else None,
            days_supply=days_supply,
            reversed_at=reversed_at,
            dispensed_at=dispensed_at,
        )
        for (
            number,
            rx_id,
            cycle,
            issued_at,
            do_not_dispense_after,
            test_id,
            days_supply,
            reversed_at,
            dispensed_at,
            *_,
        ) in auth_rows
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
        resumed_seq=resumed,
        methods_cycle=methods_cycle,
        confirmed_tests=frozenset(confirmed_tests),
        prescriber_zone=zone,
    )


def prescriber_zone(session: Session | Connection, course: CourseFields) -> str | None:
    """The clinic's own zone configured for the course's prescriber (None: not configured)."""
    zone = _ZONE_OF.scalar(session, {"prescriber": course.prescriber_id})
    return None if zone is None else str(zone)
