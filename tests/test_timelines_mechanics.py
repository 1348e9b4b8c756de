"""Dated timelines through the public API, on real SQLite files and PostgreSQL, written from
shared/domain/workflows.md (sections 1.4, 2, 3 and 4) and the section "Which codes go
together" of reason-codes.md (issue 11, items 3, 5, 6, 7 and 9).

Each timeline is what a clinic and a pharmacy would record, in the order the documents say
they record it, with the decision the documents expect at each checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from compliance import Compliance, FixedClock
from compliance.domain import reasons as rc
from compliance.errors import Refused
from tests.conftest import World, add_pharmacist, build_world

LEGACY, MOD = "ipledge/2023-03", "ipledge/2026-mod"
# A Monday in each era: 2023-03 governs courses enrolled before 15 Nov 2026, 2026-mod after.
STARTS = {
    LEGACY: datetime(2026, 6, 1, 15, 0, tzinfo=UTC),
    MOD: datetime(2027, 1, 4, 15, 0, tzinfo=UTC),
}
UK_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
IPLEDGE = pytest.mark.parametrize("era", [LEGACY, MOD])


class Timeline:
    """One clinic, one Los Angeles pharmacy (the world's) and one in London; day ``n`` of the
    timeline is START + n days."""

    def __init__(self, db_url: str, start: datetime) -> None:
        self.start = start
        self.clock = FixedClock(start)
        self.app = Compliance.open(db_url, self.clock)
        self.world: World = build_world(self.app)
        admin = self.world.admin.id
        self.london = add_pharmacist(self.app, admin, "High Street", "7654321", "Europe/London")

    @property
    def prs(self) -> str:
        return self.world.prescriber.id

    @property
    def rph(self) -> str:
        return self.world.pharmacist.id

    def day(self, n: int, hour: int | None = None) -> str:
        moment = self.start + timedelta(days=n)
        self.clock.set(moment if hour is None else moment.replace(hour=hour))
        return (self.start.date() + timedelta(days=n)).isoformat()

    def date(self, n: int) -> str:
        return (self.start.date() + timedelta(days=n)).isoformat()

    def test(self, pat: str, kind: str, n: int, setting: str = "lab", **kw: object) -> str:
        out = self.app.record_test(
            self.prs,
            pat,
            kind=kind,
            specimen_date=self.date(n),
            setting=setting,
            result=str(kw.pop("result", "negative")),
            clia=bool(kw.pop("clia", True)),
            sensitivity_miu_ml=float(kw.pop("sensitivity", 25)),  # type: ignore[arg-type]
        )
        assert not kw
        return out.course.state

    def authorize_and_pick_up(self, rx_id: str, pharmacist: str | None = None) -> None:
        who = pharmacist or self.rph
        auth = self.app.request_authorization(who, rx_id).authorization
        assert auth is not None
        self.app.record_dispense(who, auth.number)


def refused(call: Callable[[], object]) -> tuple[str, ...]:
    with pytest.raises(Refused) as caught:
        call()
    return caught.value.reasons


@pytest.fixture
def ipledge(db_url: str, request: pytest.FixtureRequest) -> Timeline:
    return Timeline(db_url, STARTS[request.param])


IPLEDGE_TL = pytest.mark.parametrize("ipledge", [LEGACY, MOD], indirect=True)


@pytest.fixture
def uk(db_url: str) -> Timeline:
    return Timeline(db_url, UK_START)


def pcgp_first_dispense(t: Timeline, name: str = "Ana") -> str:
    """workflows.md 1.1: enrolment with screening test on day 0, methods in use 45 days, the
    confirmation specimen on day 20, the prescriber's prescription that day, the patient's
    comprehension and methods that evening, the pharmacy's authorization and pickup on day 21."""
    app, prs = t.app, t.prs
    t.day(0)
    pat = app.register_patient(prs, name, "2003-08-21").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    for form in ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"):
        app.record_consent(prs, pat, form)
    start = (t.start.date() - timedelta(days=25)).isoformat()
    app.record_contraception(prs, pat, {"iud": start, "male_condom": start})
    t.test(pat, "screening", 0, setting="clinic", clia=False)
    t.day(20)
    t.test(pat, "confirmation", 20)
    app.confirm_patient(prs, pat)  # once the negative result is in (workflows.md 1.1 step 4)
    app.record_counselling(prs, pat)
    app.record_comprehension(pat, pat)
    app.confirm_contraception(pat, pat, ["iud", "male_condom"])
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.day(21)
    t.authorize_and_pick_up(rx.id)
    return pat


def monthly_visit(t: Timeline, pat: str, n: int) -> None:
    """workflows.md 1.2 on day ``n``: the monthly test, counselling, the prescriber's methods
    entry for this month and confirmation of the result; the patient's answers and methods."""
    app, prs = t.app, t.prs
    t.test(pat, "monthly", n)
    app.record_counselling(prs, pat)
    start = (t.start.date() - timedelta(days=25)).isoformat()
    app.record_contraception(prs, pat, {"iud": start, "male_condom": start})
    app.confirm_patient(prs, pat)
    app.record_comprehension(pat, pat)
    app.confirm_contraception(pat, pat, ["iud", "male_condom"])


# --- item 3: no comprehension questions for patients who cannot get pregnant ------------------


@IPLEDGE_TL
def test_a_male_patient_is_never_asked_for_comprehension(ipledge: Timeline) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    t.day(0)
    pat = app.register_patient(prs, "Ben", "2004-02-11").patient.id
    ruleset = app.enrol(prs, pat).course.ruleset
    app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prs, pat)
    status = app.status(prs, pat)
    items = {i.item: i.status for i in status.checklist}
    assert items["comprehension"] == "not_required"
    assert items["pregnancy_test"] == items["contraception"] == "not_required"
    assert status.decision.allowed, status.decision.codes
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.authorize_and_pick_up(rx.id)
    # the next month: 2023-03 documents counselling monthly, 2026-mod at enrolment only
    t.day(30)
    rx2 = app.prescribe(prs, pat, 30).prescription
    assert rx2 is not None
    if ruleset == LEGACY:  # judged at the request
        assert refused(lambda: app.request_authorization(t.rph, rx2.id)) == (
            rc.COUNSELING_NOT_DOCUMENTED,
        )
        app.record_counselling(prs, pat)
    t.authorize_and_pick_up(rx2.id)
    assert app.status(prs, pat).course.cycle == 3


# --- item 5: the UK and EU programmes' own mechanics ---------------------------------------------


def test_uk_agreement_no_lead_in_no_patient_confirmation_counselling_at_initiation(
    uk: Timeline,
) -> None:
    t, app, prs = uk, uk.app, uk.prs
    t.day(0)
    pat = app.register_patient(prs, "Olivia", "2004-05-06").patient.id
    assert app.enrol(prs, pat, programme="uk-iso").course.ruleset == "uk-iso/2026-01"
    app.assign_category(prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
    app.record_consent(prs, pat, "ACKNOWLEDGEMENT_OF_RISK")
    app.record_counselling(prs, pat)
    # the agreement is documented at the initiation visit: nothing to wait a month for
    app.record_contraception(prs, pat, {"no_expected_risk_agreement": t.date(0)})
    t.test(pat, "confirmation", 0, setting="clinic", clia=False)
    items = {i.item: i.status for i in app.status(prs, pat).checklist}
    assert items["contraception_confirmed"] == items["comprehension"] == "not_required"
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.day(2)
    t.authorize_and_pick_up(rx.id, t.london)
    # four weeks later: a new test and a new prescription; no counselling, no confirmation
    t.day(28)
    t.test(pat, "monthly", 28, setting="clinic", clia=False)
    rx2 = app.prescribe(prs, pat, 30).prescription
    assert rx2 is not None
    assert app.check_dispense(t.london, rx2.id).allowed
    t.authorize_and_pick_up(rx2.id, t.london)


def test_uk_patient_not_of_childbearing_potential_has_no_ppp_limits(uk: Timeline) -> None:
    t, app, prs = uk, uk.app, uk.prs
    t.day(0)
    pat = app.register_patient(prs, "Tom", "1999-09-09").patient.id
    app.enrol(prs, pat, programme="uk-iso")
    app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")  # a male patient
    app.record_consent(prs, pat, "ACKNOWLEDGEMENT_OF_RISK")
    app.record_counselling(prs, pat)
    rx = app.prescribe(prs, pat, 90).prescription  # no 30-day cap, no test
    assert rx is not None
    t.day(20)  # no 7-day validity either
    decision = app.check_dispense(t.london, rx.id)
    assert decision.allowed, decision.codes
    assert decision.window is None
    t.authorize_and_pick_up(rx.id, t.london)


def test_uk_woman_of_childbearing_potential_keeps_every_limit(uk: Timeline) -> None:
    t, app, prs = uk, uk.app, uk.prs
    t.day(0)
    pat = app.register_patient(prs, "Ada", "2001-01-01").patient.id
    app.enrol(prs, pat, programme="uk-iso")
    app.assign_category(prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
    app.record_consent(prs, pat, "ACKNOWLEDGEMENT_OF_RISK")
    app.record_counselling(prs, pat)
    started = (t.start.date() - timedelta(days=40)).isoformat()
    # the combined pill and the progestin-only pill: two user-dependent methods, no barrier
    app.record_contraception(
        prs, pat, {"combined_oral_contraceptive": started, "progestin_only_pill": started}
    )
    t.test(pat, "confirmation", 0, setting="clinic", clia=False)
    assert refused(lambda: app.prescribe(prs, pat, 30)) == (rc.NO_PRIMARY_METHOD,)
    app.record_contraception(
        prs, pat, {"combined_oral_contraceptive": started, "male_condom": started}
    )
    assert rc.SUPPLY_EXCEEDS_MAX in refused(lambda: app.prescribe(prs, pat, 31))
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.day(7)  # Day 8 of the prescription in London
    assert refused(lambda: app.request_authorization(t.london, rx.id)) == (rc.RX_EXPIRED,)


def test_eu_combined_and_progestin_only_pill_is_refused(uk: Timeline) -> None:
    t, app, prs = uk, uk.app, uk.prs
    t.day(0)
    pat = app.register_patient(prs, "Elena", "2001-02-03").patient.id
    assert app.enrol(prs, pat, programme="eu-iso").course.ruleset == "eu-iso/2018"
    app.assign_category(prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
    app.record_consent(prs, pat, "ACKNOWLEDGEMENT_FORM")
    app.record_counselling(prs, pat)
    started = (t.start.date() - timedelta(days=40)).isoformat()
    pills = {"combined_oral_contraceptive": started, "progestin_only_pill": started}
    app.record_contraception(prs, pat, pills)
    t.test(pat, "confirmation", 0, setting="clinic", clia=False)
    assert not app.check_prescribe(prs, pat, 30).allowed
    app.record_contraception(prs, pat, {**pills, "diaphragm_with_spermicide": started})
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.authorize_and_pick_up(rx.id, t.london)


# --- item 6: the latest test is the one relied on ----------------------------------------------


@IPLEDGE_TL
def test_a_later_home_test_is_reported_not_hidden(ipledge: Timeline) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    pat = pcgp_first_dispense(t)
    t.day(48)
    monthly_visit(t, pat, 48)  # a lab test (CLIA): acceptable under both
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    assert app.check_dispense(t.rph, rx.id).allowed
    # later that day a home test is entered for the same month: no prescriber opted in to
    # home testing, so it does not count, and it is the test the patient now relies on
    t.day(48, hour=20)
    t.test(pat, "monthly", 48, setting="home", clia=False)
    codes = refused(lambda: app.request_authorization(t.rph, rx.id))
    assert rc.TEST_SETTING_NOT_PERMITTED in codes


# --- item 7: every course can be completed; re-enrolment -----------------------------------------


@IPLEDGE_TL
def test_end_of_treatment_test_entered_before_the_last_dose(ipledge: Timeline) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    pat = pcgp_first_dispense(t)
    # the last visit: the end-of-treatment test is taken and entered; the last dose is
    # recorded two days later
    t.day(49)
    assert t.test(pat, "end_of_treatment", 49, setting="clinic", clia=False) == "dispensed"
    t.day(51)
    ended = app.end_treatment(prs, pat, t.date(51)).course
    assert ended.state == "post_treatment"
    # the post-treatment test is due on last dose + 30 = day 81
    t.day(76)
    assert [(f.code, f.due) for f in app.due(prs, 7) if f.patient == pat] == [
        (rc.TEST_DUE_SOON, date.fromisoformat(t.date(81)))
    ]
    t.day(81)
    assert [f.code for f in app.due(prs, 7) if f.patient == pat] == [rc.TEST_DUE_SOON]
    t.day(82)
    assert [f.code for f in app.due(prs, 7) if f.patient == pat] == [rc.OVERDUE_POST_TREATMENT_TEST]
    assert t.test(pat, "post_treatment", 80, setting="clinic", clia=False) == "post_treatment"
    assert t.test(pat, "post_treatment", 82, setting="clinic", clia=False) == "completed"
    assert [f for f in app.due(prs, 7) if f.patient == pat] == []
    # re-enrolment after completion: a new course, judged afresh
    t.day(120)
    again = app.enrol(prs, pat).course
    assert (again.state, again.open, again.cycle) == ("enrolled", True, 1)
    assert app.status(prs, pat).course.id == again.id
    decision = app.check_prescribe(prs, pat, 30)
    assert decision.codes[0] == rc.CATEGORY_NOT_ASSIGNED
    # judged as can get pregnant: the checklist asks for what the request will judge
    items = {i.item: i.status for i in app.status(prs, pat).checklist}
    assert items["pregnancy_test"] == "missing"
    app.assign_category(prs, pat, "cannot_get_pregnant", "HYSTERECTOMY")
    app.record_counselling(prs, pat)
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.authorize_and_pick_up(rx.id)


@IPLEDGE_TL
def test_every_test_in_before_the_last_dose_is_recorded_completes_at_once(
    ipledge: Timeline,
) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    pat = pcgp_first_dispense(t)
    # the prescriber records the last dose late, when both tests are already on file
    t.day(49)
    t.test(pat, "end_of_treatment", 49, setting="clinic", clia=False)
    t.day(80)
    t.test(pat, "post_treatment", 80, setting="clinic", clia=False)
    done = app.end_treatment(prs, pat, t.date(50)).course
    assert (done.state, done.open) == ("completed", False)


@IPLEDGE_TL
def test_a_course_waiting_for_its_end_of_treatment_test_is_on_the_worklist(
    ipledge: Timeline,
) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    pat = pcgp_first_dispense(t)
    t.day(50)
    assert app.end_treatment(prs, pat, t.date(50)).course.state == "treatment_ended"
    t.day(53)
    flags = [(f.code, f.due) for f in app.due(prs, 7) if f.patient == pat]
    assert flags == [(rc.TEST_DUE_SOON, date.fromisoformat(t.date(50)))]
    assert t.test(pat, "end_of_treatment", 53, setting="clinic", clia=False) == "post_treatment"


# --- item 9: which codes go together -------------------------------------------------------


@IPLEDGE_TL
def test_a_refused_category_change_keeps_the_valid_earlier_category(ipledge: Timeline) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    pat = pcgp_first_dispense(t)
    before = app.status(prs, pat).course
    assert (before.state, before.cycle) == ("dispensed", 2)
    # tubal ligation cannot support "cannot get pregnant" under iPLEDGE
    assert refused(
        lambda: app.assign_category(prs, pat, "cannot_get_pregnant", "TUBAL_LIGATION")
    ) == (rc.INVALID_CATEGORY_REASON,)
    after = app.status(prs, pat).course
    assert (after.category, after.category_reason, after.state, after.cycle) == (
        "can_get_pregnant",
        "REPRODUCTIVE_POTENTIAL",
        "dispensed",
        2,
    )
    # the month goes on as for any patient who can get pregnant
    t.day(48)
    monthly_visit(t, pat, 48)
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.authorize_and_pick_up(rx.id)


@IPLEDGE_TL
def test_a_refused_first_category_is_judged_as_can_get_pregnant(ipledge: Timeline) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    t.day(0)
    pat = app.register_patient(prs, "Cleo", "2002-03-04").patient.id
    app.enrol(prs, pat)
    assert refused(
        lambda: app.assign_category(prs, pat, "cannot_get_pregnant", "TUBAL_LIGATION")
    ) == (rc.INVALID_CATEGORY_REASON,)
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prs, pat)
    status = app.status(prs, pat)
    assert (status.course.state, status.course.category) == ("enrolled", None)
    items = {i.item: i.status for i in status.checklist}
    for item in ("category", "comprehension", "contraception", "pregnancy_test"):
        assert items[item] == "missing", (item, items)
    # writing needs the category and the consent; the month's items wait for the request
    assert {rc.CATEGORY_NOT_ASSIGNED, rc.CONSENT_NOT_SIGNED} <= set(status.decision.codes)


@IPLEDGE_TL
def test_a_suspended_course_names_its_cause_and_nothing_else(ipledge: Timeline) -> None:
    t, app, prs = ipledge, ipledge.app, ipledge.prs
    pat = pcgp_first_dispense(t)
    t.day(48)
    monthly_visit(t, pat, 48)
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    t.day(49)
    assert t.test(pat, "monthly", 49, result="positive") == "suspended"
    both = {rc.COURSE_SUSPENDED, rc.PREGNANCY_TEST_POSITIVE}
    assert set(refused(lambda: app.request_authorization(t.rph, rx.id))) == both
    assert set(app.check_prescribe(prs, pat, 30).codes) == both
    # a later negative test does not lift the suspension, and the positive stays its cause
    t.day(51)
    t.test(pat, "monthly", 51)
    assert set(app.check_dispense(t.rph, rx.id).codes) == both
    # the prescriber resumes; a pregnancy reported later suspends with no test as its cause
    app.resume_course(prs, pat, "false positive confirmed by serum hCG")
    app.report_pregnancy(pat, pat)
    assert app.check_prescribe(prs, pat, 30).codes == (rc.COURSE_SUSPENDED,)
