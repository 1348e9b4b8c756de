"""What happens next in a course, by whom and by when: the line a clinic reads first.

Derived from the state and the facts, never stored, so it cannot drift from what the gates
decide: before the first prescription it is the first item the checklist misses; once a
prescription passes, the pharmacy's request; once authorized, the pickup; after a pickup, the
next month's test (or prescription) at the end of the days supplied; after the last dose, the
end-of-treatment and post-treatment tests; a suspended course waits for the prescriber; a closed
one has nothing next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from compliance.domain.course import CourseState
from compliance.domain.facts import CourseFacts, PrescriptionRecord
from compliance.domain.pregnancy_tests import (
    end_of_treatment_test_done,
    post_treatment_due,
    post_treatment_test_done,
)
from compliance.programs.model import Anchor

S = CourseState


@dataclass(frozen=True)
class NextStep:
    """``what`` is to be done by ``who`` (a role, or ``None`` when no one need act), by
    ``due_by`` (a date in the clinic's zone, or ``None`` when no date applies)."""

    what: str
    who: str | None = None
    due_by: date | None = None


def prescription_last_day(facts: CourseFacts, rx: PrescriptionRecord) -> date | None:
    """The last day a window that runs from the prescription itself (the date written, EU/UK;
    the office visit, iPLEDGE PCNGP) allows the pharmacy; None when the window runs from a
    test (the test's window says it) or the category has no window. A day count, so the same in
    every zone; each pharmacy judges it on its own calendar."""
    rule = facts.ruleset.judged_category(facts.category, facts.category_reason).window
    if rule is None or rule.anchor is Anchor.SPECIMEN_DATE:
        return None
    day_one = rx.office_visit_on if rule.anchor is Anchor.OFFICE_VISIT else rx.written_on
    return day_one + timedelta(days=rule.days - 1)


def next_month_on(facts: CourseFacts, zone: ZoneInfo) -> date | None:
    """The day the supply of the latest pickup runs out: the next month's test and prescription
    fall due then."""
    picked = [a for a in facts.authorizations if a.dispensed_at is not None]
    if not picked:
        return None
    last = max(picked, key=lambda a: a.dispensed_at or datetime.min)
    assert last.dispensed_at is not None
    return last.dispensed_at.astimezone(zone).date() + timedelta(days=last.days_supply)


def next_step(
    facts: CourseFacts,
    zone: ZoneInfo,
    *,
    testing: bool,
    first_missing: tuple[str, date | None] | None,
    window_last_day: date | None,
    pickup_by: date | None,
) -> NextStep:
    """``testing``: the patient's category is tested; ``first_missing``: the first step the
    checklist misses (its next step and due date); ``window_last_day``: the last day of the
    current window; ``pickup_by``: the last day of the live authorization."""
    state = facts.state
    if state in {S.COMPLETED, S.WITHDRAWN, S.LOST_TO_FOLLOW_UP}:
        return NextStep(f"nothing: the course is {state.value.replace('_', ' ')}")
    if state is S.SUSPENDED:
        return NextStep(
            "the prescriber reviews the suspension (positive test or pregnancy): resume after a"
            " confirmed negative, or withdraw",
            "prescriber",
        )
    if state is S.TREATMENT_ENDED:
        if testing and not end_of_treatment_test_done(facts):
            return NextStep("the end-of-treatment pregnancy test", "prescriber", facts.last_dose_on)
        return _post_treatment(facts, testing)
    if state is S.POST_TREATMENT:
        return _post_treatment(facts, testing)
    if state is S.AUTHORIZED:
        return NextStep(
            "the patient picks up the medication at the pharmacy", "pharmacy", pickup_by
        )
    if state is S.QUALIFIED:
        return NextStep(
            "the pharmacy requests a dispense authorization", "pharmacy", window_last_day
        )
    if state is S.DISPENSED:
        month = next_month_on(facts, zone)
        what = "next month's pregnancy test" if testing else "next month's prescription"
        return NextStep(what, "prescriber", month)
    if first_missing is not None:
        return NextStep(first_missing[0], "prescriber", first_missing[1])
    return NextStep("the prescriber writes the prescription", "prescriber", window_last_day)


def _post_treatment(facts: CourseFacts, testing: bool) -> NextStep:
    if testing and not post_treatment_test_done(facts):
        return NextStep(
            "the post-treatment pregnancy test", "prescriber", post_treatment_due(facts)
        )
    return NextStep("the post-treatment month ends", None, post_treatment_due(facts))
