"""The two gates: may this patient be prescribed now, may this pharmacy dispense this
prescription now. Each evaluates every requirement of the governing ruleset and returns a
``Decision`` listing every failing reason, what to do next, and the earliest date it could pass.

The checks are small functions reading ruleset data; none knows which programme it serves.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from compliance.domain import reasons as rc
from compliance.domain.course import TERMINAL, CourseState
from compliance.domain.facts import (
    CourseFacts,
    MethodRecord,
    PrescriptionRecord,
    TestRecord,
    TestResult,
)
from compliance.domain.timing import Window, today_in, window, zone_for
from compliance.programs.model import (
    Anchor,
    Cadence,
    CategoryRules,
    ContraceptionOption,
    Ruleset,
    TestKind,
    TestSchedule,
    Tier,
)


class Outcome(enum.StrEnum):
    ALLOW = "ALLOW"
    REFUSE = "REFUSE"
    FLAG = "FLAG"


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    next_step: str | None = None
    earliest: date | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "next_step": self.next_step,
            "earliest": self.earliest.isoformat() if self.earliest else None,
        }


@dataclass(frozen=True)
class Decision:
    gate: str
    outcome: Outcome
    reasons: tuple[Reason, ...]
    ruleset_id: str
    evaluated_at: datetime
    today: date
    cycle: int
    window: Window | None = None
    test_id: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @property
    def earliest(self) -> date | None:
        """The earliest day every dated reason could pass (None when no reason carries a date)."""
        dates = [r.earliest for r in self.reasons if r.earliest is not None]
        return max(dates) if dates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "outcome": self.outcome.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "ruleset": self.ruleset_id,
            "evaluated_at": self.evaluated_at.isoformat(),
            "today": self.today.isoformat(),
            "cycle": self.cycle,
            "window": self.window.to_dict() if self.window else None,
            "test": self.test_id,
            "earliest": self.earliest.isoformat() if self.earliest else None,
        }


@dataclass(frozen=True)
class DispenseRequest:
    prescription_id: str
    pharmacy_zone: str
    pharmacy_problems: tuple[str, ...] = ()


@dataclass
class _Evaluation:
    facts: CourseFacts
    now: datetime
    pharmacy_zone: str | None
    # The prescription's date: tests are dated against it where the ruleset says so (EU/UK).
    prescription_date: date | None = None
    # A prescription is being dispensed: only tests collected by its date can support it.
    dispensing: bool = False
    reasons: list[Reason] = field(default_factory=list)
    window: Window | None = None
    test: TestRecord | None = None
    stop: bool = False

    def __post_init__(self) -> None:
        self.ruleset = self.facts.ruleset
        self.zone = zone_for(self.ruleset, self.pharmacy_zone)
        self.today = today_in(self.zone, self.now)
        name = self.facts.category
        self.category: CategoryRules | None = self.ruleset.category(name) if name else None
        if self.prescription_date is None:
            self.prescription_date = self.today

    @property
    def by_prescription_date(self) -> bool:
        """Tests are judged by their age at the prescription's date, not by their own window."""
        rule = self.category.window if self.category else None
        return rule is not None and rule.anchor is Anchor.PRESCRIPTION_DATE

    @property
    def options(self) -> tuple[ContraceptionOption, ...]:
        override = self.category.contraception_options if self.category else None
        return override or self.ruleset.contraception.options

    def add(
        self,
        code: str,
        detail: str | None = None,
        next_step: str | None = None,
        earliest: date | None = None,
    ) -> None:
        if any(r.code == code for r in self.reasons):
            return
        message = rc.MESSAGES[code] + (f": {detail}" if detail else "")
        self.reasons.append(Reason(code, message, next_step, earliest))


Check = Callable[[_Evaluation], None]


# --- the checks --------------------------------------------------------------------------------


def course_is_open(ev: _Evaluation) -> None:
    state = ev.facts.state
    if state in TERMINAL or state in {CourseState.TREATMENT_ENDED, CourseState.POST_TREATMENT}:
        ev.add(
            rc.NO_ACTIVE_COURSE, f"the course is {state.value}", "enrol the patient in a new course"
        )
        ev.stop = True
    elif state is CourseState.SUSPENDED:
        ev.add(
            rc.COURSE_SUSPENDED,
            None,
            "follow the pregnancy actions; only a prescriber can resume the course",
        )


def category_assigned(ev: _Evaluation) -> None:
    if ev.category is None:
        ev.add(rc.CATEGORY_NOT_ASSIGNED, None, "the prescriber assigns a category and its reason")
        ev.stop = True
    elif ev.facts.category_reason not in ev.category.reasons:
        allowed = ", ".join(ev.category.reasons)
        ev.add(
            rc.INVALID_CATEGORY_REASON,
            f"{ev.facts.category_reason} does not support '{ev.category.label}'",
            f"choose one of: {allowed}",
        )


def consents_signed(ev: _Evaluation) -> None:
    assert ev.category is not None
    missing = [f for f in ev.category.consent_forms if f not in ev.facts.consents]
    if missing:
        ev.add(rc.CONSENT_NOT_SIGNED, ", ".join(missing), "record the signed forms")


def _cadence_met(cadence: Cadence, cycles: frozenset[int], cycle: int) -> bool:
    if cadence is Cadence.MONTHLY:
        return cycle in cycles
    if cadence is Cadence.ENROLMENT:
        return bool(cycles)
    return True


def counselling_documented(ev: _Evaluation) -> None:
    assert ev.category is not None
    cadence = ev.category.counselling
    if not _cadence_met(cadence, ev.facts.counselling_cycles, ev.facts.cycle):
        when = "this cycle" if cadence is Cadence.MONTHLY else "at enrolment"
        ev.add(rc.COUNSELING_NOT_DOCUMENTED, when, "the prescriber documents counselling")


def comprehension_done(ev: _Evaluation) -> None:
    assert ev.category is not None
    cadence = ev.category.comprehension
    if not _cadence_met(cadence, ev.facts.comprehension_cycles, ev.facts.cycle):
        when = "this cycle" if cadence is Cadence.MONTHLY else "at enrolment"
        ev.add(rc.COMPREHENSION_NOT_DONE, when, "the patient answers the comprehension questions")


def _option_shortfall(ev: _Evaluation, option: ContraceptionOption, chosen: set[str]) -> list[str]:
    rules = ev.ruleset.contraception
    counted = chosen if option.only is None else chosen & set(option.only)
    tiers = [rules.tier(m) for m in counted]
    acceptable = [t for t in tiers if t in {Tier.PRIMARY, Tier.SECONDARY}]
    primary = [t for t in tiers if t is Tier.PRIMARY]
    codes = []
    if len(acceptable) < option.methods:
        codes.append(rc.CONTRACEPTION_INSUFFICIENT)
    if len(primary) < option.primary:
        codes.append(rc.NO_PRIMARY_METHOD)
    return codes


def _shortfall(ev: _Evaluation, methods: Iterable[str]) -> list[str]:
    """Nothing when any one option (or a waiver) is met; else what the nearest option lacks."""
    chosen = set(methods)
    if chosen & set(ev.ruleset.contraception.waivers):
        return []
    gaps = [_option_shortfall(ev, option, chosen) for option in ev.options]
    return min(gaps, key=len)


def _lead_in_reached(ev: _Evaluation, methods: tuple[MethodRecord, ...]) -> date:
    """The first day on which enough methods have each been in use for the lead-in period."""
    lead = timedelta(days=ev.ruleset.contraception.lead_in_days)
    for day in sorted({m.start_date + lead for m in methods}):
        if not _shortfall(ev, (m.method for m in methods if m.start_date + lead <= day)):
            return day
    return date.max


def contraception_in_place(ev: _Evaluation) -> None:
    assert ev.category is not None
    if not ev.category.contraception:
        return
    facts, rules = ev.facts, ev.ruleset.contraception
    needed = rules.describe(ev.options)
    if not facts.methods:
        ev.add(rc.CONTRACEPTION_NOT_DOCUMENTED, None, f"the prescriber enters {needed}")
        return
    names = [m.method for m in facts.methods]
    for code in _shortfall(ev, names):
        ev.add(code, ", ".join(names), f"at least {needed}")
    confirmed = facts.patient_confirmed.get(facts.cycle)
    if confirmed is None:
        ev.add(
            rc.CONTRACEPTION_NOT_CONFIRMED,
            f"cycle {facts.cycle}",
            "the patient confirms their methods for this cycle",
        )
    elif confirmed != frozenset(names):
        ev.add(
            rc.CONTRACEPTION_MISMATCH,
            f"prescriber: {', '.join(sorted(names))}; patient: {', '.join(sorted(confirmed))}",
            "correct the entries so both lists agree",
        )
    if not facts.treatment_started and not _shortfall(ev, names):
        reference = ev.test.specimen_date if ev.test else ev.today
        reached = _lead_in_reached(ev, facts.methods)
        if reached > reference:
            ev.add(
                rc.CONTRACEPTION_LEAD_IN_NOT_MET,
                f"{rules.lead_in_days} days of contraception are needed before the "
                f"confirmation test; they are reached on {reached.isoformat()}",
                "wait, then collect the confirmation test",
                reached,
            )


def test_problems(ruleset: Ruleset, test: TestRecord) -> list[str]:
    """Why a test cannot count under ``ruleset`` (sensitivity, setting, CLIA, home opt-in)."""
    testing = ruleset.testing
    problems = []
    if test.sensitivity_miu_ml > testing.min_sensitivity_miu_ml:
        problems.append(rc.TEST_SENSITIVITY_INSUFFICIENT)
    if not testing.kinds[test.kind].allows(test.setting, test.clia, test.home_opt_in):
        problems.append(rc.TEST_SETTING_NOT_PERMITTED)
    return problems


def _report_invalid(ev: _Evaluation, test: TestRecord) -> None:
    for code in test_problems(ev.ruleset, test):
        ev.add(
            code,
            f"{test.kind.value} test of {test.specimen_date.isoformat()} "
            f"({test.setting.value}{', CLIA' if test.clia else ''}, "
            f"{test.sensitivity_miu_ml:g} mIU/mL)",
            "repeat the test where the rules allow",
        )


def _spaced_chain(ev: _Evaluation, tests: list[TestRecord]) -> list[TestRecord]:
    """From the latest test backwards, the tests each at least the minimum spacing apart."""
    spacing = timedelta(days=ev.ruleset.testing.pretreatment_min_spacing_days)
    chain = [tests[-1]]
    for test in reversed(tests[:-1]):
        if chain[-1].specimen_date - test.specimen_date >= spacing:
            chain.append(test)
    return chain


def _negatives(ev: _Evaluation) -> list[TestRecord]:
    """Negative tests that could support this step, oldest first. A test collected after the
    prescription's date cannot support it: the prescriber never saw it."""
    limit = ev.prescription_date if ev.by_prescription_date or ev.dispensing else None
    return sorted(
        (
            t
            for t in ev.facts.tests
            if t.result is TestResult.NEGATIVE and (limit is None or t.specimen_date <= limit)
        ),
        key=lambda t: t.specimen_date,
    )


def _slotted(ev: _Evaluation, tests: list[TestRecord]) -> TestRecord | None:
    """Pre-treatment tests each dated within its slot before the prescription's date."""
    assert ev.prescription_date is not None
    reference = ev.prescription_date
    valid = [t for t in tests if not test_problems(ev.ruleset, t)]
    used: list[TestRecord] = []
    missing = []
    for slot in sorted(ev.ruleset.testing.pretreatment_slots, key=lambda s: s.min_days):
        fits = [
            t
            for t in valid
            if t not in used
            and slot.min_days <= (reference - t.specimen_date).days <= slot.max_days
        ]
        if fits:
            used.append(fits[-1])
        else:
            missing.append(slot)
    if not missing:
        return used[0]
    for test in tests:
        if test not in valid:
            _report_invalid(ev, test)
    wanted = "; ".join(f"{s.min_days}-{s.max_days} days before" for s in missing)
    ev.add(
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        f"no negative test {wanted} {reference.isoformat()}",
        "collect the missing test(s); the first prescription is dated from them",
        ev.today + timedelta(days=max(s.min_days for s in missing)),
    )
    return None


def _pretreatment(ev: _Evaluation) -> TestRecord | None:
    """The qualifying (confirmation) test before the first dose, reporting what is missing."""
    testing = ev.ruleset.testing
    tests = [t for t in _negatives(ev) if t.kind.pretreatment]
    if testing.pretreatment_slots:
        return _slotted(ev, tests)
    valid = [t for t in tests if not test_problems(ev.ruleset, t)]
    needed = testing.pretreatment_count
    spacing = timedelta(days=testing.pretreatment_min_spacing_days)
    chain = _spaced_chain(ev, valid) if valid else []
    if len(chain) < needed:
        # Tests that could not count are part of why the requirement fails: say so.
        for test in tests:
            if test not in valid:
                _report_invalid(ev, test)
    if len(valid) < needed:
        earliest = valid[0].specimen_date + spacing * (needed - 1) if valid else None
        ev.add(
            rc.PRETREATMENT_TESTS_INCOMPLETE,
            f"{len(valid)} of {needed}",
            f"collect {needed - len(valid)} more test(s) in a medical setting",
            earliest,
        )
        return None
    if len(chain) < needed:
        earliest = valid[0].specimen_date + spacing * (needed - 1)
        ev.add(
            rc.PRETREATMENT_TEST_SPACING,
            f"at least {testing.pretreatment_min_spacing_days} days apart are required",
            "collect the confirmation test once the spacing is met",
            earliest,
        )
        return None
    _lockout(ev, valid, chain[0])
    return chain[0]


def _lockout(ev: _Evaluation, valid: list[TestRecord], qualifying: TestRecord) -> None:
    """After the FIRST confirmation window was missed, the next test waits the lockout days."""
    days = ev.ruleset.lockout_days_after_missed_first_window
    category = ev.category
    if not days or category is None or category.window is None:
        return
    needed = ev.ruleset.testing.pretreatment_count
    for earlier in valid:
        if earlier.specimen_date >= qualifying.specimen_date:
            return
        so_far = [t for t in valid if t.specimen_date <= earlier.specimen_date]
        if len(_spaced_chain(ev, so_far)) < needed:
            continue  # not a confirmation: it opened no window
        missed = window(earlier.specimen_date, category.window.days, ev.zone)
        if missed.closes_at > ev.now:
            return
        ends = earlier.specimen_date + timedelta(days=days)
        if qualifying.specimen_date < ends:
            ev.add(
                rc.LOCKOUT_19D,
                f"the first window (test of {earlier.specimen_date.isoformat()}) was missed; "
                f"the next test may be collected from {ends.isoformat()}",
                "collect a new confirmation test on or after that date",
                ends,
            )
        return


def _monthly(ev: _Evaluation) -> TestRecord | None:
    cycle_tests = [
        t for t in _negatives(ev) if t.cycle == ev.facts.cycle and t.kind is TestKind.MONTHLY
    ]
    valid = [t for t in cycle_tests if not test_problems(ev.ruleset, t)]
    if not valid:
        for test in cycle_tests:
            _report_invalid(ev, test)
        return None
    return valid[-1]


def pregnancy_tests(ev: _Evaluation) -> None:
    assert ev.category is not None
    if not ev.category.pregnancy_testing:
        return
    facts = ev.facts
    positives = [t for t in facts.tests if t.result is TestResult.POSITIVE]
    for positive in positives:
        later = [
            t
            for t in facts.tests
            if t.result is TestResult.NEGATIVE
            and t.specimen_date > positive.specimen_date
            and not test_problems(ev.ruleset, t)
        ]
        if positive.cycle == facts.cycle and not later:
            ev.add(
                rc.PREGNANCY_TEST_POSITIVE,
                f"specimen of {positive.specimen_date.isoformat()}",
                "stop treatment; follow the pregnancy actions",
            )
    test = _monthly(ev) if facts.treatment_started else _pretreatment(ev)
    if test is None:
        _scheduled(ev)
        ev.add(
            rc.NO_NEGATIVE_TEST_IN_WINDOW,
            None,
            "collect a pregnancy test; Day 1 of the window is its specimen date",
            ev.today,
        )
        return
    assert ev.category.window is not None
    ev.test = test
    _scheduled(ev)
    if ev.by_prescription_date:
        _test_age(ev, test)
        return
    ev.window = window(test.specimen_date, ev.category.window.days, ev.zone)
    if not ev.window.contains(ev.now):
        ev.add(
            rc.NO_NEGATIVE_TEST_IN_WINDOW,
            f"the window of the test of {test.specimen_date.isoformat()} closed at "
            f"{ev.window.closes_at.isoformat()}",
            "collect a new pregnancy test",
            ev.today,
        )


def _test_age(ev: _Evaluation, test: TestRecord) -> None:
    limit = ev.ruleset.testing.max_days_before_prescription
    assert limit is not None
    assert ev.prescription_date is not None
    age = (ev.prescription_date - test.specimen_date).days
    if age > limit:
        ev.add(
            rc.TEST_TOO_OLD_FOR_RX,
            f"the test of {test.specimen_date.isoformat()} is {age} days before the "
            f"prescription date {ev.prescription_date.isoformat()}; at most {limit} are allowed",
            "collect a new pregnancy test; the prescriber then writes the prescription",
            ev.today,
        )


def schedule_of(facts: CourseFacts) -> TestSchedule | None:
    testing = facts.ruleset.testing
    name = facts.test_schedule if facts.test_schedule in testing.schedules else None
    chosen = name or testing.default_schedule
    return testing.schedules.get(chosen) if chosen else None


def scheduled_test_due(facts: CourseFacts, today: date, horizon: date) -> tuple[date, bool] | None:
    """The next test the schedule asks for by ``horizon`` and not yet on file, and whether it
    is already overdue; None when nothing is due (or the course follows no schedule)."""
    schedule = schedule_of(facts)
    start = facts.first_dispensed_on
    if schedule is None or start is None or not facts.treatment_started:
        return None
    done = sorted(
        t.specimen_date
        for t in facts.tests
        if t.result is TestResult.NEGATIVE and not test_problems(facts.ruleset, t)
    )
    past = schedule.due_dates(start, today)
    latest_past = past[-1] if past else None
    previous = start
    for due in schedule.due_dates(start, horizon):
        relevant = due > today or due == latest_past  # an earlier miss no longer blocks
        until = max(due, today)  # a late test still covers the latest due date
        if relevant and not any(previous < d <= until for d in done):
            return due, due < today
        previous = due
    return None


def _scheduled(ev: _Evaluation) -> None:
    """During treatment, the test that fell due most recently under the schedule is on file."""
    schedule = schedule_of(ev.facts)
    start = ev.facts.first_dispensed_on
    if schedule is None or start is None or not ev.facts.treatment_started:
        return
    reference = ev.prescription_date if ev.by_prescription_date else ev.today
    assert reference is not None
    dues = schedule.due_dates(start, reference)
    if not dues:
        return
    after = dues[-2] if len(dues) > 1 else start
    done = [
        t
        for t in _negatives(ev)
        if after < t.specimen_date <= reference and not test_problems(ev.ruleset, t)
    ]
    if not done:
        ev.add(
            rc.SCHEDULED_TEST_MISSED,
            f"{schedule.label}: the test due on {dues[-1].isoformat()} is not on file",
            "collect a pregnancy test now",
            ev.today,
        )


PRESCRIBE_CHECKS: tuple[Check, ...] = (
    course_is_open,
    category_assigned,
    consents_signed,
    counselling_documented,
    comprehension_done,
    pregnancy_tests,  # before contraception: the lead-in is measured to the qualifying test
    contraception_in_place,
)


def _run(ev: _Evaluation, checks: Iterable[Check]) -> None:
    for check in checks:
        if ev.stop:
            return
        check(ev)


def _decision(ev: _Evaluation, gate: str) -> Decision:
    ordered = sorted(ev.reasons, key=lambda r: _ORDER.get(r.code, len(_ORDER)))
    return Decision(
        gate=gate,
        outcome=Outcome.REFUSE if ordered else Outcome.ALLOW,
        reasons=tuple(ordered),
        ruleset_id=ev.ruleset.id,
        evaluated_at=ev.now,
        today=ev.today,
        cycle=ev.facts.cycle,
        window=ev.window,
        test_id=ev.test.id if ev.test else None,
    )


_ORDER = {code: i for i, code in enumerate(rc.MESSAGES)}


def supply_within_limits(ev: _Evaluation, days_supply: int, refills: int) -> None:
    rules = ev.ruleset.prescription
    if days_supply > rules.max_days_supply:
        ev.add(
            rc.SUPPLY_EXCEEDS_MAX,
            f"{days_supply} days asked, at most {rules.max_days_supply}",
            f"write at most {rules.max_days_supply} days",
        )
    if refills and not rules.refills_allowed:
        ev.add(rc.REFILLS_NOT_ALLOWED, f"{refills} refill(s) asked", "write no refills")


def prescribe_gate(
    facts: CourseFacts,
    now: datetime,
    days_supply: int | None = None,
    refills: int = 0,
    on: date | None = None,
) -> Decision:
    """May this patient be prescribed now (optionally: this supply and these refills, on a
    prescription dated ``on``, by default today)?"""
    ev = _Evaluation(facts, now, None, on)
    _run(ev, PRESCRIBE_CHECKS)
    if facts.state is CourseState.AUTHORIZED:
        ev.add(
            rc.AUTHORIZATION_ALREADY_ISSUED,
            f"cycle {facts.cycle}",
            "dispense or reverse the open authorization first",
        )
    if days_supply is not None and not ev.stop:
        supply_within_limits(ev, days_supply, refills)
    return _decision(ev, "prescribe")


def _prescription_window(ev: _Evaluation, rx: PrescriptionRecord) -> None:
    """Windows that run from the prescription (office visit / date written), not a test."""
    rule = ev.category.window if ev.category else None
    if rule is None or rule.anchor is Anchor.SPECIMEN_DATE:
        return
    day_one = rx.office_visit_on if rule.anchor is Anchor.OFFICE_VISIT else rx.written_on
    ev.window = window(day_one, rule.days, ev.zone)
    if not ev.window.contains(ev.now):
        code = rc.RX_EXPIRED if rule.anchor is Anchor.PRESCRIPTION_DATE else rc.WINDOW_EXPIRED
        ev.add(
            code,
            f"the window {day_one.isoformat()} to {ev.window.last_day.isoformat()} has closed",
            "the prescriber writes a new prescription",
        )


def dispense_gate(facts: CourseFacts, now: datetime, request: DispenseRequest) -> Decision:
    """May this pharmacy dispense this prescription now? ALLOW means: issue an authorization."""
    rx = facts.prescription(request.prescription_id)
    if rx is None:
        raise LookupError(request.prescription_id)
    ev = _Evaluation(facts, now, request.pharmacy_zone, rx.written_on, dispensing=True)
    for code in request.pharmacy_problems:
        ev.add(code, None, "the pharmacy renews or restores its activation")
    _run(ev, PRESCRIBE_CHECKS)
    if ev.stop:
        return _decision(ev, "dispense")
    current = [p for p in facts.prescriptions if p.cycle == facts.cycle]
    latest = current[-1] if current else None  # prescriptions are kept in the order written
    if facts.state is CourseState.PRE_TREATMENT or (latest is not None and latest.id != rx.id):
        ev.add(
            rc.PRESCRIPTION_SUPERSEDED,
            f"prescription {rx.id}",
            "the prescriber writes a new prescription for the current cycle",
        )
    if not rx.prescriber_certified:
        ev.add(rc.PRESCRIBER_NOT_CERTIFIED, None, "the prescriber's certification must be active")
    used = [
        a
        for a in facts.authorizations
        if a.reversed_at is None and (a.prescription_id == rx.id or a.cycle == facts.cycle)
    ]
    if used or rx.cycle != facts.cycle:
        ev.add(
            rc.AUTHORIZATION_ALREADY_ISSUED,
            f"prescription {rx.id} (cycle {rx.cycle}); course cycle {facts.cycle}",
            "use the existing authorization, or reverse it and request again",
        )
    supply_within_limits(ev, rx.days_supply, rx.refills)
    test_window_closed = rc.NO_NEGATIVE_TEST_IN_WINDOW in {r.code for r in ev.reasons}
    if ev.window is not None and ev.test is not None and test_window_closed:
        ev.add(
            rc.WINDOW_EXPIRED,
            f"last valid day was {ev.window.last_day.isoformat()}",
            "collect a new pregnancy test; the prescriber writes a new prescription",
        )
    _prescription_window(ev, rx)
    return _decision(ev, "dispense")
