"""Dated iPLEDGE timelines through the public API, on real SQLite files and PostgreSQL, written
from shared/domain/workflows.md sections 1.1-1.3 and 2 (issue 11, items 1, 2, 4 and 8).

iPLEDGE judges the patient's status at the pharmacy's authorization request (RMA), not when the
prescription is written: the prescriber writes at the visit, possibly before the specimen is
collected or its result is back, confirms the patient once the negative result is entered, and
the patient answers the questions and enters her methods afterwards. Every ordering below must
be recordable and end in the authorization (or the refusal) the documents give, with Day 1 of
the window the specimen's collection date and Day 7 ending at 23:59:59 Eastern time.

The expected decisions are read from the documents; each test names the section it follows.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from compliance.domain import reasons as rc
from compliance.errors import NotFound
from tests.conftest import add_pharmacist, next_npi
from tests.test_timelines_mechanics import STARTS, Timeline, refused

LEGACY, MOD = "ipledge/2023-03", "ipledge/2026-mod"
EASTERN = ZoneInfo("America/New_York")
FORMS = ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT")
METHODS = ["iud", "male_condom"]


@pytest.fixture
def t(db_url: str, request: pytest.FixtureRequest) -> Timeline:
    return Timeline(db_url, STARTS[request.param])


BOTH = pytest.mark.parametrize("t", [LEGACY, MOD], indirect=True)
ONLY_LEGACY = pytest.mark.parametrize("t", [LEGACY], indirect=True)
ONLY_MOD = pytest.mark.parametrize("t", [MOD], indirect=True)


def enrolled(t: Timeline, name: str = "Ana") -> str:
    """workflows.md 1.1 step 1, on day 0: registration, category with its reason, both consent
    forms, counselling, the two methods (in use since day -25) and a screening test in the
    office. The 30-day lead-in is reached on day 5, the 19-day spacing on day 19."""
    app, prs = t.app, t.prs
    t.day(0)
    pat = app.register_patient(prs, name, "2003-08-21").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    for form in FORMS:
        app.record_consent(prs, pat, form)
    app.record_counselling(prs, pat)
    start = t.date(-25)
    app.record_contraception(prs, pat, {"iud": start, "male_condom": start})
    t.test(pat, "screening", 0, setting="clinic", clia=False)
    return pat


def patient_steps(t: Timeline, pat: str) -> None:
    """workflows.md 1.1 step 5: the patient's questions and method entry, at home."""
    t.app.record_comprehension(pat, pat)
    t.app.confirm_contraception(pat, pat, METHODS)


def prescribe(t: Timeline, pat: str, days: int = 30, **kw: object) -> str:
    rx = t.app.prescribe(t.prs, pat, days, **kw).prescription  # type: ignore[arg-type]
    assert rx is not None
    return rx.id


def codes(t: Timeline, rx: str, **kw: object) -> tuple[str, ...]:
    return t.app.check_dispense(t.rph, rx, **kw).codes  # type: ignore[arg-type]


def day_of(t: Timeline, n: int) -> date:
    return t.start.date() + timedelta(days=n)


def at_eastern(t: Timeline, n: int, hh: int, mm: int, ss: int = 0) -> None:
    t.clock.set(datetime.combine(day_of(t, n), time(hh, mm, ss), EASTERN))


# --- 1.1 step 3: the prescription is written at the visit, before the specimen or result ----


@BOTH
def test_prescription_written_the_day_before_the_specimen_is_collected(t: Timeline) -> None:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    rx = prescribe(t, pat)  # no confirmation test on file yet: writing does not need it
    assert rc.PRETREATMENT_TESTS_INCOMPLETE in codes(t, rx)
    t.day(21)
    t.test(pat, "confirmation", 21)  # the lab specimen, collected the day after the visit
    t.app.confirm_patient(t.prs, pat)
    patient_steps(t, pat)
    decision = t.app.check_dispense(t.rph, rx)
    assert decision.allowed
    assert decision.window is not None
    assert (decision.window.first_day, decision.window.last_day) == (day_of(t, 21), day_of(t, 27))
    auth = t.app.request_authorization(t.rph, rx).authorization
    assert auth is not None and auth.days_supply == 30


@BOTH
def test_prescription_written_before_the_result_is_back(t: Timeline) -> None:
    """The specimen is collected on day 20 and the result entered on day 24: Day 1 is still
    day 20, so the window ends on day 26 whatever day the result was entered."""
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    rx = prescribe(t, pat)
    patient_steps(t, pat)  # the same evening, before the result is known
    # The result is pending: no usable negative test, so no RMA yet.
    assert rc.NO_NEGATIVE_TEST_IN_WINDOW in codes(t, rx)
    assert rc.WINDOW_EXPIRED not in codes(t, rx)
    t.day(24)
    t.test(pat, "confirmation", 20)  # entered four days after collection
    assert codes(t, rx) == (rc.PRESCRIBER_CONFIRMATION_MISSING,)
    t.app.confirm_patient(t.prs, pat)
    decision = t.app.check_dispense(t.rph, rx)
    assert decision.allowed
    assert decision.window is not None and decision.window.last_day == day_of(t, 26)
    t.day(27)
    assert codes(t, rx) == missed(t)


@BOTH
def test_a_confirmation_counts_for_the_result_it_confirmed_only(t: Timeline) -> None:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    rx = prescribe(t, pat)
    t.app.confirm_patient(t.prs, pat)  # only the screening result is in: that is what it confirms
    t.day(21)
    t.test(pat, "confirmation", 20)
    patient_steps(t, pat)
    assert codes(t, rx) == (rc.PRESCRIBER_CONFIRMATION_MISSING,)
    t.app.confirm_patient(t.prs, pat)
    assert t.app.check_dispense(t.rph, rx).allowed


@BOTH
def test_confirm_patient_is_refused_with_no_negative_result(t: Timeline) -> None:
    app, prs = t.app, t.prs
    t.day(0)
    pat = app.register_patient(prs, "Cleo", "2001-01-01").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    assert refused(lambda: app.confirm_patient(prs, pat)) == (rc.NO_NEGATIVE_TEST_IN_WINDOW,)


@BOTH
def test_confirm_patient_is_refused_on_a_suspended_course(t: Timeline) -> None:
    pat = enrolled(t)
    t.day(20)
    t.test(pat, "confirmation", 20, result="positive")
    found = refused(lambda: t.app.confirm_patient(t.prs, pat))
    assert found == (rc.COURSE_SUSPENDED, rc.PREGNANCY_TEST_POSITIVE)


@BOTH
def test_a_designee_confirms_on_behalf_of_the_prescriber(t: Timeline) -> None:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    rx = prescribe(t, pat)
    t.test(pat, "confirmation", 20)
    patient_steps(t, pat)
    designee = t.world.designee.id
    t.app.confirm_patient(designee, pat, on_behalf_of=t.prs)
    assert t.app.check_dispense(t.rph, rx).allowed
    # The patient may not confirm themselves.
    assert refused(lambda: t.app.confirm_patient(pat, pat)) == (rc.ACTOR_NOT_PERMITTED,)


# --- 1.1 steps 4 and 5 in either order -------------------------------------------------------


@BOTH
@pytest.mark.parametrize("confirm_first", [True, False])
def test_confirmation_before_or_after_the_patient_answers(t: Timeline, confirm_first: bool) -> None:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    t.test(pat, "confirmation", 20)
    rx = prescribe(t, pat)
    if confirm_first:
        t.app.confirm_patient(t.prs, pat)
        assert set(codes(t, rx)) == {rc.COMPREHENSION_NOT_DONE, rc.CONTRACEPTION_NOT_CONFIRMED}
        t.day(21)
        patient_steps(t, pat)
    else:
        patient_steps(t, pat)
        assert codes(t, rx) == (rc.PRESCRIBER_CONFIRMATION_MISSING,)
        t.day(21)
        t.app.confirm_patient(t.prs, pat)
    assert t.app.request_authorization(t.rph, rx).authorization is not None


@BOTH
def test_comprehension_before_the_prescription_is_written(t: Timeline) -> None:
    pat = enrolled(t)
    t.day(19)
    patient_steps(t, pat)  # the patient answers before the visit
    t.day(20)
    t.test(pat, "confirmation", 20)
    t.app.record_counselling(t.prs, pat)
    t.app.confirm_patient(t.prs, pat)
    rx = prescribe(t, pat)
    assert t.app.request_authorization(t.rph, rx).authorization is not None


@BOTH
def test_writing_needs_no_test_counselling_contraception_or_comprehension(t: Timeline) -> None:
    """workflows.md 1.1: the prescription is the prescriber's act; the month's items are needed
    for the RMA. Writing still needs the course, the category, the consent and the supply."""
    app, prs = t.app, t.prs
    t.day(0)
    pat = app.register_patient(prs, "Dee", "2002-05-05").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    assert refused(lambda: app.prescribe(prs, pat, 30)) == (rc.CONSENT_NOT_SIGNED,)
    for form in FORMS:
        app.record_consent(prs, pat, form)
    assert refused(lambda: app.prescribe(prs, pat, 31)) == (rc.SUPPLY_EXCEEDS_MAX,)
    assert refused(lambda: app.prescribe(prs, pat, 30, refills=1)) == (rc.REFILLS_NOT_ALLOWED,)
    rx = prescribe(t, pat)
    found = set(codes(t, rx))
    assert {rc.COMPREHENSION_NOT_DONE, rc.CONTRACEPTION_NOT_DOCUMENTED} <= found
    assert rc.PRETREATMENT_TESTS_INCOMPLETE in found


# --- 1.1 step 6: the RMA until 23:59:59 Eastern on Day 7, from any zone -----------------------


@BOTH
@pytest.mark.parametrize("zone", ["Pacific/Honolulu", "America/Los_Angeles"])
def test_day_7_ends_at_eastern_midnight_for_a_western_pharmacy(t: Timeline, zone: str) -> None:
    pat = enrolled(t)
    pharmacist = add_pharmacist(t.app, t.world.admin.id, "West", "1112223", zone)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    t.test(pat, "confirmation", 20)
    rx = prescribe(t, pat)
    t.app.confirm_patient(t.prs, pat)
    patient_steps(t, pat)
    at_eastern(t, 27, 0, 0)  # 00:00 Eastern on Day 8: still Day 7 in the pharmacy's zone
    assert t.app.check_dispense(pharmacist, rx).codes == missed(t)
    at_eastern(t, 26, 23, 59, 59)  # the last second of Day 7 in Eastern time
    auth = t.app.request_authorization(pharmacist, rx).authorization
    assert auth is not None
    last, midnight = auth.do_not_dispense_after, datetime.combine(day_of(t, 27), time(), EASTERN)
    assert last is not None and last < midnight <= last + timedelta(seconds=1)


# --- 1.2: each month's items count for that month only ----------------------------------------


def first_dispense(t: Timeline) -> tuple[str, str]:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    t.test(pat, "confirmation", 20)
    rx = prescribe(t, pat)
    t.app.confirm_patient(t.prs, pat)
    patient_steps(t, pat)
    t.day(21)
    t.authorize_and_pick_up(rx)
    return pat, rx


@BOTH
def test_last_months_entries_and_confirmation_do_not_carry_over(t: Timeline) -> None:
    pat, _ = first_dispense(t)
    t.day(48)
    rx = prescribe(t, pat)  # the second month's prescription, at the visit
    t.test(pat, "monthly", 48)
    found = set(codes(t, rx))
    assert {
        rc.COUNSELING_NOT_DOCUMENTED,
        rc.COMPREHENSION_NOT_DONE,
        rc.CONTRACEPTION_NOT_DOCUMENTED,  # the prescriber's entry of month 1 does not count
        rc.PRESCRIBER_CONFIRMATION_MISSING,  # month 1's confirmation was for month 1's result
    } <= found
    t.app.record_counselling(t.prs, pat)
    t.app.record_contraception(t.prs, pat, {"iud": t.date(-25), "male_condom": t.date(-25)})
    patient_steps(t, pat)
    assert codes(t, rx) == (rc.PRESCRIBER_CONFIRMATION_MISSING,)
    t.app.confirm_patient(t.prs, pat)
    assert t.app.request_authorization(t.rph, rx).authorization is not None


# --- 1.3: a missed window; the status at the request decides -----------------------------------


def missed_first_window(t: Timeline) -> tuple[str, str]:
    """Everything done for the confirmation test of day 20, but no RMA by Day 7 (day 26)."""
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    t.test(pat, "confirmation", 20)
    rx = prescribe(t, pat)
    t.app.confirm_patient(t.prs, pat)
    patient_steps(t, pat)
    return pat, rx


def missed(t: Timeline) -> tuple[str, ...]:
    """A closed first window at the request: WINDOW_EXPIRED, and under 2023-03 the 19-day
    lockout that then runs (workflows.md 1.3), a failing requirement of its own."""
    if t.start == STARTS[LEGACY]:
        return (rc.LOCKOUT_19D, rc.WINDOW_EXPIRED)
    return (rc.WINDOW_EXPIRED,)


@BOTH
def test_a_request_after_the_window_is_window_expired_alone(t: Timeline) -> None:
    _, rx = missed_first_window(t)
    t.day(28)
    decision = t.app.check_dispense(t.rph, rx)
    # never with NO_NEGATIVE_TEST_IN_WINDOW; under 2023-03 the running lockout is listed too
    assert decision.codes == missed(t)
    reason = next(r for r in decision.reasons if r.code == rc.WINDOW_EXPIRED)
    assert reason.next_step is not None and "test" in reason.next_step
    # 2023-03: after a missed first window the next specimen waits 19 days from day 20.
    lockout = t.start == STARTS[LEGACY]
    assert reason.earliest == (day_of(t, 39) if lockout else day_of(t, 28))


@ONLY_MOD
def test_2026_mod_repeat_test_at_once_and_the_same_prescription(t: Timeline) -> None:
    pat, rx = missed_first_window(t)
    t.day(28)
    t.test(pat, "confirmation", 28)  # repeated at once, in a medical setting
    assert codes(t, rx) == (rc.PRESCRIBER_CONFIRMATION_MISSING,)
    t.app.confirm_patient(t.prs, pat)
    decision = t.app.check_dispense(t.rph, rx)
    assert decision.allowed
    assert decision.window is not None
    assert (decision.window.first_day, decision.window.last_day) == (day_of(t, 28), day_of(t, 34))
    assert t.app.request_authorization(t.rph, rx).authorization is not None


@ONLY_LEGACY
@pytest.mark.parametrize(("gap", "allowed"), [(18, False), (19, True)])
def test_2023_03_lockout_18_vs_19_days(t: Timeline, gap: int, allowed: bool) -> None:
    pat, rx = missed_first_window(t)
    t.day(20 + gap)
    t.test(pat, "confirmation", 20 + gap)
    t.app.confirm_patient(t.prs, pat)
    decision = t.app.check_dispense(t.rph, rx)
    if allowed:
        assert decision.allowed
        assert decision.window is not None and decision.window.first_day == day_of(t, 39)
        assert t.app.request_authorization(t.rph, rx).authorization is not None
    else:
        assert decision.codes == (rc.LOCKOUT_19D,)
        assert decision.reasons[0].earliest == day_of(t, 39)


# --- item 8: what the pharmacist has in hand ----------------------------------------------------


def ready(t: Timeline, days: int = 30) -> tuple[str, str]:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    t.test(pat, "confirmation", 20)
    rx = prescribe(t, pat, days)
    t.app.confirm_patient(t.prs, pat)
    patient_steps(t, pat)
    return pat, rx


@BOTH
def test_30_vs_31_days_supply_stated_by_the_pharmacy(t: Timeline) -> None:
    _, rx = ready(t)
    assert set(codes(t, rx, days_supply=31)) == {
        rc.SUPPLY_EXCEEDS_MAX,
        rc.SUPPLY_EXCEEDS_PRESCRIPTION,
    }
    assert refused(lambda: t.app.request_authorization(t.rph, rx, days_supply=31))
    assert t.app.check_dispense(t.rph, rx, days_supply=30).allowed
    auth = t.app.request_authorization(t.rph, rx, days_supply=30).authorization
    assert auth is not None and auth.days_supply == 30


@BOTH
def test_a_supply_above_the_prescriptions_own(t: Timeline) -> None:
    _, rx = ready(t, days=20)
    assert codes(t, rx, days_supply=28) == (rc.SUPPLY_EXCEEDS_PRESCRIPTION,)
    auth = t.app.request_authorization(t.rph, rx, days_supply=14).authorization
    assert auth is not None and auth.days_supply == 14  # what was dispensed is recorded


@BOTH
@pytest.mark.parametrize("event", ["suspend", "deactivate"])
def test_a_prescriber_no_longer_certified_after_writing(t: Timeline, event: str) -> None:
    _, rx = ready(t)
    admin = t.world.admin.id
    if event == "suspend":
        t.app.suspend_prescriber(admin, t.prs)
    else:
        t.app.deactivate_prescriber(admin, t.prs)
    assert codes(t, rx) == (rc.PRESCRIBER_NOT_CERTIFIED,)
    assert refused(lambda: t.app.request_authorization(t.rph, rx)) == (rc.PRESCRIBER_NOT_CERTIFIED,)


# --- 2: a patient who cannot get pregnant -------------------------------------------------------


@BOTH
def test_pcngp_needs_no_test_confirmation_or_comprehension(t: Timeline) -> None:
    app, prs = t.app, t.prs
    t.day(0)
    pat = app.register_patient(prs, "Eli", "1999-03-03").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prs, pat)
    rx = prescribe(t, pat)
    t.day(1)
    assert t.app.request_authorization(t.rph, rx).authorization is not None


# --- item 8: a paper prescription found from what is written on it ----------------------------


def npi_of(t: Timeline) -> str:
    npi = t.app.get_person(t.world.admin.id, t.prs).external_id
    assert npi is not None
    return npi


@BOTH
def test_a_paper_prescription_is_found_and_authorized(t: Timeline) -> None:
    pat, rx = ready(t)
    found = t.app.find_prescription(t.rph, pat, "2003-08-21", npi_of(t))
    assert (found.id, found.patient, found.days_supply) == (rx, pat, 30)
    t.day(21)
    t.authorize_and_pick_up(found.id)
    # Dispensed: nothing undispensed is left to find.
    with pytest.raises(NotFound):
        t.app.find_prescription(t.rph, pat, "2003-08-21", npi_of(t))


@BOTH
def test_a_wrong_date_of_birth_or_npi_reveals_nothing(t: Timeline) -> None:
    pat, _ = ready(t)
    other_npi = t.app.register_prescriber(t.world.admin.id, "Dr Other", next_npi()).external_id
    assert other_npi is not None
    messages = set()
    for dob, npi in (("2003-08-22", npi_of(t)), ("2003-08-21", other_npi)):
        with pytest.raises(NotFound) as caught:
            t.app.find_prescription(t.rph, pat, dob, npi)
        messages.add(str(caught.value))
    assert len(messages) == 1  # the same answer whichever part did not match
    assert refused(lambda: t.app.find_prescription(t.prs, pat, "2003-08-21", npi_of(t))) == (
        rc.ACTOR_NOT_PERMITTED,
    )


# --- the clinic's checklist and worklist show what the request will judge ---------------------


@BOTH
def test_the_checklist_shows_what_the_request_still_needs(t: Timeline) -> None:
    pat = enrolled(t)
    t.day(20)
    t.app.record_counselling(t.prs, pat)
    prescribe(t, pat)
    items = {i.item: i.status for i in t.app.status(t.prs, pat).checklist}
    assert items["prescription"] == "done"
    assert items["pregnancy_test"] == items["comprehension"] == "missing"
    t.test(pat, "confirmation", 20)
    items = {i.item: i.status for i in t.app.status(t.prs, pat).checklist}
    assert (items["pregnancy_test"], items["prescriber_confirmation"]) == ("done", "missing")
    t.app.confirm_patient(t.prs, pat)
    patient_steps(t, pat)
    status = t.app.status(t.prs, pat)
    items = {i.item: i.status for i in status.checklist}
    assert items["prescriber_confirmation"] == items["comprehension"] == "done"
    # The window closes on day 26: within the worklist's seven days, with no authorization yet.
    assert [f.due for f in status.flags if f.code == rc.WINDOW_CLOSING] == [day_of(t, 26)]
