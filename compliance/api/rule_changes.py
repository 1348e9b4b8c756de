"""Rule changes without cutovers: what moving in-flight courses to another ruleset would change
(a dry run), and moving them (audited, all courses of one request in one transaction)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compliance.api.authz import Actor
from compliance.api.courses import audit, facts, latest_course, open_course, ruleset_of
from compliance.api.parties import load
from compliance.db import course_facts as cf
from compliance.db import models as m
from compliance.db import workers
from compliance.db.base import table_of
from compliance.db.rows import COURSE_COLUMNS, CourseFields, CourseRow
from compliance.domain import validate as v
from compliance.domain.facts import CourseFacts
from compliance.domain.gates import Decision, readiness
from compliance.domain.ids import Kind
from compliance.domain.impact import Change, GateImpact, as_of_instant, course_impact
from compliance.domain.roles import Action, Role
from compliance.errors import InvalidInput
from compliance.programs import loader
from compliance.programs.model import Ruleset

MIGRATED = "migrated"
UNCHANGED = "unchanged"
MAX_PATIENTS = 10_000
IMPACT_CHUNK = cf.CHUNK  # courses a dry run reads and judges together, by default
MAX_CHUNK = 10_000


def ruleset_arg(field: str, value: object) -> Ruleset:
    """A known ruleset, or InvalidInput naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a ruleset id such as ipledge/2026-mod")
    try:
        return loader.get(value)
    except InvalidInput as exc:
        raise InvalidInput(field, exc.problem) from None


# --- the dry run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CourseImpactRow:
    patient: str
    course: str
    state: str
    cycle: int
    ruleset: str
    change: Change
    gates: tuple[GateImpact, ...]

    def gate(self, name: str) -> GateImpact | None:
        return next((g for g in self.gates if g.gate == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "course": self.course,
            "state": self.state,
            "cycle": self.cycle,
            "ruleset": self.ruleset,
            "change": self.change.value,
            "gates": [g.to_dict() for g in self.gates],
        }


@dataclass(frozen=True)
class ImpactReport:
    """A dry run of moving a programme's open courses to ``ruleset``: for each course how its
    gates would answer, and how many answers change."""

    ruleset: str
    programme: str
    evaluated_at: datetime
    as_of: date | None
    pharmacy_zone: str
    already_on_ruleset: int  # open courses of the programme already governed by ``ruleset``
    courses: tuple[CourseImpactRow, ...]

    @property
    def summary(self) -> dict[str, int]:
        """How many courses move in each way, and how many are already on the ruleset."""
        counts = {"courses": len(self.courses)}
        counts.update({c.value: 0 for c in Change})
        for row in self.courses:
            counts[row.change.value] += 1
        counts["already_on_ruleset"] = self.already_on_ruleset
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data."""
        return {
            **_heading(
                self.ruleset, self.programme, self.evaluated_at, self.as_of, self.pharmacy_zone
            ),
            "summary": self.summary,
            "courses": [c.to_dict() for c in self.courses],
        }


def _heading(
    ruleset: str, programme: str, evaluated_at: datetime, as_of: date | None, zone: str
) -> dict[str, Any]:
    """The fields of an impact report known before any course is judged, as JSON data."""
    return {
        "ruleset": ruleset,
        "programme": programme,
        "evaluated_at": evaluated_at.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "pharmacy_zone": zone,
    }


@dataclass(frozen=True)
class ImpactPlan:
    """What a dry run judges, checked before anything is read: the target, the instant (or the
    date judged from its first instant in each course's clinic zone), the pharmacy's zone, and
    whose courses (a prescriber's own, or None for all)."""

    target: Ruleset
    evaluated_at: datetime
    as_of: date | None
    pharmacy_zone: str | None
    prescriber_id: UUID | None
    chunk: int = IMPACT_CHUNK
    workers: int | None = None  # processes judging: 1, 2, or None to decide by the count


def impact_plan(
    actor: Actor,
    now: datetime,
    ruleset: object,
    as_of: object = None,
    pharmacy_zone: object = None,
    chunk: object = IMPACT_CHUNK,
    processes: object = None,
) -> ImpactPlan:
    """The arguments of a dry run validated (InvalidInput names the field) and its scope fixed
    from the actor, so a stream can be opened in a read transaction of its own. ``processes``
    judging the courses of ``ImpactStream.json_lines``: 1, 2, or None (two from
    ``WORKER_FROM`` open courses)."""
    target = ruleset_arg("ruleset", ruleset)
    zone = None if pharmacy_zone is None else v.time_zone("pharmacy_zone", pharmacy_zone)
    day = None if as_of is None else v.calendar_date("as_of", as_of)
    when = now if day is None else as_of_instant(day, target, zone)
    mine = actor.uuid if actor.role is Role.PRESCRIBER else None
    size = v.whole_number("chunk", chunk, 1, MAX_CHUNK)
    split = None if processes is None else v.whole_number("processes", processes, 1, 2)
    return ImpactPlan(target, when, day, zone, mine, size, split)


_COURSE = table_of(m.Course)
_PATIENT = table_of(m.Patient)
# The course's columns in ``CourseRow``'s order, then the patient's short id: a row is read by
# position (a result row's attributes cost several times its items).
_IN_FLIGHT = (
    select(*(_COURSE.c[name] for name in COURSE_COLUMNS), _PATIENT.c.short_id)
    .join_from(_COURSE, _PATIENT, _PATIENT.c.id == _COURSE.c.patient_id)
    .where(_COURSE.c.is_open)
    .order_by(_PATIENT.c.short_id)
)
_WIDTH = len(COURSE_COLUMNS)


class ImpactStream:
    """A dry run read a chunk of courses at a time: the heading at once, the courses as they
    are judged (each chunk's facts released once judged), the totals once all are read. So a
    report over any number of courses needs the memory of one chunk. Iterate it once."""

    def __init__(self, session: Session, plan: ImpactPlan) -> None:
        self._session = session
        self._plan = plan
        self._counts: dict[str, int] | None = None
        self._started = False
        target = plan.target
        self.ruleset = target.id
        self.programme = target.programme
        self.evaluated_at = plan.evaluated_at
        self.as_of = plan.as_of
        self.pharmacy_zone = plan.pharmacy_zone or target.today_zone

    def heading(self) -> dict[str, Any]:
        """The report's fields that are known before any course is read."""
        return _heading(
            self.ruleset, self.programme, self.evaluated_at, self.as_of, self.pharmacy_zone
        )

    def __iter__(self) -> Iterator[CourseImpactRow]:
        if self._started:
            raise RuntimeError("an impact stream is read once")
        self._started = True
        return self._rows()

    def _rows(self) -> Iterator[CourseImpactRow]:
        counts = _no_counts()
        for _, rows in _judged_chunks(self._session, self._plan, counts, _every):
            yield from rows
        self._counts = counts

    def json_lines(self) -> Iterator[str]:
        """Each course's ``to_dict()`` as one line of compact JSON, in the order of ``iter``.
        Over many courses every other chunk is judged by a second process on the same
        snapshot (``workers.beside``), so two cores share the work; the lines are the same."""
        if self._started:
            raise RuntimeError("an impact stream is read once")
        plan = self._plan
        alone = plan.workers == 1 or (
            plan.workers is None and not _worth_a_worker(self._session, plan)
        )
        if alone:
            for row in self:
                yield compact_json(row.to_dict())
            return
        self._started = True
        with workers.beside(self._session, _judged_elsewhere, _plan_args(plan)) as (
            (main, *_),
            worker,
        ):
            other = worker
            if other is not None and other.next_frame().decode() != loader.fingerprint():
                other = None  # it reads other ruleset files: this process judges every course
            counts = _no_counts()
            mine = _every if other is None else _even
            for index, rows in _judged_chunks(main, plan, counts, mine):
                if mine(index):
                    for row in rows:
                        yield compact_json(row.to_dict())
                elif other is not None and (text := other.next_frame().decode()):
                    yield from text.split("\n")
            if other is not None:
                for key, value in json.loads(other.next_frame()).items():
                    counts[key] += value
                other.finish()
            self._counts = counts

    @property
    def summary(self) -> dict[str, int]:
        """The totals, as ``ImpactReport.summary``: known once every course has been read."""
        if self._counts is None:
            raise RuntimeError("the totals are known once every course has been read")
        return dict(self._counts)

    def report(self) -> ImpactReport:
        """The whole report in memory (for a few courses; a large one is better streamed)."""
        rows = tuple(self)
        return ImpactReport(
            ruleset=self.ruleset,
            programme=self.programme,
            evaluated_at=self.evaluated_at,
            as_of=self.as_of,
            pharmacy_zone=self.pharmacy_zone,
            already_on_ruleset=self.summary["already_on_ruleset"],
            courses=rows,
        )


def judged(
    plan: ImpactPlan, course: CourseFields, patient: str, course_facts: CourseFacts
) -> CourseImpactRow:
    """One course's row of the report, from its facts."""
    at = plan.evaluated_at
    if plan.as_of is not None:  # a date is judged from its first instant in the course's clinic
        at = as_of_instant(
            plan.as_of, plan.target, plan.pharmacy_zone, course_facts.prescriber_zone
        )
    result = course_impact(course_facts, plan.target, at, plan.pharmacy_zone)
    return CourseImpactRow(
        patient=patient,
        course=str(course.id),
        state=course.state,
        cycle=course.cycle,
        ruleset=course.ruleset_id,
        change=result.change,
        gates=result.gates,
    )


def compact_json(data: Any) -> str:
    """One line of JSON, in the C encoder (an indented document is encoded in Python)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


def _no_counts() -> dict[str, int]:
    return {"courses": 0, **{c.value: 0 for c in Change}, "already_on_ruleset": 0}


def _every(index: int) -> bool:
    return True


def _even(index: int) -> bool:
    return index % 2 == 0


def _odd(index: int) -> bool:
    return index % 2 == 1


def _judged_chunks(
    session: Session,
    plan: ImpactPlan,
    counts: dict[str, int],
    mine: Callable[[int], bool],
) -> Iterator[tuple[int, Iterator[CourseImpactRow]]]:
    """Each chunk of in-flight courses by its index, judged (and counted into ``counts``) as
    its rows are read where ``mine(index)``; the others are read but neither loaded nor
    judged, so two processes over one snapshot, each taking its own, cover every course."""
    target = plan.target
    stmt = _IN_FLIGHT.where(
        _COURSE.c.ruleset_id.startswith(target.programme + "/", autoescape=True)
    )
    if plan.prescriber_id is not None:
        stmt = stmt.where(_COURSE.c.prescriber_id == plan.prescriber_id)
    result = session.execute(stmt.execution_options(yield_per=plan.chunk))
    for index, part in enumerate(result.partitions()):
        if not mine(index):
            yield index, iter(())
            continue
        chunk = [(CourseRow(*row[:_WIDTH]), str(row[_WIDTH])) for row in part]
        counts["already_on_ruleset"] += sum(c.ruleset_id == target.id for c, _ in chunk)
        moving = [(c, patient) for c, patient in chunk if c.ruleset_id != target.id]
        yield index, _judged_rows(session, plan, moving, counts)


def _judged_rows(
    session: Session,
    plan: ImpactPlan,
    moving: list[tuple[CourseRow, str]],
    counts: dict[str, int],
) -> Iterator[CourseImpactRow]:
    loaded = cf.load_many(session, [c for c, _ in moving], plan.chunk)
    for (course, patient), course_facts in zip(moving, loaded, strict=True):
        row = judged(plan, course, patient, course_facts)
        counts["courses"] += 1
        counts[row.change.value] += 1
        yield row


# A second process is worth its start (a fraction of a second) from this many open courses.
WORKER_FROM = 4 * IMPACT_CHUNK


def _worth_a_worker(session: Session, plan: ImpactPlan) -> bool:
    stmt = select(func.count()).select_from(_COURSE).where(_COURSE.c.is_open)
    if plan.prescriber_id is not None:
        stmt = stmt.where(_COURSE.c.prescriber_id == plan.prescriber_id)
    return int(session.execute(stmt).scalar_one()) >= max(WORKER_FROM, 2 * plan.chunk)


def _plan_args(plan: ImpactPlan) -> dict[str, Any]:
    return {
        "target": plan.target.id,
        "evaluated_at": plan.evaluated_at.isoformat(),
        "as_of": plan.as_of.isoformat() if plan.as_of else None,
        "pharmacy_zone": plan.pharmacy_zone,
        "prescriber_id": str(plan.prescriber_id) if plan.prescriber_id else None,
        "chunk": plan.chunk,
    }


@workers.task
def _judged_elsewhere(session: Session, args: Mapping[str, Any]) -> Iterator[bytes]:
    """The second process's share of a dry run: the digest of the ruleset files it reads (its
    caller judges alone unless they are its own), each odd chunk's lines as one frame (empty
    where none of its courses moves), then its counts."""
    yield loader.fingerprint().encode()
    if args["target"] not in loader.all_rulesets():
        return  # other ruleset files (its caller judges alone, having seen the digest)
    plan = ImpactPlan(
        target=loader.get(args["target"]),
        evaluated_at=datetime.fromisoformat(args["evaluated_at"]),
        as_of=date.fromisoformat(args["as_of"]) if args["as_of"] else None,
        pharmacy_zone=args["pharmacy_zone"],
        prescriber_id=UUID(args["prescriber_id"]) if args["prescriber_id"] else None,
        chunk=int(args["chunk"]),
        workers=1,
    )
    counts = _no_counts()
    for index, rows in _judged_chunks(session, plan, counts, _odd):
        if _odd(index):
            yield "\n".join(compact_json(row.to_dict()) for row in rows).encode()
    yield json.dumps(counts).encode()


def impact(
    session: Session,
    actor: Actor,
    now: datetime,
    ruleset: object,
    as_of: object = None,
    pharmacy_zone: object = None,
    chunk: object = IMPACT_CHUNK,
) -> ImpactReport:
    """Every open course of the target's programme not already on it: the gates now (or at the
    start of ``as_of``) under its own ruleset and under the target. Prescribers see their own
    courses; administrators see all. The whole report in memory: ``ImpactStream`` for many."""
    plan = impact_plan(actor, now, ruleset, as_of, pharmacy_zone, chunk)
    return ImpactStream(session, plan).report()


# --- moving courses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MigratedCourse:
    patient: str
    course: str
    state: str
    old: str
    new: str
    result: str  # migrated | unchanged
    before: Decision
    after: Decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "course": self.course,
            "state": self.state,
            "from": self.old,
            "to": self.new,
            "result": self.result,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


@dataclass(frozen=True)
class MigrationReport:
    """The courses a migration to ``ruleset`` covered, each with its gates' decisions before
    and after."""

    ruleset: str
    courses: tuple[MigratedCourse, ...]

    @property
    def migrated(self) -> int:
        """How many courses moved."""
        return sum(c.result == MIGRATED for c in self.courses)

    @property
    def unchanged(self) -> int:
        """How many courses were already on the ruleset."""
        return sum(c.result == UNCHANGED for c in self.courses)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data."""
        return {
            "to": self.ruleset,
            "migrated": self.migrated,
            "unchanged": self.unchanged,
            "courses": [c.to_dict() for c in self.courses],
        }


def _same_programme(target: Ruleset, current: Ruleset, whose: str) -> None:
    if current.programme != target.programme:
        raise InvalidInput(
            "to",
            f"{target.id} belongs to programme {target.programme!r}; {whose} is governed by "
            f"{current.id} (programme {current.programme!r})",
        )


def _patient_refs(patients: object) -> list[str]:
    if patients is None:
        return []
    if isinstance(patients, str | bytes) or not isinstance(patients, Sequence):
        raise InvalidInput("patients", "must be a list of patient ids")
    if len(patients) > MAX_PATIENTS:
        raise InvalidInput("patients", f"at most {MAX_PATIENTS} patients per migration")
    return list(patients)


def _selected(
    session: Session, target: Ruleset, patients: object, all_from: object
) -> list[tuple[m.Course, m.Patient]]:
    """The courses to move, each locked, every one checked before any is changed."""
    refs = _patient_refs(patients)
    if refs and all_from is not None:
        raise InvalidInput("all_from", "give either patients or all_from, not both")
    if all_from is not None:
        source = ruleset_arg("all_from", all_from)
        _same_programme(target, source, f"--all-from {source.id}")
        return [
            (course, patient)
            for course, patient in session.execute(
                select(m.Course, m.Patient)
                .join(m.Patient, m.Patient.id == m.Course.patient_id)
                .where(m.Course.is_open, m.Course.ruleset_id == source.id)
                .order_by(m.Patient.short_id)
                .with_for_update(of=m.Course)
            ).all()
        ]
    if not refs:
        raise InvalidInput("patients", "name at least one patient, or a ruleset to move from")
    found: dict[str, m.Patient] = {}
    for ref in refs:
        patient = load(session, Kind.PATIENT, ref, "patients")
        found.setdefault(patient.short_id, patient)
    selected = []
    for short_id in sorted(found):  # one lock order for every migration
        patient = found[short_id]
        course = open_course(session, patient)
        if course is None:
            latest = latest_course(session, patient)
            why = f"its course is {latest.state}" if latest else "it was never enrolled"
            raise InvalidInput("patients", f"{short_id} has no open course to migrate: {why}")
        _same_programme(target, ruleset_of(course), f"the course of {short_id}")
        selected.append((course, patient))
    return selected


def migrate(
    session: Session,
    actor: Actor,
    now: datetime,
    to: object,
    patients: object = None,
    all_from: object = None,
) -> MigrationReport:
    """Move each selected course to ``to``, one audit event per course moved with the
    decision before and after (what the next step needs: the prescribe gate, or where the
    status is judged at the request everything the request will judge); a course already on
    ``to`` is left as it is."""
    target = ruleset_arg("to", to)
    moved: list[MigratedCourse] = []
    for course, patient in _selected(session, target, patients, all_from):
        current = facts(session, course)
        before = readiness(current, now)
        old = course.ruleset_id
        after = before
        if old != target.id:
            after = readiness(replace(current, ruleset=target), now)
        row = MigratedCourse(
            patient=patient.short_id,
            course=str(course.id),
            state=course.state,
            old=old,
            new=target.id,
            result=UNCHANGED if old == target.id else MIGRATED,
            before=before,
            after=after,
        )
        moved.append(row)
        if row.result == UNCHANGED:
            continue
        course.ruleset_id = target.id
        course.updated_at = now
        session.flush()
        audit(
            session,
            actor,
            now,
            Action.COURSE_MIGRATE,
            course,
            patient,
            course.state,
            {
                "from": old,
                "to": target.id,
                "before": before.to_dict(),
                "after": after.to_dict(),
            },
        )
    return MigrationReport(target.id, tuple(moved))
