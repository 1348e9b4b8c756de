"""EU/UK and lenalidomide courses through the public API, on SQLite and PostgreSQL: enrolment
picks the programme's version in force, the pharmacy gets the same decision object and a local
dispense record (no central authorization), validity is judged in the pharmacy's zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from compliance import Compliance, FixedClock
from compliance.audit.store import LogFilter
from compliance.domain import reasons as rc
from compliance.errors import InvalidInput, Refused
from tests.conftest import World, add_pharmacist, build_world

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday; uk-iso/2026-01 is in force


class Clinic:
    def __init__(self, db_url: str) -> None:
        self.clock = FixedClock(START)
        self.app = Compliance.open(db_url, self.clock)
        self.world: World = build_world(self.app)
        admin = self.world.admin.id
        self.london = add_pharmacist(self.app, admin, "High Street", "7654321", "Europe/London")
        self.athens = add_pharmacist(self.app, admin, "Plaka", "7654322", "Europe/Athens")

    @property
    def prs(self) -> str:
        return self.world.prescriber.id

    def at(self, n: int, hour: int = 10, minute: int = 0) -> str:
        """Day ``n`` of the timeline at ``hour`` UTC; returns the date."""
        self.clock.set(START.replace(hour=hour, minute=minute) + timedelta(days=n))
        return (START.date() + timedelta(days=n)).isoformat()


@pytest.fixture
def clinic(db_url: str) -> Clinic:
    return Clinic(db_url)


def refused(call: Callable[[], object]) -> tuple[str, ...]:
    with pytest.raises(Refused) as caught:
        call()
    return caught.value.reasons


def qualified_uk(c: Clinic, methods: dict[str, str] | None = None) -> str:
    app, prs = c.app, c.prs
    c.at(0)
    pat = app.register_patient(prs, "Olivia", "2004-05-06").patient.id
    course = app.enrol(prs, pat, programme="uk-iso").course
    assert course.ruleset == "uk-iso/2026-01"
    app.assign_category(prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
    app.record_consent(prs, pat, "ACKNOWLEDGEMENT_OF_RISK")
    chosen = methods or {"hormonal_implant": "2026-01-05"}
    app.record_contraception(prs, pat, chosen)
    app.record_counselling(prs, pat)
    app.confirm_contraception(pat, pat, list(chosen))
    return pat


def test_uk_course_local_dispense_record_and_pharmacy_zone(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_uk(c)
    app.record_test(
        c.prs, pat, kind="confirmation", specimen_date=c.at(0), setting="clinic", result="negative"
    )
    # Four days later the test is too old for a new prescription.
    c.at(4)
    assert refused(lambda: app.prescribe(c.prs, pat, 30)) == (rc.TEST_TOO_OLD_FOR_RX,)
    # Dated three days after the test, it may be written (the date written is what counts).
    rx = app.prescribe(c.prs, pat, 30, written_on=c.at(3)).prescription
    assert rx is not None
    assert rc.SUPPLY_EXCEEDS_MAX in refused(lambda: app.prescribe(c.prs, pat, 31))
    # Day 7 of the prescription ends at midnight in each pharmacy's own zone: 22:30 UTC on the
    # last day is 22:30 in London but already the next day in Athens.
    c.at(9, hour=22, minute=30)
    athens = app.check_dispense(c.athens, rx.id)
    assert athens.codes == (rc.RX_EXPIRED,)
    decision = app.check_dispense(c.london, rx.id)
    assert decision.allowed
    assert decision.window is not None
    assert decision.window.last_day == date(2026, 3, 11)
    assert decision.window.zone == "Europe/London"
    record = app.request_authorization(c.london, rx.id).authorization
    assert record is not None
    assert record.kind == "dispense_record"
    assert record.do_not_dispense_after == datetime(2026, 3, 11, 23, 59, 59, 999999, tzinfo=UTC)
    done = app.record_dispense(c.london, record.number).course
    assert (done.state, done.cycle) == ("dispensed", 2)
    events = app.audit_log(c.world.admin.id, LogFilter(subject=pat))
    assert {e.ruleset_id for e in events if e.outcome == "ok" and e.ruleset_id} == {
        "uk-iso/2026-01"
    }
    assert app.verify_audit(c.world.admin.id).ok


def test_uk_no_expected_risk_agreement_instead_of_methods(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_uk(c, {"no_expected_risk_agreement": "2025-06-01"})
    app.record_test(
        c.prs, pat, kind="confirmation", specimen_date=c.at(1), setting="clinic", result="negative"
    )
    assert app.prescribe(c.prs, pat, 30).prescription is not None


def test_uk_rejects_abstinence_as_a_method_name(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_uk(c)
    with pytest.raises(InvalidInput) as caught:
        app.record_contraception(c.prs, pat, {"abstinence": "2026-01-01"})
    assert caught.value.field == "methods"
    assert "no_expected_risk_agreement" in str(caught.value)


def test_eu_enrolment_and_one_method_short(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    c.at(0)
    pat = app.register_patient(c.prs, "Elena", "2001-02-03").patient.id
    assert app.enrol(c.prs, pat, programme="eu-iso").course.ruleset == "eu-iso/2018"
    app.assign_category(c.prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
    app.record_consent(c.prs, pat, "ACKNOWLEDGEMENT_FORM")
    app.record_contraception(c.prs, pat, {"male_condom": "2026-01-05"})
    app.record_counselling(c.prs, pat)
    app.confirm_contraception(pat, pat, ["male_condom"])
    app.record_test(
        c.prs, pat, kind="confirmation", specimen_date=c.at(0), setting="clinic", result="negative"
    )
    assert refused(lambda: app.prescribe(c.prs, pat, 30)) == (rc.NO_PRIMARY_METHOD,)
    app.record_contraception(
        c.prs, pat, {"male_condom": "2026-01-05", "combined_oral_contraceptive": "2026-01-05"}
    )
    app.confirm_contraception(pat, pat, ["male_condom", "combined_oral_contraceptive"])
    assert app.prescribe(c.prs, pat, 30).prescription is not None


def test_lenalidomide_slots_and_test_schedule(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    c.at(0)
    pat = app.register_patient(c.prs, "Lena", "1980-01-01").patient.id
    assert app.enrol(c.prs, pat, programme="lenalidomide").course.ruleset == (
        "lenalidomide/2023-03"
    )
    app.assign_category(c.prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    with pytest.raises(InvalidInput) as caught:
        app.set_test_schedule(c.prs, pat, "fortnightly")
    assert caught.value.field == "schedule"
    chosen = app.set_test_schedule(c.prs, pat, "irregular_cycles")
    assert chosen.record["schedule"] == "irregular_cycles"
    app.record_consent(c.prs, pat, "PATIENT_PHYSICIAN_AGREEMENT")
    app.record_contraception(c.prs, pat, {"iud": "2026-01-05", "male_condom": "2026-01-05"})
    app.record_counselling(c.prs, pat)
    app.record_comprehension(pat, pat)
    app.confirm_contraception(pat, pat, ["iud", "male_condom"])
    for day, kind in ((0, "screening"), (12, "confirmation")):
        app.record_test(
            c.prs,
            pat,
            kind=kind,
            specimen_date=c.at(day),
            setting="lab",
            result="negative",
            sensitivity_miu_ml=50,
        )
    assert app.prescribe(c.prs, pat, 28, written_on=c.at(12)).prescription is not None


def test_set_test_schedule_refused_where_the_ruleset_has_none(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_uk(c)
    with pytest.raises(InvalidInput) as caught:
        app.set_test_schedule(c.prs, pat, "regular_cycles")
    assert caught.value.field == "schedule"
    assert "has no testing schedules" in str(caught.value)


def test_worklist_shows_the_uk_prescription_validity_closing(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_uk(c)
    app.record_test(
        c.prs, pat, kind="confirmation", specimen_date=c.at(0), setting="clinic", result="negative"
    )
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    c.at(2)
    flags = [f for f in app.due(c.prs, 7) if f.patient == pat]
    assert [(f.code, f.due, f.reference) for f in flags] == [
        (rc.WINDOW_CLOSING, START.date() + timedelta(days=6), rx.id)
    ]
    assert [f for f in app.due(c.prs, 3) if f.patient == pat] == []


def test_uk_course_ends_with_the_test_a_month_after_stopping(clinic: Clinic) -> None:
    c, app = clinic, clinic.app
    pat = qualified_uk(c)
    app.record_test(
        c.prs, pat, kind="confirmation", specimen_date=c.at(0), setting="clinic", result="negative"
    )
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None
    record = app.request_authorization(c.london, rx.id).authorization
    assert record is not None
    app.record_dispense(c.london, record.number)
    ended = app.end_treatment(c.prs, pat, c.at(30)).course
    assert ended.state in {"treatment_ended", "post_treatment"}
    early = app.record_test(
        c.prs,
        pat,
        kind="post_treatment",
        specimen_date=c.at(59),
        setting="clinic",
        result="negative",
    ).course
    assert early.open  # 29 days after the last dose is too early
    c.at(61)
    assert [f.code for f in app.due(c.prs, 7) if f.patient == pat] == [
        rc.OVERDUE_POST_TREATMENT_TEST
    ]
    final = app.record_test(
        c.prs,
        pat,
        kind="post_treatment",
        specimen_date=c.at(61),
        setting="clinic",
        result="negative",
    ).course
    assert (final.state, final.open) == ("completed", False)


def test_the_pretreatment_test_by_the_programmes_own_name(clinic: Clinic) -> None:
    """The EU/UK name one pre-treatment test (workflows.md 4.2): recorded under that name, it
    is the qualifying test; iPLEDGE, which has no such name, refuses it naming the field."""
    app, c = clinic.app, clinic
    pat = qualified_uk(c)
    app.record_test(
        c.prs, pat, kind="pretreatment", specimen_date=c.at(0), setting="clinic", result="negative"
    )
    rx = app.prescribe(c.prs, pat, 30).prescription
    assert rx is not None and app.check_dispense(c.london, rx.id).allowed
    us = app.register_patient(c.prs, "Uma", "2003-03-03").patient.id
    app.enrol(c.prs, us)
    with pytest.raises(InvalidInput, match="kind: must be one of screening") as caught:
        app.record_test(
            c.prs, us, kind="pretreatment", specimen_date=c.at(0), setting="lab", result="negative"
        )
    assert caught.value.field == "kind" and "pretreatment" not in str(caught.value)
