"""What the engine knows about one course at one moment: plain values, no database.

The persistence layer builds a ``CourseFacts`` from stored records; the gates read only this.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

from compliance.domain.course import CourseState
from compliance.programs.model import Ruleset, Setting, TestKind

ABSTINENCE = "abstinence"


class TestResult(enum.StrEnum):
    """A pregnancy test's result: a positive one suspends the course."""

    NEGATIVE = "negative"
    POSITIVE = "positive"


@dataclass(frozen=True)
class TestRecord:
    id: str
    kind: TestKind
    specimen_date: date
    setting: Setting
    clia: bool
    sensitivity_miu_ml: float
    result: TestResult
    cycle: int
    home_opt_in: bool = False  # the prescriber's home-testing opt-in was in force that day
    seq: int = 0  # its place in the course's own sequence of records


@dataclass(frozen=True)
class MethodRecord:
    method: str
    start_date: date


@dataclass(frozen=True)
class PrescriptionRecord:
    id: str
    cycle: int
    written_on: date
    office_visit_on: date
    days_supply: int
    refills: int
    prescriber_certified: bool = True


@dataclass(frozen=True)
class AuthorizationRecord:
    number: str
    prescription_id: str
    cycle: int
    issued_at: datetime
    do_not_dispense_after: datetime | None
    test_id: str | None
    days_supply: int
    reversed_at: datetime | None = None
    dispensed_at: datetime | None = None

    @property
    def live(self) -> bool:
        """Issued and neither reversed nor dispensed."""
        return self.reversed_at is None and self.dispensed_at is None


@dataclass(frozen=True)
class CourseFacts:
    ruleset: Ruleset
    state: CourseState
    cycle: int
    enrolled_on: date
    category: str | None = None
    category_reason: str | None = None
    consents: frozenset[str] = frozenset()
    counselling_cycles: frozenset[int] = frozenset()
    comprehension_cycles: frozenset[int] = frozenset()
    methods: tuple[MethodRecord, ...] = ()
    patient_confirmed: dict[int, frozenset[str]] = field(default_factory=dict)
    tests: tuple[TestRecord, ...] = ()
    prescriptions: tuple[PrescriptionRecord, ...] = ()  # in the order written
    authorizations: tuple[AuthorizationRecord, ...] = ()
    first_dispensed_on: date | None = None
    last_dose_on: date | None = None
    pregnancy_reported_on: date | None = None
    # The cycle since which the current category has held; a change of category means the
    # patient qualifies afresh under it (pre-treatment tests, contraception lead-in).
    category_since_cycle: int = 1
    # The ruleset's named testing schedule the prescriber chose (None: its default).
    test_schedule: str | None = None
    # The place in the course's sequence of the prescriber's latest decision to resume it
    # (None: never resumed): a positive test recorded before it no longer suspends the course.
    resumed_seq: int | None = None
    # The cycle in which the prescriber last entered the methods (None: never).
    methods_cycle: int | None = None
    # The tests whose negative result the prescriber confirmed the patient for, by test id.
    confirmed_tests: frozenset[str] = frozenset()
    # The IANA zone configured for the course's prescriber (None: not configured); the ruleset
    # says whether it governs the clinic's steps.
    prescriber_zone: str | None = None

    @property
    def treatment_started(self) -> bool:
        """Dispensed at least once under the current category."""
        if self.first_dispensed_on is None:
            return False
        if self.category_since_cycle <= 1:
            return True
        return any(
            a.dispensed_at is not None and a.cycle >= self.category_since_cycle
            for a in self.authorizations
        )

    def prescription(self, prescription_id: str) -> PrescriptionRecord | None:
        return next((p for p in self.prescriptions if p.id == prescription_id), None)
