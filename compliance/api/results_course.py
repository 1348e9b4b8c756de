"""Result objects of the course engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from compliance.api.results import _Result
from compliance.domain.course import CourseState
from compliance.domain.gates import Decision
from compliance.domain.next_step import NextStep


@dataclass(frozen=True)
class CourseInfo(_Result):
    """A treatment course as it stands: the state of its machine, its cycle and category."""

    id: str
    patient: str
    prescriber: str
    ruleset: str
    state: CourseState
    cycle: int
    enrolled_on: date
    category: str | None
    category_reason: str | None
    first_dispensed_on: date | None
    last_dose_on: date | None
    pregnancy_actions: bool
    open: bool


@dataclass(frozen=True)
class PrescriptionInfo(_Result):
    """A prescription written for a cycle, as a pharmacy looks it up."""

    id: str
    patient: str
    cycle: int
    written_on: date
    office_visit_on: date
    days_supply: int
    refills: int
    prescriber: str


@dataclass(frozen=True)
class AuthorizationInfo(_Result):
    """A dispense authorization (or local dispense record): its number, the supply and the
    instant after which it must not be dispensed, and whether it was reversed or picked up."""

    number: str
    formatted: str
    patient: str
    prescription: str
    pharmacy: str
    cycle: int
    issued_at: datetime
    do_not_dispense_after: datetime | None
    test: str | None
    days_supply: int
    reversed_at: datetime | None
    reversal_reason: str | None
    dispensed_at: datetime | None
    # The IANA zone its deadline is judged in: the programme's (iPLEDGE: Eastern) or, where the
    # ruleset judges dispensing in each pharmacy's zone (EU/UK), the pharmacy's. People are
    # shown the deadline in this zone, beside their own.
    zone: str
    # "authorization" from a central service (iPLEDGE), or "dispense_record": a local record
    # where the programme has no central service (EU/UK); both follow the same decision.
    kind: str = "authorization"


@dataclass(frozen=True, kw_only=True)
class StepResult(_Result):
    """What a course step did: the course afterwards, and what the step recorded (``record``,
    JSON data whose keys depend on the step, e.g. the methods entered or a test's problems).

    Steps that produce something return a subclass naming it with a precise type:
    ``Prescribed``, ``Authorized``, ``AuthorizationUpdated``. Every step renders the same JSON
    keys, so a script reads one shape whatever the step.
    """

    course: CourseInfo
    record: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        decision: Decision | None = getattr(self, "decision", None)
        prescription: PrescriptionInfo | None = getattr(self, "prescription", None)
        authorization: AuthorizationInfo | None = getattr(self, "authorization", None)
        return {
            "course": self.course.to_dict(),
            "decision": decision.to_dict() if decision else None,
            "prescription": prescription.to_dict() if prescription else None,
            "authorization": authorization.to_dict() if authorization else None,
            "record": dict(self.record),
        }


@dataclass(frozen=True, kw_only=True)
class Prescribed(StepResult):
    """A prescription the prescribe gate allowed, with the decision that allowed it."""

    decision: Decision
    prescription: PrescriptionInfo


@dataclass(frozen=True, kw_only=True)
class Authorized(StepResult):
    """An authorization issued to the pharmacy (or, where the programme has no central
    service, a local dispense record). ``replayed`` is true when a request with the same
    idempotency key had already produced it: the answer is then the earlier authorization
    unchanged and ``decision`` is ``None`` (no gate ran again)."""

    authorization: AuthorizationInfo
    decision: Decision | None
    replayed: bool = False


@dataclass(frozen=True, kw_only=True)
class AuthorizationUpdated(StepResult):
    """An authorization after its reversal or the record of its pickup."""

    authorization: AuthorizationInfo


@dataclass(frozen=True)
class ChecklistItem(_Result):
    """One requirement of the current step: done, missing or not required, what to do and by
    when."""

    item: str
    status: str  # done | missing | not_required
    detail: str | None = None
    next_step: str | None = None
    due_by: date | None = None


@dataclass(frozen=True)
class Flag(_Result):
    """Something a worklist shows: a test due, a window closing, a reversal owed, a pregnancy."""

    code: str
    patient: str
    message: str
    due: date | None = None
    reference: str | None = None


@dataclass(frozen=True)
class CourseStatus(_Result):
    """Where a course stands: the prescribe decision now, its checklist, the open
    authorization and current prescription, flags, and what is next."""

    course: CourseInfo
    decision: Decision
    checklist: tuple[ChecklistItem, ...]
    open_authorization: AuthorizationInfo | None
    current_prescription: PrescriptionInfo | None
    flags: tuple[Flag, ...]
    next: NextStep | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "next": _next_dict(self.next),
            "course": self.course.to_dict(),
            "decision": self.decision.to_dict(),
            "checklist": [c.to_dict() for c in self.checklist],
            "open_authorization": (
                self.open_authorization.to_dict() if self.open_authorization else None
            ),
            "current_prescription": (
                self.current_prescription.to_dict() if self.current_prescription else None
            ),
            "flags": [f.to_dict() for f in self.flags],
        }


def _next_dict(step: NextStep | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {
        "what": step.what,
        "who": step.who,
        "due_by": step.due_by.isoformat() if step.due_by else None,
    }
