"""The pregnancy-test checks: which tests can count, the pre-treatment tests (counted and
spaced, or dated in slots before the first prescription), the test of the cycle, its window or
its age at the prescription's date, the legacy lockout, and testing schedules during treatment."""

from __future__ import annotations

from datetime import date, timedelta

from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.evaluation import Evaluation
from compliance.domain.facts import CourseFacts, TestRecord, TestResult
from compliance.domain.timing import window
from compliance.programs.model import Ruleset, TestKind, TestSchedule


def test_problems(ruleset: Ruleset, test: TestRecord) -> list[str]:
    """Why a test cannot count under ``ruleset`` (sensitivity, setting, CLIA, home opt-in)."""
    testing = ruleset.testing
    problems = []
    if test.sensitivity_miu_ml > testing.min_sensitivity_miu_ml:
        problems.append(rc.TEST_SENSITIVITY_INSUFFICIENT)
    if not testing.kinds[test.kind].allows(test.setting, test.clia, test.home_opt_in):
        problems.append(rc.TEST_SETTING_NOT_PERMITTED)
    return problems


def suspending_test(facts: CourseFacts) -> TestRecord | None:
    """The positive test that is why a suspended course is suspended: the latest positive
    recorded since the prescriber last resumed the course (None: a reported pregnancy)."""
    if facts.state is not CourseState.SUSPENDED:
        return None
    since = facts.resumed_seq
    positives = [
        t
        for t in facts.tests
        if t.result is TestResult.POSITIVE and (since is None or t.seq > since)
    ]
    return positives[-1] if positives else None


def _report_invalid(ev: Evaluation, test: TestRecord) -> None:
    for code in test_problems(ev.ruleset, test):
        ev.add(
            code,
            f"{test.kind.value} test of {test.specimen_date.isoformat()} "
            f"({test.setting.value}{', CLIA' if test.clia else ''}, "
            f"{test.sensitivity_miu_ml:g} mIU/mL)",
            "repeat the test where the rules allow",
        )


def _spaced_chain(ev: Evaluation, tests: list[TestRecord]) -> list[TestRecord]:
    """From the latest test backwards, the tests each at least the minimum spacing apart."""
    spacing = timedelta(days=ev.ruleset.testing.pretreatment_min_spacing_days)
    chain = [tests[-1]]
    for test in reversed(tests[:-1]):
        if chain[-1].specimen_date - test.specimen_date >= spacing:
            chain.append(test)
    return chain


def _negatives(ev: Evaluation) -> list[TestRecord]:
    """Negative tests that could support this step, oldest first. A test collected after the
    prescription's date cannot support it: the prescriber never saw it. Where the status is
    judged at the request (iPLEDGE), any test on file at that instant can."""
    dated = ev.by_prescription_date or (ev.dispensing and not ev.at_request)
    limit = ev.prescription_date if dated else None
    return sorted(
        (
            t
            for t in ev.facts.tests
            if t.result is TestResult.NEGATIVE and (limit is None or t.specimen_date <= limit)
        ),
        key=lambda t: t.specimen_date,
    )


def _slotted(ev: Evaluation, tests: list[TestRecord]) -> TestRecord | None:
    """Pre-treatment tests each dated within its slot before the prescription's date."""
    assert ev.prescription_date is not None
    reference = ev.prescription_date
    valid = [t for t in tests if not test_problems(ev.ruleset, t)]
    used: list[TestRecord] = []
    missing = []
    for slot in sorted(ev.ruleset.testing.pretreatment_slots, key=lambda s: s.min_days):
        fits = [
            t
            for t in valid
            if t not in used
            and slot.min_days <= (reference - t.specimen_date).days <= slot.max_days
        ]
        if fits:
            used.append(fits[-1])
        else:
            missing.append(slot)
    if not missing and not test_problems(ev.ruleset, tests[-1]):
        return used[0]
    if not missing:
        _report_invalid(ev, tests[-1])  # the latest test is the one relied on: never hidden
        return None
    for test in tests:
        if test not in valid:
            _report_invalid(ev, test)
    wanted = "; ".join(f"{s.min_days}-{s.max_days} days before" for s in missing)
    ev.add(
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        f"no negative test {wanted} {reference.isoformat()}",
        "collect the missing test(s); the first prescription is dated from them",
        ev.today + timedelta(days=max(s.min_days for s in missing)),
    )
    return None


def _pretreatment(ev: Evaluation) -> TestRecord | None:
    """The qualifying (confirmation) test before the first dose, reporting what is missing."""
    testing = ev.ruleset.testing
    tests = [t for t in _negatives(ev) if t.kind.pretreatment]
    if testing.pretreatment_slots:
        return _slotted(ev, tests)
    valid = [t for t in tests if not test_problems(ev.ruleset, t)]
    needed = testing.pretreatment_count
    spacing = timedelta(days=testing.pretreatment_min_spacing_days)
    chain = _spaced_chain(ev, valid) if valid else []
    if len(chain) < needed:
        # Tests that could not count are part of why the requirement fails: say so.
        for test in tests:
            if test not in valid:
                _report_invalid(ev, test)
    if len(valid) < needed:
        earliest = valid[0].specimen_date + spacing * (needed - 1) if valid else None
        ev.add(
            rc.PRETREATMENT_TESTS_INCOMPLETE,
            f"{len(valid)} of {needed}",
            f"collect {needed - len(valid)} more test(s) in a medical setting",
            earliest,
        )
        return None
    if len(chain) < needed:
        earliest = valid[0].specimen_date + spacing * (needed - 1)
        ev.add(
            rc.PRETREATMENT_TEST_SPACING,
            f"at least {testing.pretreatment_min_spacing_days} days apart are required",
            "collect the confirmation test once the spacing is met",
            earliest,
        )
        return None
    if test_problems(ev.ruleset, tests[-1]):
        _report_invalid(ev, tests[-1])  # the latest test is the one relied on: never hidden
        return None
    _lockout(ev, valid, chain[0])
    return chain[0]


def _lockout(ev: Evaluation, valid: list[TestRecord], qualifying: TestRecord) -> None:
    """After the FIRST confirmation window was missed, the next test waits the lockout days."""
    days = ev.ruleset.lockout_days_after_missed_first_window
    category = ev.category
    if not days or category is None or category.window is None:
        return
    needed = ev.ruleset.testing.pretreatment_count
    for earlier in valid:
        if earlier.specimen_date >= qualifying.specimen_date:
            return
        so_far = [t for t in valid if t.specimen_date <= earlier.specimen_date]
        if len(_spaced_chain(ev, so_far)) < needed:
            continue  # not a confirmation: it opened no window
        missed = window(earlier.specimen_date, category.window.days, ev.zone)
        if missed.closes_at > ev.now:
            return
        ends = earlier.specimen_date + timedelta(days=days)
        if qualifying.specimen_date < ends:
            ev.add(
                rc.LOCKOUT_19D,
                f"the first window (test of {earlier.specimen_date.isoformat()}) was missed; "
                f"the next test may be collected from {ends.isoformat()}",
                "collect a new confirmation test on or after that date",
                ends,
            )
        return


def _monthly(ev: Evaluation) -> TestRecord | None:
    cycle_tests = [
        t for t in _negatives(ev) if t.cycle == ev.facts.cycle and t.kind is TestKind.MONTHLY
    ]
    valid = [t for t in cycle_tests if not test_problems(ev.ruleset, t)]
    # The latest test is the one the patient relies on: when the rules do not accept it, it is
    # reported, even when an older acceptable test is on file (latest first in the messages).
    if not valid or valid[-1] != cycle_tests[-1]:
        for test in reversed(cycle_tests):
            if test not in valid:
                _report_invalid(ev, test)
        return None
    return valid[-1]


def pregnancy_tests(ev: Evaluation) -> None:
    assert ev.category is not None
    if not ev.category.pregnancy_testing:
        return
    facts = ev.facts
    positives = [t for t in facts.tests if t.result is TestResult.POSITIVE]
    for positive in positives:
        later = [
            t
            for t in facts.tests
            if t.result is TestResult.NEGATIVE
            and t.specimen_date > positive.specimen_date
            and not test_problems(ev.ruleset, t)
        ]
        if positive.cycle == facts.cycle and not later:
            ev.add(
                rc.PREGNANCY_TEST_POSITIVE,
                f"specimen of {positive.specimen_date.isoformat()}",
                "stop treatment; follow the pregnancy actions",
            )
    test = _monthly(ev) if facts.treatment_started else _pretreatment(ev)
    if test is None:
        _scheduled(ev)
        if any(r.code == rc.PRETREATMENT_TEST_SPACING for r in ev.reasons):
            return  # a negative test is on file: the spacing code says why it cannot count
        ev.add(
            rc.NO_NEGATIVE_TEST_IN_WINDOW,
            None,
            "collect a pregnancy test; Day 1 of the window is its specimen date",
            ev.today,
        )
        return
    assert ev.category.window is not None
    ev.test = test
    _scheduled(ev)
    if ev.by_prescription_date:
        _test_age(ev, test)
        return
    ev.window = window(test.specimen_date, ev.category.window.days, ev.zone)
    if ev.window.contains(ev.now):
        return
    closed = (
        f"the window of the test of {test.specimen_date.isoformat()} closed at "
        f"{ev.window.closes_at.isoformat()}"
    )
    if not ev.dispensing:
        ev.add(rc.NO_NEGATIVE_TEST_IN_WINDOW, closed, "collect a new pregnancy test", ev.today)
        return
    # The latest usable test's window has closed: WINDOW_EXPIRED alone, never together with
    # NO_NEGATIVE_TEST_IN_WINDOW (reason-codes.md, "Which codes go together").
    earliest = ev.today
    step = "collect a new pregnancy test; Day 1 of its window is its specimen date"
    lockout = ev.ruleset.lockout_days_after_missed_first_window
    if lockout and not facts.treatment_started:
        earliest = max(ev.today, test.specimen_date + timedelta(days=lockout))
        step = (
            f"the first window was missed: collect a new confirmation test on or after "
            f"{earliest.isoformat()} ({lockout} days after the missed specimen)"
        )
    ev.add(rc.WINDOW_EXPIRED, closed, step, earliest)
    if lockout and not facts.treatment_started and earliest > ev.today:
        # The waiting period is itself a requirement that fails today: listed with its end.
        ev.add(
            rc.LOCKOUT_19D,
            f"the first window (test of {test.specimen_date.isoformat()}) was missed",
            f"collect a new confirmation test on or after {earliest.isoformat()}",
            earliest,
        )


def _test_age(ev: Evaluation, test: TestRecord) -> None:
    limit = ev.ruleset.testing.max_days_before_prescription
    assert limit is not None
    assert ev.prescription_date is not None
    age = (ev.prescription_date - test.specimen_date).days
    if age > limit:
        ev.add(
            rc.TEST_TOO_OLD_FOR_RX,
            f"the test of {test.specimen_date.isoformat()} is {age} days before the "
            f"prescription date {ev.prescription_date.isoformat()}; at most {limit} are allowed",
            "collect a new pregnancy test; the prescriber then writes the prescription",
            ev.today,
        )


def schedule_of(facts: CourseFacts) -> TestSchedule | None:
    testing = facts.ruleset.testing
    name = facts.test_schedule if facts.test_schedule in testing.schedules else None
    chosen = name or testing.default_schedule
    return testing.schedules.get(chosen) if chosen else None


def _followed(facts: CourseFacts) -> tuple[TestSchedule, date] | None:
    """The schedule a course in treatment follows, and its day 0 (the first dispense)."""
    schedule = schedule_of(facts)
    start = facts.first_dispensed_on
    if schedule is None or start is None or not facts.treatment_started:
        return None
    return schedule, start


def _first_unmet(
    schedule: TestSchedule, start: date, done: list[date], today: date, horizon: date
) -> date | None:
    """The first due date up to ``horizon`` with no test on file for it. Only the latest date
    already past counts (an earlier miss no longer blocks), and a late test still covers it."""
    past = schedule.due_dates(start, today)
    latest_past = past[-1] if past else None
    previous = start
    for due in schedule.due_dates(start, horizon):
        relevant = due > today or due == latest_past
        if relevant and not any(previous < d <= max(due, today) for d in done):
            return due
        previous = due
    return None


def scheduled_test_due(facts: CourseFacts, today: date, horizon: date) -> tuple[date, bool] | None:
    """The next test the schedule asks for by ``horizon`` and not yet on file, and whether it
    is already overdue; None when nothing is due (or the course follows no schedule)."""
    followed = _followed(facts)
    if followed is None:
        return None
    done = [
        t.specimen_date
        for t in facts.tests
        if t.result is TestResult.NEGATIVE and not test_problems(facts.ruleset, t)
    ]
    due = _first_unmet(*followed, done, today, horizon)
    return None if due is None else (due, due < today)


def _scheduled(ev: Evaluation) -> None:
    """During treatment, the test that fell due most recently under the schedule is on file."""
    followed = _followed(ev.facts)
    if followed is None:
        return
    reference = ev.prescription_date if ev.by_prescription_date else ev.today
    assert reference is not None
    done = [t.specimen_date for t in _negatives(ev) if not test_problems(ev.ruleset, t)]
    due = _first_unmet(*followed, done, reference, reference)
    if due is not None:
        ev.add(
            rc.SCHEDULED_TEST_MISSED,
            f"{followed[0].label}: the test due on {due.isoformat()} is not on file",
            "collect a pregnancy test now",
            ev.today,
        )


# --- end of treatment ------------------------------------------------------------------------


def post_treatment_due(facts: CourseFacts) -> date | None:
    """The day the post-treatment test falls due: the last dose + the ruleset's days."""
    if facts.last_dose_on is None:
        return None
    return facts.last_dose_on + timedelta(
        days=facts.ruleset.testing.post_treatment_days_after_last_dose
    )


def _accepted_negatives(facts: CourseFacts, kind: TestKind) -> list[TestRecord]:
    return [
        t
        for t in facts.tests
        if t.kind is kind
        and t.result is TestResult.NEGATIVE
        and not test_problems(facts.ruleset, t)
    ]


def end_of_treatment_test_done(facts: CourseFacts) -> bool:
    """An acceptable negative end-of-treatment test of the course's last cycle is on file. It
    is often taken at the last visit, so it may be recorded before the last dose is
    (workflows.md 1.4): it counts whichever was recorded first."""
    return any(
        t.cycle == facts.cycle for t in _accepted_negatives(facts, TestKind.END_OF_TREATMENT)
    )


def post_treatment_test_done(facts: CourseFacts) -> bool:
    """An acceptable negative post-treatment test collected on or after its due day."""
    due = post_treatment_due(facts)
    return due is not None and any(
        t.specimen_date >= due for t in _accepted_negatives(facts, TestKind.POST_TREATMENT)
    )
