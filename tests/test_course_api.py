"""Treatment courses through the public API, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from compliance import Compliance, FixedClock
from compliance.audit.store import LogFilter
from compliance.domain import reasons as rc
from compliance.errors import Conflict, InvalidInput, Refused
from tests.conftest import World, build_world

EASTERN = ZoneInfo("America/New_York")
START = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)  # ipledge/2026-mod is in force


@dataclass
class Clinic:
    app: Compliance
    clock: FixedClock
    world: World
    honolulu: str  # a pharmacist in Pacific/Honolulu

    @property
    def prs(self) -> str:
        return self.world.prescriber.id

    @property
    def rph(self) -> str:
        return self.world.pharmacist.id

    def day(self, n: int, hour: int = 15) -> str:
        self.clock.set(START.replace(hour=hour) + timedelta(days=n))
        return (START.date() + timedelta(days=n)).isoformat()


@pytest.fixture
def clinic(db_url: str) -> Clinic:
    clock = FixedClock(START)
    app = Compliance.open(db_url, clock)
    world = build_world(app)
    admin = world.admin.id
    pharmacy = app.register_pharmacy(admin, "Aloha Pharmacy", "7777777", "Pacific/Honolulu")
    app.activate_pharmacy(admin, pharmacy.id)
    honolulu = app.register_pharmacist(admin, "Kai", pharmacy.id).id
    return Clinic(app, clock, world, honolulu)


def refused(call: Callable[[], object]) -> tuple[str, ...]:
    with pytest.raises(Refused) as caught:
        call()
    return caught.value.reasons


def qualified_pcgp(c: Clinic, name: str = "Ana") -> str:
    """A patient who can get pregnant, qualified on day 19 (confirmation test that day)."""
    app, prs = c.app, c.prs
    c.day(0)
    pat = app.register_patient(prs, name, "2003-08-21").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    for form in ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"):
        app.record_consent(prs, pat, form)
    start = (START.date() - timedelta(days=11)).isoformat()
    app.record_contraception(prs, pat, {"iud": start, "male_condom": start})
    app.record_test(
        prs, pat, kind="screening", specimen_date=c.day(0), setting="clinic", result="negative"
    )
    app.record_test(
        prs, pat, kind="confirmation", specimen_date=c.day(19), setting="lab", result="negative"
    )
    app.confirm_patient(prs, pat)
    monthly_paperwork(c, pat)
    return pat


def monthly_paperwork(c: Clinic, pat: str) -> None:
    """The month's counselling, the prescriber's methods entry for the month (iPLEDGE: it
    counts for its month only), the patient's answers and methods."""
    start = (START.date() - timedelta(days=11)).isoformat()
    c.app.record_contraception(c.prs, pat, {"iud": start, "male_condom": start})
    c.app.record_counselling(c.prs, pat)
    c.app.record_comprehension(pat, pat)
    c.app.confirm_contraception(pat, pat, ["iud", "male_condom"])


def test_a_whole_course_with_every_gate(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    decision = app.check_prescribe(c.prs, pat, 30)
    assert decision.allowed and decision.ruleset_id == "ipledge/2026-mod"
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    decision = app.check_dispense(c.rph, rx.id)
    assert decision.allowed and decision.window is not None
    assert (decision.window.first_day, decision.window.last_day) == (
        date(2027, 1, 23),
        date(2027, 1, 29),
    )
    auth = app.request_authorization(c.rph, rx.id).authorization
    assert auth is not None
    # do not dispense after the last instant of Day 7 in Eastern time
    assert auth.do_not_dispense_after == datetime(2027, 1, 30, 4, 59, 59, 999999, tzinfo=UTC)
    assert auth.days_supply == 30 and auth.test is not None
    done = app.record_dispense(c.rph, auth.number).course
    assert (done.state, done.cycle, done.first_dispensed_on) == ("dispensed", 2, date(2027, 1, 23))

    # cycle 2: a missed monthly test is refused, then the month's paperwork passes
    c.day(48)
    monthly_paperwork(c, pat)
    rx2 = app.prescribe(c.prs, pat, 30).prescription  # written at the visit, before the test
    assert rx2 is not None
    assert rc.NO_NEGATIVE_TEST_IN_WINDOW in refused(
        lambda: app.request_authorization(c.rph, rx2.id)
    )
    app.record_test(
        c.prs, pat, kind="monthly", specimen_date=c.day(48), setting="clinic", result="negative"
    )
    app.confirm_patient(c.prs, pat)
    auth2 = app.request_authorization(c.rph, rx2.id).authorization
    assert auth2 is not None
    app.record_dispense(c.rph, auth2.number)

    ended = app.end_treatment(c.prs, pat, c.day(70)).course
    assert ended.state == "treatment_ended"
    app.record_test(
        c.prs,
        pat,
        kind="end_of_treatment",
        specimen_date=c.day(70),
        setting="clinic",
        result="negative",
    )
    assert app.status(c.prs, pat).course.state == "post_treatment"
    early = app.record_test(
        c.prs,
        pat,
        kind="post_treatment",
        specimen_date=c.day(99),
        setting="clinic",
        result="negative",
    ).course
    assert early.state == "post_treatment"  # 29 days after the last dose is too early
    c.day(101)
    assert [f.code for f in app.due(c.prs, 7) if f.patient == pat] == [
        rc.OVERDUE_POST_TREATMENT_TEST
    ]
    final = app.record_test(
        c.prs,
        pat,
        kind="post_treatment",
        specimen_date=c.day(101),
        setting="clinic",
        result="negative",
    ).course
    assert (final.state, final.open) == ("completed", False)
    assert rc.NO_ACTIVE_COURSE in refused(lambda: app.prescribe(c.prs, pat, 30))
    events = app.audit_log(c.world.admin.id, LogFilter(subject=pat))
    course_events = [e for e in events if e.outcome == "ok" and e.action != "patient.register"]
    assert len(course_events) > 20
    assert {e.ruleset_id for e in course_events} == {"ipledge/2026-mod"}
    assert events[-1].reason_codes == (rc.NO_ACTIVE_COURSE,) and events[-1].ruleset_id is None
    assert app.verify_audit(c.world.admin.id).ok


def test_second_authorization_reversal_and_expiry(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    first = app.request_authorization(c.rph, rx.id).authorization
    assert first is not None
    assert refused(lambda: app.request_authorization(c.rph, rx.id)) == (
        rc.AUTHORIZATION_ALREADY_ISSUED,
    )
    assert refused(lambda: app.request_authorization(c.honolulu, rx.id)) == (
        rc.AUTHORIZATION_ALREADY_ISSUED,
    )
    app.reverse_authorization(c.rph, first.number, "wrong quantity")
    assert refused(lambda: app.record_dispense(c.rph, first.number)) == (rc.AUTHORIZATION_REVERSED,)
    second = app.request_authorization(c.rph, rx.id).authorization
    assert second is not None and second.number != first.number
    # Day 8 in Eastern time: the pickup is refused, and the pharmacy is told to reverse
    c.clock.set(datetime(2027, 1, 30, 5, 0, tzinfo=UTC))
    assert refused(lambda: app.record_dispense(c.rph, second.number)) == (rc.AUTHORIZATION_EXPIRED,)
    flags = app.due(c.world.admin.id, 7)
    assert [(f.code, f.reference) for f in flags] == [(rc.RMA_REVERSAL_REQUIRED, second.number)]
    with pytest.raises(InvalidInput, match="authorization"):
        app.record_dispense(c.rph, second.number[:-1] + str((int(second.number[-1]) + 1) % 10))


def test_eastern_midnight_from_honolulu(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    last_day = datetime(2027, 1, 29, 23, 59, tzinfo=EASTERN)  # Day 7, 18:59 in Honolulu
    c.clock.set(last_day.astimezone(UTC))
    assert app.check_dispense(c.honolulu, rx.id).allowed
    c.clock.set((last_day + timedelta(minutes=1)).astimezone(UTC))  # 19:00 in Honolulu
    # WINDOW_EXPIRED alone (reason-codes.md, "Which codes go together")
    assert refused(lambda: app.request_authorization(c.honolulu, rx.id)) == (rc.WINDOW_EXPIRED,)


def test_positive_test_mid_course_suspends_and_reverses(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    auth = app.request_authorization(c.rph, rx.id).authorization
    assert auth is not None
    out = app.record_test(
        c.prs, pat, kind="monthly", specimen_date=c.day(20), setting="lab", result="positive"
    ).course
    assert (out.state, out.pregnancy_actions) == ("suspended", True)
    assert refused(lambda: app.record_dispense(c.rph, auth.number)) == (rc.AUTHORIZATION_REVERSED,)
    assert rc.COURSE_SUSPENDED in refused(lambda: app.prescribe(c.prs, pat, 30))
    assert [f.code for f in app.due(c.prs, 7)] == [rc.PREGNANCY_ACTIONS]
    with pytest.raises(InvalidInput, match="note"):
        app.resume_course(c.prs, pat, "")
    assert app.status(c.prs, pat).course.state == "suspended"  # never resumes by itself


def test_reported_pregnancy_suspends(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    out = app.report_pregnancy(c.rph, pat, note="patient called the pharmacy").course
    assert (out.state, out.pregnancy_actions) == ("suspended", True)


def test_category_change_mid_course(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    c.day(0)
    pat = app.register_patient(c.prs, "Sam", "1990-05-05").patient.id
    app.enrol(c.prs, pat)
    app.assign_category(c.prs, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(c.prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(c.prs, pat)
    app.record_comprehension(pat, pat)
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    changed = app.assign_category(c.prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    assert changed.course.state == "pre_treatment"
    reasons = refused(lambda: app.request_authorization(c.rph, rx.id))
    assert rc.PRESCRIPTION_SUPERSEDED in reasons and rc.CONSENT_NOT_SIGNED in reasons
    assert rc.PRETREATMENT_TESTS_INCOMPLETE in reasons
    assert refused(
        lambda: app.assign_category(c.prs, pat, "cannot_get_pregnant", "TUBAL_LIGATION")
    ) == (rc.INVALID_CATEGORY_REASON,)


def test_new_course_after_completion_takes_the_ruleset_in_force(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    admin = c.world.admin.id
    c.day(0)
    pat = app.register_patient(c.prs, "Lee", "1985-03-03").patient.id
    first = app.enrol(c.prs, pat, enrolled_on="2026-06-01").course
    assert first.ruleset == "ipledge/2023-03"
    with pytest.raises(Conflict):
        app.enrol(c.prs, pat)
    app.withdraw_course(c.prs, pat, "moved away")
    second = app.enrol(c.prs, pat).course
    assert (second.ruleset, second.state) == ("ipledge/2026-mod", "enrolled")
    app.set_rules_schedule(admin, "ipledge/2026-mod", "2027-06-01")
    app.withdraw_course(c.prs, pat)
    third = app.enrol(c.prs, pat).course
    assert third.ruleset == "ipledge/2023-03"


def test_home_tests_need_the_prescribers_opt_in(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    auth = app.request_authorization(c.rph, rx.id).authorization
    assert auth is not None
    app.record_dispense(c.rph, auth.number)
    c.day(48)
    monthly_paperwork(c, pat)
    home = app.record_test(
        c.prs, pat, kind="monthly", specimen_date=c.day(48), setting="home", result="negative"
    )
    assert home.record["problems"] == [rc.TEST_SETTING_NOT_PERMITTED]
    rx2 = app.prescribe(c.prs, pat, 30).prescription  # writing does not judge the test
    assert rx2 is not None
    app.confirm_patient(c.prs, pat)  # the result is in; the test's setting is judged below
    assert rc.TEST_SETTING_NOT_PERMITTED in refused(
        lambda: app.request_authorization(c.rph, rx2.id)
    )
    with pytest.raises(InvalidInput, match="procedure"):
        app.set_home_testing(c.prs, True, "")
    app.set_home_testing(c.prs, True, "video-observed test, photo of the result", on=c.day(48))
    home2 = app.record_test(
        c.prs, pat, kind="monthly", specimen_date=c.day(48), setting="home", result="negative"
    )
    assert home2.record["problems"] == [] and home2.record["home_opt_in"] is True
    app.confirm_patient(c.prs, pat)
    assert app.request_authorization(c.rph, rx2.id).authorization is not None


def test_home_tests_never_count_under_2023(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    app.set_home_testing(c.prs, True, "video-observed")
    pat = app.register_patient(c.prs, "Old", "2000-01-01").patient.id
    app.enrol(c.prs, pat, enrolled_on="2026-06-01")
    app.assign_category(c.prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    out = app.record_test(
        c.prs, pat, kind="monthly", specimen_date=c.day(0), setting="home", result="negative"
    )
    assert out.record["problems"] == [rc.TEST_SETTING_NOT_PERMITTED]


def test_refusals_are_audited_with_their_decision(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)
    assert refused(lambda: app.prescribe(c.prs, pat, 31)) == (rc.SUPPLY_EXCEEDS_MAX,)
    (event,) = app.audit_log(c.world.admin.id, LogFilter(subject=pat, action="course.prescribe"))
    assert event.outcome == "refused" and event.reason_codes == (rc.SUPPLY_EXCEEDS_MAX,)
    assert event.ruleset_id == "ipledge/2026-mod" and event.state_before == "pre_treatment"
    assert event.payload["decision"]["reasons"][0]["code"] == rc.SUPPLY_EXCEEDS_MAX


def test_patients_and_designees_stay_in_scope(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c, "Mia")
    other = app.register_patient(c.prs, "Noa", "2002-02-02").patient.id
    app.enrol(c.prs, other)
    assert refused(lambda: app.record_comprehension(other, pat)) == (rc.OUT_OF_SCOPE,)
    second = app.register_prescriber(c.world.admin.id, "Dr Two", "1234567893").id
    app.activate_prescriber(c.world.admin.id, second)
    dsg = app.register_designee(second, "Dee Two").id
    app.grant_designee(second, dsg, second)
    assert refused(lambda: app.record_counselling(dsg, pat)) == (rc.OUT_OF_SCOPE,)


def test_a_prescription_may_predate_the_test_it_relies_on(clinic: Clinic) -> None:
    """workflows.md 1.1 step 3: the lab specimen may be collected a day or two after the visit
    at which the prescription was written; iPLEDGE judges the test at the request."""
    c, app = clinic, clinic.app
    pat = qualified_pcgp(c)  # confirmation test collected on day 19
    rx = app.prescribe(c.prs, pat, 30, written_on=(START.date() + timedelta(days=18)).isoformat())
    assert rx.prescription is not None
    assert app.request_authorization(c.rph, rx.prescription.id).authorization is not None
