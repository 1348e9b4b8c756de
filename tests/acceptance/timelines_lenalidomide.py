"""Timelines for the Lenalidomide REMS (rules.md §6, §17 C12 and C13): two pre-treatment tests
dated 10-14 days and within 24 hours before the first prescription, detecting 50 mIU/mL; two
reliable methods at least 4 weeks before; weekly tests in the first 4 weeks of treatment; at
most 28 days' supply, no refills; the prescription filled within 7 days; males use a condom;
females who cannot get pregnant need neither tests nor contraception.

Day 0 is the enrolment visit; the first prescription is written on day 14 unless a timeline
says otherwise. workflows.md has no section of its own for this programme: the order of steps
is the one its documents give (tests, counselling and the surveys, then the prescription, then
the pharmacy), and any step of the clinic's may come in any order before the prescription.
"""

from __future__ import annotations

from tests.acceptance.model import LENA, Builder, allow, refuse
from tests.acceptance.registry import timeline
from tests.acceptance.steps import enrol_pcgp, patient_month, result, rma, specimen

RX_DAY = 14
# rules.md §6: a test of sensitivity 50 mIU/mL; one that needs more hCG to turn positive (a
# higher figure) is less sensitive. The driver's tests detect 25 mIU/mL.
INSENSITIVE = 100


def _test(b: Builder, day: int, label: str, kind: str, **kw: object) -> None:
    """A specimen collected at the lab in the morning, its result entered before noon."""
    specimen(b, day, "08:30", label)
    result(b, day, "11:30", label, kind, **kw)


def _pretreatment(b: Builder, early: int = 2, late: int = RX_DAY) -> None:
    """The two pre-treatment tests, on days ``early`` and ``late``."""
    _test(b, early, "t-early", "screening")
    _test(b, late, "t-late", "confirmation")


def _enrol_fcbp(b: Builder, lead_start: int = -35) -> None:
    """A female who can get pregnant enrolled on day 0 (two methods, one highly effective,
    from ``lead_start``), and her survey that evening (comprehension, her methods)."""
    enrol_pcgp(b, lead_start=lead_start)
    patient_month(b, 0, "20:00")


def _first_prescription(b: Builder, day: int = RX_DAY) -> None:
    """The prescription (28 days) at the visit, once the day's test result is in."""
    b.add("prescriber", day, "13:00", "prescribe", allow(written_on=b.d(day)), rx="rx", days=28)


def _enrol_other(b: Builder, category: str, reason: str, methods: dict[str, str] | None) -> None:
    """A male, or a female who cannot get pregnant: registration, category, the agreement form,
    counselling, the patient's survey at enrolment; a male's condom from enrolment."""
    b.add("prescriber", 0, "09:00", "register_patient")
    b.add("prescriber", 0, "09:05", "enrol", allow(ruleset=LENA), programme="lenalidomide")
    b.add("prescriber", 0, "09:10", "category", category=category, reason=reason)
    b.add("prescriber", 0, "09:15", "consent", form="PATIENT_PHYSICIAN_AGREEMENT")
    b.add("prescriber", 0, "09:20", "counsel")
    if methods is not None:
        b.add("prescriber", 0, "09:25", "contraception", methods=methods)
    b.add("patient", 0, "11:00", "comprehension")
    if methods is not None:
        b.add("patient", 0, "11:05", "confirm_methods", methods=list(methods))


@timeline([LENA])
def len_fcbp_two_tests_then_prescription(b: Builder) -> None:
    """§6 prescriber: negative tests within 10-14 days (day 2, 12 days before) and again within
    24 hours (day 14, the morning of the visit) before the first prescription; two methods, one
    highly effective, started 35 days before. Before the second test nothing may be written;
    with both, the prescription and the pharmacy's authorization the next day."""
    _enrol_fcbp(b)
    _test(b, 2, "t-early", "screening")
    b.add(
        "prescriber",
        7,
        "10:00",
        "check_prescribe",
        refuse("PRETREATMENT_TESTS_INCOMPLETE", optional=("NO_NEGATIVE_TEST_IN_WINDOW",)),
        days=28,
    )
    _test(b, RX_DAY, "t-late", "confirmation")
    _first_prescription(b)
    rma(b, RX_DAY + 1, "10:00", allow(last_day=b.d(RX_DAY + 6)))


@timeline([LENA])
def len_fcbp_second_test_day_before(b: Builder) -> None:
    """§6 "within 24 hours": a test the afternoon before the visit counts.
    reading: tests carry dates, not times, so within 24 hours is the prescription's date or the
    day before (the ruleset's note)."""
    _enrol_fcbp(b)
    _test(b, 2, "t-early", "screening")
    specimen(b, RX_DAY - 1, "15:00", "t-late")
    result(b, RX_DAY - 1, "17:00", "t-late", "confirmation")
    _first_prescription(b)
    rma(b, RX_DAY, "16:00", allow(last_day=b.d(RX_DAY + 6)))


@timeline([LENA])
def len_fcbp_second_test_four_days_old(b: Builder) -> None:
    """§6: a second test 4 days before the prescription is not within 24 hours: the prescriber
    may not write it until a new test is in; with one on the day, it may."""
    _enrol_fcbp(b)
    _pretreatment(b, early=1, late=RX_DAY - 4)
    b.add(
        "prescriber",
        RX_DAY,
        "08:00",
        "check_prescribe",
        refuse("PRETREATMENT_TESTS_INCOMPLETE", optional=("NO_NEGATIVE_TEST_IN_WINDOW",)),
        days=28,
    )
    _test(b, RX_DAY, "t-again", "confirmation")
    _first_prescription(b)


@timeline([LENA])
def len_fcbp_first_test_too_early(b: Builder) -> None:
    """§6: the first test must be 10-14 days before the prescription; one 16 days before it
    (day 1, the prescription on day 17) does not count."""
    _enrol_fcbp(b)
    _pretreatment(b, early=1, late=17)
    b.add(
        "prescriber",
        17,
        "14:00",
        "check_prescribe",
        refuse("PRETREATMENT_TESTS_INCOMPLETE", optional=("NO_NEGATIVE_TEST_IN_WINDOW",)),
        days=28,
    )


@timeline([LENA])
def len_fcbp_test_sensitivity_below_50(b: Builder) -> None:
    """§6: tests of sensitivity 50 mIU/mL; a second test that detects only 100 mIU/mL does not
    count."""
    _enrol_fcbp(b)
    _test(b, 2, "t-early", "screening")
    _test(b, RX_DAY, "t-late", "confirmation", sensitivity=INSENSITIVE)
    b.add(
        "prescriber",
        RX_DAY,
        "14:00",
        "check_prescribe",
        refuse(
            "TEST_SENSITIVITY_INSUFFICIENT",
            optional=("PRETREATMENT_TESTS_INCOMPLETE", "NO_NEGATIVE_TEST_IN_WINDOW"),
        ),
        days=28,
    )


@timeline([LENA])
def len_fcbp_contraception_four_weeks_before(b: Builder) -> None:
    """§6 contraception at least 4 weeks before: methods started 10 days before enrolment are 24
    days old on day 14 (refused for that alone); on day 18, 28 days, with a new same-day test,
    the prescription may be written."""
    _enrol_fcbp(b, lead_start=-10)
    _pretreatment(b, early=4, late=RX_DAY)
    b.add(
        "prescriber",
        RX_DAY,
        "14:00",
        "check_prescribe",
        refuse("CONTRACEPTION_LEAD_IN_NOT_MET"),
        days=28,
    )
    _test(b, 18, "t-day18", "confirmation")
    b.add("prescriber", 18, "14:00", "check_prescribe", allow(), days=28)


@timeline([LENA])
def len_supply_28_days_no_refills(b: Builder) -> None:
    """§6: at most 28 days' supply, no refills: 30 days or a refill is refused, 28 is written."""
    _enrol_fcbp(b)
    _pretreatment(b)
    b.add("prescriber", RX_DAY, "12:30", "prescribe", refuse("SUPPLY_EXCEEDS_MAX"), days=30)
    b.add(
        "prescriber",
        RX_DAY,
        "12:35",
        "prescribe",
        refuse("REFILLS_NOT_ALLOWED"),
        rx="rx-refill",
        days=28,
        refills=1,
    )
    b.add("prescriber", RX_DAY, "12:40", "prescribe", allow(), rx="rx", days=28)
    rma(b, RX_DAY + 1, "10:00", allow(days_supply=28))


@timeline([LENA])
def len_filled_within_7_days(b: Builder) -> None:
    """§6/§7 patients: the prescription is filled within 7 days (the prescription's date is day
    1): the last evening of day 7 it may be, the next morning it may not.
    reading: rules.md §17 C12 (the validity is not confirmed in the Pharmacy Guide; the ruleset
    holds 7 days from the prescription's date)."""
    _enrol_fcbp(b)
    _pretreatment(b)
    _first_prescription(b)
    b.add(
        "pharmacist",
        RX_DAY + 6,
        "22:00",
        "check_dispense",
        allow(last_day=b.d(RX_DAY + 6)),
        pharmacy="ny",
        rx="rx",
    )
    rma(
        b,
        RX_DAY + 7,
        "09:00",
        refuse("RX_EXPIRED", optional=("WINDOW_EXPIRED",)),
        pickup=False,
    )


@timeline([LENA])
def len_weekly_tests_first_four_weeks(b: Builder) -> None:
    """§6 testing: weekly during the first 4 weeks of treatment. The day after the first
    dispense a test is due within the week; with the weekly tests done and one on the day of the
    next visit (day 42), the second prescription is written and dispensed."""
    _enrol_fcbp(b)
    _pretreatment(b)
    _first_prescription(b)
    rma(b, RX_DAY + 1, "10:00", allow(last_day=b.d(RX_DAY + 6)))
    b.add(
        "prescriber",
        RX_DAY + 2,
        "09:00",
        "due",
        allow(flags=frozenset({"TEST_DUE_SOON"})),
        within=7,
    )
    for week in (1, 2, 3):
        _test(b, RX_DAY + 1 + 7 * week, f"t-week{week}", "monthly")
    second = RX_DAY + 28
    _test(b, second, "t-month2", "monthly")
    b.add("prescriber", second, "12:00", "counsel")
    patient_month(b, second, "12:10")
    b.add("prescriber", second, "13:00", "prescribe", allow(), rx="rx2", days=28)
    rma(b, second + 1, "10:00", allow(last_day=b.d(second + 6)), rx="rx2", auth="a2")


@timeline([LENA])
def len_positive_test_before_dispense(b: Builder) -> None:
    """§6: results are verified by the pharmacist before dispensing, and a pregnancy stops the
    drug at once: a positive result entered after the prescription is written refuses the
    authorization."""
    _enrol_fcbp(b)
    _pretreatment(b)
    _first_prescription(b)
    specimen(b, RX_DAY + 1, "08:00", "t-pos")
    result(b, RX_DAY + 1, "09:00", "t-pos", "monthly", result="positive")
    rma(
        b,
        RX_DAY + 1,
        "10:00",
        refuse("PREGNANCY_TEST_POSITIVE", optional=("COURSE_SUSPENDED",)),
        pickup=False,
    )


@timeline([LENA])
def len_pregnancy_reported_stops(b: Builder) -> None:
    """§6 pregnancy: stop immediately and report. After a reported pregnancy the worklist shows
    the actions owed and no prescription may be written."""
    _enrol_fcbp(b)
    _pretreatment(b)
    _first_prescription(b)
    rma(b, RX_DAY + 1, "10:00", allow())
    b.add("prescriber", RX_DAY + 10, "11:00", "pregnancy")
    b.add(
        "prescriber",
        RX_DAY + 10,
        "11:30",
        "due",
        allow(flags=frozenset({"PREGNANCY_ACTIONS"})),
        within=7,
    )
    b.add(
        "prescriber",
        RX_DAY + 28,
        "10:00",
        "check_prescribe",
        refuse("COURSE_SUSPENDED"),
        days=28,
    )


@timeline([LENA])
def len_male_condom_no_tests(b: Builder) -> None:
    """§6 males: a condom during any sexual contact with a female who can get pregnant; no
    pregnancy tests. Prescribed on the day of enrolment, dispensed the next day."""
    _enrol_other(b, "male", "MALE", {"male_condom": b.iso(0)})
    b.add("prescriber", 0, "13:00", "prescribe", allow(), rx="rx", days=28)
    rma(b, 1, "10:00", allow(days_supply=28))


@timeline([LENA])
def len_female_cannot_get_pregnant(b: Builder) -> None:
    """§6 categories: a female who cannot get pregnant (hysterectomy): no tests, no
    contraception; prescribed and dispensed the same day, and the 28-day cap still holds."""
    _enrol_other(b, "cannot_get_pregnant", "HYSTERECTOMY", None)
    b.add("prescriber", 0, "13:00", "prescribe", refuse("SUPPLY_EXCEEDS_MAX"), rx="rx", days=30)
    b.add("prescriber", 0, "13:05", "prescribe", allow(), rx="rx", days=28)
    rma(b, 0, "16:00", allow(days_supply=28))
