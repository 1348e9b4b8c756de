"""``status`` says what is actually next in each state (issue 15), from the course as the
workflows describe it (workflows.md 1.1-1.4): before the first prescription the first missing
step; a prescription that passed waits for the pharmacy's request until its window closes; an
authorization waits for the pickup; after a pickup the next month's test falls due when the
supply runs out (not today); after the last dose the end-of-treatment and post-treatment tests,
with their dates, and never "the prescriber writes the prescription"; a closed course has
nothing next."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from compliance.api import Compliance
from tests.test_timelines_mechanics import (
    LEGACY,
    MOD,
    STARTS,
    Timeline,
    monthly_visit,
    pcgp_first_dispense,
)


@pytest.fixture
def course(db_url: str, request: pytest.FixtureRequest) -> Timeline:
    return Timeline(db_url, STARTS[request.param])


ERAS = pytest.mark.parametrize("course", [LEGACY, MOD], indirect=True)


def _day(t: Timeline, n: int) -> date:
    return t.start.date() + timedelta(days=n)


@ERAS
def test_each_state_says_what_is_next(course: Timeline) -> None:
    t, app, prs = course, course.app, course.prs
    t.day(0)
    waiting = app.register_patient(prs, "Wren Waiting", "2001-01-01").patient.id
    app.enrol(prs, waiting)
    first = app.status(prs, waiting).next
    assert first is not None and first.who == "prescriber"
    assert "categor" in first.what  # the first missing step: the category

    pat = pcgp_first_dispense(t)  # picked up on day 21, 30 days supplied
    after_pickup = app.status(prs, pat)
    assert after_pickup.course.state == "dispensed"
    step = after_pickup.next
    assert step is not None
    assert (step.what, step.who, step.due_by) == (
        "next month's pregnancy test",
        "prescriber",
        _day(t, 51),
    )
    assert step.due_by != _day(t, 21)  # not "today"
    test_item = next(i for i in after_pickup.checklist if i.item == "pregnancy_test")
    assert test_item.due_by == _day(t, 51)


@ERAS
def test_after_the_last_dose_the_tests_still_owed_with_their_dates(course: Timeline) -> None:
    t, app, prs = course, course.app, course.prs
    pat = pcgp_first_dispense(t)
    t.day(50)
    ended = app.end_treatment(prs, pat, t.date(50)).course
    assert ended.state == "treatment_ended"
    status = app.status(prs, pat)
    assert status.next is not None
    assert (status.next.what, status.next.due_by) == (
        "the end-of-treatment pregnancy test",
        _day(t, 50),
    )
    items = {i.item: i for i in status.checklist}
    assert items["prescription"].status == "not_required"
    assert items["authorization"].status == "not_required"
    assert all(i.next_step != "the prescriber writes the prescription" for i in status.checklist)
    assert items["end_of_treatment_test"].status == "missing"
    post_due = _day(t, 50) + timedelta(
        days=Compliance.ruleset(status.course.ruleset).testing.post_treatment_days_after_last_dose
    )
    assert items["post_treatment_test"].due_by == post_due

    t.test(pat, "end_of_treatment", 50, setting="clinic", clia=False)
    month = app.status(prs, pat)
    assert month.course.state == "post_treatment"
    assert month.next is not None
    assert (month.next.what, month.next.due_by) == ("the post-treatment pregnancy test", post_due)
    assert {i.item: i.status for i in month.checklist}["end_of_treatment_test"] == "done"

    t.day((post_due - t.start.date()).days)
    t.test(pat, "post_treatment", (post_due - t.start.date()).days, setting="clinic", clia=False)
    done = app.status(prs, pat)
    assert done.course.state == "completed"
    assert done.next is not None and done.next.who is None
    assert done.next.what.startswith("nothing")


@ERAS
def test_a_prescription_waits_for_the_pharmacy_then_the_pickup(course: Timeline) -> None:
    t, app, prs = course, course.app, course.prs
    pat = pcgp_first_dispense(t)
    t.day(50)
    monthly_visit(t, pat, 50)
    rx = app.prescribe(prs, pat, 30).prescription
    assert rx is not None
    qualified = app.status(prs, pat)
    assert qualified.next is not None and qualified.next.who == "pharmacy"
    window = app.check_dispense(t.rph, rx.id).window  # what the pharmacy will be told
    assert window is not None
    assert qualified.next.due_by == window.last_day == _day(t, 56)
    auth = app.request_authorization(t.rph, rx.id).authorization
    assert auth is not None and auth.do_not_dispense_after is not None
    held = app.status(prs, pat).next
    assert held is not None and held.what.startswith("the patient picks up")
    eastern = ZoneInfo("America/New_York")  # iPLEDGE judges the day in Eastern time
    assert held.due_by == auth.do_not_dispense_after.astimezone(eastern).date()
