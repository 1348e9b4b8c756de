"""May an issued authorization be picked up now: the pickup gate.

An authorization judged the course when it was issued; the pickup judges only what can change
after that instant (the course suspended by a positive test or a reported pregnancy, the
authorization reversed, its dispense deadline passed). A blocking state decides alone, with its
cause (reason-codes.md, "Which codes go together").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.facts import TestRecord


@dataclass(frozen=True)
class PickupRefusal:
    """Why the pickup may not be recorded: the codes (the deciding one first) and a detail."""

    codes: tuple[str, ...]
    detail: str

    @property
    def message(self) -> str:
        return f"{rc.MESSAGES[self.codes[0]]}: {self.detail}"


@dataclass(frozen=True)
class Pickup:
    """What the pickup gate reads, as it stands at the pickup."""

    state: CourseState
    reversed_at: datetime | None
    do_not_dispense_after: datetime | None
    # The positive test that suspended the course (None: not suspended, or a reported pregnancy).
    suspending_test: TestRecord | None = None


def pickup_gate(pickup: Pickup, now: datetime) -> PickupRefusal | None:
    """None when the pickup may be recorded at ``now``; otherwise the refusal."""
    if pickup.state is CourseState.SUSPENDED:
        # A pregnancy also reverses the authorization, but the suspension is what the
        # pharmacist must act on.
        cause = pickup.suspending_test
        if cause is None:
            return PickupRefusal(
                (rc.COURSE_SUSPENDED,), "a pregnancy was reported; do not dispense"
            )
        return PickupRefusal(
            (rc.COURSE_SUSPENDED, rc.PREGNANCY_TEST_POSITIVE),
            f"positive test of {cause.specimen_date.isoformat()}; do not dispense",
        )
    if pickup.reversed_at is not None:
        return PickupRefusal(
            (rc.AUTHORIZATION_REVERSED,),
            f"reversed at {pickup.reversed_at.isoformat()}: request a new one",
        )
    if pickup.do_not_dispense_after is not None and now > pickup.do_not_dispense_after:
        return PickupRefusal(
            (rc.AUTHORIZATION_EXPIRED,),
            f"do not dispense after {pickup.do_not_dispense_after.isoformat()}",
        )
    return None
