"""Each programme's own mechanics, and which codes go together, as pure gates (issue 11, items
3, 5, 6 and 9). Written from shared/domain/workflows.md (sections 2, 3 and 4) and the section
"Which codes go together" of reason-codes.md; facts built by hand, aware UTC instants.

* iPLEDGE: no comprehension questions for a patient who cannot get pregnant (males included).
* EU/UK: no monthly method confirmation by the patient, counselling at initiation only, no
  lead-in for the UK "no expected risk of pregnancy" agreement, two user-dependent methods only
  with a barrier method, and none of the PPP limits (tests, 7-day validity, 30-day cap) for a
  patient not of childbearing potential.
* A test the rules do not accept is reported with its own code when it is the latest one, the
  one the patient relies on, even when an older acceptable test is on file.
* Blocking states (no open course, suspended, already issued) decide alone, with their cause,
  the participants' certification and, in the EU/UK, the prescription's validity.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.facts import (
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
    dispense_gate,
    prescribe_gate,
    readiness,
)
from compliance.domain.pregnancy_tests import (
    end_of_treatment_test_done,
    post_treatment_due,
    post_treatment_test_done,
    suspending_test,
)
from compliance.programs.loader import RulesetError, get, parse
from compliance.programs.model import Setting
from compliance.programs.model import TestKind as Kind

LEGACY, MOD, EU, UK = "ipledge/2023-03", "ipledge/2026-mod", "eu-iso/2018", "uk-iso/2026-01"
IPLEDGE = pytest.mark.parametrize("ruleset_id", [LEGACY, MOD])
EU_UK = pytest.mark.parametrize("ruleset_id", [EU, UK])
DAY = timedelta(days=1)
ET, LONDON = "America/New_York", "Europe/London"
D = date(2026, 6, 10)  # Day 1: the qualifying specimen and the first prescription
FORMS = {
    LEGACY: frozenset({"PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"}),
    MOD: frozenset({"PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"}),
    EU: frozenset({"ACKNOWLEDGEMENT_FORM"}),
    UK: frozenset({"ACKNOWLEDGEMENT_OF_RISK"}),
}
CAN_REASON = {
    LEGACY: "REPRODUCTIVE_POTENTIAL",
    MOD: "REPRODUCTIVE_POTENTIAL",
    EU: "CHILDBEARING_POTENTIAL",
    UK: "CHILDBEARING_POTENTIAL",
}


def at(day: date, hh: int = 12, zone: str = ET) -> datetime:
    return datetime.combine(day, time(hh), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def hcg(test_id: str, kind: Kind, day: date, cycle: int = 1, seq: int = 0, **kw: Any) -> Specimen:
    values: dict[str, Any] = {
        "setting": Setting.LAB,
        "clia": True,
        "sensitivity_miu_ml": 25.0,
        "result": Result.NEGATIVE,
    }
    values.update(kw)
    return Specimen(id=test_id, kind=kind, specimen_date=day, cycle=cycle, seq=seq, **values)


def rx(rx_id: str = "rx-1", cycle: int = 1, written_on: date = D, supply: int = 30) -> Any:
    return PrescriptionRecord(rx_id, cycle, written_on, written_on, supply, 0)


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


def can(ruleset_id: str, names: tuple[str, ...] = ("iud", "male_condom"), **kw: Any) -> CourseFacts:
    """First cycle of a patient who can get pregnant: everything documented, rx-1 written on D
    after a negative test that day (iPLEDGE: and a screening test 20 days before)."""
    ipledge = ruleset_id.startswith("ipledge")
    tests = (
        (hcg("t-s", Kind.SCREENING, D - 20 * DAY, setting=Setting.CLINIC, clia=False),)
        if ipledge
        else ()
    ) + (hcg("t-c", Kind.CONFIRMATION, D),)
    facts = CourseFacts(
        ruleset=get(ruleset_id),
        state=CourseState.QUALIFIED,
        cycle=1,
        enrolled_on=D - 60 * DAY,
        category="can_get_pregnant",
        category_reason=CAN_REASON[ruleset_id],
        consents=FORMS[ruleset_id],
        counselling_cycles=frozenset({1}),
        comprehension_cycles=frozenset({1}),
        methods=tuple(MethodRecord(n, D - 45 * DAY) for n in names),
        patient_confirmed={1: frozenset(names)},
        tests=tests,
        prescriptions=(rx(),),
    )
    return documented(facts, kw)


def second_cycle(ruleset_id: str, monthly: Specimen | None = None, **kw: Any) -> CourseFacts:
    """Cycle 2: rx-1 dispensed on D; rx-2 written on D + 28 after that day's monthly test."""
    first = can(ruleset_id)
    later = D + 28 * DAY
    month = monthly or hcg("t-m2", Kind.MONTHLY, later, cycle=2, seq=10)
    facts = replace(
        first,
        cycle=2,
        counselling_cycles=frozenset({1, 2}),
        comprehension_cycles=frozenset({1, 2}),
        patient_confirmed={1: first.patient_confirmed[1], 2: first.patient_confirmed[1]},
        tests=(*first.tests, month),
        prescriptions=(*first.prescriptions, rx("rx-2", 2, later)),
        authorizations=(
            AuthorizationRecord("1", "rx-1", 1, at(D), None, "t-c", 30, dispensed_at=at(D, 15)),
        ),
        first_dispensed_on=D,
    )
    return documented(facts, kw)


def cannot(ruleset_id: str, reason: str = "NO_UTERUS", **kw: Any) -> CourseFacts:
    facts = CourseFacts(
        ruleset=get(ruleset_id),
        state=CourseState.QUALIFIED,
        cycle=1,
        enrolled_on=D,
        category="cannot_get_pregnant",
        category_reason=reason,
        consents=frozenset(get(ruleset_id).categories["cannot_get_pregnant"].consent_forms),
        counselling_cycles=frozenset({1}),
        prescriptions=(rx(),),
    )
    return replace(facts, **kw)


def dispense(
    facts: CourseFacts, now: datetime, rx_id: str = "rx-1", zone: str = ET, problems: Any = ()
) -> Decision:
    return dispense_gate(facts, now, DispenseRequest(rx_id, zone, tuple(problems)))


def codes(decision: Decision) -> set[str]:
    assert len(set(decision.codes)) == len(decision.codes)
    return set(decision.codes)


# --- item 3: comprehension questions are for patients who can get pregnant only ---------------


@IPLEDGE
@pytest.mark.parametrize("reason", ["NO_UTERUS", "HYSTERECTOMY", "POSTMENOPAUSAL_CONFIRMED"])
def test_no_comprehension_questions_for_patients_who_cannot_get_pregnant(
    ruleset_id: str, reason: str
) -> None:
    # NO_UTERUS covers male patients, who are patients who cannot get pregnant since Dec 2021
    facts = cannot(ruleset_id, reason)
    assert facts.comprehension_cycles == frozenset()
    assert codes(prescribe_gate(facts, at(D), 30)) == set()
    assert codes(dispense(facts, at(D))) == set()
    assert get(ruleset_id).categories["cannot_get_pregnant"].comprehension.value == "none"


@IPLEDGE
def test_comprehension_still_monthly_for_patients_who_can_get_pregnant(ruleset_id: str) -> None:
    facts = second_cycle(ruleset_id, comprehension_cycles=frozenset({1}))
    assert codes(dispense(facts, at(D + 28 * DAY), "rx-2")) == {rc.COMPREHENSION_NOT_DONE}


# --- item 5: EU and UK mechanics -----------------------------------------------------------------


@EU_UK
def test_eu_uk_no_patient_confirmation_and_counselling_at_initiation(ruleset_id: str) -> None:
    facts = second_cycle(
        ruleset_id,
        patient_confirmed={},
        counselling_cycles=frozenset({1}),
        comprehension_cycles=frozenset(),
    )
    later = D + 28 * DAY
    assert codes(prescribe_gate(facts, at(later, zone=LONDON), 30)) == set()
    assert codes(dispense(facts, at(later, 15, LONDON), "rx-2", LONDON)) == set()
    # counselling is still needed once, at initiation
    never = replace(facts, counselling_cycles=frozenset())
    assert codes(dispense(never, at(later, 15, LONDON), "rx-2", LONDON)) == {
        rc.COUNSELING_NOT_DOCUMENTED
    }


@IPLEDGE
def test_ipledge_keeps_the_monthly_patient_confirmation(ruleset_id: str) -> None:
    facts = second_cycle(ruleset_id, patient_confirmed={1: frozenset({"iud", "male_condom"})})
    assert codes(dispense(facts, at(D + 28 * DAY), "rx-2")) == {rc.CONTRACEPTION_NOT_CONFIRMED}


@pytest.mark.parametrize("agreed_days_before", [0, 1, 29])
def test_uk_agreement_has_no_lead_in(agreed_days_before: int) -> None:
    agreement = (MethodRecord("no_expected_risk_agreement", D - agreed_days_before * DAY),)
    facts = can(UK, methods=agreement, patient_confirmed={})
    assert codes(prescribe_gate(facts, at(D, zone=LONDON))) == set()
    assert codes(dispense(facts, at(D, 15, LONDON), zone=LONDON)) == set()
    # methods still need their month (30 days before the test; 29 is too few)
    pill = (
        MethodRecord("combined_oral_contraceptive", D - 29 * DAY),
        MethodRecord("male_condom", D - 29 * DAY),
    )
    short = can(UK, methods=pill)
    assert codes(prescribe_gate(short, at(D, zone=LONDON))) == {rc.CONTRACEPTION_LEAD_IN_NOT_MET}


@EU_UK
@pytest.mark.parametrize(
    ("names", "allowed"),
    [
        (("combined_oral_contraceptive", "progestin_only_pill"), False),
        (("hormonal_patch", "vaginal_ring"), False),
        (("combined_oral_contraceptive", "male_condom"), True),
        (("progestin_only_pill", "cervical_cap_with_spermicide"), True),
        (("hormonal_implant",), True),
    ],
)
def test_two_user_dependent_methods_need_a_barrier_method(
    ruleset_id: str, names: tuple[str, ...], allowed: bool
) -> None:
    decision = prescribe_gate(can(ruleset_id, names), at(D, zone=LONDON))
    assert decision.allowed is allowed, decision.reasons
    if not allowed:
        assert decision.reasons[0].next_step is not None
        assert "barrier" in decision.reasons[0].next_step


@EU_UK
@pytest.mark.parametrize("reason", ["NO_UTERUS", "HYSTERECTOMY", "POSTMENOPAUSAL_CONFIRMED"])
def test_not_of_childbearing_potential_none_of_the_ppp_limits(ruleset_id: str, reason: str) -> None:
    # no tests, no 7-day validity, no 30-day cap (workflows.md 4.6); NO_UTERUS includes males
    facts = cannot(ruleset_id, reason, prescriptions=(rx(supply=90),))
    assert codes(prescribe_gate(facts, at(D, zone=LONDON), 90)) == set()
    decision = dispense(facts, at(D + 20 * DAY, 15, LONDON), zone=LONDON)
    assert codes(decision) == set()
    assert decision.window is None


@EU_UK
def test_childbearing_potential_keeps_the_thirty_day_cap(ruleset_id: str) -> None:
    assert codes(prescribe_gate(can(ruleset_id), at(D, zone=LONDON), 31)) == {rc.SUPPLY_EXCEEDS_MAX}


@IPLEDGE
def test_ipledge_caps_every_category(ruleset_id: str) -> None:
    assert codes(prescribe_gate(cannot(ruleset_id), at(D), 31)) == {rc.SUPPLY_EXCEEDS_MAX}


# --- item 6: the test relied on is the latest one; a refused one is never hidden --------------


def test_a_later_home_test_is_reported_though_an_older_lab_test_counts() -> None:
    later = D + 28 * DAY
    lab = hcg("t-lab", Kind.MONTHLY, later - 2 * DAY, cycle=2, seq=10)
    home = hcg("t-home", Kind.MONTHLY, later, cycle=2, seq=11, setting=Setting.HOME, clia=False)
    facts = second_cycle(LEGACY, monthly=lab)
    assert codes(dispense(facts, at(later), "rx-2")) == set()
    facts = replace(facts, tests=(*facts.tests, home))
    decision = dispense(facts, at(later), "rx-2")
    assert rc.TEST_SETTING_NOT_PERMITTED in codes(decision)
    assert not decision.allowed
    assert later.isoformat() in next(
        r.message for r in decision.reasons if r.code == rc.TEST_SETTING_NOT_PERMITTED
    )


def test_a_later_home_test_counts_where_the_prescriber_opted_in() -> None:
    later = D + 28 * DAY
    lab = hcg("t-lab", Kind.MONTHLY, later - 2 * DAY, cycle=2, seq=10)
    home = hcg("t-home", Kind.MONTHLY, later, cycle=2, seq=11, setting=Setting.HOME, clia=False)
    facts = second_cycle(MOD, monthly=lab)
    refused = dispense(replace(facts, tests=(*facts.tests, home)), at(later), "rx-2")
    assert rc.TEST_SETTING_NOT_PERMITTED in codes(refused)
    opted = replace(home, home_opt_in=True)
    confirmed = facts.confirmed_tests | {"t-home"}
    with_home = replace(facts, tests=(*facts.tests, opted), confirmed_tests=confirmed)
    allowed = dispense(with_home, at(later), "rx-2")
    assert codes(allowed) == set()
    assert allowed.test_id == "t-home"


@IPLEDGE
def test_a_later_insensitive_test_is_reported(ruleset_id: str) -> None:
    later = D + 28 * DAY
    weak = hcg("t-weak", Kind.MONTHLY, later, cycle=2, seq=11, sensitivity_miu_ml=50.0)
    facts = second_cycle(ruleset_id, monthly=hcg("t-ok", Kind.MONTHLY, later - DAY, cycle=2))
    decision = dispense(replace(facts, tests=(*facts.tests, weak)), at(later), "rx-2")
    assert rc.TEST_SENSITIVITY_INSUFFICIENT in codes(decision)


@IPLEDGE
def test_an_older_refused_test_does_not_matter_once_a_later_one_counts(ruleset_id: str) -> None:
    later = D + 28 * DAY
    home = hcg("t-home", Kind.MONTHLY, later - DAY, cycle=2, setting=Setting.HOME, clia=False)
    facts = second_cycle(ruleset_id)
    facts = replace(facts, tests=(*facts.tests[:-1], home, facts.tests[-1]))
    assert codes(dispense(facts, at(later), "rx-2")) == set()


def test_a_later_non_clia_confirmation_is_reported_under_2023_03() -> None:
    facts = can(LEGACY)
    clinic = hcg("t-c2", Kind.CONFIRMATION, D + DAY, setting=Setting.CLINIC, clia=False)
    facts = replace(
        facts,
        tests=(*facts.tests, clinic),
        prescriptions=(rx(written_on=D + DAY),),
        confirmed_tests=facts.confirmed_tests | {"t-c2"},
    )
    # iPLEDGE judges the test at the request (readiness: what the request will judge)
    decision = readiness(facts, at(D + DAY))
    assert rc.TEST_SETTING_NOT_PERMITTED in codes(decision)
    assert rc.TEST_SETTING_NOT_PERMITTED in codes(dispense(facts, at(D + DAY)))
    # the same test is acceptable under 2026-mod (a medical setting, no CLIA needed)
    mod = replace(facts, ruleset=get(MOD))
    assert codes(readiness(mod, at(D + DAY))) == set()


@EU_UK
def test_eu_uk_a_later_insensitive_test_is_reported(ruleset_id: str) -> None:
    weak = hcg("t-weak", Kind.CONFIRMATION, D, seq=5, sensitivity_miu_ml=50.0)
    facts = can(ruleset_id, tests=(hcg("t-ok", Kind.CONFIRMATION, D - DAY, seq=4), weak))
    assert rc.TEST_SENSITIVITY_INSUFFICIENT in codes(prescribe_gate(facts, at(D, zone=LONDON)))


# --- item 9: blocking states decide alone ---------------------------------------------------


def _untidy(facts: CourseFacts) -> CourseFacts:
    """The month's other items missing too: they must not be listed beside a blocking state."""
    return replace(facts, consents=frozenset(), counselling_cycles=frozenset(), methods=())


@IPLEDGE
def test_suspended_by_a_positive_test_names_it_even_after_a_later_negative(
    ruleset_id: str,
) -> None:
    positive = hcg("t-pos", Kind.CONFIRMATION, D + DAY, seq=5, result=Result.POSITIVE)
    negative = hcg("t-neg", Kind.CONFIRMATION, D + 2 * DAY, seq=6)
    facts = _untidy(
        can(ruleset_id, state=CourseState.SUSPENDED, tests=(*can(ruleset_id).tests, positive))
    )
    expected = {rc.COURSE_SUSPENDED, rc.PREGNANCY_TEST_POSITIVE}
    assert codes(prescribe_gate(facts, at(D + 2 * DAY), 90, 3)) == expected
    assert codes(dispense(facts, at(D + 2 * DAY))) == expected
    later = replace(facts, tests=(*facts.tests, negative))
    assert codes(dispense(later, at(D + 3 * DAY))) == expected
    assert suspending_test(later) == positive


@IPLEDGE
def test_suspended_by_a_reported_pregnancy_names_no_test(ruleset_id: str) -> None:
    facts = _untidy(can(ruleset_id, state=CourseState.SUSPENDED, pregnancy_reported_on=D))
    assert codes(dispense(facts, at(D))) == {rc.COURSE_SUSPENDED}
    # a positive test from before the prescriber resumed the course is no longer the cause
    positive = hcg("t-pos", Kind.CONFIRMATION, D - DAY, seq=5, result=Result.POSITIVE)
    resumed = replace(facts, tests=(*facts.tests, positive), resumed_seq=7)
    assert codes(dispense(resumed, at(D))) == {rc.COURSE_SUSPENDED}
    assert suspending_test(resumed) is None


@IPLEDGE
def test_blocking_states_keep_the_certification_codes(ruleset_id: str) -> None:
    uncertified = PrescriptionRecord("rx-1", 1, D, D, 30, 0, prescriber_certified=False)
    problems = (rc.PHARMACY_NOT_CERTIFIED,)
    suspended = _untidy(can(ruleset_id, state=CourseState.SUSPENDED, prescriptions=(uncertified,)))
    assert codes(dispense(suspended, at(D), problems=problems)) == {
        rc.COURSE_SUSPENDED,
        rc.PRESCRIBER_NOT_CERTIFIED,
        rc.PHARMACY_NOT_CERTIFIED,
    }
    closed = replace(suspended, state=CourseState.COMPLETED)
    assert codes(dispense(closed, at(D), problems=problems)) == {
        rc.NO_ACTIVE_COURSE,
        rc.PRESCRIBER_NOT_CERTIFIED,
        rc.PHARMACY_NOT_CERTIFIED,
    }
    issued = AuthorizationRecord("1", "rx-1", 1, at(D, 9), None, "t-c", 30)
    authorized = _untidy(
        can(
            ruleset_id,
            state=CourseState.AUTHORIZED,
            prescriptions=(uncertified,),
            authorizations=(issued,),
        )
    )
    assert codes(dispense(authorized, at(D), problems=problems)) == {
        rc.AUTHORIZATION_ALREADY_ISSUED,
        rc.PRESCRIBER_NOT_CERTIFIED,
        rc.PHARMACY_NOT_CERTIFIED,
    }
    assert codes(prescribe_gate(authorized, at(D), 90)) == {rc.AUTHORIZATION_ALREADY_ISSUED}


@EU_UK
def test_eu_uk_blocking_states_keep_the_prescription_validity(ruleset_id: str) -> None:
    late = at(D + 7 * DAY, 12, LONDON)
    suspended = _untidy(can(ruleset_id, state=CourseState.SUSPENDED))
    assert codes(dispense(suspended, late, zone=LONDON)) == {rc.COURSE_SUSPENDED, rc.RX_EXPIRED}
    assert codes(dispense(suspended, at(D, 12, LONDON), zone=LONDON)) == {rc.COURSE_SUSPENDED}
    issued = AuthorizationRecord("1", "rx-1", 1, at(D, 9, LONDON), None, "t-c", 30)
    authorized = _untidy(can(ruleset_id, state=CourseState.AUTHORIZED, authorizations=(issued,)))
    assert codes(dispense(authorized, late, zone=LONDON)) == {
        rc.AUTHORIZATION_ALREADY_ISSUED,
        rc.RX_EXPIRED,
    }


def test_blocking_state_of_a_legacy_cannot_patient_omits_the_office_visit_window() -> None:
    # RX_EXPIRED accompanies a blocking state in the EU/UK only; the iPLEDGE 30-day window of
    # a patient who cannot get pregnant is one of the month's other items.
    facts = replace(cannot(LEGACY), state=CourseState.SUSPENDED)
    assert codes(dispense(facts, at(D + 40 * DAY))) == {rc.COURSE_SUSPENDED}


# --- item 7 (pure part): the end of treatment ---------------------------------------------------


@IPLEDGE
def test_end_of_treatment_tests_count_whatever_order_they_came_in(ruleset_id: str) -> None:
    last = D + 60 * DAY
    eot = hcg("t-eot", Kind.END_OF_TREATMENT, last - 2 * DAY, cycle=3, setting=Setting.CLINIC)
    facts = replace(
        second_cycle(ruleset_id),
        cycle=3,
        state=CourseState.TREATMENT_ENDED,
        last_dose_on=last,
    )
    assert not end_of_treatment_test_done(facts)
    assert end_of_treatment_test_done(replace(facts, tests=(*facts.tests, eot)))
    # an end-of-treatment test from an earlier cycle is not the last visit's
    old = replace(eot, cycle=2)
    assert not end_of_treatment_test_done(replace(facts, tests=(*facts.tests, old)))
    assert post_treatment_due(facts) == last + 30 * DAY
    early = hcg("t-p1", Kind.POST_TREATMENT, last + 29 * DAY, cycle=3, setting=Setting.CLINIC)
    on_time = replace(early, id="t-p2", specimen_date=last + 30 * DAY)
    assert not post_treatment_test_done(replace(facts, tests=(*facts.tests, early)))
    assert post_treatment_test_done(replace(facts, tests=(*facts.tests, on_time)))
    positive = replace(on_time, result=Result.POSITIVE)
    assert not post_treatment_test_done(replace(facts, tests=(*facts.tests, positive)))


# --- the new ruleset keys are validated, naming the file and the dotted key --------------------


def _packaged(name: str) -> str:
    folder = resources.files("compliance.programs") / "rulesets"
    return (folder / name).read_text(encoding="utf-8")


UK_TEXT = _packaged("uk-iso-2026-01.toml")


def _swap(old: str, new: str, text: str = UK_TEXT) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        (
            'patient_confirmation = "none"',
            'patient_confirmation = "enrolment"',
            "contraception.patient_confirmation",
            "must be monthly or none",
        ),
        (
            'patient_confirmation = "none"\n',
            "",
            "contraception.patient_confirmation",
            "is missing",
        ),
        (
            'waivers_without_lead_in = ["no_expected_risk_agreement"]',
            'waivers_without_lead_in = ["abstinence"]',
            "contraception.waivers_without_lead_in",
            "'abstinence' is not a waiver",
        ),
        (
            'barrier_methods = ["male_condom",',
            'barrier_methods = ["amulet",',
            "contraception.barrier_methods",
            "'amulet' is not an acceptable method",
        ),
        (
            "{ methods = 2, primary = 0, barrier = 1 }",
            "{ methods = 2, primary = 0, barrier = 3 }",
            "contraception.options[1].barrier",
            "cannot exceed methods",
        ),
        (
            'max_days_supply = "none"',
            'max_days_supply = "unlimited"',
            "categories.cannot_get_pregnant.max_days_supply",
            'must be a whole number of days or "none"',
        ),
        (
            'max_days_supply = "none"',
            "max_days_supply = 0",
            "categories.cannot_get_pregnant.max_days_supply",
            "must be between 1 and 366",
        ),
        (
            'status_judged_at = "writing"',
            'status_judged_at = "pickup"',
            "prescription.status_judged_at",
            "must be one of request, writing",
        ),
        (
            # EU/UK tests are dated from the prescription: they cannot wait for the request.
            'status_judged_at = "writing"',
            'status_judged_at = "request"',
            "prescription.status_judged_at",
            "cannot be 'request'",
        ),
        (
            'prescriber_entry = "initiation"',
            'prescriber_entry = "weekly"',
            "contraception.prescriber_entry",
            "must be one of monthly, initiation",
        ),
        (
            "prescriber_confirms_result = false",
            "prescriber_confirms_result = 1",
            "pregnancy_tests.prescriber_confirms_result",
            "must be true or false",
        ),
    ],
)
def test_new_keys_are_validated(old: str, new: str, key: str, problem: str) -> None:
    with pytest.raises(RulesetError) as caught:
        parse("mutant.toml", _swap(old, new))
    assert caught.value.key == key
    assert str(caught.value).startswith(f"mutant.toml: {key}: {problem}")


def test_a_barrier_option_needs_the_barrier_catalogue() -> None:
    text = _swap(
        'barrier_methods = ["male_condom", "diaphragm_with_spermicide", '
        '"cervical_cap_with_spermicide"]\n',
        "",
    )
    with pytest.raises(RulesetError) as caught:
        parse("mutant.toml", text)
    assert caught.value.key == "contraception.options[1].barrier"


def test_a_category_supply_limit_overrides_the_programme_limit() -> None:
    ruleset = parse("mutant.toml", _swap('max_days_supply = "none"', "max_days_supply = 90"))
    category = ruleset.categories["cannot_get_pregnant"]
    assert ruleset.max_days_supply(category) == 90
    assert ruleset.max_days_supply(ruleset.categories["can_get_pregnant"]) == 30
    assert get(UK).max_days_supply(get(UK).categories["cannot_get_pregnant"]) is None
    assert get(MOD).max_days_supply(get(MOD).categories["cannot_get_pregnant"]) == 30


def test_no_valid_category_is_judged_as_can_get_pregnant_by_the_ruleset() -> None:
    ruleset = get(MOD)
    can_get = ruleset.categories["can_get_pregnant"]
    assert ruleset.judged_category(None, None) is can_get
    assert ruleset.judged_category("cannot_get_pregnant", "TUBAL_LIGATION") is can_get
    assert ruleset.judged_category("sometimes", "NO_UTERUS") is can_get
    cannot_get = ruleset.categories["cannot_get_pregnant"]
    assert ruleset.judged_category("cannot_get_pregnant", "NO_UTERUS") is cannot_get
