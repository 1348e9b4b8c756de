"""The shape of a ruleset once loaded and validated. Pure data, frozen."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, timedelta


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


class JudgedAt(enum.StrEnum):
    """When the patient's monthly status (tests, counselling, contraception, comprehension) is
    judged for a prescription."""

    REQUEST = "request"  # at the pharmacy's authorization request (iPLEDGE)
    WRITING = "writing"  # when the prescription is written (EU/UK: the test precedes it)


class PrescriberEntry(enum.StrEnum):
    """How long the prescriber's contraception entry counts."""

    MONTHLY = "monthly"  # for its own cycle only (iPLEDGE: confirmed every month)
    INITIATION = "initiation"  # from initiation for the whole course (EU/UK)


class Tier(enum.StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    NOT_ACCEPTABLE = "not_acceptable"


class Setting(enum.StrEnum):
    """Where a test was done: a laboratory, the clinic, or at home (remote, where allowed)."""

    LAB = "lab"
    CLINIC = "clinic"
    HOME = "home"


class TestKind(enum.StrEnum):
    """Which test of the course it is: before treatment, monthly, at and after its end."""

    SCREENING = "screening"
    CONFIRMATION = "confirmation"
    MONTHLY = "monthly"
    END_OF_TREATMENT = "end_of_treatment"
    POST_TREATMENT = "post_treatment"

    @property
    def pretreatment(self) -> bool:
        return self in {TestKind.SCREENING, TestKind.CONFIRMATION}


class Inherit(enum.Enum):
    """A category key left to the ruleset's own value."""

    INHERIT = "inherit"


INHERIT = Inherit.INHERIT
# The category a patient with no valid category is judged under: the safe side (the loader
# requires every ruleset to have it).
CAN_GET_PREGNANT = "can_get_pregnant"


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
    # Overrides the ruleset's contraception options for this category (e.g. condoms for males).
    contraception_options: tuple[ContraceptionOption, ...] | None = None
    # The category's own days' supply limit: INHERIT takes the ruleset's [prescription] limit;
    # None means the programme sets no limit for this category (EU/UK: no PPP limit applies).
    max_days_supply: int | Inherit | None = INHERIT
    # Overrides the ruleset's contraception lead-in for this category (a male's condom is needed
    # from the first dose, not for weeks before it); None keeps the ruleset's.
    contraception_lead_in_days: int | None = None


@dataclass(frozen=True)
class ContraceptionOption:
    """One acceptable combination: at least ``methods`` acceptable methods, ``primary`` of them
    of the primary tier and ``barrier`` of them barrier methods, counted among ``only`` when it
    names the methods that may count."""

    methods: int
    primary: int
    only: tuple[str, ...] | None = None
    barrier: int = 0

    def describe(self, primary_label: str) -> str:
        text = f"{self.methods} method{'s' if self.methods != 1 else ''}"
        if self.primary:
            text += f", {self.primary} {primary_label}"
        if self.barrier:
            text += f", including {self.barrier} barrier method{'s' if self.barrier != 1 else ''}"
        if self.only:
            text += f" (from: {', '.join(self.only)})"
        return text


@dataclass(frozen=True)
class ContraceptionRules:
    options: tuple[ContraceptionOption, ...]  # any one of them suffices
    waivers: tuple[str, ...]  # entries that stand in for methods (abstinence, agreements)
    lead_in_days: int
    post_treatment_days: int
    methods: dict[str, Tier]
    primary_label: str = "primary"
    # Methods that are barrier methods (an option may require some among its methods).
    barrier_methods: tuple[str, ...] = ()
    # Waivers that need no lead-in (UK: the "no expected risk of pregnancy" agreement replaces
    # contraception, so there is nothing to have been in use for a month).
    waivers_without_lead_in: tuple[str, ...] = ()
    # How often the patient confirms their methods themselves (iPLEDGE: every cycle; EU/UK:
    # never, there is no central system for them to confirm in).
    patient_confirmation: Cadence = Cadence.MONTHLY
    # How long the prescriber's own entry of the methods counts (iPLEDGE: its month only).
    prescriber_entry: PrescriberEntry = PrescriberEntry.INITIATION

    def tier(self, method: str) -> Tier | None:
        return self.methods.get(method)

    def known(self, name: str) -> bool:
        return name in self.methods or name in self.waivers

    def describe(self, options: tuple[ContraceptionOption, ...] | None = None) -> str:
        chosen = options or self.options
        text = " or ".join(o.describe(self.primary_label) for o in chosen)
        if self.waivers:
            text += f" (or: {', '.join(self.waivers)})"
        return text


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
class AgeSlot:
    """A pre-treatment test collected between ``min_days`` and ``max_days`` (inclusive) before
    the date of the first prescription."""

    min_days: int
    max_days: int


@dataclass(frozen=True)
class SchedulePhase:
    """During treatment, a test every ``every_days`` after ``from_day`` (day 0 = the first
    dispense) up to ``until_day`` inclusive (None: until treatment ends)."""

    from_day: int
    every_days: int
    until_day: int | None


@dataclass(frozen=True)
class TestSchedule:
    name: str
    label: str
    phases: tuple[SchedulePhase, ...]

    def due_dates(self, start: date, until: date) -> list[date]:
        """Every date a test falls due from ``start`` up to and including ``until``."""
        dates: list[date] = []
        for phase in self.phases:
            day = phase.from_day + phase.every_days
            while start + timedelta(days=day) <= until:
                if phase.until_day is not None and day > phase.until_day:
                    break
                dates.append(start + timedelta(days=day))
                day += phase.every_days
        return sorted(set(dates))


@dataclass(frozen=True)
class TestingRules:
    min_sensitivity_miu_ml: float
    pretreatment_count: int
    pretreatment_min_spacing_days: int
    kinds: dict[TestKind, TestKindRules]
    end_of_treatment_required: bool
    post_treatment_days_after_last_dose: int
    # The qualifying test may be at most this many days older than the prescription's date
    # (EU/UK). None: the test's own window governs instead (iPLEDGE).
    max_days_before_prescription: int | None = None
    # Pre-treatment tests dated relative to the first prescription (lenalidomide: 10-14 days
    # and within 24 hours before). Empty: counted and spaced instead.
    pretreatment_slots: tuple[AgeSlot, ...] = ()
    # Testing during treatment beyond one test per cycle, by named schedule.
    schedules: dict[str, TestSchedule] = field(default_factory=dict)
    default_schedule: str | None = None
    # The prescriber confirms the patient once the negative result is entered (iPLEDGE); the
    # confirmation counts for the result it confirmed only.
    prescriber_confirms_result: bool = False
    # A programme's own name for a kind (EU/UK: the one "pre-treatment" test is the
    # qualifying test): accepted as input and stored as the kind it names.
    names: dict[str, TestKind] = field(default_factory=dict)


@dataclass(frozen=True)
class PrescriptionRules:
    max_days_supply: int
    refills_allowed: bool
    # Where the patient's monthly status is judged: at writing, or at the pharmacy's request.
    status_judged_at: JudgedAt = JudgedAt.WRITING


@dataclass(frozen=True)
class AuthorizationRules:
    reverse_unpicked: bool
    reverse_unpicked_after_days: int
    # False: no central authorization service; the pharmacy keeps a local dispense record.
    central: bool = True


@dataclass(frozen=True)
class Ruleset:
    id: str
    programme: str
    title: str
    today_zone: str  # the IANA zone in which "today" is judged for the clinic's steps
    lockout_days_after_missed_first_window: int
    categories: dict[str, CategoryRules]
    contraception: ContraceptionRules
    testing: TestingRules
    prescription: PrescriptionRules
    authorization: AuthorizationRules
    reason_catalogue: dict[str, str]
    consent_catalogue: dict[str, str]
    notes: tuple[str, ...] = field(default=())
    # Where a dispense is judged: an IANA zone, or "pharmacy" for the pharmacy's own zone.
    dispense_zone: str = ""
    # Where the clinic's steps and worklists are judged: an IANA zone, or "prescriber" for the
    # prescriber's own configured zone (falling back to ``today_zone`` when none is set).
    clinic_zone: str = ""

    def __post_init__(self) -> None:
        if not self.dispense_zone:
            object.__setattr__(self, "dispense_zone", self.today_zone)
        if not self.clinic_zone:
            object.__setattr__(self, "clinic_zone", self.today_zone)

    def clinic_zone_for(self, prescriber_zone: str | None) -> str | None:
        """The prescriber's own zone when this ruleset judges the clinic's steps there and the
        prescriber has one; None when the ruleset's fixed zone governs."""
        if self.clinic_zone == "prescriber" and prescriber_zone:
            return prescriber_zone
        return None

    def category(self, name: str) -> CategoryRules | None:
        return self.categories.get(name)

    def judged_category(self, name: str | None, reason: str | None) -> CategoryRules:
        """The category a patient is judged under: their own when it is assigned with a reason
        that supports it, otherwise the safe side (can get pregnant)."""
        own = self.categories.get(name) if name else None
        if own is not None and reason in own.reasons:
            return own
        return self.categories[CAN_GET_PREGNANT]

    def max_days_supply(self, category: CategoryRules | None) -> int | None:
        """The days' supply limit for ``category`` (None: the programme sets none)."""
        if category is None or isinstance(category.max_days_supply, Inherit):
            return self.prescription.max_days_supply
        return category.max_days_supply
