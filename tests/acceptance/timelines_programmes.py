"""Timelines for workflows.md §2 (iPLEDGE, patients who cannot get pregnant), §3 (changing
category), §4 (EU and UK) and the pharmacy and clinic items of issue 11 (8, 9, 10)."""

from __future__ import annotations

from tests.acceptance.model import ALL, EU, EU_UK, IPLEDGE, LEGACY, MOD, UK, Builder, allow, refuse
from tests.acceptance.registry import timeline
from tests.acceptance.steps import (
    CONSENTS,
    DEFAULT_PHARMACY,
    check,
    confirm,
    enrol_pcgp,
    enrol_pcngp,
    eu_initiation,
    ipledge,
    ipledge_first_month,
    patient_month,
    programme,
    result,
    rma,
    specimen,
    visit,
)

# --- §2 iPLEDGE, patient who cannot get pregnant ----------------------------------------------------


@timeline([LEGACY])
def pcngp_window_30_days_from_office_visit(b: Builder) -> None:
    """§2 2023-03: the RMA within 30 days of the office visit (day 0), whatever date the
    prescription was written (day 2). No tests, no contraception, no comprehension questions.
    reading: Day 1 is the visit, so the last day is visit + 29 (rules.md §17 C4, as the 7-day
    window counts)."""
    enrol_pcngp(b)
    b.add(
        "prescriber",
        2,
        "10:00",
        "prescribe",
        rx="rx",
        days=30,
        written_on=b.iso(2),
        office_visit_on=b.iso(0),
    )
    rma(b, 29, "16:00", allow(last_day=b.d(29), dnda_on=b.d(29)))


@timeline([LEGACY])
def pcngp_day_31_after_office_visit(b: Builder) -> None:
    """§2 2023-03: the day after the 30-day window (visit + 30) the window has closed."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    check(b, 30, "09:00", refuse("WINDOW_EXPIRED"))


@timeline([LEGACY])
def pcngp_counselling_monthly_2023(b: Builder) -> None:
    """§2 2023-03: counselling is documented monthly for patients who cannot get pregnant too.
    reading: rules.md §1.3 has the counselling "before each monthly Rx", while workflows.md §1.1
    step 3 records counselling and prescription in any order at the visit and makes the
    authorization request the step where everything must hold. The month's prescription may
    be written first; the RMA is refused until that month's counselling is documented."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(last_day=b.d(29)))
    b.add("prescriber", 30, "10:00", "prescribe", rx="rx2", days=30)
    rma(b, 30, "11:00", refuse("COUNSELING_NOT_DOCUMENTED"), rx="rx2", auth="a2", pickup=False)
    b.add("prescriber", 30, "12:05", "counsel")
    rma(b, 31, "10:00", allow(last_day=b.d(59)), rx="rx2", auth="a2")


@timeline([MOD])
def pcngp_no_window_counselling_at_enrolment_only(b: Builder) -> None:
    """§2 2026-mod: no window (an RMA 40 days after the prescription), counselling at enrolment
    only (month 2 without it), and an authorization not picked up is flagged for reversal.
    reading: the flag is checked 30 days after issue, well past any reversal delay."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    rma(b, 40, "10:00", allow(no_window=True))
    b.add("prescriber", 70, "10:00", "prescribe", rx="rx2", days=30)
    rma(b, 71, "10:00", allow(no_window=True), rx="rx2", auth="a2", pickup=False)
    b.add("prescriber", 101, "10:00", "due", allow(flags=frozenset({"RMA_REVERSAL_REQUIRED"})))


@timeline(IPLEDGE)
def pcngp_male_never_asked_comprehension(b: Builder) -> None:
    """Item 3 / §2: a male patient has no comprehension questions, tests or contraception; the
    prescription and RMA need none of them."""
    enrol_pcngp(b, "NO_UTERUS")
    b.add("prescriber", 0, "10:00", "check_prescribe", allow())
    b.add("prescriber", 0, "10:05", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow())


@timeline(IPLEDGE)
def pcngp_end_of_treatment_completes(b: Builder) -> None:
    """§1.4 / §2: a patient who cannot get pregnant has no post-treatment test.
    reading: recording the last dose completes the course at once."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow())
    b.add("prescriber", 31, "10:00", "end", allow(state="completed"), last_dose_on=b.iso(30))


def unsupported_reason(b: Builder) -> str:
    """A reason the programme knows that cannot support "cannot get pregnant".
    reading: in the EU/UK, where tubal ligation is not a catalogued reason at all (an input
    error), the childbearing-potential reason stands for one that cannot support it."""
    return "TUBAL_LIGATION" if ipledge(b) else "CHILDBEARING_POTENTIAL"


# --- §3 changing category ---------------------------------------------------------------------------


@timeline(ALL)
def category_can_to_cannot(b: Builder) -> None:
    """§3: after a first dispense as a patient who can get pregnant, a hysterectomy: the new
    category applies from the change, tests and contraception are no longer required.
    2023-03: the 30-day window from the office visit (day 40); 2026-mod and EU/UK: no window."""
    if ipledge(b):
        enrol_pcgp(b)
        ipledge_first_month(b, 21)
    else:
        _eu_first(b)
    b.add(
        "prescriber", 40, "09:00", "category", category="cannot_get_pregnant", reason="HYSTERECTOMY"
    )
    b.add("prescriber", 40, "09:05", "counsel")
    b.add("prescriber", 40, "09:10", "prescribe", rx="rx2", days=30)
    exp = allow(last_day=b.d(69)) if b.ruleset == LEGACY else allow(no_window=True)
    rma(b, 45, "10:00", exp, rx="rx2", auth="a2")


@timeline(IPLEDGE)
def category_cannot_to_can_qualifies_afresh(b: Builder) -> None:
    """§3: misclassification corrected after a dispense as a patient who cannot get pregnant:
    before any further dispense she qualifies afresh (two pre-treatment tests 19+ days apart, 30
    days of methods, this month's items).
    reading: right after the change the RMA is refused and names at least the missing
    pre-treatment tests; the other codes then listed are not asserted."""
    enrol_pcngp(b, "POSTMENOPAUSAL_CONFIRMED")
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow())
    b.add(
        "prescriber",
        10,
        "09:00",
        "category",
        category="can_get_pregnant",
        reason="REPRODUCTIVE_POTENTIAL",
    )
    b.add("prescriber", 10, "09:05", "consent", form="BIRTH_DEFECTS_CONSENT")
    b.add(
        "prescriber",
        10,
        "09:10",
        "contraception",
        methods={"iud": b.iso(10), "male_condom": b.iso(10)},
    )
    specimen(b, 10, "09:30", "screening")
    result(b, 10, "15:00", "screening", "screening", setting="clinic", clia=False)
    b.add("prescriber", 10, "15:30", "prescribe", rx="rx2", days=30)
    check(
        b,
        11,
        "09:00",
        refuse(
            "PRETREATMENT_TESTS_INCOMPLETE",
            optional=(
                "NO_NEGATIVE_TEST_IN_WINDOW",
                "PRESCRIBER_CONFIRMATION_MISSING",
                "COMPREHENSION_NOT_DONE",
                "CONTRACEPTION_NOT_CONFIRMED",
                "CONTRACEPTION_LEAD_IN_NOT_MET",
                "COUNSELING_NOT_DOCUMENTED",
            ),
        ),
        rx="rx2",
    )
    specimen(b, 41, "09:30", "conf")
    visit(b, 41, "10:00", rx="rx3", lead_start=10)
    result(b, 42, "08:30", "conf", "confirmation")
    confirm(b, 42, "09:00")
    patient_month(b, 42, "19:00")
    rma(b, 43, "11:00", allow(last_day=b.d(47)), rx="rx3", auth="a3")


@timeline(ALL)
def refused_category_change_keeps_valid_category(b: Builder) -> None:
    """§3: a reason that cannot support the category is refused (iPLEDGE: tubal ligation for
    "cannot get pregnant"; EU/UK: the childbearing-potential reason itself); the valid earlier
    category stays as it was."""
    enrol_pcgp(b)
    b.add(
        "prescriber",
        1,
        "09:00",
        "category",
        refuse("INVALID_CATEGORY_REASON"),
        category="cannot_get_pregnant",
        reason=unsupported_reason(b),
    )
    b.add("prescriber", 1, "09:05", "status", allow(category="can_get_pregnant"))


@timeline(ALL)
def refused_first_category_is_the_safe_side(b: Builder) -> None:
    """§3: a first assignment refused leaves no valid category; the patient is treated as one
    who can get pregnant.
    reading: the prescribe gate then names the missing category and the consent a patient who
    can get pregnant signs (where the programme has one); INVALID_CATEGORY_REASON may
    accompany. In the EU/UK, where the prescribe gate is where the PPP conditions are checked
    (no central authorization), it also names the missing contraception and pre-treatment
    test (no usable negative test, fewer pre-treatment tests than required); under iPLEDGE
    those wait for the RMA."""
    prog = programme(b)
    b.add("prescriber", 0, "09:00", "register_patient")
    b.add("prescriber", 0, "09:05", "enrol", programme=prog)
    b.add(
        "prescriber",
        0,
        "09:10",
        "category",
        refuse("INVALID_CATEGORY_REASON"),
        category="cannot_get_pregnant",
        reason=unsupported_reason(b),
    )
    for n, form in enumerate(CONSENTS["cannot_get_pregnant"][prog]):
        b.add("prescriber", 0, f"09:{15 + n}", "consent", form=form)
    b.add("prescriber", 0, "09:20", "counsel")
    missing_consent = set(CONSENTS["can_get_pregnant"][prog]) - set(
        CONSENTS["cannot_get_pregnant"][prog]
    )
    codes = ("CATEGORY_NOT_ASSIGNED",) + (("CONSENT_NOT_SIGNED",) if missing_consent else ())
    if not ipledge(b):
        codes += (
            "CONTRACEPTION_NOT_DOCUMENTED",
            "NO_NEGATIVE_TEST_IN_WINDOW",
            "PRETREATMENT_TESTS_INCOMPLETE",
        )
    b.add(
        "prescriber",
        0,
        "09:30",
        "check_prescribe",
        refuse(*codes, optional=("INVALID_CATEGORY_REASON",)),
    )


# --- §1.5 / §4 pregnancy in the EU and UK ---------------------------------------------------------


@timeline(EU_UK)
def eu_uk_positive_test_suspends(b: Builder) -> None:
    """§1.5 applied to §4: a positive 4-weekly test stops the next prescription; the refusal
    names the positive test while it is the cause."""
    _eu_first(b)
    specimen(b, 28, "09:30", "t2")
    result(b, 28, "12:00", "t2", "monthly", setting="clinic", clia=False, result="positive")
    b.add(
        "prescriber",
        28,
        "12:30",
        "prescribe",
        refuse("COURSE_SUSPENDED", "PREGNANCY_TEST_POSITIVE"),
        rx="rx2",
    )


@timeline(EU_UK)
def eu_uk_positive_test_blocks_the_dispense(b: Builder) -> None:
    """§1.5 applied to §4: the pharmacy has recorded the prescription for dispensing; a positive
    test that day stops the hand-over, naming the positive test while it is the cause."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(first_day=b.d(0), last_day=b.d(6)), pickup=False)
    specimen(b, 1, "11:00", "tp")
    result(b, 1, "15:00", "tp", "monthly", setting="clinic", clia=False, result="positive")
    b.add(
        "pharmacist",
        2,
        "10:00",
        "pickup",
        refuse("COURSE_SUSPENDED", "PREGNANCY_TEST_POSITIVE"),
        pharmacy=DEFAULT_PHARMACY[b.ruleset],
        auth="auth",
    )


# --- §4 EU and UK -----------------------------------------------------------------------------------


def _eu_first(b: Builder, *, methods: tuple[str, ...] = ("iud",), lead_start: int = -35) -> None:
    eu_initiation(b, methods=methods, lead_start=lead_start)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 2, "10:00", allow(first_day=b.d(0), last_day=b.d(6)))


@timeline(EU_UK)
def eu_uk_initiation_and_dispense(b: Builder) -> None:
    """§4.1-4.3: acknowledgement form and counselling at initiation, one highly effective method
    for more than a month, a medically supervised test and the prescription the same day; the
    pharmacy dispenses on day 3 of the prescription's 7 (Day 1 = the date written)."""
    _eu_first(b)


@timeline(EU_UK)
def eu_uk_every_four_weeks(b: Builder) -> None:
    """§4.4: every 4 weeks a new test and a new prescription; no monthly counselling, no patient
    method confirmation, no comprehension questions in any system."""
    _eu_first(b)
    specimen(b, 28, "09:30", "t2")
    result(b, 28, "12:00", "t2", "monthly", setting="clinic", clia=False)
    b.add("prescriber", 28, "12:30", "prescribe", rx="rx2", days=30)
    rma(b, 29, "10:00", allow(first_day=b.d(28), last_day=b.d(34)), rx="rx2", auth="a2")


@timeline(EU_UK)
def eu_uk_two_user_dependent_methods_without_barrier(b: Builder) -> None:
    """§4.1 and item 5: the combined pill plus a progestin-only pill are two user-dependent
    methods without a barrier method: not enough.
    reading: NO_PRIMARY_METHOD ("enough methods, but none of the required tier", reason-codes.md
    names the EU's highly effective tier), at the prescribe gate, where the prescriber documents
    the PPP conditions."""
    eu_initiation(b, methods=("combined_oral_contraceptive", "progestin_only_pill"))
    b.add("prescriber", 0, "11:30", "prescribe", refuse("NO_PRIMARY_METHOD"), rx="rx")


@timeline(EU_UK)
def eu_uk_pill_with_barrier_method(b: Builder) -> None:
    """§4.1: two complementary user-dependent methods including a barrier method are enough."""
    _eu_first(b, methods=("combined_oral_contraceptive", "male_condom"))


@timeline(EU_UK)
def eu_uk_lead_in_not_met(b: Builder) -> None:
    """§4.1: contraception for at least a month before; 20 days is not.
    reading: judged when the prescription is written (no central authorization)."""
    eu_initiation(b, lead_start=-20)
    b.add("prescriber", 0, "11:30", "prescribe", refuse("CONTRACEPTION_LEAD_IN_NOT_MET"), rx="rx")


@timeline([UK])
def uk_no_expected_risk_agreement_without_lead_in(b: Builder) -> None:
    """§4.1 UK: a documented "no expected risk of pregnancy" agreement replaces contraception,
    so there is no lead-in: agreement, test and prescription on the same day."""
    enrol_pcgp(b, screening=False, methods=("no_expected_risk_agreement",), lead_start=0)
    specimen(b, 0, "10:00", "t0")
    result(b, 0, "11:00", "t0", "confirmation", setting="clinic", clia=False)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(last_day=b.d(6)))


@timeline([UK])
def uk_test_3_days_before_prescription(b: Builder) -> None:
    """§4.2 UK: the test documented at most 3 days before the prescription: 3 days is enough."""
    eu_initiation(b)
    b.add("prescriber", 3, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 3, "15:00", allow(first_day=b.d(3), last_day=b.d(9)))


@timeline([UK])
def uk_test_4_days_before_prescription(b: Builder) -> None:
    """§4.2 UK: 4 days is too old.
    reading: the test's date is its specimen date, entered the same day."""
    eu_initiation(b)
    b.add("prescriber", 4, "11:30", "prescribe", refuse("TEST_TOO_OLD_FOR_RX"), rx="rx")


@timeline([EU])
def eu_athens_pharmacy_last_minutes_of_day_7(b: Builder) -> None:
    """§4.3: validity judged in the pharmacy's local date: an Athens pharmacy at 23:30 on Day 7
    (the prescription's date + 6) is inside."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 6, "23:30", allow(last_day=b.d(6)), pharmacy="athens", pickup=False)


@timeline([EU])
def eu_athens_pharmacy_after_midnight_day_8(b: Builder) -> None:
    """§4.3: the same Athens pharmacy at 00:30 on day 8, while it is still Day 7 (23:30) in
    Brussels: expired in the pharmacy's zone."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 7, "00:30", refuse("RX_EXPIRED"), pharmacy="athens", pickup=False)


@timeline([EU])
def eu_lisbon_pharmacy_after_brussels_midnight(b: Builder) -> None:
    """§4.3: a Lisbon pharmacy at 23:30 on Day 7, already day 8 (00:30) in Brussels: still
    inside in the pharmacy's zone."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 6, "23:30", allow(last_day=b.d(6)), pharmacy="lisbon", pickup=False)


@timeline([UK])
def uk_london_pharmacy_day_7_vs_day_8(b: Builder) -> None:
    """§4.3 UK: valid 7 days from the date written: 23:59 on Day 7 inside, 00:01 on day 8
    expired."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    check(b, 6, "23:59", allow(last_day=b.d(6)), pharmacy="london")
    check(b, 7, "00:01", refuse("RX_EXPIRED"), pharmacy="london")


@timeline(EU_UK)
def eu_uk_not_of_childbearing_potential_no_caps(b: Builder) -> None:
    """§4.6 and item 5: a male patient: no tests, no 7-day validity, no 30-day cap (90 days
    written, dispensed on day 20)."""
    enrol_pcngp(b, "NO_UTERUS")
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=90)
    rma(b, 20, "10:00", allow(no_window=True, days_supply=90), days_supply=90)


@timeline(EU_UK)
def eu_uk_final_test_one_month_after_stopping(b: Builder) -> None:
    """§4.5: a final test one month after stopping completes the course; the patient may start
    again later."""
    _eu_first(b)
    b.add("prescriber", 30, "09:00", "end", last_dose_on=b.iso(29))
    specimen(b, 59, "09:30", "final")
    result(b, 59, "12:00", "final", "post_treatment", setting="clinic", clia=False)
    b.add("prescriber", 59, "12:30", "status", allow(state="completed"))
    b.add("prescriber", 90, "09:00", "enrol", allow(ruleset=b.ruleset), programme=programme(b))


# --- item 8: the pharmacy's request -------------------------------------------------------------


@timeline(ALL)
def prescriber_deactivated_before_the_pharmacy(b: Builder) -> None:
    """Item 8: a prescription whose prescriber is no longer certified is refused at the pharmacy
    with PRESCRIBER_NOT_CERTIFIED.
    reading: it decides alone (the patient's own steps are all in order)."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    b.add("admin", 1, "09:00", "deactivate_prescriber")
    rma(b, 1, "10:00", refuse("PRESCRIBER_NOT_CERTIFIED"))


@timeline(ALL)
def pcngp_pharmacy_states_days_supply(b: Builder) -> None:
    """Item 8: the request states the days' supply: 31 over the category's maximum and the
    prescription's 30 (EU/UK: over the prescription only, as there is no cap)."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    if ipledge(b):
        exp = refuse("SUPPLY_EXCEEDS_MAX", "SUPPLY_EXCEEDS_PRESCRIPTION")
    else:
        exp = refuse("SUPPLY_EXCEEDS_PRESCRIPTION")
    rma(b, 1, "10:00", exp, days_supply=31)
    rma(b, 1, "10:05", allow(days_supply=30), days_supply=30)


# --- item 9: blocking states decide alone ------------------------------------------------------


@timeline(ALL)
def no_active_course_decides_alone(b: Builder) -> None:
    """Item 9: after the course is completed, an undispensed prescription is refused for the
    closed course alone."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    b.add("prescriber", 1, "10:00", "end", last_dose_on=b.iso(1))
    check(b, 2, "10:00", refuse("NO_ACTIVE_COURSE"))


# --- item 10: the clinic's own zone and the settings the programmes name -------------------------


@timeline([EU], zones={EU: "Europe/Athens"})
def eu_clinic_in_athens_dates_its_prescription(b: Builder) -> None:
    """Item 10: an Athens clinic writes a prescription at 00:30 on day 1 (still day 0 in
    Brussels); the clinic's zone governs the prescriber's steps, so it is dated day 1 and the
    pharmacy may dispense until day 7."""
    b.add("admin", 0, "08:00", "set_clinic_zone", clinic_zone="Europe/Athens")
    eu_initiation(b)
    b.add("prescriber", 1, "00:30", "prescribe", allow(written_on=b.d(1)), rx="rx", days=30)
    rma(b, 7, "18:00", allow(last_day=b.d(7)), pharmacy="athens", pickup=False)


@timeline([EU], zones={EU: "Europe/Lisbon"})
def eu_clinic_in_lisbon_dates_its_prescription(b: Builder) -> None:
    """Item 10: a Lisbon clinic writes a prescription at 23:30 on day 0 (already day 1 in
    Brussels): it is dated day 0, so a Lisbon pharmacy's Day 7 is day 6."""
    b.add("admin", 0, "08:00", "set_clinic_zone", clinic_zone="Europe/Lisbon")
    eu_initiation(b)
    b.add("prescriber", 0, "23:30", "prescribe", allow(written_on=b.d(0)), rx="rx", days=30)
    rma(b, 7, "10:00", refuse("RX_EXPIRED"), pharmacy="lisbon", pickup=False)


@timeline([UK])
def uk_remotely_supervised_monthly_test(b: Builder) -> None:
    """Item 10 / rules.md §2.5: a follow-up test supervised remotely where the prescriber allows
    it counts as the 4-weekly test."""
    b.add("prescriber", 0, "08:00", "home_testing", enabled=True, procedure="video-supervised test")
    _eu_first(b)
    specimen(b, 28, "09:30", "t2")
    # reading: a remotely supervised test is recorded as a home test under the prescriber's
    # opt-in, whose documented procedure states the supervision (rules.md names no other
    # setting for it)
    result(b, 28, "12:00", "t2", "monthly", setting="home", clia=False)
    b.add("prescriber", 28, "12:30", "prescribe", rx="rx2", days=30)
    rma(b, 29, "10:00", allow(last_day=b.d(34)), rx="rx2", auth="a2")


@timeline(EU_UK)
def eu_uk_pretreatment_test_by_its_name(b: Builder) -> None:
    """Item 10: the EU/UK programmes name one pre-treatment test; it is recorded as such."""
    enrol_pcgp(b, screening=False, methods=("iud",))
    specimen(b, 0, "10:00", "t0")
    result(b, 0, "11:00", "t0", "pretreatment", setting="clinic", clia=False)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(last_day=b.d(6)))


_ = (MOD, EU, UK)


# --- more of §4 and of items 6, 8 and 9 -----------------------------------------------------------


def _eu_lead_in(b: Builder, lead: int) -> None:
    eu_initiation(b, lead_start=-lead)


@timeline(EU_UK)
def eu_uk_lead_in_29_days(b: Builder) -> None:
    """§4.1: 29 days of the method before the pre-treatment test is short of a month.
    reading: "a month" is 30 days (reason-codes.md), counted to the test's date, and judged when
    the prescription is written."""
    _eu_lead_in(b, 29)
    b.add("prescriber", 0, "11:30", "prescribe", refuse("CONTRACEPTION_LEAD_IN_NOT_MET"), rx="rx")


@timeline(EU_UK)
def eu_uk_lead_in_30_days(b: Builder) -> None:
    """§4.1: 30 days of the method before the test is a month."""
    _eu_lead_in(b, 30)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(last_day=b.d(6)))


@timeline(EU_UK)
def eu_uk_lead_in_31_days(b: Builder) -> None:
    """§4.1: 31 days of the method before the test."""
    _eu_lead_in(b, 31)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(last_day=b.d(6)))


@timeline(EU_UK)
def eu_uk_supply_30_vs_31_days(b: Builder) -> None:
    """§4.2: a prescription of at most 30 days for a woman of childbearing potential."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", refuse("SUPPLY_EXCEEDS_MAX"), rx="rx31", days=31)
    b.add("prescriber", 0, "11:35", "prescribe", rx="rx", days=30)
    rma(b, 1, "10:00", allow(last_day=b.d(6)))


@timeline([UK])
def uk_sterilisation_confirmed_ends_childbearing_potential(b: Builder) -> None:
    """§4.6 with rules.md §2.2: in the UK a surgical sterilisation confirmed by a healthcare
    professional ends childbearing potential: no test, no validity, no cap."""
    enrol_pcngp(b, "STERILISATION_CONFIRMED")
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=60)
    rma(b, 15, "10:00", allow(no_window=True))


@timeline(EU_UK)
def eu_uk_home_test_is_reported(b: Builder) -> None:
    """Item 6 in the EU/UK: the 4-weekly test done at home, with no remote-testing opt-in, is the
    test the next prescription relies on: it is reported with its own code, not hidden behind
    the initiation test.
    reading: TEST_TOO_OLD_FOR_RX (the older test's age) and NO_NEGATIVE_TEST_IN_WINDOW (no
    usable test) may accompany."""
    _eu_first(b)
    specimen(b, 28, "08:00", "t2")
    result(b, 28, "12:00", "t2", "monthly", setting="home", clia=False)
    b.add(
        "prescriber",
        28,
        "12:30",
        "prescribe",
        refuse(
            "TEST_SETTING_NOT_PERMITTED",
            optional=("TEST_TOO_OLD_FOR_RX", "NO_NEGATIVE_TEST_IN_WINDOW"),
        ),
        rx="rx2",
    )


@timeline(EU_UK)
def eu_uk_suspended_and_expired(b: Builder) -> None:
    """Item 9 in the EU/UK: a suspended course decides alone with its cause, and with RX_EXPIRED
    when the prescription is also past its validity."""
    eu_initiation(b)
    b.add("prescriber", 0, "11:30", "prescribe", rx="rx", days=30)
    specimen(b, 3, "09:00", "t1")
    result(b, 3, "12:00", "t1", "monthly", setting="clinic", clia=False, result="positive")
    check(b, 9, "10:00", refuse("COURSE_SUSPENDED", "PREGNANCY_TEST_POSITIVE", "RX_EXPIRED"))


@timeline(ALL)
def closed_course_and_decertified_prescriber(b: Builder) -> None:
    """Item 9: a closed course decides alone, with the participants' certification codes."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    b.add("prescriber", 1, "10:00", "end", last_dose_on=b.iso(1))
    b.add("admin", 1, "11:00", "deactivate_prescriber")
    check(b, 2, "10:00", refuse("NO_ACTIVE_COURSE", "PRESCRIBER_NOT_CERTIFIED"))


@timeline(ALL)
def only_the_prescriber_resumes(b: Builder) -> None:
    """§1.5: only a prescriber's explicit decision resumes a suspended course; the patient
    cannot.
    reading: the patient's attempt is ACTOR_NOT_PERMITTED."""
    enrol_pcngp(b)
    b.add("patient", 1, "20:00", "pregnancy")
    b.add("patient", 2, "09:00", "resume", refuse("ACTOR_NOT_PERMITTED"))
    b.add("prescriber", 3, "09:00", "resume", note="not pregnant: confirmed by the clinic")


@timeline(IPLEDGE)
def pcngp_pharmacy_finds_the_paper_prescription(b: Builder) -> None:
    """Item 8: a patient who cannot get pregnant; the pharmacy finds the prescription from the
    patient's programme id, date of birth and the prescriber's NPI."""
    enrol_pcngp(b)
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=30)
    b.add(
        "pharmacist",
        1,
        "09:00",
        "find_prescription",
        allow(written_on=b.d(0)),
        pharmacy="ny",
        rx="found",
    )
    rma(b, 1, "10:00", allow(), rx="found")


@timeline(EU_UK)
def eu_uk_category_cannot_to_can_qualifies_afresh(b: Builder) -> None:
    """§3 in the EU/UK: a patient first assessed without childbearing potential is reassessed:
    before the next prescription she qualifies afresh (acknowledgement, a month of
    contraception, a pre-treatment test), then the PPP limits apply (7-day validity).
    reading: right after the change the prescription is refused; which of the missing items
    are then listed is not asserted."""
    enrol_pcngp(b, "POSTMENOPAUSAL_CONFIRMED")
    b.add("prescriber", 0, "10:00", "prescribe", rx="rx", days=60)
    rma(b, 1, "10:00", allow(no_window=True))
    b.add(
        "prescriber",
        10,
        "09:00",
        "category",
        category="can_get_pregnant",
        reason="CHILDBEARING_POTENTIAL",
    )
    for n, form in enumerate(CONSENTS["can_get_pregnant"][programme(b)]):
        if form not in CONSENTS["cannot_get_pregnant"][programme(b)]:
            b.add("prescriber", 10, f"09:{5 + n:02d}", "consent", form=form)
    b.add("prescriber", 10, "09:10", "contraception", methods={"iud": b.iso(10)})
    b.add(
        "prescriber",
        11,
        "09:00",
        "check_prescribe",
        refuse(
            optional=(
                "CONTRACEPTION_LEAD_IN_NOT_MET",
                "NO_NEGATIVE_TEST_IN_WINDOW",
                "PRETREATMENT_TESTS_INCOMPLETE",
                "TEST_TOO_OLD_FOR_RX",
                "COUNSELING_NOT_DOCUMENTED",
            )
        ),
    )
    specimen(b, 40, "09:30", "t1")
    result(b, 40, "11:00", "t1", "confirmation", setting="clinic", clia=False)
    b.add("prescriber", 40, "11:30", "counsel")
    b.add("prescriber", 40, "11:40", "prescribe", rx="rx2", days=30)
    rma(b, 41, "10:00", allow(first_day=b.d(40), last_day=b.d(46)), rx="rx2", auth="a2")
