"""The iPLEDGE gates as pure functions: facts built by hand, fixed aware UTC instants, no database.

Conventions under test (shared/domain/reason-codes.md, rules.md 1.5-1.7, 17 C3/C4):

* Day 1 of a window is the documented specimen-collection *date* (never shifted); the last valid
  day is Day 1 + 6; "now" is judged in America/New_York, so the window closes at 00:00 Eastern
  after Day 7 whatever the pharmacy's zone.
* Patients who cannot get pregnant: 30-day window from the office visit under 2023-03 (Day 1 is
  the visit, last day visit + 29), none under 2026-mod.
* Every failing requirement is listed.
* The patient's status is judged at the pharmacy's request (workflows.md 1.1): the prescribe
  gate judges only what writing needs; the month's items are judged by the dispense gate, and
  ``readiness`` judges them without a prescription (what the checklist shows).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.facts import (
    ABSTINENCE,
    AuthorizationRecord,
    CourseFacts,
    MethodRecord,
    PrescriptionRecord,
)
from compliance.domain.facts import TestRecord as Specimen
from compliance.domain.facts import TestResult as Result
from compliance.domain.gates import (
    Decision,
    DispenseRequest,
    Outcome,
    Reason,
    dispense_gate,
    prescribe_gate,
    readiness,
)
from compliance.programs.loader import get
from compliance.programs.model import Setting
from compliance.programs.model import TestKind as Kind

LEGACY = "ipledge/2023-03"
MOD = "ipledge/2026-mod"
RULESETS = pytest.mark.parametrize("ruleset_id", [LEGACY, MOD])

ET = "America/New_York"
LA = "America/Los_Angeles"
HONOLULU = "Pacific/Honolulu"

DAY = timedelta(days=1)
CONFIRM = date(2026, 6, 10)  # Day 1 of the default qualifying window (summer: EDT)
MONTHLY_DAY = CONFIRM + 30 * DAY  # cycle 2's monthly test
VISIT = date(2026, 6, 1)  # office visit of a patient who cannot get pregnant
PCGP_METHODS = ("iud", "male_condom")
PCGP_CONSENTS = frozenset({"PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"})

NO_TEST = {rc.NO_NEGATIVE_TEST_IN_WINDOW}
# At the request, a closed window is WINDOW_EXPIRED alone (reason-codes.md, "Which codes go
# together").
EXPIRED = {rc.WINDOW_EXPIRED}


def missed_first(ruleset_id: str) -> set[str]:
    """A closed first (pre-treatment) window: under 2023-03 the 19-day lockout then runs, a
    failing requirement of its own (workflows.md 1.3)."""
    return EXPIRED | ({rc.LOCKOUT_19D} if ruleset_id == LEGACY else set())


# --- builders ----------------------------------------------------------------------------------


def local(day: date, hh: int, mm: int = 0, ss: int = 0, zone: str = ET) -> datetime:
    """The instant of a wall-clock time in ``zone``, as an aware UTC datetime."""
    return datetime.combine(day, time(hh, mm, ss), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def noon(day: date) -> datetime:
    return local(day, 12)


def specimen(
    test_id: str,
    kind: Kind,
    day: date,
    *,
    setting: Setting = Setting.LAB,
    clia: bool = True,
    sensitivity: float = 25.0,
    result: Result = Result.NEGATIVE,
    cycle: int = 1,
    home_opt_in: bool = False,
) -> Specimen:
    return Specimen(
        id=test_id,
        kind=kind,
        specimen_date=day,
        setting=setting,
        clia=clia,
        sensitivity_miu_ml=sensitivity,
        result=result,
        cycle=cycle,
        home_opt_in=home_opt_in,
    )


def screening(day: date) -> Specimen:
    """A screening test in the prescriber's office (no CLIA): allowed by both rulesets."""
    return specimen("t-screen", Kind.SCREENING, day, setting=Setting.CLINIC, clia=False)


def confirmation(day: date = CONFIRM, test_id: str = "t-confirm", **kw: Any) -> Specimen:
    return specimen(test_id, Kind.CONFIRMATION, day, **kw)


def monthly(day: date = MONTHLY_DAY, cycle: int = 2, **kw: Any) -> Specimen:
    return specimen(f"t-month-{cycle}", Kind.MONTHLY, day, cycle=cycle, **kw)


def methods(names: tuple[str, ...], start: date) -> tuple[MethodRecord, ...]:
    return tuple(MethodRecord(name, start) for name in names)


def prescription(
    rx_id: str = "rx-1",
    cycle: int = 1,
    written_on: date = CONFIRM,
    *,
    days_supply: int = 30,
    refills: int = 0,
    prescriber_certified: bool = True,
) -> PrescriptionRecord:
    return PrescriptionRecord(
        id=rx_id,
        cycle=cycle,
        written_on=written_on,
        office_visit_on=written_on,
        days_supply=days_supply,
        refills=refills,
        prescriber_certified=prescriber_certified,
    )


def authorization(
    rx_id: str = "rx-1",
    cycle: int = 1,
    *,
    reversed_at: datetime | None = None,
    dispensed_at: datetime | None = None,
) -> AuthorizationRecord:
    return AuthorizationRecord(
        number="123456789012345678905",
        prescription_id=rx_id,
        cycle=cycle,
        issued_at=local(CONFIRM, 9),
        do_not_dispense_after=local(CONFIRM + 7 * DAY, 0) - timedelta(microseconds=1),
        test_id="t-confirm",
        days_supply=30,
        reversed_at=reversed_at,
        dispensed_at=dispensed_at,
    )


def documented(facts: CourseFacts, changes: dict[str, Any]) -> CourseFacts:
    """``facts`` with ``changes``; unless a case says otherwise, the prescriber entered the
    methods in the current cycle and confirmed the patient for every result on file."""
    facts = replace(facts, **changes)
    implied: dict[str, Any] = {}
    if "methods_cycle" not in changes:
        implied["methods_cycle"] = facts.cycle if facts.methods else None
    if "confirmed_tests" not in changes:
        implied["confirmed_tests"] = frozenset(t.id for t in facts.tests)
    return replace(facts, **implied)


def pcgp(
    ruleset_id: str,
    *,
    confirm: date = CONFIRM,
    spacing: int = 19,
    lead_in: int = 60,
    names: tuple[str, ...] = PCGP_METHODS,
    **changes: Any,
) -> CourseFacts:
    """A patient who can get pregnant whose first prescription (rx-1, cycle 1, course QUALIFIED)
    was written on ``confirm``, the confirmation test's date: screening ``spacing`` days before
    it, ``names`` in use for ``lead_in`` days before it, everything documented. Any field can be
    overridden."""
    facts = CourseFacts(
        ruleset=get(ruleset_id),
        state=CourseState.QUALIFIED,
        cycle=1,
        enrolled_on=confirm - 90 * DAY,
        category="can_get_pregnant",
        category_reason="REPRODUCTIVE_POTENTIAL",
        consents=PCGP_CONSENTS,
        counselling_cycles=frozenset({1}),
        comprehension_cycles=frozenset({1}),
        methods=methods(names, confirm - lead_in * DAY),
        patient_confirmed={1: frozenset(names)},
        tests=(screening(confirm - spacing * DAY), confirmation(confirm)),
        prescriptions=(prescription(written_on=confirm),),
    )
    return documented(facts, changes)


def treating(
    ruleset_id: str, *, cycle_two_test: Specimen | None = None, **changes: Any
) -> CourseFacts:
    """Cycle 2 of a patient who can get pregnant: the first prescription was dispensed the day
    after the confirmation test; rx-2 was written on MONTHLY_DAY (course QUALIFIED);
    ``cycle_two_test`` (default: a negative CLIA-lab monthly test that day) qualifies it."""
    first = pcgp(ruleset_id)
    second = monthly() if cycle_two_test is None else cycle_two_test
    facts = replace(
        first,
        state=CourseState.QUALIFIED,
        cycle=2,
        counselling_cycles=frozenset({1, 2}),
        comprehension_cycles=frozenset({1, 2}),
        patient_confirmed={1: frozenset(PCGP_METHODS), 2: frozenset(PCGP_METHODS)},
        tests=(*first.tests, second),
        prescriptions=(*first.prescriptions, prescription("rx-2", 2, MONTHLY_DAY)),
        authorizations=(authorization(dispensed_at=noon(CONFIRM + DAY)),),
        first_dispensed_on=CONFIRM + DAY,
    )
    return documented(facts, changes)


def without_cycle_two_test(ruleset_id: str, **changes: Any) -> CourseFacts:
    facts = treating(ruleset_id, **changes)
    return replace(facts, tests=facts.tests[:-1])


def pcngp(ruleset_id: str, **changes: Any) -> CourseFacts:
    """A patient who cannot get pregnant (hysterectomy); rx-1 written at the VISIT office visit
    (course QUALIFIED)."""
    facts = CourseFacts(
        ruleset=get(ruleset_id),
        state=CourseState.QUALIFIED,
        cycle=1,
        enrolled_on=VISIT,
        category="cannot_get_pregnant",
        category_reason="HYSTERECTOMY",
        consents=frozenset({"PATIENT_INFORMATION_CONSENT"}),
        counselling_cycles=frozenset({1}),
        comprehension_cycles=frozenset({1}),
        prescriptions=(prescription(written_on=VISIT),),
    )
    return replace(facts, **changes)


def dispense(
    facts: CourseFacts,
    now: datetime,
    zone: str = ET,
    rx_id: str = "rx-1",
    problems: tuple[str, ...] = (),
) -> Decision:
    return dispense_gate(facts, now, DispenseRequest(rx_id, zone, problems))


def codes(decision: Decision) -> set[str]:
    """The decision's codes as a set, after checking the decision is internally consistent."""
    assert len(decision.codes) == len(set(decision.codes)), decision.codes
    assert decision.allowed == (not decision.reasons)
    assert decision.outcome is (Outcome.REFUSE if decision.reasons else Outcome.ALLOW)
    assert all(r.message for r in decision.reasons)
    return set(decision.codes)


def reason(decision: Decision, code: str) -> Reason:
    return next(r for r in decision.reasons if r.code == code)


# --- the baselines every other case varies ----------------------------------------------------


@RULESETS
def test_baseline_first_prescription_passes_both_gates(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id)
    assert codes(prescribe_gate(facts, noon(CONFIRM), days_supply=30)) == set()
    decision = dispense(facts, noon(CONFIRM))
    assert codes(decision) == set()
    assert decision.test_id == "t-confirm"


@RULESETS
def test_baseline_cycle_two_passes_both_gates(ruleset_id: str) -> None:
    facts = treating(ruleset_id)
    assert codes(readiness(facts, noon(MONTHLY_DAY))) == set()
    decision = dispense(facts, noon(MONTHLY_DAY), rx_id="rx-2")
    assert codes(decision) == set()
    assert decision.test_id == "t-month-2"
    assert decision.window is not None
    assert decision.window.first_day == MONTHLY_DAY


@RULESETS
def test_cannot_get_pregnant_needs_no_tests_or_contraception(ruleset_id: str) -> None:
    facts = pcngp(ruleset_id)
    assert not facts.tests
    assert not facts.methods
    assert not facts.patient_confirmed
    assert codes(readiness(facts, noon(VISIT))) == set()
    assert codes(dispense(facts, noon(VISIT))) == set()


# --- the 7-day window --------------------------------------------------------------------------


@RULESETS
@pytest.mark.parametrize(
    ("offset", "expected"), [(0, set()), (3, set()), (6, set()), (7, EXPIRED), (12, EXPIRED)]
)
def test_window_day_seven_is_the_last_day(ruleset_id: str, offset: int, expected: set[str]) -> None:
    decision = dispense(pcgp(ruleset_id), noon(CONFIRM + offset * DAY))
    assert codes(decision) == (missed_first(ruleset_id) if expected == EXPIRED else expected)
    assert decision.window is not None
    assert decision.window.first_day == CONFIRM
    assert decision.window.last_day == CONFIRM + 6 * DAY


@RULESETS
def test_window_closes_at_eastern_midnight_after_day_seven(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id)
    day7, day8 = CONFIRM + 6 * DAY, CONFIRM + 7 * DAY
    assert codes(dispense(facts, local(CONFIRM, 0))) == set()
    assert codes(dispense(facts, local(day7, 23, 59, 59))) == set()
    closed = dispense(facts, local(day8, 0))
    assert codes(closed) == missed_first(ruleset_id)
    assert closed.window is not None
    assert closed.window.closes_at == datetime(2026, 6, 17, 4, tzinfo=UTC)
    assert closed.window.last_instant < closed.window.closes_at
    # a new test at once; 2023-03: a missed first window waits the 19-day lockout
    lockout_ends = CONFIRM + 19 * DAY
    assert reason(closed, rc.WINDOW_EXPIRED).earliest == (
        lockout_ends if ruleset_id == LEGACY else day8
    )
    # the prescriber's gate sees the same closed window, without the dispensing-only code
    assert codes(readiness(facts, local(day8, 0))) == NO_TEST
    assert codes(readiness(facts, local(day7, 23, 59, 59))) == set()


@RULESETS
@pytest.mark.parametrize(
    ("zone", "confirm", "last_open", "first_closed"),
    [
        pytest.param(LA, CONFIRM, time(20, 59, 59), time(21, 0), id="LA-summer"),
        pytest.param(HONOLULU, CONFIRM, time(17, 59, 59), time(18, 0), id="HNL-summer"),
        pytest.param(LA, date(2026, 1, 14), time(20, 59, 59), time(21, 0), id="LA-winter"),
        pytest.param(HONOLULU, date(2026, 1, 14), time(18, 59, 59), time(19, 0), id="HNL-winter"),
    ],
)
def test_western_pharmacies_close_at_eastern_midnight(
    ruleset_id: str, zone: str, confirm: date, last_open: time, first_closed: time
) -> None:
    facts = pcgp(ruleset_id, confirm=confirm)
    day7 = confirm + 6 * DAY
    open_at = datetime.combine(day7, last_open, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    closed_at = datetime.combine(day7, first_closed, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert codes(dispense(facts, open_at, zone)) == set()
    closed = dispense(facts, closed_at, zone)
    # still Day 7 on the pharmacy's wall clock, already Day 8 in the Eastern zone
    assert closed_at.astimezone(ZoneInfo(zone)).date() == day7
    assert closed.today == day7 + DAY
    assert codes(closed) == missed_first(ruleset_id)
    assert closed.window is not None
    assert closed.window.closes_at == local(day7 + DAY, 0)
    assert closed.window.zone == ET


@RULESETS
@pytest.mark.parametrize(
    ("day_one", "last_day", "closes_at"),
    [
        pytest.param(
            date(2026, 3, 5), date(2026, 3, 11), datetime(2026, 3, 12, 4, tzinfo=UTC), id="spring"
        ),
        pytest.param(
            date(2026, 10, 28), date(2026, 11, 3), datetime(2026, 11, 4, 5, tzinfo=UTC), id="fall"
        ),
        pytest.param(
            date(2026, 2, 20), date(2026, 2, 26), datetime(2026, 2, 27, 5, tzinfo=UTC), id="est"
        ),
        pytest.param(
            date(2026, 10, 20), date(2026, 10, 26), datetime(2026, 10, 27, 4, tzinfo=UTC), id="edt"
        ),
    ],
)
def test_window_across_daylight_saving_change(
    ruleset_id: str, day_one: date, last_day: date, closes_at: datetime
) -> None:
    facts = pcgp(ruleset_id, confirm=day_one)
    second = timedelta(seconds=1)
    half_hour = timedelta(minutes=30)
    open_ = dispense(facts, closes_at - second, LA)
    assert codes(open_) == set()
    assert open_.window is not None
    assert open_.window.first_day == day_one
    assert open_.window.last_day == last_day
    assert open_.window.closes_at == closes_at
    assert codes(dispense(facts, closes_at, LA)) == missed_first(ruleset_id)
    # half an hour either side: an offset taken from Day 1 instead of Day 8 would get these wrong
    assert codes(dispense(facts, closes_at - half_hour, HONOLULU)) == set()
    assert codes(dispense(facts, closes_at + half_hour, HONOLULU)) == missed_first(ruleset_id)


@RULESETS
@pytest.mark.parametrize("zone", [LA, HONOLULU])
def test_late_evening_western_specimen_keeps_its_documented_date(
    ruleset_id: str, zone: str
) -> None:
    documented = date(2026, 6, 10)
    collected = datetime.combine(documented, time(22, 30), tzinfo=ZoneInfo(zone))
    # the collection instant is already the next day in the Eastern zone (and in UTC)
    assert collected.astimezone(ZoneInfo(ET)).date() == documented + DAY
    assert collected.astimezone(UTC).date() == documented + DAY
    facts = pcgp(ruleset_id, confirm=documented)
    soon_after = dispense(facts, (collected + timedelta(minutes=30)).astimezone(UTC), zone)
    assert codes(soon_after) == set()
    assert soon_after.window is not None
    assert soon_after.window.first_day == documented
    assert soon_after.window.last_day == documented + 6 * DAY
    # the window ends at Eastern midnight after documented + 6, not a day later
    assert codes(dispense(facts, local(documented + 7 * DAY, 0), zone)) == missed_first(ruleset_id)
    assert codes(dispense(facts, local(documented + 6 * DAY, 23, 59, 59), zone)) == set()


# --- pre-treatment tests -----------------------------------------------------------------------


@RULESETS
@pytest.mark.parametrize("spacing", [19, 20, 25])
def test_pretreatment_tests_at_least_19_days_apart_pass(ruleset_id: str, spacing: int) -> None:
    assert codes(dispense(pcgp(ruleset_id, spacing=spacing), noon(CONFIRM))) == set()


@RULESETS
@pytest.mark.parametrize("spacing", [1, 10, 18])
def test_pretreatment_tests_under_19_days_apart_are_refused(ruleset_id: str, spacing: int) -> None:
    facts = pcgp(ruleset_id, spacing=spacing)
    decision = readiness(facts, noon(CONFIRM))
    # a negative test is on file: the spacing says why it cannot count, not "no test"
    assert codes(decision) == {rc.PRETREATMENT_TEST_SPACING}
    expected = CONFIRM - spacing * DAY + 19 * DAY
    assert reason(decision, rc.PRETREATMENT_TEST_SPACING).earliest == expected
    assert decision.earliest == expected
    assert codes(dispense(facts, noon(CONFIRM))) == {rc.PRETREATMENT_TEST_SPACING}


@RULESETS
def test_a_single_pretreatment_test_is_incomplete(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id, tests=(confirmation(),))
    decision = dispense(facts, noon(CONFIRM))
    assert codes(decision) == {rc.PRETREATMENT_TESTS_INCOMPLETE, rc.NO_NEGATIVE_TEST_IN_WINDOW}
    assert reason(decision, rc.PRETREATMENT_TESTS_INCOMPLETE).earliest == CONFIRM + 19 * DAY
    assert decision.test_id is None
    assert decision.window is None


@RULESETS
def test_no_pretreatment_test_at_all(ruleset_id: str) -> None:
    decision = readiness(pcgp(ruleset_id, tests=()), noon(CONFIRM))
    assert codes(decision) == {
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        rc.NO_NEGATIVE_TEST_IN_WINDOW,
        rc.PRESCRIBER_CONFIRMATION_MISSING,
    }


@RULESETS
def test_a_positive_pretreatment_test_is_not_counted(ruleset_id: str) -> None:
    positive = confirmation(result=Result.POSITIVE)
    facts = pcgp(ruleset_id, tests=(screening(CONFIRM - 19 * DAY), positive))
    assert codes(dispense(facts, noon(CONFIRM))) == {
        rc.PREGNANCY_TEST_POSITIVE,
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        rc.NO_NEGATIVE_TEST_IN_WINDOW,
    }


# --- contraception -----------------------------------------------------------------------------


@RULESETS
@pytest.mark.parametrize(("lead_in", "allowed"), [(29, False), (30, True), (31, True), (90, True)])
def test_contraception_lead_in_before_the_confirmation_test(
    ruleset_id: str, lead_in: int, allowed: bool
) -> None:
    facts = pcgp(ruleset_id, lead_in=lead_in)
    for decision in (readiness(facts, noon(CONFIRM)), dispense(facts, noon(CONFIRM))):
        if allowed:
            assert codes(decision) == set()
        else:
            assert codes(decision) == {rc.CONTRACEPTION_LEAD_IN_NOT_MET}
            # 30 days from the start of the methods: one day after this confirmation test
            assert reason(decision, rc.CONTRACEPTION_LEAD_IN_NOT_MET).earliest == CONFIRM + DAY
            assert decision.earliest == CONFIRM + DAY


@RULESETS
def test_lead_in_waits_for_enough_methods_not_all(ruleset_id: str) -> None:
    late_second = (
        MethodRecord("iud", CONFIRM - 90 * DAY),
        MethodRecord("male_condom", CONFIRM - 25 * DAY),
    )
    names = frozenset({"iud", "male_condom"})
    facts = pcgp(ruleset_id, methods=late_second, patient_confirmed={1: names})
    decision = dispense(facts, noon(CONFIRM))
    assert codes(decision) == {rc.CONTRACEPTION_LEAD_IN_NOT_MET}
    assert decision.earliest == CONFIRM + 5 * DAY
    # a third method in use long enough makes a qualifying pair without the late one
    three = (*late_second, MethodRecord("diaphragm_with_spermicide", CONFIRM - 40 * DAY))
    facts = pcgp(
        ruleset_id, methods=three, patient_confirmed={1: names | {"diaphragm_with_spermicide"}}
    )
    assert codes(dispense(facts, noon(CONFIRM))) == set()


@RULESETS
def test_lead_in_is_not_rechecked_once_treatment_started(ruleset_id: str) -> None:
    recent = methods(PCGP_METHODS, MONTHLY_DAY - 5 * DAY)
    assert (
        codes(dispense(treating(ruleset_id, methods=recent), noon(MONTHLY_DAY), rx_id="rx-2"))
        == set()
    )


@RULESETS
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("male_condom", "diaphragm_with_spermicide"), {rc.NO_PRIMARY_METHOD}),
        (("iud",), {rc.CONTRACEPTION_INSUFFICIENT}),
        (("male_condom",), {rc.CONTRACEPTION_INSUFFICIENT, rc.NO_PRIMARY_METHOD}),
        ((ABSTINENCE,), set()),
        (("iud", "progestin_only_pill"), {rc.CONTRACEPTION_INSUFFICIENT}),
        (
            ("male_condom", "progestin_only_pill"),
            {rc.CONTRACEPTION_INSUFFICIENT, rc.NO_PRIMARY_METHOD},
        ),
        (("iud", "not_a_catalogued_method"), {rc.CONTRACEPTION_INSUFFICIENT}),
        (("tubal_ligation", "male_condom"), set()),
        (("combined_oral_contraceptive", "hormonal_implant"), set()),
        (("partner_vasectomy", "vaginal_sponge_with_spermicide"), set()),
    ],
)
def test_contraception_methods(ruleset_id: str, names: tuple[str, ...], expected: set[str]) -> None:
    facts = pcgp(ruleset_id, names=names)
    assert codes(readiness(facts, noon(CONFIRM))) == expected
    assert codes(dispense(facts, noon(CONFIRM))) == expected


@RULESETS
def test_no_contraception_documented(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id, methods=(), patient_confirmed={})
    assert codes(dispense(facts, noon(CONFIRM))) == {rc.CONTRACEPTION_NOT_DOCUMENTED}


@RULESETS
def test_patient_confirmation_missing_for_this_cycle(ruleset_id: str) -> None:
    assert codes(dispense(pcgp(ruleset_id, patient_confirmed={}), noon(CONFIRM))) == {
        rc.CONTRACEPTION_NOT_CONFIRMED
    }
    # a confirmation from the previous cycle does not carry over
    stale = {1: frozenset(PCGP_METHODS)}
    facts = treating(ruleset_id, patient_confirmed=stale)
    assert codes(dispense(facts, noon(MONTHLY_DAY), rx_id="rx-2")) == {
        rc.CONTRACEPTION_NOT_CONFIRMED
    }


@RULESETS
def test_patient_methods_differing_from_prescriber_methods(ruleset_id: str) -> None:
    differing = {1: frozenset({"iud", "diaphragm_with_spermicide"})}
    decision = dispense(pcgp(ruleset_id, patient_confirmed=differing), noon(CONFIRM))
    assert codes(decision) == {rc.CONTRACEPTION_MISMATCH}
    assert "diaphragm_with_spermicide" in reason(decision, rc.CONTRACEPTION_MISMATCH).message


# --- category, consent, counselling, comprehension --------------------------------------------


# A patient with no valid category is judged as one who can get pregnant (reason-codes.md,
# "Which codes go together"; workflows.md 3): the refusal lists the category's problem and
# every requirement of a patient who can get pregnant that is not met.
PCGP_FROM_NOTHING = {
    rc.CONSENT_NOT_SIGNED,
    rc.CONTRACEPTION_NOT_DOCUMENTED,
    rc.PRETREATMENT_TESTS_INCOMPLETE,
    rc.NO_NEGATIVE_TEST_IN_WINDOW,
    rc.PRESCRIBER_CONFIRMATION_MISSING,
}


@RULESETS
def test_tubal_ligation_cannot_support_cannot_get_pregnant(ruleset_id: str) -> None:
    facts = pcngp(ruleset_id, category_reason="TUBAL_LIGATION")
    expected = {rc.INVALID_CATEGORY_REASON, *PCGP_FROM_NOTHING}
    assert codes(readiness(facts, noon(VISIT))) == expected
    decision = dispense(facts, noon(VISIT))
    assert codes(decision) == expected
    assert "TUBAL_LIGATION" in reason(decision, rc.INVALID_CATEGORY_REASON).message
    assert "BIRTH_DEFECTS_CONSENT" in reason(decision, rc.CONSENT_NOT_SIGNED).message


@RULESETS
def test_invalid_reason_for_cannot_is_judged_as_can_get_pregnant(ruleset_id: str) -> None:
    # Everything a patient who can get pregnant needs is on file: only the reason is refused,
    # and the 30-day office-visit window of "cannot" (2023-03) is not applied.
    facts = pcgp(ruleset_id, category="cannot_get_pregnant", category_reason="TUBAL_LIGATION")
    decision = dispense(facts, noon(CONFIRM))
    assert codes(decision) == {rc.INVALID_CATEGORY_REASON}
    assert decision.window is not None and decision.window.first_day == CONFIRM
    # without a test it is refused as for any patient who can get pregnant
    facts = replace(facts, tests=())
    assert rc.NO_NEGATIVE_TEST_IN_WINDOW in codes(dispense(facts, noon(CONFIRM)))


@RULESETS
@pytest.mark.parametrize(
    "why", ["NO_UTERUS", "HYSTERECTOMY", "BILATERAL_OOPHORECTOMY", "POSTMENOPAUSAL_CONFIRMED"]
)
def test_reasons_that_support_cannot_get_pregnant(ruleset_id: str, why: str) -> None:
    assert codes(dispense(pcngp(ruleset_id, category_reason=why), noon(VISIT))) == set()


@RULESETS
@pytest.mark.parametrize(
    ("why", "expected"),
    [
        ("REPRODUCTIVE_POTENTIAL", set()),
        ("TUBAL_LIGATION", set()),
        ("HYSTERECTOMY", {rc.INVALID_CATEGORY_REASON}),
        (None, {rc.INVALID_CATEGORY_REASON}),
    ],
)
def test_reasons_for_can_get_pregnant(ruleset_id: str, why: str | None, expected: set[str]) -> None:
    assert codes(dispense(pcgp(ruleset_id, category_reason=why), noon(CONFIRM))) == expected


@RULESETS
@pytest.mark.parametrize("category", [None, "male", "female_not_of_childbearing_potential"])
def test_no_category_is_judged_as_can_get_pregnant(ruleset_id: str, category: str | None) -> None:
    # everything else is missing too: listed as for a patient who can get pregnant
    facts = pcgp(
        ruleset_id,
        state=CourseState.ENROLLED,
        category=category,
        category_reason=None,
        consents=frozenset(),
        tests=(),
        methods=(),
    )
    expected = {rc.CATEGORY_NOT_ASSIGNED, *PCGP_FROM_NOTHING}
    assert codes(readiness(facts, noon(CONFIRM))) == expected
    assert codes(dispense(facts, noon(CONFIRM))) == expected
    # with all a patient who can get pregnant needs, only the category is missing
    facts = pcgp(ruleset_id, category=category, category_reason=None)
    assert codes(readiness(facts, noon(CONFIRM))) == {rc.CATEGORY_NOT_ASSIGNED}
    # and without comprehension this cycle, that is missing too (never relaxed to "cannot")
    facts = replace(facts, comprehension_cycles=frozenset())
    assert codes(dispense(facts, noon(CONFIRM))) == {
        rc.CATEGORY_NOT_ASSIGNED,
        rc.COMPREHENSION_NOT_DONE,
    }


@RULESETS
def test_consent_forms(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id, consents=frozenset({"PATIENT_INFORMATION_CONSENT"}))
    decision = dispense(facts, noon(CONFIRM))
    assert codes(decision) == {rc.CONSENT_NOT_SIGNED}
    assert "BIRTH_DEFECTS_CONSENT" in reason(decision, rc.CONSENT_NOT_SIGNED).message
    assert codes(dispense(pcngp(ruleset_id, consents=frozenset()), noon(VISIT))) == {
        rc.CONSENT_NOT_SIGNED
    }


@RULESETS
def test_counselling_and_comprehension_are_monthly_for_can_get_pregnant(ruleset_id: str) -> None:
    at = noon(MONTHLY_DAY)
    facts = treating(ruleset_id, counselling_cycles=frozenset({1}))
    assert codes(dispense(facts, at, rx_id="rx-2")) == {rc.COUNSELING_NOT_DOCUMENTED}
    facts = treating(ruleset_id, comprehension_cycles=frozenset({1}))
    assert codes(dispense(facts, at, rx_id="rx-2")) == {rc.COMPREHENSION_NOT_DONE}
    facts = pcgp(ruleset_id, counselling_cycles=frozenset(), comprehension_cycles=frozenset())
    assert codes(readiness(facts, noon(CONFIRM))) == {
        rc.COUNSELING_NOT_DOCUMENTED,
        rc.COMPREHENSION_NOT_DONE,
    }


def _pcngp_cycle_two(ruleset_id: str, **changes: Any) -> CourseFacts:
    later = VISIT + 35 * DAY
    facts = pcngp(
        ruleset_id,
        cycle=2,
        counselling_cycles=frozenset({1, 2}),
        comprehension_cycles=frozenset({1}),
        prescriptions=(prescription("rx-1", 1, VISIT), prescription("rx-2", 2, later)),
        authorizations=(authorization(dispensed_at=noon(VISIT)),),
        first_dispensed_on=VISIT,
    )
    return replace(facts, **changes)


@pytest.mark.parametrize(
    ("ruleset_id", "expected"),
    [(LEGACY, {rc.COUNSELING_NOT_DOCUMENTED}), (MOD, set())],
)
def test_cannot_get_pregnant_counselling_monthly_then_enrolment_only(
    ruleset_id: str, expected: set[str]
) -> None:
    at = noon(VISIT + 35 * DAY)
    assert codes(dispense(_pcngp_cycle_two(ruleset_id), at, rx_id="rx-2")) == set()
    facts = _pcngp_cycle_two(ruleset_id, counselling_cycles=frozenset({1}))
    assert codes(readiness(facts, at)) == expected
    assert codes(dispense(facts, at, rx_id="rx-2")) == expected
    # never documented at all: refused under both
    facts = _pcngp_cycle_two(ruleset_id, counselling_cycles=frozenset())
    assert codes(readiness(facts, at)) == {rc.COUNSELING_NOT_DOCUMENTED}


@RULESETS
def test_cannot_get_pregnant_answers_no_comprehension_questions(ruleset_id: str) -> None:
    # workflows.md 2: no pregnancy tests, no contraception, no comprehension questions (males
    # and every patient who cannot get pregnant); rules.md 1.3/1.8: PCGP only.
    at = noon(VISIT + 35 * DAY)
    assert codes(readiness(_pcngp_cycle_two(ruleset_id), at)) == set()
    facts = _pcngp_cycle_two(ruleset_id, comprehension_cycles=frozenset())
    assert codes(readiness(facts, at)) == set()
    assert codes(dispense(facts, at, rx_id="rx-2")) == set()
    first = pcngp(ruleset_id, comprehension_cycles=frozenset(), category_reason="NO_UTERUS")
    assert codes(readiness(first, noon(VISIT))) == set()
    assert codes(dispense(first, noon(VISIT))) == set()


# --- course state, positive test, missed monthly test ------------------------------------------


@RULESETS
def test_positive_test_in_this_cycle_refuses(ruleset_id: str) -> None:
    positive = specimen("t-pos", Kind.MONTHLY, MONTHLY_DAY + DAY, result=Result.POSITIVE, cycle=2)
    facts = treating(ruleset_id)
    facts = replace(facts, tests=(*facts.tests, positive))
    at = noon(MONTHLY_DAY + 2 * DAY)
    assert codes(readiness(facts, at)) == {rc.PREGNANCY_TEST_POSITIVE}
    assert codes(dispense(facts, at, rx_id="rx-2")) == {rc.PREGNANCY_TEST_POSITIVE}


@RULESETS
def test_suspended_course(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id, state=CourseState.SUSPENDED)
    assert codes(readiness(facts, noon(CONFIRM))) == {rc.COURSE_SUSPENDED}
    assert codes(dispense(facts, noon(CONFIRM))) == {rc.COURSE_SUSPENDED}


@RULESETS
@pytest.mark.parametrize(
    "state",
    [
        CourseState.COMPLETED,
        CourseState.WITHDRAWN,
        CourseState.LOST_TO_FOLLOW_UP,
        CourseState.TREATMENT_ENDED,
        CourseState.POST_TREATMENT,
    ],
)
def test_no_active_course(ruleset_id: str, state: CourseState) -> None:
    # other requirements fail too; a closed course is reported alone
    facts = pcgp(ruleset_id, state=state, consents=frozenset(), tests=())
    for decision in (
        prescribe_gate(facts, noon(CONFIRM), days_supply=90, refills=2),
        dispense(facts, noon(CONFIRM)),
    ):
        assert codes(decision) == {rc.NO_ACTIVE_COURSE}


@RULESETS
def test_missed_monthly_test_after_treatment_started(ruleset_id: str) -> None:
    facts = without_cycle_two_test(ruleset_id)
    assert facts.treatment_started
    assert facts.cycle == 2
    at = noon(MONTHLY_DAY)
    # no month-2 result: nothing to confirm either, and every failing requirement is listed
    unconfirmed = NO_TEST | {rc.PRESCRIBER_CONFIRMATION_MISSING}
    assert codes(readiness(facts, at)) == unconfirmed
    decision = dispense(facts, at, rx_id="rx-2")
    assert codes(decision) == unconfirmed
    assert decision.test_id is None
    assert decision.window is None
    # a monthly test filed under cycle 1 does not cover cycle 2
    facts = replace(facts, tests=(*facts.tests, monthly(MONTHLY_DAY, cycle=1)))
    assert codes(dispense(facts, at, rx_id="rx-2")) == unconfirmed


@RULESETS
def test_monthly_test_window_expires(ruleset_id: str) -> None:
    facts = treating(ruleset_id)
    day8 = MONTHLY_DAY + 7 * DAY
    assert codes(dispense(facts, local(day8, 0) - timedelta(seconds=1), rx_id="rx-2")) == set()
    assert codes(dispense(facts, local(day8, 0), rx_id="rx-2")) == EXPIRED


# --- where and how sensitive a test was --------------------------------------------------------

PRE_SETTING_BAD = {
    rc.TEST_SETTING_NOT_PERMITTED,
    rc.PRETREATMENT_TESTS_INCOMPLETE,
    rc.NO_NEGATIVE_TEST_IN_WINDOW,
}


@pytest.mark.parametrize(
    ("ruleset_id", "setting", "clia", "home_opt_in", "ok"),
    [
        (LEGACY, Setting.LAB, True, False, True),
        (LEGACY, Setting.LAB, False, False, False),
        (LEGACY, Setting.CLINIC, False, False, False),
        (LEGACY, Setting.CLINIC, True, False, False),
        (LEGACY, Setting.HOME, False, False, False),
        (LEGACY, Setting.HOME, False, True, False),
        (MOD, Setting.LAB, True, False, True),
        (MOD, Setting.LAB, False, False, True),
        (MOD, Setting.CLINIC, False, False, True),
        (MOD, Setting.HOME, False, False, False),
        (MOD, Setting.HOME, False, True, False),
    ],
)
def test_confirmation_test_setting(
    ruleset_id: str, setting: Setting, clia: bool, home_opt_in: bool, ok: bool
) -> None:
    test = confirmation(setting=setting, clia=clia, home_opt_in=home_opt_in)
    facts = pcgp(ruleset_id, tests=(screening(CONFIRM - 19 * DAY), test))
    assert codes(dispense(facts, noon(CONFIRM))) == (set() if ok else PRE_SETTING_BAD)


@RULESETS
@pytest.mark.parametrize(
    ("setting", "clia", "ok"),
    [
        (Setting.CLINIC, False, True),
        (Setting.LAB, False, True),
        (Setting.LAB, True, True),
    ],
)
def test_screening_test_setting(ruleset_id: str, setting: Setting, clia: bool, ok: bool) -> None:
    first = specimen("t-screen", Kind.SCREENING, CONFIRM - 19 * DAY, setting=setting, clia=clia)
    facts = pcgp(ruleset_id, tests=(first, confirmation()))
    assert codes(dispense(facts, noon(CONFIRM))) == (set() if ok else PRE_SETTING_BAD)


@RULESETS
@pytest.mark.parametrize("home_opt_in", [False, True])
def test_home_screening_test_is_never_counted(ruleset_id: str, home_opt_in: bool) -> None:
    first = specimen(
        "t-screen",
        Kind.SCREENING,
        CONFIRM - 19 * DAY,
        setting=Setting.HOME,
        clia=False,
        home_opt_in=home_opt_in,
    )
    only = (first,)
    assert codes(dispense(pcgp(ruleset_id, tests=only), noon(first.specimen_date))) == (
        PRE_SETTING_BAD
    )
    facts = pcgp(ruleset_id, tests=(first, confirmation()))
    decision = dispense(facts, noon(CONFIRM))
    assert {rc.PRETREATMENT_TESTS_INCOMPLETE, rc.NO_NEGATIVE_TEST_IN_WINDOW} <= codes(decision)


@RULESETS
def test_discounted_earlier_pretreatment_test_is_reported(ruleset_id: str) -> None:
    first = specimen(
        "t-screen", Kind.SCREENING, CONFIRM - 19 * DAY, setting=Setting.HOME, clia=False
    )
    facts = pcgp(ruleset_id, tests=(first, confirmation()))
    assert codes(dispense(facts, noon(CONFIRM))) == PRE_SETTING_BAD


@pytest.mark.parametrize(
    ("ruleset_id", "setting", "clia", "home_opt_in", "ok"),
    [
        (LEGACY, Setting.LAB, True, False, True),
        (LEGACY, Setting.LAB, False, False, False),
        (LEGACY, Setting.CLINIC, False, False, False),
        (LEGACY, Setting.HOME, False, True, False),
        (LEGACY, Setting.HOME, False, False, False),
        (MOD, Setting.LAB, False, False, True),
        (MOD, Setting.CLINIC, False, False, True),
        (MOD, Setting.HOME, False, True, True),
        (MOD, Setting.HOME, False, False, False),
    ],
)
def test_monthly_test_setting(
    ruleset_id: str, setting: Setting, clia: bool, home_opt_in: bool, ok: bool
) -> None:
    test = monthly(setting=setting, clia=clia, home_opt_in=home_opt_in)
    decision = dispense(treating(ruleset_id, cycle_two_test=test), noon(MONTHLY_DAY), rx_id="rx-2")
    assert codes(decision) == (
        set() if ok else {rc.TEST_SETTING_NOT_PERMITTED, rc.NO_NEGATIVE_TEST_IN_WINDOW}
    )


@RULESETS
@pytest.mark.parametrize(
    ("sensitivity", "ok"), [(10, True), (20, True), (25, True), (25.5, False), (50, False)]
)
def test_test_sensitivity(ruleset_id: str, sensitivity: float, ok: bool) -> None:
    test = confirmation(sensitivity=sensitivity)
    facts = pcgp(ruleset_id, tests=(screening(CONFIRM - 19 * DAY), test))
    expected = {
        rc.TEST_SENSITIVITY_INSUFFICIENT,
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        rc.NO_NEGATIVE_TEST_IN_WINDOW,
    }
    assert codes(dispense(facts, noon(CONFIRM))) == (set() if ok else expected)
    facts = treating(ruleset_id, cycle_two_test=monthly(sensitivity=sensitivity))
    decision = dispense(facts, noon(MONTHLY_DAY), rx_id="rx-2")
    expected = {rc.TEST_SENSITIVITY_INSUFFICIENT, rc.NO_NEGATIVE_TEST_IN_WINDOW}
    assert codes(decision) == (set() if ok else expected)


# --- the 19-day lockout after a missed first window -------------------------------------------


def _missed_first_window(ruleset_id: str, gap: int) -> tuple[CourseFacts, date, date]:
    """Screening, a confirmation test C1 whose window lapsed without a dispense, then a second
    confirmation test C2 ``gap`` days after C1. Returns the facts, C1 and C2."""
    c1 = CONFIRM
    c2 = c1 + gap * DAY
    facts = pcgp(
        ruleset_id,
        confirm=c2,
        lead_in=120,
        tests=(
            screening(c1 - 19 * DAY),
            confirmation(c1, "t-confirm-1"),
            confirmation(c2, "t-confirm-2"),
        ),
    )
    return facts, c1, c2


@pytest.mark.parametrize("gap", [8, 10, 18])
def test_lockout_19_days_after_missed_first_window_2023(gap: int) -> None:
    facts, c1, c2 = _missed_first_window(LEGACY, gap)
    for decision in (readiness(facts, noon(c2)), dispense(facts, noon(c2))):
        assert codes(decision) == {rc.LOCKOUT_19D}
        assert reason(decision, rc.LOCKOUT_19D).earliest == c1 + 19 * DAY
        assert decision.earliest == c1 + 19 * DAY
        assert decision.test_id == "t-confirm-2"


@pytest.mark.parametrize("gap", [19, 20, 30])
def test_lockout_over_after_19_days_2023(gap: int) -> None:
    facts, _, c2 = _missed_first_window(LEGACY, gap)
    decision = dispense(facts, noon(c2))
    assert codes(decision) == set()
    assert decision.test_id == "t-confirm-2"


@pytest.mark.parametrize("gap", [8, 10, 18, 19])
def test_no_lockout_under_2026_mod(gap: int) -> None:
    facts, _, c2 = _missed_first_window(MOD, gap)
    assert codes(readiness(facts, noon(c2))) == set()
    decision = dispense(facts, noon(c2))
    assert codes(decision) == set()
    assert decision.test_id == "t-confirm-2"


def test_test_refused_by_the_lockout_does_not_restart_it_2023() -> None:
    facts, c1, c2 = _missed_first_window(LEGACY, 10)
    assert codes(dispense(facts, noon(c2))) == {rc.LOCKOUT_19D}
    c3 = c1 + 19 * DAY  # 19 days after the missed window's specimen, not after C2's
    facts = replace(facts, tests=(*facts.tests, confirmation(c3, "t-confirm-3")))
    # The status at the request decides (workflows.md 1.3): the prescription written on C2, never
    # dispensed, is used in the new window once the prescriber confirms the new result.
    assert codes(dispense(facts, noon(c3))) == {rc.PRESCRIBER_CONFIRMATION_MISSING}
    facts = replace(facts, confirmed_tests=facts.confirmed_tests | {"t-confirm-3"})
    decision = dispense(facts, noon(c3))
    assert decision.test_id == "t-confirm-3"
    assert codes(decision) == set()


def test_an_undispensed_prescription_is_used_in_the_new_window() -> None:
    """iPLEDGE judges the patient's status at the request, not the prescription's written date
    (workflows.md 1.3): after a missed window and a new test, confirmed by the prescriber, the
    undispensed prescription is authorized in the new window."""
    facts = pcgp(MOD)
    later = CONFIRM + 10 * DAY
    assert codes(dispense(facts, noon(later))) == EXPIRED
    facts = replace(facts, tests=(*facts.tests, confirmation(later, "t-confirm-2")))
    assert codes(dispense(facts, noon(later))) == {rc.PRESCRIBER_CONFIRMATION_MISSING}
    facts = replace(facts, confirmed_tests=facts.confirmed_tests | {"t-confirm-2"})
    renewed = dispense(facts, noon(later))
    assert codes(renewed) == set()
    assert renewed.test_id == "t-confirm-2"
    assert renewed.window is not None and renewed.window.first_day == later


def test_lapsed_screening_window_is_not_a_missed_first_window() -> None:
    # the screening test's own 7 days lapsed long ago (it cannot be dispensed against anyway)
    facts = pcgp(LEGACY)
    assert codes(dispense(facts, noon(CONFIRM))) == set()
    assert facts.tests[0].specimen_date + 7 * DAY < CONFIRM


# --- patients who cannot get pregnant: the office-visit window --------------------------------


def test_cannot_get_pregnant_30_day_window_from_visit_2023() -> None:
    facts = pcngp(LEGACY)
    last = VISIT + 29 * DAY
    for at in (local(VISIT, 0), noon(last), local(last, 23, 59, 59)):
        decision = dispense(facts, at)
        assert codes(decision) == set()
        assert decision.window is not None
        assert decision.window.first_day == VISIT
        assert decision.window.last_day == last
    for at in (local(last + DAY, 0), noon(last + DAY), noon(VISIT + 90 * DAY)):
        decision = dispense(facts, at)
        assert codes(decision) == {rc.WINDOW_EXPIRED}
    # Eastern midnight from the west as well
    assert codes(dispense(facts, local(last, 20, 59, 59, LA), LA)) == set()
    assert codes(dispense(facts, local(last, 21, 0, 0, LA), LA)) == {rc.WINDOW_EXPIRED}
    # the prescriber's gate is not bound by the pharmacy window
    assert codes(readiness(facts, noon(last + DAY))) == set()


def test_cannot_get_pregnant_has_no_window_2026() -> None:
    facts = pcngp(MOD)
    for at in (noon(VISIT + 30 * DAY), noon(VISIT + 200 * DAY)):
        decision = dispense(facts, at, LA)
        assert codes(decision) == set()
        assert decision.window is None


# --- authorizations and supply -----------------------------------------------------------------


@RULESETS
@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (authorization(), {rc.AUTHORIZATION_ALREADY_ISSUED}),
        (authorization(dispensed_at=noon(CONFIRM)), {rc.AUTHORIZATION_ALREADY_ISSUED}),
        (authorization("rx-0", 1), {rc.AUTHORIZATION_ALREADY_ISSUED}),
        (authorization(reversed_at=local(CONFIRM, 10)), set()),
        (authorization("rx-0", 1, reversed_at=local(CONFIRM, 10)), set()),
    ],
    ids=["live-same-rx", "dispensed-same-rx", "live-same-cycle", "reversed", "reversed-cycle"],
)
def test_authorization_already_issued(
    ruleset_id: str, existing: AuthorizationRecord, expected: set[str]
) -> None:
    facts = pcgp(ruleset_id, authorizations=(existing,))
    assert codes(dispense(facts, noon(CONFIRM))) == expected


@RULESETS
def test_prescribing_while_an_authorization_is_open(ruleset_id: str) -> None:
    facts = pcgp(ruleset_id, state=CourseState.AUTHORIZED, authorizations=(authorization(),))
    assert codes(prescribe_gate(facts, noon(CONFIRM))) == {rc.AUTHORIZATION_ALREADY_ISSUED}


@RULESETS
def test_previous_cycle_prescription_cannot_be_dispensed_again(ruleset_id: str) -> None:
    decision = dispense(treating(ruleset_id), noon(MONTHLY_DAY), rx_id="rx-1")
    assert rc.AUTHORIZATION_ALREADY_ISSUED in codes(decision)
    assert not decision.allowed


@RULESETS
@pytest.mark.parametrize(
    ("days", "expected"), [(1, set()), (30, set()), (31, {rc.SUPPLY_EXCEEDS_MAX})]
)
def test_days_supply(ruleset_id: str, days: int, expected: set[str]) -> None:
    facts = pcgp(ruleset_id)
    assert codes(prescribe_gate(facts, noon(CONFIRM), days_supply=days)) == expected
    facts = pcgp(ruleset_id, prescriptions=(prescription(days_supply=days),))
    assert codes(dispense(facts, noon(CONFIRM))) == expected
    assert (
        codes(
            dispense(
                pcngp(
                    ruleset_id, prescriptions=(prescription(written_on=VISIT, days_supply=days),)
                ),
                noon(VISIT),
            )
        )
        == expected
    )


@RULESETS
@pytest.mark.parametrize(
    ("refills", "expected"),
    [(0, set()), (1, {rc.REFILLS_NOT_ALLOWED}), (5, {rc.REFILLS_NOT_ALLOWED})],
)
def test_refills(ruleset_id: str, refills: int, expected: set[str]) -> None:
    facts = pcgp(ruleset_id)
    assert codes(prescribe_gate(facts, noon(CONFIRM), days_supply=30, refills=refills)) == expected
    facts = pcgp(ruleset_id, prescriptions=(prescription(refills=refills),))
    assert codes(dispense(facts, noon(CONFIRM))) == expected


# --- the decision itself -----------------------------------------------------------------------


@RULESETS
def test_every_failing_reason_is_listed(ruleset_id: str) -> None:
    facts = pcgp(
        ruleset_id,
        consents=frozenset(),
        counselling_cycles=frozenset(),
        comprehension_cycles=frozenset(),
        methods=methods(("male_condom",), CONFIRM - 5 * DAY),
        patient_confirmed={},
        tests=(confirmation(setting=Setting.HOME, clia=False, sensitivity=100),),
        prescriptions=(prescription(days_supply=35, refills=1, prescriber_certified=False),),
    )
    decision = dispense(facts, noon(CONFIRM), LA, problems=(rc.PHARMACY_NOT_CERTIFIED,))
    assert codes(decision) == {
        rc.PHARMACY_NOT_CERTIFIED,
        rc.PRESCRIBER_NOT_CERTIFIED,
        rc.CONSENT_NOT_SIGNED,
        rc.COUNSELING_NOT_DOCUMENTED,
        rc.COMPREHENSION_NOT_DONE,
        rc.CONTRACEPTION_INSUFFICIENT,
        rc.NO_PRIMARY_METHOD,
        rc.CONTRACEPTION_NOT_CONFIRMED,
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        rc.NO_NEGATIVE_TEST_IN_WINDOW,
        rc.TEST_SETTING_NOT_PERMITTED,
        rc.TEST_SENSITIVITY_INSUFFICIENT,
        rc.SUPPLY_EXCEEDS_MAX,
        rc.REFILLS_NOT_ALLOWED,
    }
    assert decision.outcome is Outcome.REFUSE
    assert all(r.code in rc.MESSAGES for r in decision.reasons)
    assert json.loads(json.dumps(decision.to_dict()))["outcome"] == "REFUSE"


@RULESETS
def test_decision_records_ruleset_window_and_test(ruleset_id: str) -> None:
    at = local(CONFIRM + 2 * DAY, 9, 30, zone=LA)
    decision = dispense(pcgp(ruleset_id), at, LA)
    assert decision.gate == "dispense"
    assert decision.ruleset_id == ruleset_id
    assert decision.evaluated_at == at
    assert decision.today == CONFIRM + 2 * DAY
    assert decision.cycle == 1
    assert decision.test_id == "t-confirm"
    assert decision.window is not None
    assert (decision.window.first_day, decision.window.last_day) == (CONFIRM, CONFIRM + 6 * DAY)
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["gate"] == "dispense"
    assert data["outcome"] == "ALLOW"
    assert data["ruleset"] == ruleset_id
    assert data["test"] == "t-confirm"
    assert data["reasons"] == []
    assert data["earliest"] is None
    assert data["window"]["first_day"] == "2026-06-10"
    assert data["window"]["last_day"] == "2026-06-16"
    assert data["window"]["zone"] == ET
    assert datetime.fromisoformat(data["window"]["closes_at"]) == local(date(2026, 6, 17), 0)
    assert datetime.fromisoformat(data["evaluated_at"]) == at
    assert prescribe_gate(pcgp(ruleset_id), at).gate == "prescribe"


@RULESETS
def test_refusal_to_dict_is_json_with_dates(ruleset_id: str) -> None:
    decision = readiness(pcgp(ruleset_id, spacing=10), noon(CONFIRM))
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["outcome"] == "REFUSE"
    assert data["ruleset"] == ruleset_id
    assert data["window"] is None
    assert data["test"] is None
    by_code = {r["code"]: r for r in data["reasons"]}
    assert set(by_code) == {rc.PRETREATMENT_TEST_SPACING}
    assert by_code[rc.PRETREATMENT_TEST_SPACING]["earliest"] == "2026-06-19"
    assert by_code[rc.PRETREATMENT_TEST_SPACING]["next_step"]
    assert data["earliest"] == "2026-06-19"
    assert all(r["message"].startswith(rc.MESSAGES[r["code"]]) for r in data["reasons"])


@RULESETS
def test_the_prescribe_gate_judges_only_what_writing_needs(ruleset_id: str) -> None:
    """workflows.md 1.1: the prescription is written at the visit, possibly before the specimen
    or its result; the month's items are needed for the request."""
    bare = replace(
        pcgp(ruleset_id),
        state=CourseState.PRE_TREATMENT,
        tests=(),
        methods=(),
        counselling_cycles=frozenset(),
        comprehension_cycles=frozenset(),
        patient_confirmed={},
        prescriptions=(),
    )
    assert codes(prescribe_gate(bare, noon(CONFIRM), days_supply=30)) == set()
    month = codes(readiness(bare, noon(CONFIRM)))
    assert {
        rc.COUNSELING_NOT_DOCUMENTED,
        rc.COMPREHENSION_NOT_DONE,
        rc.CONTRACEPTION_NOT_DOCUMENTED,
        rc.PRETREATMENT_TESTS_INCOMPLETE,
    } <= month
    assert codes(prescribe_gate(replace(bare, consents=frozenset()), noon(CONFIRM))) == {
        rc.CONSENT_NOT_SIGNED
    }


@RULESETS
def test_last_months_methods_entry_and_confirmation_do_not_count(ruleset_id: str) -> None:
    at = noon(MONTHLY_DAY)
    stale_entry = treating(ruleset_id, methods_cycle=1)
    assert codes(dispense(stale_entry, at, rx_id="rx-2")) == {rc.CONTRACEPTION_NOT_DOCUMENTED}
    unconfirmed = treating(ruleset_id, confirmed_tests=frozenset({"t-confirm"}))
    assert codes(dispense(unconfirmed, at, rx_id="rx-2")) == {rc.PRESCRIBER_CONFIRMATION_MISSING}


@RULESETS
def test_the_stated_supply_is_judged_at_the_request(ruleset_id: str) -> None:
    facts, at = pcgp(ruleset_id), noon(CONFIRM)

    def stated(days: int) -> set[str]:
        return codes(dispense_gate(facts, at, DispenseRequest("rx-1", ET, days_supply=days)))

    assert stated(30) == set()
    assert stated(31) == {rc.SUPPLY_EXCEEDS_MAX, rc.SUPPLY_EXCEEDS_PRESCRIPTION}
    short = replace(facts, prescriptions=(prescription(days_supply=20),))
    assert codes(dispense_gate(short, at, DispenseRequest("rx-1", ET, days_supply=28))) == {
        rc.SUPPLY_EXCEEDS_PRESCRIPTION
    }
