"""The lenalidomide-class ruleset, held as data only (rules.md 6, 17 C12/C13): two pre-treatment
tests dated 10-14 days and within a day before the first prescription; weekly tests in the first
4 weeks of treatment, then every 4 weeks (regular cycles) or every 2 weeks (irregular); 50 mIU/mL;
28 days' supply; 4 weeks of contraception before; a condom for males."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.facts import CourseFacts, MethodRecord, PrescriptionRecord
from compliance.domain.facts import TestRecord as Specimen
from compliance.domain.facts import TestResult as Result
from compliance.domain.gates import (
    DispenseRequest,
    dispense_gate,
    prescribe_gate,
    scheduled_test_due,
)
from compliance.programs.loader import get
from compliance.programs.model import Setting
from compliance.programs.model import TestKind as Kind

LENA = "lenalidomide/2023-03"
NY = "America/New_York"
DAY = timedelta(days=1)
FIRST_RX = date(2026, 4, 20)
START = FIRST_RX + DAY  # first dispense: day 0 of the testing schedule


def at(day: date, hh: int = 11) -> datetime:
    return datetime.combine(day, time(hh), tzinfo=ZoneInfo(NY)).astimezone(UTC)


def specimen(day: date, kind: Kind = Kind.CONFIRMATION, cycle: int = 1, **kw: Any) -> Specimen:
    values: dict[str, Any] = {
        "setting": Setting.LAB,
        "clia": True,
        "sensitivity_miu_ml": 50.0,
        "result": Result.NEGATIVE,
    }
    values.update(kw)
    return Specimen(f"t-{kind.value}-{day}", kind, day, cycle=cycle, **values)


def frp(*, early: int | None = 12, late: int | None = 0, **changes: Any) -> CourseFacts:
    """A female who can get pregnant before her first prescription (dated FIRST_RX), with
    pre-treatment tests ``early`` and ``late`` days before it."""
    tests = tuple(
        specimen(FIRST_RX - days * DAY, kind)
        for days, kind in ((early, Kind.SCREENING), (late, Kind.CONFIRMATION))
        if days is not None
    )
    names = ("iud", "male_condom")
    facts = CourseFacts(
        ruleset=get(LENA),
        state=CourseState.QUALIFIED,
        cycle=1,
        enrolled_on=FIRST_RX - 60 * DAY,
        category="can_get_pregnant",
        category_reason="REPRODUCTIVE_POTENTIAL",
        consents=frozenset({"PATIENT_PHYSICIAN_AGREEMENT"}),
        counselling_cycles=frozenset({1, 2, 3}),
        comprehension_cycles=frozenset({1, 2, 3}),
        methods=tuple(MethodRecord(n, FIRST_RX - 40 * DAY) for n in names),
        patient_confirmed={c: frozenset(names) for c in (1, 2, 3)},
        tests=tests,
        prescriptions=(PrescriptionRecord("rx-1", 1, FIRST_RX, FIRST_RX, 28, 0),),
    )
    return replace(facts, **changes)


def in_treatment(tests: tuple[int, ...], rx_day: int, schedule: str | None = None) -> CourseFacts:
    """Cycle 2, first dispensed on START, with tests on the given days of treatment and rx-2
    written on day ``rx_day``."""
    base = frp()
    during = tuple(specimen(START + d * DAY, Kind.MONTHLY, cycle=2) for d in tests)
    written = START + rx_day * DAY
    return replace(
        base,
        cycle=2,
        first_dispensed_on=START,
        tests=(*base.tests, *during),
        prescriptions=(
            *base.prescriptions,
            PrescriptionRecord("rx-2", 2, written, written, 28, 0),
        ),
        test_schedule=schedule,
    )


# --- pre-treatment: 10-14 days and within a day before the first prescription -----------------


@pytest.mark.parametrize(
    ("early", "late", "allowed"),
    [
        (10, 0, True),
        (14, 1, True),
        (12, 1, True),
        (9, 0, False),
        (15, 0, False),
        (12, 2, False),
        (None, 0, False),
        (12, None, False),
    ],
)
def test_two_pretreatment_tests_in_their_slots(
    early: int | None, late: int | None, allowed: bool
) -> None:
    decision = prescribe_gate(frp(early=early, late=late), at(FIRST_RX), on=FIRST_RX)
    assert decision.allowed is allowed, decision.reasons
    if not allowed:
        assert rc.PRETREATMENT_TESTS_INCOMPLETE in decision.codes


def test_missing_slot_is_named_with_the_earliest_date() -> None:
    decision = prescribe_gate(frp(early=None), at(FIRST_RX), on=FIRST_RX)
    reason = decision.reasons[0]
    assert "10-14 days before" in reason.message
    assert reason.earliest == FIRST_RX + 10 * DAY


def test_one_test_cannot_fill_both_slots() -> None:
    only = frp(early=None, late=None, tests=(specimen(FIRST_RX - DAY),))
    assert rc.PRETREATMENT_TESTS_INCOMPLETE in prescribe_gate(only, at(FIRST_RX)).codes


def test_sensitivity_must_reach_50() -> None:
    keen = frp(tests=(specimen(FIRST_RX - 12 * DAY), specimen(FIRST_RX, sensitivity_miu_ml=25)))
    assert prescribe_gate(keen, at(FIRST_RX)).allowed
    weak = frp(tests=(specimen(FIRST_RX - 12 * DAY), specimen(FIRST_RX, sensitivity_miu_ml=51)))
    codes = prescribe_gate(weak, at(FIRST_RX)).codes
    assert rc.PRETREATMENT_TESTS_INCOMPLETE in codes
    assert rc.TEST_SENSITIVITY_INSUFFICIENT in codes


def test_fill_within_seven_days_and_28_days_supply() -> None:
    facts = frp()
    request = DispenseRequest("rx-1", NY)
    assert dispense_gate(facts, at(FIRST_RX + 6 * DAY), request).allowed
    assert dispense_gate(facts, at(FIRST_RX + 7 * DAY), request).codes == (rc.RX_EXPIRED,)
    long = replace(facts, prescriptions=(PrescriptionRecord("rx-1", 1, FIRST_RX, FIRST_RX, 29, 0),))
    assert rc.SUPPLY_EXCEEDS_MAX in dispense_gate(long, at(FIRST_RX), request).codes
    assert get(LENA).authorization.central


@pytest.mark.parametrize(("lead_in", "allowed"), [(28, True), (27, False)])
def test_four_weeks_of_contraception_before_the_qualifying_test(
    lead_in: int, allowed: bool
) -> None:
    names = ("iud", "male_condom")
    facts = frp(methods=tuple(MethodRecord(n, FIRST_RX - lead_in * DAY) for n in names))
    assert prescribe_gate(facts, at(FIRST_RX), on=FIRST_RX).allowed is allowed


# --- testing schedule during treatment --------------------------------------------------------


def test_schedules_are_weekly_then_four_or_two_weekly() -> None:
    schedules = get(LENA).testing.schedules
    regular = schedules["regular_cycles"].due_dates(START, START + 120 * DAY)
    irregular = schedules["irregular_cycles"].due_dates(START, START + 120 * DAY)
    assert [(d - START).days for d in regular] == [7, 14, 21, 28, 56, 84, 112]
    assert [(d - START).days for d in irregular] == [7, 14, 21, 28, 42, 56, 70, 84, 98, 112]
    assert get(LENA).testing.default_schedule == "regular_cycles"


def test_weekly_tests_then_the_prescription_at_four_weeks() -> None:
    facts = in_treatment((7, 14, 21, 27), rx_day=27)
    assert prescribe_gate(facts, at(START + 27 * DAY), on=START + 27 * DAY).allowed


def test_the_test_due_most_recently_must_be_on_file() -> None:
    # Day 24: the test due on day 21 is missing (the last test was day 14).
    facts = in_treatment((7, 14), rx_day=24)
    decision = prescribe_gate(facts, at(START + 24 * DAY), on=START + 24 * DAY)
    assert rc.SCHEDULED_TEST_MISSED in decision.codes
    reason = next(r for r in decision.reasons if r.code == rc.SCHEDULED_TEST_MISSED)
    assert (START + 21 * DAY).isoformat() in reason.message
    # A late test recovers: collected on day 24 it covers the day-21 slot.
    late = in_treatment((7, 14, 24), rx_day=24)
    assert prescribe_gate(late, at(START + 24 * DAY), on=START + 24 * DAY).allowed


@pytest.mark.parametrize(
    ("schedule", "allowed"), [(None, True), ("regular_cycles", True), ("irregular_cycles", False)]
)
def test_irregular_cycles_test_every_two_weeks(schedule: str | None, allowed: bool) -> None:
    # Day 45, last test on day 28: regular cycles need the next test by day 56; irregular
    # cycles needed one by day 42.
    facts = in_treatment((7, 14, 21, 28), rx_day=45, schedule=schedule)
    day = START + 45 * DAY
    decision = prescribe_gate(facts, at(day), on=day)
    assert (rc.SCHEDULED_TEST_MISSED not in decision.codes) is allowed, decision.reasons
    with_test = in_treatment((7, 14, 21, 28, 40), rx_day=45, schedule=schedule)
    assert rc.SCHEDULED_TEST_MISSED not in prescribe_gate(with_test, at(day), on=day).codes


# --- males: a condom, no tests ----------------------------------------------------------------


def male(names: tuple[str, ...]) -> CourseFacts:
    return frp(
        category="male",
        category_reason="MALE",
        tests=(),
        methods=tuple(MethodRecord(n, FIRST_RX - 40 * DAY) for n in names),
        patient_confirmed={1: frozenset(names)},
    )


@pytest.mark.parametrize(
    ("names", "allowed"),
    [(("male_condom",), True), (("partner_vasectomy",), False), (("iud",), False)],
)
def test_males_need_a_condom_and_no_pregnancy_test(names: tuple[str, ...], allowed: bool) -> None:
    decision = prescribe_gate(male(names), at(FIRST_RX))
    assert decision.allowed is allowed, decision.reasons
    if not allowed:
        assert decision.codes == (rc.CONTRACEPTION_INSUFFICIENT,)
        assert "male_condom" in (decision.reasons[0].next_step or "")


# --- the worklist: the next scheduled test ----------------------------------------------------


def test_next_scheduled_test_and_overdue() -> None:
    facts = in_treatment((7,), rx_day=10)
    # Day 10, horizon 7 days: the day-14 test is due soon.
    assert scheduled_test_due(facts, START + 10 * DAY, START + 17 * DAY) == (
        START + 14 * DAY,
        False,
    )
    # Day 16 without the day-14 test: overdue.
    assert scheduled_test_due(facts, START + 16 * DAY, START + 23 * DAY) == (START + 14 * DAY, True)
    # A late test on day 16 falls in the week ending on day 21 as well: next is day 28.
    late = in_treatment((7, 16), rx_day=10)
    assert scheduled_test_due(late, START + 16 * DAY, START + 23 * DAY) is None
    assert scheduled_test_due(late, START + 16 * DAY, START + 30 * DAY) == (
        START + 28 * DAY,
        False,
    )
    # No schedule before the first dispense.
    assert scheduled_test_due(frp(), FIRST_RX, FIRST_RX + 30 * DAY) is None
