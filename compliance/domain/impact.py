"""What moving one course to another ruleset would change: the same facts, the same instant,
the gates evaluated under each ruleset, and the difference classified."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from compliance.domain.facts import CourseFacts, PrescriptionRecord
from compliance.domain.gates import Decision, DispenseRequest, dispense_gate, readiness
from compliance.domain.timing import clinic_zone, start_of_day, zone_for
from compliance.programs.model import Ruleset


class Change(enum.StrEnum):
    """How a gate's answer moves. Listed from the most to the least consequential."""

    NEWLY_REFUSED = "newly_refused"
    NEWLY_ALLOWED = "newly_allowed"
    REASONS_CHANGED = "reasons_changed"  # refused on both sides, not for the same codes
    UNCHANGED = "unchanged"


_RANK = {change: i for i, change in enumerate(Change)}


def classify(before: Decision, after: Decision) -> Change:
    """Compares outcomes and reason codes; messages (which carry dates) are not compared."""
    if before.allowed and not after.allowed:
        return Change.NEWLY_REFUSED
    if after.allowed and not before.allowed:
        return Change.NEWLY_ALLOWED
    if set(before.codes) != set(after.codes):
        return Change.REASONS_CHANGED
    return Change.UNCHANGED


@dataclass(frozen=True)
class GateImpact:
    gate: str
    prescription: str | None
    before: Decision
    after: Decision

    @property
    def change(self) -> Change:
        return classify(self.before, self.after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "prescription": self.prescription,
            "change": self.change.value,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


@dataclass(frozen=True)
class CourseImpact:
    gates: tuple[GateImpact, ...]

    @property
    def change(self) -> Change:
        """The most consequential change among the course's gates."""
        return min((g.change for g in self.gates), key=_RANK.__getitem__)


def pending_prescription(facts: CourseFacts) -> PrescriptionRecord | None:
    """The latest prescription of the current cycle, unless it was already dispensed."""
    current = [p for p in facts.prescriptions if p.cycle == facts.cycle]
    if not current:
        return None
    latest = current[-1]
    dispensed = any(
        a.prescription_id == latest.id and a.dispensed_at is not None for a in facts.authorizations
    )
    return None if dispensed else latest


def as_of_instant(
    day: date,
    target: Ruleset,
    pharmacy_zone: str | None = None,
    prescriber_zone: str | None = None,
) -> datetime:
    """A date judged as its first instant in the zone ``target`` judges "today" in (the named
    pharmacy's, where the target judges dispensing there; else the clinic's), so a report for a
    date is the same whenever it is run, and a window whose last day was the day before has
    closed."""
    return start_of_day(day, zone_for(target, pharmacy_zone, prescriber_zone))


def under(facts: CourseFacts, ruleset: Ruleset) -> CourseFacts:
    """``dataclasses.replace(facts, ruleset=ruleset)``, for a dry run over every course: the
    same fields with the ruleset changed, copied as they are instead of passed again through
    the frozen ``__init__`` (which sets each of them through ``object.__setattr__``)."""
    moved = object.__new__(type(facts))
    moved.__dict__.update(facts.__dict__)
    object.__setattr__(moved, "ruleset", ruleset)
    return moved


def course_impact(
    facts: CourseFacts, target: Ruleset, now: datetime, pharmacy_zone: str | None = None
) -> CourseImpact:
    """The prescribe gate, and the dispense gate for a pending prescription, under the course's
    own ruleset and under ``target``. A dispense is judged in ``pharmacy_zone`` (default: the
    clinic's zone) only where a ruleset judges dispensing in the pharmacy's zone. Where a
    ruleset judges the patient's status at the request (iPLEDGE), the "prescribe" row holds
    everything the next request will judge (``readiness``): writing alone needs too little to
    show what a rule change does to a course."""
    moved = under(facts, target)
    gates = [GateImpact("prescribe", None, readiness(facts, now), readiness(moved, now))]
    rx = pending_prescription(facts)
    if rx is not None:
        zone = pharmacy_zone or clinic_zone(target, facts.prescriber_zone).key
        request = DispenseRequest(rx.id, zone)
        gates.append(
            GateImpact(
                "dispense",
                rx.id,
                dispense_gate(facts, now, request),
                dispense_gate(moved, now, request),
            )
        )
    return CourseImpact(tuple(gates))
