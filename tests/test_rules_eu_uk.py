"""The EU and UK isotretinoin rulesets as pure gates: facts built by hand, aware UTC instants.

Conventions under test (rules.md 2 and 3, 17 C6/C8/C9; reason-codes.md time conventions):

* The prescription is valid 7 days: Day 1 is the date written on it, the last valid day
  Day 1 + 6, judged in the dispensing pharmacy's own zone.
* The qualifying negative test is dated at most 3 days before the prescription's date (UK; the
  EU ruleset reads "shortly before" the same way) and never after it.
* One highly effective method, or two complementary ones; in the UK a documented "no expected
  risk of pregnancy" agreement stands in for them.
* No central authorization service: the ruleset says so and the gate is the same.
"""

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
from compliance.domain.gates import DispenseRequest, dispense_gate, prescribe_gate
from compliance.programs.loader import get
from compliance.programs.model import Setting
from compliance.programs.model import TestKind as Kind

EU = "eu-iso/2018"
UK = "uk-iso/2026-01"
BOTH = pytest.mark.parametrize("ruleset_id", [EU, UK])
LONDON = "Europe/London"
ATHENS = "Europe/Athens"
LISBON = "Europe/Lisbon"
DAY = timedelta(days=1)
WRITTEN = date(2026, 3, 10)
FORMS = {EU: frozenset({"ACKNOWLEDGEMENT_FORM"}), UK: frozenset({"ACKNOWLEDGEMENT_OF_RISK"})}


def local(day: date, hh: int, mm: int = 0, zone: str = LONDON) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def specimen(day: date, kind: Kind = Kind.CONFIRMATION, cycle: int = 1, **kw: Any) -> Specimen:
    values: dict[str, Any] = {
        "setting": Setting.CLINIC,
        "clia": False,
        "sensitivity_miu_ml": 25.0,
        "result": Result.NEGATIVE,
    }
    values.update(kw)
    return Specimen(id=f"t-{kind.value}-{day}", kind=kind, specimen_date=day, cycle=cycle, **values)


def rx(written_on: date = WRITTEN, rx_id: str = "rx-1", cycle: int = 1, supply: int = 30) -> Any:
    return PrescriptionRecord(rx_id, cycle, written_on, written_on, supply, 0)


def wcbp(
    ruleset_id: str,
    *,
    test_on: date | None = WRITTEN,
    names: tuple[str, ...] = ("iud",),
    lead_in: int = 45,
    written_on: date = WRITTEN,
    **changes: Any,
) -> CourseFacts:
    """A woman of childbearing potential whose first prescription rx-1 was written on
    ``written_on`` after a negative clinic test on ``test_on``; everything else documented."""
    facts = CourseFacts(
        ruleset=get(ruleset_id),
        state=CourseState.QUALIFIED,
        cycle=1,
        enrolled_on=WRITTEN - 60 * DAY,
        category="can_get_pregnant",
        category_reason="CHILDBEARING_POTENTIAL",
        consents=FORMS[ruleset_id],
        counselling_cycles=frozenset({1}),
        methods=tuple(MethodRecord(n, (test_on or WRITTEN) - lead_in * DAY) for n in names),
        patient_confirmed={1: frozenset(names)},
        tests=(specimen(test_on),) if test_on else (),
        prescriptions=(rx(written_on),),
    )
    return replace(facts, **changes)


def dispense(facts: CourseFacts, now: datetime, zone: str = LONDON, rx_id: str = "rx-1") -> Any:
    return dispense_gate(facts, now, DispenseRequest(rx_id, zone))


# --- rulesets as data ---------------------------------------------------------------------------


@BOTH
def test_rulesets_hold_the_programme_parameters(ruleset_id: str) -> None:
    r = get(ruleset_id)
    assert r.authorization.central is False
    assert r.dispense_zone == "pharmacy"
    assert r.prescription.max_days_supply == 30
    assert not r.prescription.refills_allowed
    assert r.testing.max_days_before_prescription == 3
    assert r.testing.pretreatment_count == 1
    assert r.testing.min_sensitivity_miu_ml == 25
    assert r.testing.post_treatment_days_after_last_dose == 30
    assert r.contraception.lead_in_days == r.contraception.post_treatment_days == 30
    window = r.categories["can_get_pregnant"].window
    assert window is not None
    assert (window.days, window.anchor.value) == (7, "prescription_date")
    assert [(o.methods, o.primary) for o in r.contraception.options] == [(1, 1), (2, 0)]
    assert "abstinence" not in r.contraception.waivers


def test_only_the_uk_has_the_no_expected_risk_agreement_and_sterilisation_exemption() -> None:
    assert get(UK).contraception.waivers == ("no_expected_risk_agreement",)
    assert get(EU).contraception.waivers == ()
    assert "STERILISATION_CONFIRMED" in get(UK).categories["cannot_get_pregnant"].reasons
    assert "STERILISATION_CONFIRMED" not in get(EU).reason_catalogue


# --- prescription validity: 7 days from the date written, the pharmacy's zone -----------------


@BOTH
@pytest.mark.parametrize(
    ("offset", "allowed"),
    [(0, True), (6, True), (7, False), (30, False)],
    ids=["day-1", "day-7", "day-8", "a-month-later"],
)
def test_prescription_valid_for_seven_days_from_its_date(
    ruleset_id: str, offset: int, allowed: bool
) -> None:
    d = dispense(wcbp(ruleset_id), local(WRITTEN + offset * DAY, 12))
    assert d.allowed is allowed, d.reasons
    if not allowed:
        assert d.codes == (rc.RX_EXPIRED,)
    assert d.window is not None
    assert d.window.last_day == WRITTEN + 6 * DAY
    assert d.window.zone == LONDON


@BOTH
def test_last_valid_day_ends_at_midnight_in_the_pharmacys_own_zone(ruleset_id: str) -> None:
    facts = wcbp(ruleset_id)
    last = WRITTEN + 6 * DAY
    # 23:30 on Day 7 in Lisbon is allowed; the same instant is already Day 8 in Athens.
    late = local(last, 23, 30, LISBON)
    assert dispense(facts, late, LISBON).allowed
    refused = dispense(facts, late, ATHENS)
    assert refused.codes == (rc.RX_EXPIRED,)
    assert refused.window is not None
    assert refused.window.closes_at == local(last + DAY, 0, 0, ATHENS)
    assert dispense(facts, local(last, 23, 59, ATHENS), ATHENS).allowed


# --- the test's age at the prescription -----------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("days_before", "allowed"), [(0, True), (3, True), (4, False), (10, False)]
)
def test_test_at_most_three_days_before_the_prescription(
    ruleset_id: str, days_before: int, allowed: bool
) -> None:
    facts = wcbp(ruleset_id, test_on=WRITTEN - days_before * DAY)
    prescribing = prescribe_gate(facts, local(WRITTEN, 10), on=WRITTEN)
    dispensing = dispense(facts, local(WRITTEN + 2 * DAY, 10))
    for decision in (prescribing, dispensing):
        assert decision.allowed is allowed, decision.reasons
        if not allowed:
            assert decision.codes == (rc.TEST_TOO_OLD_FOR_RX,)
            assert f"{days_before} days before" in decision.reasons[0].message


@BOTH
def test_the_age_is_measured_to_the_prescription_date_not_to_the_dispense(ruleset_id: str) -> None:
    facts = wcbp(ruleset_id, test_on=WRITTEN - 3 * DAY)
    # Six days after the prescription the test is 9 days old, but it was 3 at the prescription.
    assert dispense(facts, local(WRITTEN + 6 * DAY, 9)).allowed


@BOTH
def test_a_test_collected_after_the_prescription_cannot_support_it(ruleset_id: str) -> None:
    facts = wcbp(ruleset_id, test_on=WRITTEN + DAY)
    d = dispense(facts, local(WRITTEN + 2 * DAY, 9))
    assert rc.NO_NEGATIVE_TEST_IN_WINDOW in d.codes


@BOTH
def test_a_positive_test_after_the_prescription_stops_the_dispense(ruleset_id: str) -> None:
    facts = wcbp(ruleset_id)
    positive = specimen(WRITTEN + DAY, Kind.MONTHLY, result=Result.POSITIVE)
    d = dispense(replace(facts, tests=(*facts.tests, positive)), local(WRITTEN + 2 * DAY, 9))
    assert rc.PREGNANCY_TEST_POSITIVE in d.codes


@BOTH
def test_prescribe_gate_defaults_to_today_in_the_clinics_zone(ruleset_id: str) -> None:
    facts = wcbp(ruleset_id, test_on=WRITTEN)
    assert prescribe_gate(facts, local(WRITTEN + 3 * DAY, 10)).allowed
    late = prescribe_gate(facts, local(WRITTEN + 4 * DAY, 10))
    assert late.codes == (rc.TEST_TOO_OLD_FOR_RX,)


@BOTH
def test_insensitive_or_home_pretreatment_test_does_not_count(ruleset_id: str) -> None:
    weak = wcbp(ruleset_id, tests=(specimen(WRITTEN, sensitivity_miu_ml=50.0),))
    assert rc.TEST_SENSITIVITY_INSUFFICIENT in prescribe_gate(weak, local(WRITTEN, 10)).codes
    home = wcbp(ruleset_id, tests=(specimen(WRITTEN, setting=Setting.HOME, home_opt_in=True),))
    assert rc.TEST_SETTING_NOT_PERMITTED in prescribe_gate(home, local(WRITTEN, 10)).codes


def test_uk_allows_remote_follow_up_tests_where_the_prescriber_opted_in() -> None:
    later = WRITTEN + 28 * DAY
    base = wcbp(UK)
    facts = replace(
        base,
        state=CourseState.QUALIFIED,
        cycle=2,
        first_dispensed_on=WRITTEN,
        counselling_cycles=frozenset({1, 2}),
        patient_confirmed={1: frozenset({"iud"}), 2: frozenset({"iud"})},
        prescriptions=(*base.prescriptions, rx(later, "rx-2", 2)),
    )
    home = specimen(later, Kind.MONTHLY, cycle=2, setting=Setting.HOME, home_opt_in=True)
    assert dispense(
        replace(facts, tests=(*facts.tests, home)), local(later, 15), rx_id="rx-2"
    ).allowed
    eu = replace(facts, ruleset=get(EU), consents=FORMS[EU], tests=(*facts.tests, home))
    assert rc.TEST_SETTING_NOT_PERMITTED in dispense(eu, local(later, 15), rx_id="rx-2").codes


# --- contraception: one highly effective, or two complementary; the UK agreement ---------------


@BOTH
@pytest.mark.parametrize(
    ("names", "codes"),
    [
        (("iud",), ()),
        (("hormonal_implant",), ()),
        (("combined_oral_contraceptive", "male_condom"), ()),
        (("progestin_only_pill", "diaphragm_with_spermicide"), ()),
        (("male_condom",), (rc.NO_PRIMARY_METHOD,)),
        (("combined_oral_contraceptive",), (rc.NO_PRIMARY_METHOD,)),
        # two user-dependent methods without a barrier method (workflows.md 4.1)
        (("combined_oral_contraceptive", "progestin_only_pill"), (rc.NO_PRIMARY_METHOD,)),
        (("combined_oral_contraceptive", "hormonal_patch"), (rc.NO_PRIMARY_METHOD,)),
        # two barrier methods: allowed on the literal reading (ruleset note, rules.md 17 C9)
        (("male_condom", "diaphragm_with_spermicide"), ()),
    ],
)
def test_one_highly_effective_or_two_complementary(
    ruleset_id: str, names: tuple[str, ...], codes: tuple[str, ...]
) -> None:
    d = prescribe_gate(wcbp(ruleset_id, names=names), local(WRITTEN, 10), on=WRITTEN)
    assert d.codes == codes


@BOTH
def test_the_shortfall_message_names_both_options(ruleset_id: str) -> None:
    d = prescribe_gate(wcbp(ruleset_id, names=("male_condom",)), local(WRITTEN, 10))
    assert d.reasons[0].next_step is not None
    assert "1 highly effective" in d.reasons[0].next_step
    assert "or 2 methods, including 1 barrier method" in d.reasons[0].next_step


@BOTH
@pytest.mark.parametrize(("lead_in", "allowed"), [(30, True), (29, False)])
def test_a_month_of_contraception_before_the_pretreatment_test(
    ruleset_id: str, lead_in: int, allowed: bool
) -> None:
    d = prescribe_gate(wcbp(ruleset_id, lead_in=lead_in), local(WRITTEN, 10), on=WRITTEN)
    assert d.allowed is allowed
    if not allowed:
        assert d.codes == (rc.CONTRACEPTION_LEAD_IN_NOT_MET,)
        assert d.earliest == WRITTEN + DAY


def test_uk_no_expected_risk_agreement_replaces_contraception() -> None:
    agreed = ("no_expected_risk_agreement",)
    assert prescribe_gate(wcbp(UK, names=agreed), local(WRITTEN, 10)).allowed
    # workflows.md 4.3: the patient confirms methods in no system, so none is asked for.
    unconfirmed = wcbp(UK, names=agreed, patient_confirmed={})
    assert prescribe_gate(unconfirmed, local(WRITTEN, 10)).allowed


def test_eu_has_no_agreement_and_no_abstinence() -> None:
    for waiver in ("no_expected_risk_agreement", "abstinence"):
        d = prescribe_gate(wcbp(EU, names=(waiver,)), local(WRITTEN, 10))
        assert rc.CONTRACEPTION_INSUFFICIENT in d.codes or rc.NO_PRIMARY_METHOD in d.codes


# --- forms, supply, categories -------------------------------------------------------------


@BOTH
def test_acknowledgement_form_is_required(ruleset_id: str) -> None:
    d = prescribe_gate(wcbp(ruleset_id, consents=frozenset()), local(WRITTEN, 10))
    assert d.codes == (rc.CONSENT_NOT_SIGNED,)


@BOTH
@pytest.mark.parametrize(("supply", "allowed"), [(30, True), (31, False)])
def test_thirty_days_supply(ruleset_id: str, supply: int, allowed: bool) -> None:
    facts = wcbp(ruleset_id, prescriptions=(rx(supply=supply),))
    d = dispense(facts, local(WRITTEN, 12))
    assert d.allowed is allowed
    assert prescribe_gate(wcbp(ruleset_id), local(WRITTEN, 12), supply).allowed is allowed


def test_sterilisation_confirmed_exempts_in_the_uk_only() -> None:
    uk = wcbp(
        UK,
        category="cannot_get_pregnant",
        category_reason="STERILISATION_CONFIRMED",
        tests=(),
        methods=(),
        patient_confirmed={},
    )
    assert prescribe_gate(uk, local(WRITTEN, 10)).allowed
    eu = replace(uk, ruleset=get(EU), consents=FORMS[EU])
    # Not a reason in the EU: judged as a woman of childbearing potential (the safe side).
    assert set(prescribe_gate(eu, local(WRITTEN, 10)).codes) == {
        rc.INVALID_CATEGORY_REASON,
        rc.CONTRACEPTION_NOT_DOCUMENTED,
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        rc.NO_NEGATIVE_TEST_IN_WINDOW,
    }


@BOTH
def test_no_potential_patients_need_no_test_and_have_no_window(ruleset_id: str) -> None:
    facts = wcbp(
        ruleset_id,
        category="cannot_get_pregnant",
        category_reason="NO_UTERUS",
        tests=(),
        methods=(),
        patient_confirmed={},
    )
    d = dispense(facts, local(WRITTEN + 40 * DAY, 10))
    assert d.allowed, d.reasons
    assert d.window is None
