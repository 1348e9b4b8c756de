"""The shape of a ruleset once loaded and validated. Pure data, frozen."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Cadence(enum.StrEnum):
    """How often an obligation recurs within a course."""

    MONTHLY = "monthly"  # in every cycle
    ENROLMENT = "enrolment"  # once, before the first prescription
    NONE = "none"


class Anchor(enum.StrEnum):
    """What Day 1 of a prescription/dispense window is."""

    SPECIMEN_DATE = "specimen_date"  # the qualifying negative test's collection date
    OFFICE_VISIT = "office_visit"  # the office visit at which the prescription was written
    PRESCRIPTION_DATE = "prescription_date"  # the date written on the prescription


class Tier(enum.StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    NOT_ACCEPTABLE = "not_acceptable"


class Setting(enum.StrEnum):
    LAB = "lab"
    CLINIC = "clinic"
    HOME = "home"


class TestKind(enum.StrEnum):
    SCREENING = "screening"
    CONFIRMATION = "confirmation"
    MONTHLY = "monthly"
    END_OF_TREATMENT = "end_of_treatment"
    POST_TREATMENT = "post_treatment"

    @property
    def pretreatment(self) -> bool:
        return self in {TestKind.SCREENING, TestKind.CONFIRMATION}


@dataclass(frozen=True)
class WindowRule:
    days: int
    anchor: Anchor


@dataclass(frozen=True)
class CategoryRules:
    name: str
    label: str
    reasons: tuple[str, ...]
    consent_forms: tuple[str, ...]
    counselling: Cadence
    comprehension: Cadence
    contraception: bool
    pregnancy_testing: bool
    post_treatment: bool
    window: WindowRule | None


@dataclass(frozen=True)
class ContraceptionRules:
    methods_required: int
    primary_required: int
    abstinence_allowed: bool
    lead_in_days: int
    post_treatment_days: int
    methods: dict[str, Tier]

    def tier(self, method: str) -> Tier | None:
        return self.methods.get(method)


@dataclass(frozen=True)
class TestKindRules:
    settings: tuple[Setting, ...]
    clia_required: bool
    home_with_prescriber_opt_in: bool

    def allows(self, setting: Setting, clia: bool, home_opted_in: bool) -> bool:
        if setting is Setting.HOME:
            return self.home_with_prescriber_opt_in and home_opted_in
        if setting not in self.settings:
            return False
        return clia or not self.clia_required


@dataclass(frozen=True)
class TestingRules:
    min_sensitivity_miu_ml: float
    pretreatment_count: int
    pretreatment_min_spacing_days: int
    kinds: dict[TestKind, TestKindRules]
    end_of_treatment_required: bool
    post_treatment_days_after_last_dose: int


@dataclass(frozen=True)
class PrescriptionRules:
    max_days_supply: int
    refills_allowed: bool


@dataclass(frozen=True)
class AuthorizationRules:
    reverse_unpicked: bool
    reverse_unpicked_after_days: int


@dataclass(frozen=True)
class Ruleset:
    id: str
    programme: str
    title: str
    today_zone: str  # an IANA zone, or "pharmacy" for the dispensing pharmacy's zone
    lockout_days_after_missed_first_window: int
    categories: dict[str, CategoryRules]
    contraception: ContraceptionRules
    testing: TestingRules
    prescription: PrescriptionRules
    authorization: AuthorizationRules
    reason_catalogue: dict[str, str]
    consent_catalogue: dict[str, str]
    notes: tuple[str, ...] = field(default=())

    def category(self, name: str) -> CategoryRules | None:
        return self.categories.get(name)
