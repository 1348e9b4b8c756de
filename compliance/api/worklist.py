"""The worklist across courses, and the index that lets it skip courses with nothing to show.

Judging every open course each time costs a few queries and the gates per course, so a daily
worklist would grow with the practice. Instead each course carries when its flags can show,
worked out from the same ``flags_for`` the worklist uses, in the transaction that changed the
course: the first day a flag is due (``attention_from``), the last day one can still show when
every flag ends (``attention_until``: windows closing), and the day it was worked out
(``attention_checked``). A flag due on day D shows from D - within onwards, so the worklist
reads only the courses whose index says a flag may show in the days asked about, and judges
those exactly as before. The index is a superset by construction:

- flags that follow from time passing alone, with no change to the course, are found by
  looking ``LOOKAHEAD_DAYS`` ahead (more than the widest worklist) and examined again once
  that look-ahead runs out;
- the two flags that do not have a due day in the facts (a pregnancy's actions, a reversal
  owed once a deadline passes) are matched by their own columns instead;
- a course indexed on the day asked about or later (UTC; so also when a clock is set back
  before the change) and a course not indexed yet (NULL) are always examined;
- "today" is the clinic's: every day compared is widened by one either side of UTC's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, Result, Select, bindparam, or_, select, union, update
from sqlalchemy.orm import Session

from compliance.api import changed_courses
from compliance.api.course_status import flags_for
from compliance.api.results_course import Flag
from compliance.db import course_facts as cf
from compliance.db import models as m
from compliance.db.base import table_of
from compliance.db.direct import Direct
from compliance.db.rows import CourseFields
from compliance.domain import reasons as rc
from compliance.domain.facts import CourseFacts

# Longer than the widest worklist (366 days): a flag due later is found when the course is
# examined again, once ``attention_checked`` is this far behind.
LOOKAHEAD_DAYS = 400
# Shown whatever the day, matched by their own columns rather than by a due day.
_UNDATED = frozenset({rc.PREGNANCY_ACTIONS, rc.RMA_REVERSAL_REQUIRED})
# Shown only while their window is open: they end on their due day.
_ENDING = frozenset({rc.WINDOW_CLOSING})


def attention(flags: Iterable[Flag], today: date) -> tuple[date | None, date | None]:
    """The first due day of ``flags`` (found looking far ahead on ``today``) and, when every
    one of them stops showing on its due day, the last such day; (None, None) for none."""
    dated = [f for f in flags if f.code not in _UNDATED]
    if not dated:
        return None, None
    first = min(f.due or today for f in dated)
    ending = all(f.code in _ENDING and f.due is not None for f in dated)
    return first, max(f.due or today for f in dated) if ending else None


def _index(
    session: Session,
    courses: Sequence[CourseFields],
    now: datetime,
    known: Sequence[CourseFacts] = (),
) -> list[dict[str, Any]]:
    """The index of each of ``courses`` at ``now``, from ``known`` facts (in the same order)
    or, without them, from the facts read now."""
    rows: list[dict[str, Any]] = []
    checked = now.date()
    for course, f in zip(courses, known or cf.load_many(session, courses), strict=True):
        found = flags_for(session, course, "", f, now, LOOKAHEAD_DAYS)
        first, until = attention(found, checked)
        rows.append({"row": course.id, "first": first, "until": until, "checked": checked})
    return rows


_COURSES = table_of(m.Course)
_SET_INDEX = Direct(
    update(_COURSES)
    .where(_COURSES.c.id == bindparam("row"))
    .values(
        attention_from=bindparam("first"),
        attention_until=bindparam("until"),
        attention_checked=bindparam("checked"),
    )
)


def _write(session: Session, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # mostly one: the course the call changed
        _SET_INDEX.run(session, row)


def refresh(session: Session, now: datetime) -> None:
    """Index again the courses this transaction changed, before it commits."""
    changed = changed_courses.take(session)
    if not changed:
        return
    session.flush()
    given = [k for k in changed.values() if k is not None]
    rows = _index(session, [k.course for k in given], now, [k.facts for k in given])
    ids = sorted(i for i, k in changed.items() if k is None)
    courses = [c for c in (session.get(m.Course, i) for i in ids) if c is not None]
    _write(session, rows + _index(session, courses, now))


def index_missing(session: Session, now: datetime, limit: int = cf.CHUNK) -> int:
    """Index up to ``limit`` courses that have no index yet (a database from before it, or
    rows written by other tools); the number indexed."""
    courses = list(
        session.scalars(select(m.Course).where(m.Course.attention_checked.is_(None)).limit(limit))
    )
    _write(session, _index(session, courses, now))
    for course in courses:
        session.expunge(course)
    return len(courses)


def may_show(tag: str = "") -> Select[tuple[uuid.UUID]]:
    """The ids of the courses whose index says a flag may show in the days ``bounds`` gives
    (its parameters named with ``tag``, so several can sit in one statement): a union of
    selections that each read an index, so the courses with nothing to show are not read."""
    c, a = m.Course, m.Authorization
    latest = bindparam(f"latest{tag}", type_=Date())
    earliest = bindparam(f"earliest{tag}", type_=Date())
    recheck = bindparam(f"recheck{tag}", type_=Date())
    parts = (
        select(c.id).where(c.attention_checked.is_(None)),
        select(c.id).where(c.attention_checked >= bindparam(f"today{tag}", type_=Date())),
        select(c.id).where(c.attention_checked <= recheck),
        select(c.id).where(c.pregnancy_actions),
        select(a.course_id).where(a.reversed_at.is_(None), a.dispensed_at.is_(None)),
        select(c.id).where(
            c.attention_from <= latest,
            or_(c.attention_until.is_(None), c.attention_until >= earliest),
        ),
    )
    return select(union(*parts).subquery().c[0])


def bounds(now: datetime, within_days: int, tag: str = "") -> dict[str, date]:
    """The days ``may_show`` compares: today in any zone is within a day of UTC's."""
    today = now.date()
    latest = today + timedelta(days=within_days + 1)
    return {
        f"today{tag}": today,
        f"latest{tag}": latest,
        f"earliest{tag}": today - timedelta(days=1),
        f"recheck{tag}": latest - timedelta(days=LOOKAHEAD_DAYS),
    }


_MAY_SHOW = may_show()


def _open_courses(prescriber_id: uuid.UUID | None) -> Select[m.Course, str]:
    """The open courses (and those with a pregnancy's actions) with their patient's id, of one
    prescriber or of all."""
    stmt = (
        select(m.Course, m.Patient.short_id)
        .join(m.Patient, m.Patient.id == m.Course.patient_id)
        .where(or_(m.Course.is_open, m.Course.pregnancy_actions))
        .order_by(m.Patient.short_id)
    )
    return stmt if prescriber_id is None else stmt.where(m.Course.prescriber_id == prescriber_id)


def due(
    session: Session, now: datetime, within_days: int, prescriber_id: uuid.UUID | None = None
) -> list[Flag]:
    """The flags due within ``within_days`` across the open courses (and those with a
    pregnancy's actions), of one prescriber or of all."""
    stmt = _open_courses(prescriber_id).where(m.Course.id.in_(_MAY_SHOW))
    return _flags_of(session, session.execute(stmt, bounds(now, within_days)), now, within_days)


def every_flag(
    session: Session, now: datetime, within_days: int, prescriber_id: uuid.UUID | None = None
) -> list[Flag]:
    """``due`` judging every course, index or not: what the index must always agree with."""
    rows = session.execute(_open_courses(prescriber_id))
    return _flags_of(session, rows, now, within_days)


def _flags_of(
    session: Session,
    rows: Result[*tuple[Any, ...]],
    now: datetime,
    within_days: int,
    keep: Callable[[tuple[Any, ...], Flag], bool] | None = None,
) -> list[Flag]:
    """Every flag of the (course, patient id) rows, read a chunk of courses at a time: a few
    queries per chunk (``load_many``), and the chunk's courses released once judged, so
    memory does not grow with the practice."""
    flags: list[Flag] = []
    for part in rows.yield_per(cf.CHUNK).partitions():
        courses = [course for course, *_ in part]
        for row, f in zip(part, cf.load_many(session, courses), strict=True):
            values: tuple[Any, ...] = tuple(row)
            course, patient = values[0], values[1]
            found = flags_for(session, course, patient, f, now, within_days)
            flags.extend(fl for fl in found if keep is None or keep(values, fl))
        for course in courses:
            session.expunge(course)
    return sorted(flags, key=lambda fl: (fl.due or date.max, fl.patient, fl.code))


def pharmacy_due(session: Session, now: datetime, pharmacy_id: object) -> list[Flag]:
    """A pharmacy's worklist: its own live authorizations it must reverse (not picked up in
    time), and nothing else about the patients (no pregnancies, no tests, no other pharmacy)."""
    live = (
        select(m.Course, m.Patient.short_id, m.Authorization.number)
        .join(m.Authorization, m.Authorization.course_id == m.Course.id)
        .join(m.Patient, m.Patient.id == m.Course.patient_id)
        .where(
            m.Authorization.pharmacy_id == pharmacy_id,
            m.Authorization.reversed_at.is_(None),
            m.Authorization.dispensed_at.is_(None),
        )
        .order_by(m.Patient.short_id)
    )

    def owed(row: tuple[Any, ...], fl: Flag) -> bool:
        return fl.code == rc.RMA_REVERSAL_REQUIRED and fl.reference == row[2]

    return _flags_of(session, session.execute(live), now, 0, owed)
