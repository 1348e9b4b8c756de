"""iPLEDGE timelines: workflows.md §1.1-1.5 (patients who can get pregnant), on both rulesets."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from tests.acceptance.model import (
    EASTERN,
    IPLEDGE,
    LEGACY,
    MOD,
    PHARMACY_ZONES,
    Builder,
    Expect,
    allow,
    refuse,
)
from tests.acceptance.registry import timeline
from tests.acceptance.steps import (
    check,
    confirm,
    enrol_pcgp,
    ipledge_first_month,
    ipledge_month,
    patient_month,
    result,
    rma,
    specimen,
    visit,
)

# Codes (reason-codes.md; PRESCRIBER_CONFIRMATION_MISSING is the one being added for item 1).
WINDOW_EXPIRED = "WINDOW_EXPIRED"
NO_TEST = "NO_NEGATIVE_TEST_IN_WINDOW"
CONFIRMATION = "PRESCRIBER_CONFIRMATION_MISSING"
PRETREATMENT = "PRETREATMENT_TESTS_INCOMPLETE"
# reading: a test the rules do not accept must be reported with its own code; since it is not
# usable, "no usable negative test" (and, for a pre-treatment test, the missing second test) may
# accompany it: the documents require the first and neither require nor forbid the others.
UNUSABLE = (NO_TEST,)


def in_zone(
    b: Builder, day: int, hhmm: str, pharmacy: str, source: str = EASTERN
) -> tuple[int, str]:
    """The pharmacy's local day offset and time at the instant ``day hhmm`` in ``source``."""
    local = (
        b.at(day, hhmm)
        .replace(tzinfo=ZoneInfo(source))
        .astimezone(ZoneInfo(PHARMACY_ZONES[pharmacy]))
    )
    return (local.date() - b.base).days, f"{local:%H:%M}"


# --- §1.1 before the first dose ------------------------------------------------------------------


@timeline(IPLEDGE)
def first_dispense_usual_order(b: Builder) -> None:
    """§1.1 in the order most clinics follow: screening on day 0, confirmation specimen and the
    visit (counselling, methods, prescription) on day 21, result entered and the prescriber's
    confirmation the next morning, the patient that evening, the RMA on day 23. Day 1 = day 21,
    so the last day is day 27, closing at 23:59:59 Eastern."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)


@timeline(IPLEDGE)
def rx_written_before_specimen(b: Builder) -> None:
    """§1.1 step 3: the prescription is written at the visit on day 20; the lab collects the
    specimen the next day. Day 1 is the collection date (day 21), not the prescription's date.
    reading: a prescription may be dated before the specimen of the test it will rely on."""
    enrol_pcgp(b)
    visit(b, 20, "10:00")
    specimen(b, 21, "08:00", "conf")
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    patient_month(b, 22, "19:00")
    rma(b, 23, "11:00", allow(last_day=b.d(27), dnda_on=b.d(27)))


@timeline(IPLEDGE)
def result_entered_days_later(b: Builder) -> None:
    """§1.1 steps 3-4: prescription written before the result is back; the result is entered
    three days after collection. A pending result stops the RMA, not the prescription; Day 1
    stays the collection date.
    reading: before the confirmation result is in, the RMA lists the missing second
    pre-treatment test, no usable negative test, and the prescriber's missing confirmation."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00")
    patient_month(b, 21, "20:00")
    check(b, 23, "12:00", refuse(PRETREATMENT, NO_TEST, CONFIRMATION))
    result(b, 24, "08:30", "conf", "confirmation")
    confirm(b, 24, "09:00")
    rma(b, 25, "11:00", allow(last_day=b.d(27), dnda_on=b.d(27)))


@timeline(IPLEDGE)
def patient_before_prescriber_confirmation(b: Builder) -> None:
    """§1.1 steps 4-5 in the other order: the patient answers and enters her methods the evening
    of the visit, before the result; the prescriber confirms the next day. Until then the RMA is
    refused for the prescriber's confirmation alone."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00")
    patient_month(b, 21, "20:00")
    result(b, 22, "08:30", "conf", "confirmation")
    check(b, 22, "09:00", refuse(CONFIRMATION))
    confirm(b, 22, "12:00")
    rma(b, 22, "15:00", allow(last_day=b.d(27), dnda_on=b.d(27)))


@timeline(IPLEDGE)
def comprehension_before_prescription(b: Builder) -> None:
    """§1.1 step 5 before step 3: the patient answers the questions and enters her methods the
    morning of the visit, before the specimen and before the prescription."""
    enrol_pcgp(b)
    patient_month(b, 21, "07:00")
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00")
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    rma(b, 23, "11:00", allow(last_day=b.d(27), dnda_on=b.d(27)))


@timeline(IPLEDGE)
def rx_before_counselling_at_the_visit(b: Builder) -> None:
    """§1.1 step 3 "in any order": the prescriber writes the prescription first, then counsels
    and confirms the methods.
    reading: counselling is needed for the RMA of the month, not for writing the prescription."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    b.add("prescriber", 21, "10:00", "prescribe", rx="rx", days=30)
    visit(b, 21, "10:20", rx=None)
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    patient_month(b, 22, "19:00")
    rma(b, 23, "11:00", allow(last_day=b.d(27)))


@timeline(IPLEDGE)
def rma_waits_for_the_patient(b: Builder) -> None:
    """§1.1 step 6 needs step 5: with everything else in, the RMA names the patient's two missing
    steps; once she has done them it is issued."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00")
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    check(b, 22, "12:00", refuse("COMPREHENSION_NOT_DONE", "CONTRACEPTION_NOT_CONFIRMED"))
    patient_month(b, 22, "19:00")
    rma(b, 23, "11:00", allow(last_day=b.d(27)))


@timeline(IPLEDGE)
def patient_methods_differ(b: Builder) -> None:
    """§1.1 step 5: the patient's methods must match the prescriber's."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00")
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    patient_month(b, 22, "19:00", methods=("combined_oral_contraceptive", "male_condom"))
    check(b, 23, "11:00", refuse("CONTRACEPTION_MISMATCH"))


def _lead_in(b: Builder, lead: int) -> None:
    """Methods started ``lead`` days before the confirmation specimen of day 21."""
    enrol_pcgp(b, lead_start=21 - lead)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00", lead_start=21 - lead)
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    patient_month(b, 22, "19:00")


@timeline(IPLEDGE)
def lead_in_29_days(b: Builder) -> None:
    """§1.1 step 2: 29 days of methods before the confirmation test is one too few.
    reading: the lead-in is counted from the earliest method start to the confirmation
    specimen date (workflows.md), and judged at the RMA, not when the prescription is written."""
    _lead_in(b, 29)
    check(b, 23, "11:00", refuse("CONTRACEPTION_LEAD_IN_NOT_MET"))


@timeline(IPLEDGE)
def lead_in_30_days(b: Builder) -> None:
    """§1.1 step 2: exactly 30 days of methods before the confirmation test is enough."""
    _lead_in(b, 30)
    rma(b, 23, "11:00", allow(last_day=b.d(27)))


@timeline(IPLEDGE)
def lead_in_31_days(b: Builder) -> None:
    """§1.1 step 2: 31 days of methods before the confirmation test."""
    _lead_in(b, 31)
    rma(b, 23, "11:00", allow(last_day=b.d(27)))


def _spacing(b: Builder, gap: int) -> None:
    enrol_pcgp(b)
    specimen(b, gap, "09:30", "conf")
    visit(b, gap, "10:00")
    result(b, gap + 1, "08:30", "conf", "confirmation")
    confirm(b, gap + 1, "09:00")
    patient_month(b, gap + 1, "19:00")


@timeline(IPLEDGE)
def pretreatment_tests_18_days_apart(b: Builder) -> None:
    """§1.1 step 2 (rules.md §1.5): 18 days between the screening and confirmation specimens."""
    _spacing(b, 18)
    check(b, 20, "11:00", refuse("PRETREATMENT_TEST_SPACING"))


@timeline(IPLEDGE)
def pretreatment_tests_19_days_apart(b: Builder) -> None:
    """§1.1 step 2: 19 days between the two pre-treatment specimens is enough."""
    _spacing(b, 19)
    rma(b, 21, "11:00", allow(last_day=b.d(25)))


@timeline(IPLEDGE)
def confirmation_test_in_the_office(b: Builder) -> None:
    """§1.1 step 3: the confirmation specimen in the prescriber's office (a medical setting, not
    a CLIA lab). 2026-mod: any medical setting; 2023-03: a CLIA lab only.
    reading: the unacceptable test is the one relied on, so its own code is listed (with the
    prescriber's missing confirmation, checked before the prescriber confirms)."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00")
    result(b, 21, "15:00", "conf", "confirmation", setting="clinic", clia=False)
    patient_month(b, 21, "19:00")
    if b.ruleset == LEGACY:
        check(
            b,
            22,
            "08:00",
            refuse("TEST_SETTING_NOT_PERMITTED", CONFIRMATION, optional=(*UNUSABLE, PRETREATMENT)),
        )
    else:
        confirm(b, 22, "08:00")
        rma(b, 22, "11:00", allow(last_day=b.d(27)))


@timeline(IPLEDGE)
def supply_30_vs_31_days_and_refills(b: Builder) -> None:
    """Item 8 / rules.md §1.6: at most 30 days, no refills. A 31-day prescription is refused
    when written; a request stating 31 days on a 30-day prescription is over both the maximum
    and the prescription; 30 days is issued with its stated supply."""
    enrol_pcgp(b)
    specimen(b, 21, "09:30", "conf")
    visit(b, 21, "10:00", rx=None)
    b.add("prescriber", 21, "10:20", "prescribe", refuse("SUPPLY_EXCEEDS_MAX"), rx="rx31", days=31)
    b.add(
        "prescriber",
        21,
        "10:21",
        "prescribe",
        refuse("REFILLS_NOT_ALLOWED"),
        rx="rxr",
        days=30,
        refills=1,
    )
    b.add("prescriber", 21, "10:22", "prescribe", rx="rx", days=30)
    result(b, 22, "08:30", "conf", "confirmation")
    confirm(b, 22, "09:00")
    patient_month(b, 22, "19:00")
    b.add(
        "pharmacist",
        23,
        "10:00",
        "authorize",
        refuse("SUPPLY_EXCEEDS_MAX", "SUPPLY_EXCEEDS_PRESCRIPTION"),
        pharmacy="ny",
        rx="rx",
        days_supply=31,
    )
    rma(b, 23, "10:05", allow(last_day=b.d(27), days_supply=30))


@timeline(IPLEDGE)
def supply_below_the_prescription(b: Builder) -> None:
    """Item 8: the pharmacy dispenses 20 of the 30 days written; the authorization carries 20."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    rma(b, 23, "10:05", allow(last_day=b.d(27), days_supply=20), days_supply=20)


def ipledge_month_one_without_rma(b: Builder, d: int = 21) -> None:
    specimen(b, d, "09:30", "conf")
    visit(b, d, "10:00")
    result(b, d + 1, "08:30", "conf", "confirmation")
    confirm(b, d + 1, "09:00")
    patient_month(b, d + 1, "19:00")


@timeline(IPLEDGE)
def reverse_and_rerequest_inside_the_window(b: Builder) -> None:
    """§1.1 step 6: a second request while one authorization is live is refused for that alone;
    the pharmacy reverses and re-requests inside the window."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    rma(b, 23, "10:00", allow(last_day=b.d(27)), auth="a1", pickup=False)
    b.add(
        "pharmacist",
        23,
        "10:05",
        "authorize",
        refuse("AUTHORIZATION_ALREADY_ISSUED"),
        pharmacy="ny",
        rx="rx",
        auth="a2",
        days_supply=30,
    )
    b.add("pharmacist", 23, "10:10", "reverse", pharmacy="ny", auth="a1", reason="wrong quantity")
    rma(b, 23, "10:15", allow(last_day=b.d(27)), auth="a3")


@timeline(IPLEDGE)
def pharmacy_finds_the_paper_prescription(b: Builder) -> None:
    """Item 8: a pharmacy holding a paper prescription finds it from the patient's programme id,
    date of birth and the prescriber's NPI, and requests the RMA with it."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    b.add(
        "pharmacist",
        23,
        "09:00",
        "find_prescription",
        allow(written_on=b.d(21)),
        pharmacy="ny",
        rx="found",
    )
    rma(b, 23, "10:00", allow(last_day=b.d(27)), rx="found")


# --- time-zone edges (§1.1 step 6) --------------------------------------------------------------


def _missed_first_window(b: Builder) -> Expect:
    """The first window has just closed: under 2023-03 the 19-day lockout then runs too, and is
    a failing requirement of its own (§1.3)."""
    if b.ruleset == LEGACY:
        return refuse(WINDOW_EXPIRED, "LOCKOUT_19D", earliest=b.d(21 + 19))
    return refuse(WINDOW_EXPIRED)


def _edge(b: Builder, pharmacy: str, eastern: str, ok: bool) -> None:
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    day, hhmm = in_zone(b, 27, eastern, pharmacy)
    exp = allow(last_day=b.d(27), dnda_on=b.d(27)) if ok else _missed_first_window(b)
    rma(b, day, hhmm, exp, pharmacy=pharmacy, pickup=False)


@timeline(IPLEDGE)
def los_angeles_pharmacy_before_eastern_midnight(b: Builder) -> None:
    """§1.1 step 6: a Los Angeles pharmacy at 23:58 Eastern on Day 7 (20:58 local)."""
    _edge(b, "la", "23:58", ok=True)


@timeline(IPLEDGE)
def los_angeles_pharmacy_after_eastern_midnight(b: Builder) -> None:
    """§1.1 step 6: the same pharmacy two minutes later, 00:00 Eastern on day 8 (still Day 7
    in Los Angeles): the window has closed."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    day, hhmm = in_zone(b, 28, "00:00", "la")
    rma(b, day, hhmm, _missed_first_window(b), pharmacy="la", pickup=False)


@timeline(IPLEDGE)
def honolulu_pharmacy_before_eastern_midnight(b: Builder) -> None:
    """§1.1 step 6: a Honolulu pharmacy at 23:58 Eastern on Day 7 (the evening of Day 7 there)."""
    _edge(b, "hnl", "23:58", ok=True)


@timeline(IPLEDGE)
def honolulu_pharmacy_after_eastern_midnight(b: Builder) -> None:
    """§1.1 step 6: a Honolulu pharmacy at 00:01 Eastern on day 8, still Day 7 in Honolulu."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    day, hhmm = in_zone(b, 28, "00:01", "hnl")
    rma(b, day, hhmm, _missed_first_window(b), pharmacy="hnl", pickup=False)


@timeline(IPLEDGE)
def honolulu_pickup_after_eastern_midnight(b: Builder) -> None:
    """§1.1 step 6 and "Which codes go together": authorized in Honolulu on Day 7, picked up that
    same local evening after Eastern midnight: past the do-not-dispense-after instant.
    reading: WINDOW_EXPIRED may accompany AUTHORIZATION_EXPIRED (the documents say "may")."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    day, hhmm = in_zone(b, 27, "22:00", "hnl")
    rma(b, day, hhmm, allow(dnda_on=b.d(27)), pharmacy="hnl", pickup=False)
    day, hhmm = in_zone(b, 28, "00:30", "hnl")
    b.add(
        "pharmacist",
        day,
        hhmm,
        "pickup",
        refuse("AUTHORIZATION_EXPIRED", optional=(WINDOW_EXPIRED,)),
        pharmacy="hnl",
        auth="auth",
    )


DST = {MOD: date(2027, 2, 17), LEGACY: date(2026, 10, 7)}


@timeline(IPLEDGE, bases=DST)
def window_across_daylight_saving_change(b: Builder) -> None:
    """§1.1 step 6 across a change of Eastern offset: 2026-mod Day 1 = 10 Mar 2027 (clocks go
    forward on the 14th), 2023-03 Day 1 = 28 Oct 2026 (back on 1 Nov). A New York pharmacy at
    23:30 on Day 7 is inside and is authorized until 23:59:59 that day; a pickup at 00:30 the next
    day is too late."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    check(b, 27, "23:30", allow(last_day=b.d(27)), pharmacy="ny")
    rma(b, 27, "23:40", allow(last_day=b.d(27), dnda_on=b.d(27)), pharmacy="ny", pickup=False)
    b.add(
        "pharmacist",
        28,
        "00:30",
        "pickup",
        refuse("AUTHORIZATION_EXPIRED", optional=(WINDOW_EXPIRED,)),
        pharmacy="ny",
        auth="auth",
    )


@timeline(IPLEDGE, zones={MOD: "America/Los_Angeles", LEGACY: "America/Los_Angeles"})
def late_evening_specimen_in_los_angeles(b: Builder) -> None:
    """§1.1 step 3: a Los Angeles clinic collects the confirmation specimen at 22:30 on day 21
    (already day 22 in the East). Day 1 is the collection date as written, day 21, whatever
    zone anyone is in: the last day is day 27."""
    enrol_pcgp(b)
    visit(b, 21, "17:00")
    specimen(b, 21, "22:30", "conf")
    result(b, 21, "23:15", "conf", "confirmation")
    confirm(b, 22, "08:00")
    patient_month(b, 22, "19:00")
    rma(b, 27, "20:30", allow(last_day=b.d(27), dnda_on=b.d(27)), pharmacy="la", pickup=False)


# --- §1.2 each following month --------------------------------------------------------------------


@timeline(IPLEDGE)
def second_month_usual_order(b: Builder) -> None:
    """§1.2: four weeks after the first dispense, a monthly test and the same steps again."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    ipledge_month(b, 49, "rx2")
    rma(b, 51, "11:00", allow(last_day=b.d(55), dnda_on=b.d(55)), rx="rx2", auth="a2")


def _month_two_missing(b: Builder, missing: str, codes: tuple[str, ...]) -> None:
    """Month 2 with one of this month's items not done: the RMA names it; done, it is issued."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    if missing != "test":
        specimen(b, 49, "09:30", "t2")
    visit(b, 49, "10:00", rx="rx2", counsel=missing != "counselling", methods=missing != "methods")
    if missing != "test":
        result(b, 50, "08:30", "t2", "monthly")
    if missing not in ("confirmation", "test"):
        confirm(b, 50, "09:00")
    if missing != "comprehension":
        b.add("patient", 50, "19:00", "comprehension")
    if missing != "patient_methods":
        b.add("patient", 50, "19:05", "confirm_methods", methods=["iud", "male_condom"])
    check(b, 51, "09:00", refuse(*codes), rx="rx2")
    if missing == "test":
        specimen(b, 51, "09:30", "t2")
        result(b, 51, "12:00", "t2", "monthly")
        confirm(b, 51, "13:00")
        last = 57
    else:
        last = 55
        if missing == "counselling":
            b.add("prescriber", 51, "10:00", "counsel")
        elif missing == "methods":
            b.add(
                "prescriber",
                51,
                "10:00",
                "contraception",
                methods={"iud": b.iso(-35), "male_condom": b.iso(-35)},
            )
        elif missing == "confirmation":
            confirm(b, 51, "10:00")
        elif missing == "comprehension":
            b.add("patient", 51, "10:00", "comprehension")
        else:
            b.add("patient", 51, "10:00", "confirm_methods", methods=["iud", "male_condom"])
    rma(b, 51, "15:00", allow(last_day=b.d(last)), rx="rx2", auth="a2")


@timeline(IPLEDGE)
def month_two_counselling_does_not_carry_over(b: Builder) -> None:
    """§1.2: last month's counselling does not count for month 2."""
    _month_two_missing(b, "counselling", ("COUNSELING_NOT_DOCUMENTED",))


@timeline(IPLEDGE)
def month_two_prescriber_methods_do_not_carry_over(b: Builder) -> None:
    """§1.2 and item 4: the prescriber's contraception confirmation counts for its month only.
    reading: a missing prescriber entry for this cycle is CONTRACEPTION_NOT_DOCUMENTED ("no
    record covering this cycle")."""
    _month_two_missing(b, "methods", ("CONTRACEPTION_NOT_DOCUMENTED",))


@timeline(IPLEDGE)
def month_two_prescriber_confirmation_does_not_carry_over(b: Builder) -> None:
    """§1.2 and §1.1 step 4: the prescriber confirms this month's result."""
    _month_two_missing(b, "confirmation", (CONFIRMATION,))


@timeline(IPLEDGE)
def month_two_comprehension_does_not_carry_over(b: Builder) -> None:
    """§1.2: the comprehension questions are answered each month."""
    _month_two_missing(b, "comprehension", ("COMPREHENSION_NOT_DONE",))


@timeline(IPLEDGE)
def month_two_patient_methods_do_not_carry_over(b: Builder) -> None:
    """§1.2: the patient enters her methods each month.
    reading: CONTRACEPTION_NOT_CONFIRMED (the engine's documented code for the patient's
    missing entry) names it."""
    _month_two_missing(b, "patient_methods", ("CONTRACEPTION_NOT_CONFIRMED",))


@timeline(IPLEDGE)
def month_two_test_does_not_carry_over(b: Builder) -> None:
    """§1.2: last month's test was used by last month's dispense; none is on file since.
    reading: NO_NEGATIVE_TEST_IN_WINDOW (not WINDOW_EXPIRED: none since the last dispense), with
    the prescriber's confirmation of this month's result missing too."""
    _month_two_missing(b, "test", (NO_TEST, CONFIRMATION))


def _month_two_test(b: Builder, opt_in: bool, **test: object) -> None:
    enrol_pcgp(b)
    if opt_in:
        b.add(
            "prescriber",
            0,
            "17:00",
            "home_testing",
            enabled=True,
            procedure="photo of the test cassette with the patient's id, read by the office",
        )
    ipledge_first_month(b, 21)
    specimen(b, 49, "08:00", "t2")
    visit(b, 49, "10:00", rx="rx2")
    result(b, 49, "12:00", "t2", "monthly", **test)
    patient_month(b, 49, "19:00")


@timeline(IPLEDGE)
def month_two_home_test_with_prescriber_opt_in(b: Builder) -> None:
    """§1.2: under 2026-mod a monthly home test counts where the prescriber opted in with an
    anti-falsification procedure; under 2023-03 the monthly test is a CLIA lab test."""
    _month_two_test(b, True, setting="home", clia=False)
    if b.ruleset == MOD:
        confirm(b, 50, "08:00")
        rma(b, 50, "11:00", allow(last_day=b.d(55)), rx="rx2", auth="a2")
    else:
        check(
            b,
            50,
            "08:00",
            refuse("TEST_SETTING_NOT_PERMITTED", CONFIRMATION, optional=UNUSABLE),
            rx="rx2",
        )


@timeline(IPLEDGE)
def month_two_home_test_without_opt_in(b: Builder) -> None:
    """§1.2 and item 6: a home test the prescriber did not allow is reported with its own code.
    reading: the test relied on is named by its own defect, beside the prescriber's missing
    confirmation (checked before the prescriber confirms)."""
    _month_two_test(b, False, setting="home", clia=False)
    check(
        b,
        50,
        "08:00",
        refuse("TEST_SETTING_NOT_PERMITTED", CONFIRMATION, optional=UNUSABLE),
        rx="rx2",
    )


@timeline(IPLEDGE)
def later_home_test_not_hidden_behind_older_lab_test(b: Builder) -> None:
    """Item 6: month 2's lab test window is missed; the patient then takes a home test the rules
    do not accept. It is the test she relies on, so it is reported, not dropped in favour of the
    older (expired) lab test.
    reading: WINDOW_EXPIRED may accompany (the older test's window has closed)."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    ipledge_month(b, 49, "rx2")
    specimen(b, 57, "08:00", "home")
    result(b, 57, "12:00", "home", "monthly", setting="home", clia=False)
    check(
        b,
        57,
        "13:00",
        refuse("TEST_SETTING_NOT_PERMITTED", CONFIRMATION, optional=(*UNUSABLE, WINDOW_EXPIRED)),
        rx="rx2",
    )


@timeline(IPLEDGE)
def month_two_test_not_sensitive_enough(b: Builder) -> None:
    """Item 6 / rules.md §1.5: a lab test of 50 mIU/mL is less sensitive than the required 25."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    specimen(b, 49, "08:00", "t2")
    visit(b, 49, "10:00", rx="rx2")
    result(b, 49, "12:00", "t2", "monthly", sensitivity=50)
    patient_month(b, 49, "19:00")
    check(
        b,
        50,
        "08:00",
        refuse("TEST_SENSITIVITY_INSUFFICIENT", CONFIRMATION, optional=UNUSABLE),
        rx="rx2",
    )


# --- §1.3 a missed window -------------------------------------------------------------------------


@timeline([MOD])
def missed_first_window_repeat_at_once(b: Builder) -> None:
    """§1.3 2026-mod and item 2: the first window (days 21-27) passes without an RMA. The next
    day only WINDOW_EXPIRED is named; the patient repeats the test at once (a lab), the prescriber
    confirms the new result, and the undispensed prescription is authorized in the new window.
    reading: this cycle's counselling, methods and comprehension still count (nothing was
    dispensed); only the test and the prescriber's confirmation of it are new."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    check(b, 28, "09:00", refuse(WINDOW_EXPIRED))
    specimen(b, 28, "10:00", "repeat")
    result(b, 29, "08:30", "repeat", "confirmation")
    check(b, 29, "09:00", refuse(CONFIRMATION))
    confirm(b, 29, "10:00")
    rma(b, 29, "11:00", allow(last_day=b.d(34), dnda_on=b.d(34)))


@timeline([LEGACY])
def missed_first_window_lockout_names_earliest_date(b: Builder) -> None:
    """§1.3 2023-03: after the missed first window (Day 1 = day 21) the decision names the
    earliest date a new specimen may be collected: day 21 + 19 = day 40.
    reading: the closed window and the running lockout are both listed."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    check(b, 28, "09:00", refuse(WINDOW_EXPIRED, "LOCKOUT_19D", earliest=b.d(40)))


@timeline([LEGACY])
def lockout_specimen_after_18_days(b: Builder) -> None:
    """§1.3 2023-03: a repeat specimen 18 days after the missed one is inside the lockout.
    reading: the refusal is LOCKOUT_19D with the earliest date day 40; the closed window and the
    prescriber's missing confirmation may accompany it."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    specimen(b, 39, "09:30", "repeat")
    result(b, 39, "15:00", "repeat", "confirmation")
    check(
        b,
        39,
        "16:00",
        refuse("LOCKOUT_19D", optional=(WINDOW_EXPIRED, CONFIRMATION), earliest=b.d(40)),
    )


@timeline([LEGACY])
def lockout_specimen_after_19_days(b: Builder) -> None:
    """§1.3 2023-03 and item 2: a repeat specimen 19 days after the missed one qualifies; at the
    new visit the month's items are done again, the prescriber confirms, and the prescription
    written for the missed window is authorized in the new one."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    specimen(b, 40, "09:30", "repeat")
    visit(b, 40, "10:00", rx=None)
    result(b, 41, "08:30", "repeat", "confirmation")
    confirm(b, 41, "09:00")
    patient_month(b, 41, "19:00")
    rma(b, 42, "11:00", allow(last_day=b.d(46), dnda_on=b.d(46)))


@timeline(IPLEDGE)
def missed_later_window_no_lockout(b: Builder) -> None:
    """§1.3: no lockout after a later month's missed window, on either ruleset: month 2's window
    (days 49-55) is missed, a new monthly specimen on day 57 opens a new one at once."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    ipledge_month(b, 49, "rx2")
    check(b, 56, "09:00", refuse(WINDOW_EXPIRED), rx="rx2")
    specimen(b, 57, "09:30", "t3")
    result(b, 58, "08:30", "t3", "monthly")
    confirm(b, 58, "09:00")
    rma(b, 58, "11:00", allow(last_day=b.d(63)), rx="rx2", auth="a2")


# --- §1.4 end of treatment --------------------------------------------------------------------------


@timeline(IPLEDGE)
def end_test_entered_before_last_dose(b: Builder) -> None:
    """§1.4 and item 7: the end-of-treatment test is taken at the last visit (day 48) and entered
    before the prescriber records the last dose (day 52); the post-treatment test on last dose +
    30 completes the course, and the patient can be enrolled again later."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    specimen(b, 48, "09:30", "end")
    result(b, 49, "08:30", "end", "end_of_treatment")
    b.add("prescriber", 53, "09:00", "end", last_dose_on=b.iso(52))
    specimen(b, 82, "09:30", "post")
    result(b, 83, "08:30", "post", "post_treatment")
    b.add("prescriber", 83, "09:00", "status", allow(state="completed"))
    b.add("prescriber", 120, "09:00", "enrol", allow(ruleset=b.ruleset), programme="ipledge")
    b.add("prescriber", 120, "09:05", "status", allow(state="enrolled"))


@timeline(IPLEDGE)
def post_treatment_test_overdue(b: Builder) -> None:
    """§1.4: the post-treatment test is due 30 days after the last dose and flagged overdue after
    that date."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    b.add("prescriber", 50, "09:00", "end", last_dose_on=b.iso(50))
    specimen(b, 50, "09:30", "end")
    result(b, 50, "15:00", "end", "end_of_treatment")
    b.add("prescriber", 82, "09:00", "due", allow(flags=frozenset({"OVERDUE_POST_TREATMENT_TEST"})))


# --- §1.5 pregnancy -----------------------------------------------------------------------------------


@timeline(IPLEDGE)
def positive_monthly_test_suspends(b: Builder) -> None:
    """§1.5: a positive month-2 test suspends the course at once: no RMA for the prescription
    already written, no new prescription; the refusal names the positive test while it is the
    cause (blocking states decide alone)."""
    enrol_pcgp(b)
    ipledge_first_month(b, 21)
    specimen(b, 49, "09:30", "t2")
    visit(b, 49, "10:00", rx="rx2")
    result(b, 50, "08:30", "t2", "monthly", result="positive")
    patient_month(b, 50, "19:00")
    check(b, 51, "09:00", refuse("COURSE_SUSPENDED", "PREGNANCY_TEST_POSITIVE"), rx="rx2")
    b.add(
        "prescriber",
        51,
        "10:00",
        "check_prescribe",
        refuse("COURSE_SUSPENDED", "PREGNANCY_TEST_POSITIVE"),
    )
    b.add("prescriber", 51, "10:05", "due", allow(flags=frozenset({"PREGNANCY_ACTIONS"})))


@timeline(IPLEDGE)
def reported_pregnancy_blocks_pickup(b: Builder) -> None:
    """§1.5: the RMA is issued, the patient reports a pregnancy that evening, the pickup the next
    morning is refused.
    reading: a reported pregnancy without a positive test is COURSE_SUSPENDED alone."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    rma(b, 23, "11:00", allow(last_day=b.d(27)), pickup=False)
    b.add("patient", 23, "20:00", "pregnancy")
    b.add(
        "pharmacist", 24, "10:00", "pickup", refuse("COURSE_SUSPENDED"), pharmacy="ny", auth="auth"
    )


@timeline(IPLEDGE)
def positive_test_after_rma_blocks_pickup(b: Builder) -> None:
    """§1.5: the RMA is issued, then a positive result comes in the same day: the pickup the
    next morning is refused, and the refusal names the positive test as the cause (a blocking
    state decides alone, with its cause)."""
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    rma(b, 23, "11:00", allow(last_day=b.d(27)), pickup=False)
    specimen(b, 23, "12:00", "tp")
    result(b, 23, "17:00", "tp", "confirmation", result="positive")
    b.add(
        "pharmacist",
        24,
        "10:00",
        "pickup",
        refuse("COURSE_SUSPENDED", "PREGNANCY_TEST_POSITIVE"),
        pharmacy="ny",
        auth="auth",
    )


_ = datetime


@timeline([MOD])
def repeat_confirmation_test_at_home_is_refused(b: Builder) -> None:
    """§1.3 2026-mod: after a missed first window the repeat test is taken in a medical setting
    (no first dose yet), even where the prescriber allows home tests later on.
    reading: the home test is the test relied on, so its own code is listed with the
    prescriber's missing confirmation; WINDOW_EXPIRED may accompany."""
    b.add("prescriber", 0, "08:00", "home_testing", enabled=True, procedure="photo of the cassette")
    enrol_pcgp(b)
    ipledge_month_one_without_rma(b)
    specimen(b, 28, "08:00", "home")
    result(b, 28, "12:00", "home", "confirmation", setting="home", clia=False)
    check(
        b,
        28,
        "13:00",
        refuse("TEST_SETTING_NOT_PERMITTED", CONFIRMATION, optional=(*UNUSABLE, WINDOW_EXPIRED)),
    )
    specimen(b, 29, "09:00", "repeat")
    result(b, 29, "15:00", "repeat", "confirmation")
    confirm(b, 29, "16:00")
    rma(b, 29, "17:00", allow(last_day=b.d(35)))


@timeline(IPLEDGE)
def screening_result_entered_days_later(b: Builder) -> None:
    """§1.1 step 1: the screening result is entered when it is known, here five days after the
    specimen; the 19-day spacing counts from the specimen dates (day 0 and day 21)."""
    b.add("prescriber", 0, "09:00", "register_patient")
    b.add("prescriber", 0, "09:05", "enrol", allow(ruleset=b.ruleset), programme="ipledge")
    b.add(
        "prescriber",
        0,
        "09:10",
        "category",
        category="can_get_pregnant",
        reason="REPRODUCTIVE_POTENTIAL",
    )
    b.add("prescriber", 0, "09:15", "consent", form="PATIENT_INFORMATION_CONSENT")
    b.add("prescriber", 0, "09:16", "consent", form="BIRTH_DEFECTS_CONSENT")
    b.add("prescriber", 0, "09:20", "counsel")
    visit(b, 0, "09:25", rx=None, counsel=False)
    specimen(b, 0, "09:40", "screening")
    result(b, 5, "14:00", "screening", "screening", setting="clinic", clia=False)
    ipledge_first_month(b, 21)
