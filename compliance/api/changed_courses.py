"""The courses a transaction changed, so derived data about them is brought up to date before
it commits (the worklist's index). Every change of a course is audited through one function,
which notes the course here; a step that already holds the course's facts as they stand after
its change may give them, saving their reading again. A course's facts also hold its
prescriber's status and zone: a change of either notes every course of theirs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from compliance.db import models as m
from compliance.db.rows import CourseFields
from compliance.domain.facts import CourseFacts

_KEY = "compliance.changed_courses"


@dataclass(frozen=True, slots=True)
class Known:
    """A changed course with its facts after the change."""

    course: CourseFields
    facts: CourseFacts


def note(session: Session, course_id: uuid.UUID, known: Known | None = None) -> None:
    """``course_id`` changed; ``known``: its facts now (a later note without them wins)."""
    session.info.setdefault(_KEY, {})[course_id] = known


def take(session: Session) -> dict[uuid.UUID, Known | None]:
    """The courses noted so far, forgetting them."""
    found: dict[uuid.UUID, Known | None] = session.info.pop(_KEY, {})
    return found


def note_prescriber(session: Session, prescriber_id: uuid.UUID) -> None:
    """The prescriber's status or zone changed: part of the facts of each of their courses
    (a prescription counts only while its prescriber is certified; "today" is the clinic's)."""
    courses = session.scalars(
        select(m.Course.id).where(
            m.Course.prescriber_id == prescriber_id,
            or_(m.Course.is_open, m.Course.pregnancy_actions),
        )
    )
    for course_id in courses:
        note(session, course_id)
