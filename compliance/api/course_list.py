"""The administrators' overview: courses by state, prescriber and programme, with names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.api.parties import load
from compliance.api.results import _Result
from compliance.db import models as m
from compliance.domain.course import CourseState
from compliance.domain.ids import Kind
from compliance.domain.validate import choice, text, whole_number
from compliance.errors import InvalidInput
from compliance.programs.loader import all_rulesets


@dataclass(frozen=True)
class CourseListing(_Result):
    """One course as an overview lists it: who, under which ruleset, where it stands."""

    patient: str
    patient_name: str
    prescriber: str
    prescriber_name: str
    ruleset: str
    state: str
    cycle: int
    enrolled_on: date
    open: bool
    pregnancy_actions: bool


def list_courses(
    session: Session,
    *,
    scope_prescriber: object = None,
    state: object = None,
    prescriber: object = None,
    programme: object = None,
    limit: object = 500,
) -> list[CourseListing]:
    """Courses newest enrolment first. ``scope_prescriber`` (a prescriber's uuid) confines the
    list to that prescriber's courses, whatever ``prescriber`` asks for."""
    size = whole_number("limit", limit, 1, 10_000)
    patients, prescribers = m.Patient, m.Prescriber
    stmt = (
        select(m.Course, patients.short_id, patients.name, prescribers.short_id, prescribers.name)
        .join(patients, patients.id == m.Course.patient_id)
        .join(prescribers, prescribers.id == m.Course.prescriber_id)
        .order_by(m.Course.enrolled_on.desc(), patients.short_id)
        .limit(size)
    )
    if scope_prescriber is not None:
        stmt = stmt.where(m.Course.prescriber_id == scope_prescriber)
    if state is not None:
        wanted = choice("state", state, [s.value for s in CourseState])
        stmt = stmt.where(m.Course.state == wanted)
    if prescriber is not None:
        row = load(session, Kind.PRESCRIBER, prescriber, "prescriber")
        stmt = stmt.where(m.Course.prescriber_id == row.id)
    if programme is not None:
        name = text("programme", programme, max_len=32).lower()
        rulesets = all_rulesets()
        programmes = sorted({r.id.partition("/")[0] for r in rulesets.values()})
        if name in rulesets:
            stmt = stmt.where(m.Course.ruleset_id == name)
        elif name in programmes:
            stmt = stmt.where(m.Course.ruleset_id.startswith(f"{name}/"))
        else:
            raise InvalidInput(
                "programme", f"must be a programme ({', '.join(programmes)}) or a ruleset id"
            )
    rows = session.execute(stmt).all()
    return [
        CourseListing(
            patient=pat_id,
            patient_name=pat_name,
            prescriber=prs_id,
            prescriber_name=prs_name,
            ruleset=course.ruleset_id,
            state=course.state,
            cycle=course.cycle,
            enrolled_on=course.enrolled_on,
            open=course.is_open,
            pregnancy_actions=course.pregnancy_actions,
        )
        for course, pat_id, pat_name, prs_id, prs_name in rows
    ]
