"""The worklist's index never hides a flag: every acceptance timeline is replayed, and on every
day from its first step until well after its last (the index looks 400 days ahead), at one of
two times of day (alternating), each course with a flag in the full worklist (every course
judged) is one the index lets the worklist read, and the worklist the API answers equals the
full one.

The timelines are written from the programme documents, so they exercise the orderings clinics
use (windows opening and closing, tests falling due, pregnancies, reversals), not the engine's
own sequence.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance import Compliance, FixedClock
from compliance.api import worklist
from compliance.api.course_status import flags_for
from compliance.db import course_facts as cf
from compliance.db import models as m
from compliance.domain import reasons as rc
from compliance.errors import Refused
from tests.acceptance import (  # noqa: F401  (they register)
    timelines_ipledge,
    timelines_lenalidomide,
    timelines_programmes,
)
from tests.acceptance.conftest import FreshDatabases
from tests.acceptance.driver import NotRecordable, Parties, Run, _perform
from tests.acceptance.model import Timeline
from tests.acceptance.registry import build_all
from tests.conftest import _pg_url

TIMELINES = {t.name: t for t in build_all()}
WITHIN = (0, 7, 30)
# UTC, alternating by day: the evening before and the afternoon of the day in the Americas.
HOURS = (2, 14)
# PostgreSQL runs the same comparison on a few timelines of each programme (the index is the
# same SQL on both; the sweep of every timeline runs on SQLite).
ON_POSTGRES = 4
KIND_TIMELINES = (
    "eu_uk_positive_test_suspends[eu-iso/2018]",
    "eu_athens_pharmacy_last_minutes_of_day_7[eu-iso/2018]",
)
KINDS = {rc.TEST_DUE_SOON, rc.WINDOW_CLOSING, rc.PREGNANCY_ACTIONS, rc.RMA_REVERSAL_REQUIRED}


def _days(start: date, end: date, step: int = 1) -> list[date]:
    return [start + timedelta(days=n) for n in range(0, (end - start).days + 1, step)]


def _instants(days: list[date]) -> list[datetime]:
    return [datetime.combine(d, time(HOURS[d.toordinal() % 2]), UTC) for d in days]


# Each course, and for each of WITHIN whether the index lets the worklist read it.
_KEPT = select(
    m.Patient.short_id,
    *(m.Course.id.in_(worklist.may_show(str(n))) for n in range(len(WITHIN))),
).join(m.Course, m.Course.patient_id == m.Patient.id)


class _Course:
    """A course as it stands between two steps: the same facts every day until the next."""

    def __init__(self, course: m.Course, patient: str, facts: object) -> None:
        self.course, self.patient, self.facts = course, patient, facts


def _courses(session: Session) -> list[_Course]:
    rows = session.execute(
        select(m.Course, m.Patient.short_id).join(m.Patient, m.Patient.id == m.Course.patient_id)
    ).all()
    courses = [course for course, _ in rows]
    return [
        _Course(course, patient, f)
        for (course, patient), f in zip(rows, cf.load_many(session, courses), strict=True)
    ]


def _compare(session: Session, courses: list[_Course], at: datetime, where: str) -> set[str]:
    """Asserts the index keeps every course the full worklist flags at ``at`` (flags judged
    exactly as the worklist judges them, for every course); the codes of the flags seen."""
    seen: set[str] = set()
    params = {k: v for n, w in enumerate(WITHIN) for k, v in worklist.bounds(at, w, str(n)).items()}
    kept_by = session.execute(_KEPT, params).all()
    for n, within in enumerate(WITHIN):
        kept = {row[0] for row in kept_by if row[n + 1]}
        for c in courses:
            if not (c.course.is_open or c.course.pregnancy_actions):
                continue
            found = flags_for(session, c.course, c.patient, c.facts, at, within)  # type: ignore[arg-type]
            assert not found or c.patient in kept, (
                f"{where}, at {at.isoformat()} within {within}: the index hid "
                f"{[f.code for f in found]} of {c.patient}"
            )
            seen |= {f.code for f in found}
    return seen


def _facts(app: Compliance) -> dict[object, object]:
    with Session(app.engine) as session:
        courses = list(session.scalars(select(m.Course)))
        return {c.id: f for c, f in zip(courses, cf.load_many(session, courses), strict=True)}


def _index_is_current(
    app: Compliance, before: dict[object, object], at: datetime, where: str
) -> None:
    """Each course a step changed has the index its facts give at that instant, whichever way
    the step reached them (read again, or carried by the step)."""
    with Session(app.engine) as session:
        courses = list(session.scalars(select(m.Course)))
        now = dict(zip((c.id for c in courses), cf.load_many(session, courses), strict=True))
        changed = [c for c in courses if before.get(c.id) != now[c.id]]
        for course, want in zip(changed, worklist._index(session, changed, at), strict=True):
            stored = (course.attention_from, course.attention_until, course.attention_checked)
            assert stored == (want["first"], want["until"], want["checked"]), where


def _sweep(url: str, parties: Parties, timeline: Timeline) -> set[str]:
    steps = timeline.steps
    clock = FixedClock(steps[0].instant)
    run = Run(Compliance.open(url, clock), clock, parties)
    flags: set[str] = set()
    try:
        for n, step in enumerate(steps):
            clock.set(step.instant)
            before = _facts(run.app)
            try:
                _perform(run, step)
            except Refused:
                pass
            except NotRecordable:
                break
            _index_is_current(run.app, before, step.instant, f"{timeline.name} step {n + 1}")
            today = step.instant.astimezone(UTC).date()
            if n + 1 < len(steps):
                later = steps[n + 1].instant.astimezone(UTC).date()
                days = _days(today, later)
            else:  # after the last step: daily for two months, then past the look-ahead
                days = _days(today, today + timedelta(days=60)) + _days(
                    today + timedelta(days=61), today + timedelta(days=440), 7
                )
            where = f"{timeline.name} after step {n + 1} ({step.describe()})"
            with Session(run.app.engine) as session:
                courses = _courses(session)
                for at in [step.instant, *_instants(days)]:
                    if at < step.instant or (n + 1 < len(steps) and at >= steps[n + 1].instant):
                        continue
                    flags |= _compare(session, courses, at, where)
        # The answer the API gives equals the full worklist, on a day after the last step.
        at = steps[-1].instant + timedelta(days=3)
        clock.set(at)
        for within in WITHIN:
            with Session(run.app.engine) as session:
                full = worklist.every_flag(session, at, within)
            assert run.app.due(parties.admin, within) == full
    finally:
        run.app.close()
    return flags


def _params(backend: str) -> list[object]:
    names = sorted(TIMELINES)
    if backend == "postgresql":
        names = names[:: max(1, len(names) // ON_POSTGRES)]
    return [pytest.param(name, id=name) for name in names]


def _sqlite_copy(sqlite_parties: tuple[Path, Parties], tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name.replace('/', '-')}.db"
    shutil.copy(sqlite_parties[0], path)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("name", _params("sqlite"))
def test_index_hides_no_flag_sqlite(
    name: str, sqlite_parties: tuple[Path, Parties], tmp_path: Path
) -> None:
    _sweep(_sqlite_copy(sqlite_parties, tmp_path, name), sqlite_parties[1], TIMELINES[name])


@pytest.mark.postgres
@pytest.mark.parametrize("name", _params("postgresql"))
def test_index_hides_no_flag_postgresql(name: str, request: pytest.FixtureRequest) -> None:
    _, parties = request.getfixturevalue("pg_parties")
    pool: FreshDatabases = request.getfixturevalue("fresh_pg")
    db = pool.take()
    try:
        _sweep(_pg_url(db), parties, TIMELINES[name])
    finally:
        pool.give_back(db)


def test_the_sweeps_compare_every_kind_of_flag(
    sqlite_parties: tuple[Path, Parties], tmp_path: Path
) -> None:
    """Not vacuous: the full worklist the sweeps compare shows every kind of flag the index
    treats differently (a due day, a window closing, a pregnancy's actions, a reversal owed)."""
    seen: set[str] = set()
    for name in KIND_TIMELINES:
        url = _sqlite_copy(sqlite_parties, tmp_path, name)
        seen |= _sweep(url, sqlite_parties[1], TIMELINES[name])
    assert seen >= KINDS, f"never seen: {sorted(KINDS - seen)}"
