"""EU and UK courses as workflows.md 4 runs them: what ``status`` says is next, and every
deadline shown in the zone that governs it, the pharmacy's own (issue 15).

1. Initiation, 2. test and prescription, 3. the pharmacy dispenses within 7 days of the date
written (Day 1 = that date), judged in the pharmacy's local date, 4. every 4 weeks a new test
and a new prescription, 5. a final test one month after stopping; no end-of-treatment test is
asked. Day ``n`` is 2 March 2026 + n days (winter: Lisbon UTC+0, Athens UTC+2).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from compliance import Authorized, CourseState, Prescribed
from tests.test_cli import Shell
from tests.test_timelines_zones import WINTER, Clinics

PROGRAMMES = pytest.mark.parametrize("programme", ["eu-iso", "uk-iso"])


@pytest.fixture
def eu(db_url: str) -> Clinics:
    return Clinics(db_url, WINTER)


def _written(c: Clinics, programme: str, supply: int) -> tuple[str, Prescribed]:
    """An Athens clinic's patient, tested and prescribed on day 0."""
    pat = c.qualified(c.athens, "Eleni", programme)
    c.test(c.athens, pat, c.date(0))
    return pat, c.app.prescribe(c.athens, pat, supply)


def _picked_up(c: Clinics, programme: str, supply: int) -> str:
    """The same patient's prescription dispensed in Athens on day 0."""
    pat, written = _written(c, programme, supply)
    issued = c.app.request_authorization(c.athens_rph, written.prescription.id)
    c.app.record_dispense(c.athens_rph, issued.authorization.number)
    return pat


@PROGRAMMES
def test_a_written_prescription_waits_for_the_pharmacy_until_day_7(
    eu: Clinics, programme: str
) -> None:
    c, app = eu, eu.app
    pat, written = _written(c, programme, 28)
    assert written.prescription.written_on == c.date(0)
    waiting = app.status(c.athens, pat)
    assert waiting.course.state is CourseState.QUALIFIED
    assert waiting.next is not None
    assert (waiting.next.who, waiting.next.due_by) == ("pharmacy", c.date(6))  # Day 7


@PROGRAMMES
def test_the_dispense_deadline_is_the_pharmacys_own_midnight(eu: Clinics, programme: str) -> None:
    """The local dispense record of an Athens pharmacy runs to the end of Day 7 in Athens; the
    same prescription dispensed in Lisbon would run two hours longer in UTC."""
    c, app = eu, eu.app
    pat, written = _written(c, programme, 28)
    c.at(2)
    issued = app.request_authorization(c.athens_rph, written.prescription.id)
    assert isinstance(issued, Authorized)
    record = issued.authorization
    athens = ZoneInfo("Europe/Athens")
    assert record.kind == "dispense_record" and record.zone == "Europe/Athens"
    assert record.do_not_dispense_after is not None
    local = record.do_not_dispense_after.astimezone(athens)
    assert (local.date(), local.time()) == (c.date(6), time(23, 59, 59, 999999))
    assert record.to_dict()["zone"] == "Europe/Athens"
    held = app.status(c.athens, pat)
    assert held.next is not None and held.next.who == "pharmacy"
    assert held.next.due_by == c.date(6)
    assert held.open_authorization is not None
    assert held.open_authorization.zone == "Europe/Athens"


@PROGRAMMES
def test_after_a_pickup_the_next_test_and_prescription_fall_due_four_weeks_on(
    eu: Clinics, programme: str
) -> None:
    c, app = eu, eu.app
    pat = _picked_up(c, programme, 28)
    after = app.status(c.athens, pat)
    assert after.course.state is CourseState.DISPENSED
    assert after.next is not None
    assert (after.next.what, after.next.who) == ("next month's pregnancy test", "prescriber")
    assert after.next.due_by == c.date(28)  # picked up on day 0, 28 days supplied
    assert after.next.due_by != c.date(0)


@PROGRAMMES
def test_after_stopping_the_final_test_one_month_on_and_no_end_of_treatment_test(
    eu: Clinics, programme: str
) -> None:
    c, app = eu, eu.app
    pat = _picked_up(c, programme, 28)
    c.at(27)
    app.end_treatment(c.athens, pat, c.date(27))
    ended = app.status(c.athens, pat)
    assert ended.next is not None
    assert ended.next.what == "the post-treatment pregnancy test"
    assert ended.next.due_by == c.date(27) + timedelta(days=30)
    items = {i.item: i.status for i in ended.checklist}
    assert items.get("end_of_treatment_test", "not_required") == "not_required"
    assert all(i.next_step != "the prescriber writes the prescription" for i in ended.checklist)


def test_not_of_childbearing_potential_the_next_step_is_only_the_prescription(
    eu: Clinics,
) -> None:
    """workflows.md 4 step 6: no tests for a patient not of childbearing potential."""
    c, app = eu, eu.app
    c.at(0)
    pat = app.register_patient(c.athens, "Nikos", "1990-05-05").patient.id
    app.enrol(c.athens, pat, programme="eu-iso")
    app.assign_category(c.athens, pat, "cannot_get_pregnant", "NO_UTERUS")  # or male
    app.record_consent(c.athens, pat, "ACKNOWLEDGEMENT_FORM")
    app.record_counselling(c.athens, pat)
    written = app.prescribe(c.athens, pat, 60)
    issued = app.request_authorization(c.athens_rph, written.prescription.id)
    app.record_dispense(c.athens_rph, issued.authorization.number)
    after = app.status(c.athens, pat)
    assert after.next is not None
    assert after.next.what == "next month's prescription"
    assert after.next.due_by == c.date(60)


def test_the_cli_shows_an_eu_deadline_in_the_pharmacys_zone_and_the_readers(
    sqlite_url: str,
) -> None:
    """Not in UTC: to the minute, Athens first, then the reader's clock (New York has moved
    to summer time that very day, 8 March 2026: 21:59 UTC is 17:59 EDT)."""
    c = Clinics(sqlite_url, WINTER)
    pat, written = _written(c, "eu-iso", 28)
    c.app.request_authorization(c.athens_rph, written.prescription.id)
    c.app.close()
    sh = Shell(sqlite_url)
    now = datetime.combine(c.date(1), time(9), UTC).isoformat()
    shown = sh.run("--now", now, "status", pat, actor=c.athens, env={"TZ": "America/New_York"})
    assert "do not dispense after 8 Mar 2026 23:59 EET (17:59 your time, EDT)" in shown.stdout
    assert "+00:00" not in shown.stdout
