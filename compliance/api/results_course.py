"""Result objects of the course engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from compliance.api.results import _Result
from compliance.domain.gates import Decision
from compliance.domain.next_step import NextStep


@dataclass(frozen=True)
class CourseInfo(_Result):
    id: str
    patient: str
    prescriber: str
    ruleset: str
    state: str
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
    # "authorization" from a central service (iPLEDGE), or "dispense_record": a local record
    # where the programme has no central service (EU/UK); both follow the same decision.
    kind: str = "authorization"


@dataclass(frozen=True)
class Outcome(_Result):
    """What a course operation did: the course afterwards, and what it produced."""

    course: CourseInfo
    decision: Decision | None = None
    prescription: PrescriptionInfo | None = None
    authorization: AuthorizationInfo | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "course": self.course.to_dict(),
            "decision": self.decision.to_dict() if self.decision else None,
            "prescription": self.prescription.to_dict() if self.prescription else None,
            "authorization": self.authorization.to_dict() if self.authorization else None,
            "record": self.record,
        }


@dataclass(frozen=True)
class ChecklistItem(_Result):
    item: str
    status: str  # done | missing | not_required
    detail: str | None = None
    next_step: str | None = None
    due_by: date | None = None


@dataclass(frozen=True)
class Flag(_Result):
    code: str
    patient: str
    message: str
    due: date | None = None
    reference: str | None = None


@dataclass(frozen=True)
class CourseStatus(_Result):
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
