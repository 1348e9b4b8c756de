"""The pickup gate as pure rules: what can change between an authorization and its pickup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from compliance.domain import facts
from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.pickup import Pickup, pickup_gate
from compliance.programs import model

NOW = datetime(2027, 1, 8, 20, 0, tzinfo=UTC)
DEADLINE = datetime(2027, 1, 9, 4, 59, 59, 999999, tzinfo=UTC)
POSITIVE = facts.TestRecord(
    id="t1",
    kind=model.TestKind.MONTHLY,
    specimen_date=date(2027, 1, 7),
    setting=model.Setting.CLINIC,
    clia=True,
    sensitivity_miu_ml=25.0,
    result=facts.TestResult.POSITIVE,
    cycle=2,
)


def test_an_unchanged_authorization_is_picked_up_up_to_its_last_instant() -> None:
    pickup = Pickup(CourseState.AUTHORIZED, None, DEADLINE)
    assert pickup_gate(pickup, NOW) is None
    assert pickup_gate(pickup, DEADLINE) is None
    refusal = pickup_gate(pickup, DEADLINE + timedelta(microseconds=1))
    assert refusal is not None
    assert refusal.codes == (rc.AUTHORIZATION_EXPIRED,)


def test_a_suspension_decides_alone_with_its_positive_test() -> None:
    reversed_at = NOW - timedelta(hours=1)
    pickup = Pickup(CourseState.SUSPENDED, reversed_at, DEADLINE, suspending_test=POSITIVE)
    refusal = pickup_gate(pickup, DEADLINE + timedelta(days=3))
    assert refusal is not None
    assert refusal.codes == (rc.COURSE_SUSPENDED, rc.PREGNANCY_TEST_POSITIVE)
    assert "2027-01-07" in refusal.message
    assert refusal.message.startswith(rc.MESSAGES[rc.COURSE_SUSPENDED])


def test_a_reported_pregnancy_suspends_without_a_test() -> None:
    refusal = pickup_gate(Pickup(CourseState.SUSPENDED, NOW, DEADLINE), NOW)
    assert refusal is not None
    assert refusal.codes == (rc.COURSE_SUSPENDED,)
    assert "pregnancy was reported" in refusal.detail


@pytest.mark.parametrize("late", [False, True])
def test_a_reversal_is_named_before_an_expiry(late: bool) -> None:
    now = DEADLINE + timedelta(days=1) if late else NOW
    refusal = pickup_gate(Pickup(CourseState.AUTHORIZED, NOW - timedelta(hours=2), DEADLINE), now)
    assert refusal is not None
    assert refusal.codes == (rc.AUTHORIZATION_REVERSED,)
