"""Load and validate ruleset files. A malformed file is rejected naming the file, the key and
the problem, so a rule change never half-applies."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Mapping
from datetime import date
from functools import cache
from importlib import resources
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from compliance.errors import InvalidInput
from compliance.programs.model import (
    INHERIT,
    AgeSlot,
    Anchor,
    AuthorizationRules,
    Cadence,
    CategoryRules,
    ContraceptionOption,
    ContraceptionRules,
    Inherit,
    JudgedAt,
    PrescriberEntry,
    PrescriptionRules,
    Ruleset,
    SchedulePhase,
    Setting,
    TestingRules,
    TestKind,
    TestKindRules,
    TestSchedule,
    Tier,
    WindowRule,
)

T = TypeVar("T")
REQUIRED_CATEGORIES = ("can_get_pregnant", "cannot_get_pregnant")


class RulesetError(InvalidInput):
    """A ruleset file that does not validate."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}", problem)
        self.file = file
        self.key = key


class _Reader:
    """Typed access to one TOML table, recording the dotted key for error messages."""

    def __init__(self, file: str, data: Mapping[str, Any], path: str = "") -> None:
        self.file, self.data, self.path = file, data, path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> RulesetError:
        return RulesetError(self.file, self.key(name), problem)

    def _get(self, name: str, kind: type[T], what: str) -> T:
        self.used.add(name)
        if name not in self.data:
            raise self.fail(name, "is missing")
        value = self.data[name]
        if kind is int and isinstance(value, bool):
            raise self.fail(name, f"must be {what}, not {value!r}")
        if not isinstance(value, kind):
            raise self.fail(name, f"must be {what}, not {value!r}")
        return value

    def text(self, name: str) -> str:
        value = self._get(name, str, "text")
        if not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def flag(self, name: str) -> bool:
        return self._get(name, bool, "true or false")

    def count(self, name: str, low: int = 0, high: int = 10_000) -> int:
        value = self._get(name, int, "a whole number")
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, not {value}")
        return value

    def number(self, name: str, low: float, high: float) -> float:
        self.used.add(name)
        value = self.data.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, "must be a number" if name in self.data else "is missing")
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}, not {value}")
        return float(value)

    def words(self, name: str) -> tuple[str, ...]:
        values = self._get(name, list, "a list of names")
        if not all(isinstance(v, str) and v for v in values):
            raise self.fail(name, "must list names (text)")
        if len(set(values)) != len(values):
            raise self.fail(name, "lists a name twice")
        return tuple(values)

    def choice(self, name: str, enum: Callable[[str], T], options: list[str]) -> T:
        value = self.text(name)
        try:
            return enum(value)
        except ValueError:
            raise self.fail(name, f"must be one of {', '.join(options)}, not {value!r}") from None

    def table(self, name: str, *, optional: bool = False) -> _Reader | None:
        self.used.add(name)
        if name not in self.data:
            if optional:
                return None
            raise self.fail(name, "is missing")
        value = self.data[name]
        if not isinstance(value, dict):
            raise self.fail(name, "must be a table")
        return _Reader(self.file, value, self.key(name))

    def tables(self, name: str) -> list[_Reader]:
        """An optional array of tables (``[[name]]`` or ``name = [{...}, ...]``)."""
        self.used.add(name)
        values = self.data.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
            raise self.fail(name, "must be a list of tables")
        return [_Reader(self.file, v, f"{self.key(name)}[{i}]") for i, v in enumerate(values)]

    def optional_count(self, name: str, low: int, high: int) -> int | None:
        return self.count(name, low, high) if name in self.data else None

    def must_table(self, name: str) -> _Reader:
        table = self.table(name)
        assert table is not None
        return table

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise self.fail(extra[0], "is not a known key (misspelt?)")


def _options(enum: Any) -> list[str]:
    return [e.value for e in enum]


def _option(
    r: _Reader, methods: Mapping[str, Tier], barriers: tuple[str, ...] = ()
) -> ContraceptionOption:
    only = r.words("only") if "only" in r.data else None
    for method in only or ():
        if method not in methods:
            raise r.fail("only", f"{method!r} is not in [contraception.methods]")
    barrier = r.count("barrier", 0, 5) if "barrier" in r.data else 0
    option = ContraceptionOption(r.count("methods", 0, 5), r.count("primary", 0, 5), only, barrier)
    if option.primary > option.methods:
        raise r.fail("primary", "cannot exceed methods")
    if option.barrier > option.methods:
        raise r.fail("barrier", "cannot exceed methods")
    if option.barrier and not barriers:
        raise r.fail("barrier", "needs [contraception] barrier_methods")
    r.finish()
    return option


def _category(
    r: _Reader,
    name: str,
    reasons: Mapping[str, str],
    forms: Mapping[str, str],
    methods: Mapping[str, Tier],
    barriers: tuple[str, ...] = (),
) -> CategoryRules:
    category_reasons = r.words("reasons")
    for reason in category_reasons:
        if reason not in reasons:
            raise r.fail("reasons", f"{reason!r} is not in the [reasons] catalogue")
    consent = r.words("consent_forms")
    for form in consent:
        if form not in forms:
            raise r.fail("consent_forms", f"{form!r} is not in the [consent_forms] catalogue")
    window = None
    w = r.table("window", optional=True)
    if w is not None:
        window = WindowRule(w.count("days", 1, 366), w.choice("anchor", Anchor, _options(Anchor)))
        w.finish()
    rules = CategoryRules(
        name=name,
        label=r.text("label"),
        reasons=category_reasons,
        consent_forms=consent,
        counselling=r.choice("counselling", Cadence, _options(Cadence)),
        comprehension=r.choice("comprehension", Cadence, _options(Cadence)),
        contraception=r.flag("contraception"),
        pregnancy_testing=r.flag("pregnancy_testing"),
        post_treatment=r.flag("post_treatment"),
        window=window,
        contraception_options=(
            tuple(_option(o, methods, barriers) for o in r.tables("contraception_options"))
            if "contraception_options" in r.data
            else None
        ),
        max_days_supply=_supply_limit(r),
        contraception_lead_in_days=r.optional_count("contraception_lead_in_days", 0, 366),
    )
    if rules.pregnancy_testing and (window is None or window.anchor is Anchor.OFFICE_VISIT):
        raise r.fail("window", "testing needs a window from the specimen or prescription date")
    r.finish()
    return rules


def _supply_limit(r: _Reader) -> int | Inherit | None:
    """A category's own ``max_days_supply``: a number of days, or "none" (no limit)."""
    if "max_days_supply" not in r.data:
        return INHERIT
    if r.data["max_days_supply"] == "none":
        r.used.add("max_days_supply")
        return None
    value = r.data["max_days_supply"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise r.fail("max_days_supply", 'must be a whole number of days or "none"')
    return r.count("max_days_supply", 1, 366)


def _contraception(r: _Reader) -> ContraceptionRules:
    methods_table = r.must_table("methods")
    methods: dict[str, Tier] = {}
    for method in list(methods_table.data):
        methods[method] = methods_table.choice(method, Tier, _options(Tier))
    methods_table.finish()
    barriers = r.words("barrier_methods") if "barrier_methods" in r.data else ()
    for method in barriers:
        if methods.get(method) not in {Tier.PRIMARY, Tier.SECONDARY}:
            raise r.fail("barrier_methods", f"{method!r} is not an acceptable method")
    if "options" in r.data:
        options = tuple(_option(o, methods, barriers) for o in r.tables("options"))
        if not options:
            raise r.fail("options", "must list at least one option")
    else:
        # The shorthand for a single option.
        required = r.count("methods_required", 0, 5)
        primary = r.count("primary_required", 0, 5)
        if primary > required:
            raise r.fail("primary_required", "cannot exceed methods_required")
        options = (ContraceptionOption(required, primary),)
    waivers: tuple[str, ...] = ("abstinence",) if r.flag("abstinence_allowed") else ()
    if "waivers" in r.data:
        waivers += r.words("waivers")
    for waiver in waivers:
        if waiver in methods:
            raise r.fail("waivers", f"{waiver!r} is also a method")
    no_lead_in = r.words("waivers_without_lead_in") if "waivers_without_lead_in" in r.data else ()
    for waiver in no_lead_in:
        if waiver not in waivers:
            raise r.fail("waivers_without_lead_in", f"{waiver!r} is not a waiver")
    confirmation = r.choice("patient_confirmation", Cadence, _options(Cadence))
    if confirmation is Cadence.ENROLMENT:
        raise r.fail("patient_confirmation", "must be monthly or none")
    entry = r.choice("prescriber_entry", PrescriberEntry, _options(PrescriberEntry))
    rules = ContraceptionRules(
        options=options,
        waivers=waivers,
        lead_in_days=r.count("lead_in_days", 0, 366),
        post_treatment_days=r.count("post_treatment_days", 0, 3660),
        methods=methods,
        primary_label=r.text("primary_label") if "primary_label" in r.data else "primary",
        barrier_methods=barriers,
        waivers_without_lead_in=no_lead_in,
        patient_confirmation=confirmation,
        prescriber_entry=entry,
    )
    if not any(t is Tier.PRIMARY for t in methods.values()) and any(o.primary for o in options):
        raise r.fail("methods", "no method is primary, yet a primary method is required")
    r.finish()
    return rules


def _kind_names(table: _Reader | None) -> dict[str, TestKind]:
    """A programme's own names for kinds of test, each naming one kind."""
    names: dict[str, TestKind] = {}
    if table is None:
        return names
    for name in list(table.data):
        target = table.text(name)
        if name in _options(TestKind):
            raise table.fail(name, "is already a kind: a name must be the programme's own")
        if target not in _options(TestKind):
            raise table.fail(name, f"{target!r} is not a kind of test")
        names[name] = TestKind(target)
    table.finish()
    return names


def _testing(r: _Reader) -> TestingRules:
    kinds_table = r.must_table("kinds")
    kinds: dict[TestKind, TestKindRules] = {}
    for kind in TestKind:
        k = kinds_table.must_table(kind.value)
        settings = k.words("settings")
        for setting in settings:
            if setting not in _options(Setting) or setting == Setting.HOME:
                raise k.fail("settings", f"{setting!r} is not lab or clinic (home has its own key)")
        kinds[kind] = TestKindRules(
            tuple(Setting(s) for s in settings),
            k.flag("clia_required"),
            k.flag("home_with_prescriber_opt_in"),
        )
        k.finish()
    kinds_table.finish()
    slots = []
    for s in r.tables("pretreatment_slots"):
        slot = AgeSlot(s.count("min_days_before", 0, 366), s.count("max_days_before", 0, 366))
        if slot.min_days > slot.max_days:
            raise s.fail("min_days_before", "is greater than max_days_before")
        s.finish()
        slots.append(slot)
    schedules: dict[str, TestSchedule] = {}
    schedules_table = r.table("schedules", optional=True)
    for name in list(schedules_table.data) if schedules_table else []:
        assert schedules_table is not None
        t = schedules_table.must_table(name)
        phases = []
        for p in t.tables("phases"):
            phase = SchedulePhase(
                p.count("from_day", 0, 3660),
                p.count("every_days", 1, 366),
                p.optional_count("until_day", 1, 3660),
            )
            if phase.until_day is not None and phase.until_day <= phase.from_day:
                raise p.fail("until_day", "must be after from_day")
            p.finish()
            phases.append(phase)
        if not phases:
            raise t.fail("phases", "must list at least one phase")
        schedules[name] = TestSchedule(name, t.text("label"), tuple(phases))
        t.finish()
    if schedules_table is not None:
        schedules_table.finish()
    default = r.text("default_schedule") if "default_schedule" in r.data else None
    if schedules and default not in schedules:
        raise r.fail("default_schedule", f"must name one of: {', '.join(schedules)}")
    if default is not None and not schedules:
        raise r.fail("default_schedule", "names a schedule but [schedules] is empty")
    names = _kind_names(r.table("names", optional=True))
    rules = TestingRules(
        min_sensitivity_miu_ml=r.number("min_sensitivity_miu_ml", 1, 1000),
        pretreatment_count=r.count("pretreatment_count", 0, 5),
        pretreatment_min_spacing_days=r.count("pretreatment_min_spacing_days", 0, 366),
        kinds=kinds,
        end_of_treatment_required=r.flag("end_of_treatment_required"),
        post_treatment_days_after_last_dose=r.count("post_treatment_days_after_last_dose", 0, 3660),
        max_days_before_prescription=r.optional_count("max_days_before_prescription", 0, 366),
        pretreatment_slots=tuple(slots),
        names=names,
        schedules=schedules,
        default_schedule=default,
        prescriber_confirms_result=r.flag("prescriber_confirms_result"),
    )
    if slots and len(slots) != rules.pretreatment_count:
        raise r.fail("pretreatment_slots", "must list pretreatment_count slots")
    r.finish()
    return rules


def _zone_key(r: _Reader, data: dict[str, Any], key: str, party: str, default: str | None) -> str:
    """A zone key (required when there is no ``default``): an IANA zone, or ``party`` for that
    party's own zone."""
    value = r.text(key) if key in data or default is None else default
    if value != party:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise r.fail(key, f"{value!r} is not an IANA zone or {party!r}") from None
    return value


def parse(file: str, text: str) -> Ruleset:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(file, "(file)", f"is not valid TOML: {exc}") from None
    r = _Reader(file, data)
    ruleset_id = r.text("id")
    programme = r.text("programme")
    if not ruleset_id.startswith(programme + "/"):
        raise r.fail("id", f"must be '{programme}/<version>'")
    zone = r.text("today_zone")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise r.fail("today_zone", f"{zone!r} is not an IANA zone") from None
    dispense_zone = _zone_key(r, data, "dispense_zone", "pharmacy", zone)
    clinic_zone = _zone_key(r, data, "clinic_zone", "prescriber", None)
    reasons_table = r.must_table("reasons")
    reasons = {k: reasons_table.text(k) for k in list(reasons_table.data)}
    reasons_table.finish()
    forms_table = r.must_table("consent_forms")
    forms = {k: forms_table.text(k) for k in list(forms_table.data)}
    forms_table.finish()
    contraception = _contraception(r.must_table("contraception"))
    categories_table = r.must_table("categories")
    categories = {
        name: _category(
            categories_table.must_table(name),
            name,
            reasons,
            forms,
            contraception.methods,
            contraception.barrier_methods,
        )
        for name in list(categories_table.data)
    }
    categories_table.finish()
    for needed in REQUIRED_CATEGORIES:
        if needed not in categories:
            raise r.fail(f"categories.{needed}", "is missing")
    notes = r.words("notes") if "notes" in data else ()
    testing = _testing(r.must_table("pregnancy_tests"))
    for category in categories.values():
        window = category.window
        dated = window is not None and window.anchor is Anchor.PRESCRIPTION_DATE
        if dated and category.pregnancy_testing and testing.max_days_before_prescription is None:
            raise r.fail(
                "pregnancy_tests.max_days_before_prescription",
                f"is needed: category {category.name} dates its window from the prescription",
            )
    prescription = r.must_table("prescription")
    authorization = r.must_table("authorization")
    ruleset = Ruleset(
        id=ruleset_id,
        programme=programme,
        title=r.text("title"),
        today_zone=zone,
        lockout_days_after_missed_first_window=r.count(
            "lockout_days_after_missed_first_window", 0, 366
        ),
        categories=categories,
        contraception=contraception,
        testing=testing,
        prescription=PrescriptionRules(
            prescription.count("max_days_supply", 1, 366),
            prescription.flag("refills_allowed"),
            prescription.choice("status_judged_at", JudgedAt, _options(JudgedAt)),
        ),
        authorization=AuthorizationRules(
            authorization.flag("reverse_unpicked"),
            authorization.count("reverse_unpicked_after_days", 1, 366),
            authorization.flag("central") if "central" in authorization.data else True,
        ),
        reason_catalogue=reasons,
        consent_catalogue=forms,
        notes=notes,
        dispense_zone=dispense_zone,
        clinic_zone=clinic_zone,
    )
    prescription.finish()
    authorization.finish()
    r.finish()
    if ruleset.prescription.status_judged_at is JudgedAt.REQUEST:
        for category in categories.values():
            window = category.window
            if category.pregnancy_testing and window and window.anchor is Anchor.PRESCRIPTION_DATE:
                raise RulesetError(
                    file,
                    "prescription.status_judged_at",
                    f"cannot be 'request': category {category.name} dates its tests from the "
                    "prescription, so they are judged when it is written",
                )
    return ruleset


def _files() -> dict[str, str]:
    folder = resources.files("compliance.programs") / "rulesets"
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def fingerprint() -> str:
    """A digest of the ruleset files this process reads: another process with the same digest
    judges by the same rules."""
    digest = hashlib.sha256()
    for name, text in sorted(_files().items()):
        digest.update(f"{len(name)}:{name}{len(text)}:".encode())
        digest.update(text.encode())
    return digest.hexdigest()


@cache
def all_rulesets() -> dict[str, Ruleset]:
    loaded: dict[str, Ruleset] = {}
    for name, text in sorted(_files().items()):
        ruleset = parse(name, text)
        if ruleset.id in loaded:
            raise RulesetError(name, "id", f"{ruleset.id!r} is defined twice")
        loaded[ruleset.id] = ruleset
    return loaded


def get(ruleset_id: str) -> Ruleset:
    rulesets = all_rulesets()
    if ruleset_id not in rulesets:
        raise InvalidInput(
            "ruleset", f"unknown ruleset {ruleset_id!r}; known: {', '.join(rulesets)}"
        )
    return rulesets[ruleset_id]


@cache
def default_schedule() -> dict[str, date]:
    """The packaged effective dates (``schedule.toml``)."""
    text = (resources.files("compliance.programs") / "schedule.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text).get("effective", {})
    schedule: dict[str, date] = {}
    for ruleset_id, when in data.items():
        if not isinstance(when, date):
            raise RulesetError("schedule.toml", f"effective.{ruleset_id}", "must be a date")
        get(ruleset_id)
        schedule[ruleset_id] = when
    return schedule


def in_force(programme: str, on: date, schedule: Mapping[str, date]) -> Ruleset:
    """The version of ``programme`` in force on ``on``: the latest to take effect by then."""
    candidates = sorted(
        (when, rid)
        for rid, when in schedule.items()
        if rid.startswith(programme + "/") and when <= on
    )
    if not candidates:
        raise InvalidInput("enrolled_on", f"no {programme} ruleset is in force on {on.isoformat()}")
    return get(candidates[-1][1])
