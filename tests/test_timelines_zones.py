"""Dated timelines of the clinic's own zone and of the EU/UK test settings, through the public
API on SQLite and PostgreSQL (issue 11 item 10).

From the documents: the EU/UK clinic's steps are judged on the clinic's own calendar (a clinic
in Lisbon and one in Athens each have their own "today"), the prescription's validity in the
dispensing pharmacy's local date (workflows.md 4 step 3; reason-codes.md "Time conventions"),
and iPLEDGE judges everything in Eastern time (rules.md 1.6, 17 C3). Tests are medically
supervised, at least 25 mIU/mL, no CLIA requirement (rules.md 2.5); the UK allows remote
supervised testing where the prescriber has opted in with oversight; a pre-treatment test is
always in a medical setting.

In winter (before 29 March 2026) Lisbon and London are UTC+0, Brussels UTC+1, Athens UTC+2.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from compliance import Compliance, FixedClock
from compliance.audit.store import LogFilter
from compliance.domain import reasons as rc
from compliance.errors import InvalidInput
from compliance.programs import loader
from tests.conftest import World, add_pharmacist, build_world, next_npi
from tests.test_timelines_mechanics import STARTS, Timeline, refused
from tests.test_timelines_request import LEGACY, enrolled

WINTER = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; uk-iso/2026-01 and eu-iso/2018 in force
SUMMER = datetime(2026, 6, 1, tzinfo=UTC)  # London on BST (UTC+1)
IMPLANT = {"hormonal_implant": "2026-01-05"}
FORM = {"eu-iso": "ACKNOWLEDGEMENT_FORM", "uk-iso": "ACKNOWLEDGEMENT_OF_RISK"}
REMOTE = "video-supervised test; the result is photographed and reviewed by the clinic"


class Clinics:
    """A Lisbon clinic (the world's prescriber, zone set by an administrator), an Athens clinic
    (zone given at registration), a clinic with no zone of its own, and pharmacies in Lisbon,
    Athens and London. Day ``n`` is START + n days; ``at`` takes the hour in UTC."""

    def __init__(self, db_url: str, start: datetime) -> None:
        self.start = start
        self.clock = FixedClock(start.replace(hour=10))
        self.app = Compliance.open(db_url, self.clock)
        self.world: World = build_world(self.app)
        app, admin = self.app, self.world.admin.id
        self.lisbon = app.set_prescriber_zone(admin, self.world.prescriber.id, "Europe/Lisbon").id
        self.athens = self._prescriber("Dr Athens", "Europe/Athens")
        self.unzoned = self._prescriber("Dr Nowhere", None)
        self.lisbon_rph = add_pharmacist(app, admin, "Baixa", "7654321", "Europe/Lisbon")
        self.athens_rph = add_pharmacist(app, admin, "Plaka", "7654322", "Europe/Athens")
        self.london_rph = add_pharmacist(app, admin, "High Street", "7654323", "Europe/London")

    def _prescriber(self, name: str, zone: str | None) -> str:
        admin = self.world.admin.id
        person = self.app.register_prescriber(admin, name, next_npi(), time_zone=zone)
        assert person.time_zone == zone
        return self.app.activate_prescriber(admin, person.id).id

    def date(self, n: int) -> date:
        return self.start.date() + timedelta(days=n)

    def at(self, n: int, hh: int = 10, mm: int = 0) -> date:
        self.clock.set(datetime.combine(self.date(n), time(hh, mm), UTC))
        return self.date(n)

    def qualified(self, prs: str, name: str, programme: str = "eu-iso") -> str:
        """workflows.md 4 step 1 on day 0 at 10:00 UTC: a woman of childbearing potential with
        a highly effective method in use for two months, the form and counselling."""
        app = self.app
        self.at(0)
        pat = app.register_patient(prs, name, "2001-02-03").patient.id
        assert app.enrol(prs, pat, programme=programme).course.ruleset.startswith(programme)
        app.assign_category(prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
        app.record_consent(prs, pat, FORM[programme])
        app.record_contraception(prs, pat, IMPLANT)
        app.record_counselling(prs, pat)
        return pat

    def test(self, prs: str, pat: str, day: date, kind: str = "confirmation", **kw: object) -> None:
        self.app.record_test(
            prs,
            pat,
            kind=kind,
            specimen_date=day.isoformat(),
            setting=str(kw.pop("setting", "clinic")),
            result="negative",
            sensitivity_miu_ml=float(kw.pop("sensitivity", 25)),  # type: ignore[arg-type]
            clia=bool(kw.pop("clia", False)),
        )
        assert not kw

    def written(self, prs: str, pat: str) -> tuple[str, date]:
        rx = self.app.prescribe(prs, pat, 30).prescription
        assert rx is not None
        return rx.id, rx.written_on


@pytest.fixture
def eu(db_url: str) -> Clinics:
    return Clinics(db_url, WINTER)


# --- the date "today" for a prescription written and a test documented ------------------------


def test_each_eu_clinic_writes_on_its_own_date_not_brussels(eu: Clinics) -> None:
    """22:30 UTC on day 0 is 00:30 on day 1 in Athens and 23:30 on day 0 in Brussels; 23:30 UTC
    is still day 0 in Lisbon but day 1 in Brussels. A clinic with no zone of its own falls back
    to the ruleset's zone (Brussels)."""
    c = eu
    patients = {
        prs: c.qualified(prs, name)
        for prs, name in [(c.lisbon, "Ines"), (c.athens, "Eleni"), (c.unzoned, "Anna")]
    }
    for prs, pat in patients.items():
        c.test(prs, pat, c.date(0))
    c.at(0, 22, 30)
    assert c.written(c.athens, patients[c.athens])[1] == c.date(1)
    c.at(0, 23, 30)
    assert c.written(c.lisbon, patients[c.lisbon])[1] == c.date(0)
    assert c.written(c.unzoned, patients[c.unzoned])[1] == c.date(1)
    # The decision says which day it judged as "today".
    assert c.app.check_prescribe(c.lisbon, patients[c.lisbon], 30).today == c.date(0)


def test_a_test_documented_today_is_dated_by_the_clinics_own_calendar(eu: Clinics) -> None:
    """At 22:30 UTC on day 0 a specimen collected "today" in Athens is dated day 1; the same
    date entered by the Lisbon clinic (still day 0 there) is in the future."""
    c = eu
    lisbon_pat = c.qualified(c.lisbon, "Ines")
    athens_pat = c.qualified(c.athens, "Eleni")
    c.at(0, 22, 30)
    c.test(c.athens, athens_pat, c.date(1))
    with pytest.raises(InvalidInput) as caught:
        c.test(c.lisbon, lisbon_pat, c.date(1))
    assert caught.value.field == "specimen_date"
    assert "in the future" in str(caught.value)
    c.test(c.lisbon, lisbon_pat, c.date(0))
    # Written now, each prescription carries its clinic's date and its own test is 0 days old.
    assert c.written(c.athens, athens_pat)[1] == c.date(1)
    assert c.written(c.lisbon, lisbon_pat)[1] == c.date(0)


def test_the_test_is_3_or_4_days_old_by_the_clinics_date(eu: Clinics) -> None:
    """The test may be at most 3 days before the prescription's date (eu-iso/2018 note). A test
    of day -3, at 22:30 UTC on day 0: 3 days old in Lisbon (day 0), 4 in Athens (day 1)."""
    c = eu
    lisbon_pat = c.qualified(c.lisbon, "Ines")
    athens_pat = c.qualified(c.athens, "Eleni")
    c.test(c.lisbon, lisbon_pat, c.date(-3))
    c.test(c.athens, athens_pat, c.date(-3))
    c.at(0, 22, 30)
    assert refused(lambda: c.app.prescribe(c.athens, athens_pat, 30)) == (rc.TEST_TOO_OLD_FOR_RX,)
    assert c.written(c.lisbon, lisbon_pat)[1] == c.date(0)


def test_validity_day_7_or_8_is_the_pharmacys_own_date_not_the_clinics(eu: Clinics) -> None:
    """workflows.md 4 step 3: an Athens clinic writes at 00:30 Athens on day 1 (Day 1 of the
    prescription); Day 7 is day 7. At 23:30 UTC on day 7 it is still day 7 in Lisbon (Day 7) but
    day 8 in Athens (Day 8); at 00:30 UTC on day 8 it is Day 8 in Lisbon too."""
    c = eu
    pat = c.qualified(c.athens, "Eleni")
    c.at(0, 22, 30)
    c.test(c.athens, pat, c.date(1))
    rx, written = c.written(c.athens, pat)
    assert written == c.date(1)
    c.at(7, 23, 30)
    assert c.app.check_dispense(c.athens_rph, rx).codes == (rc.RX_EXPIRED,)
    decision = c.app.check_dispense(c.lisbon_rph, rx)
    assert decision.allowed
    assert decision.window is not None
    assert (decision.window.last_day, decision.window.zone) == (c.date(7), "Europe/Lisbon")
    c.at(8, 0, 30)
    assert refused(lambda: c.app.request_authorization(c.lisbon_rph, rx)) == (rc.RX_EXPIRED,)


def test_a_clinic_asking_about_dispensing_is_judged_on_its_own_date(eu: Clinics) -> None:
    """Someone who is not a pharmacist names no pharmacy: the dispense question is judged in
    the clinic's zone. At 22:30 UTC on day 0 the Athens clinic is on day 1 (Brussels, the
    ruleset's own zone, is still on day 0)."""
    c = eu
    pat = c.qualified(c.athens, "Eleni")
    c.test(c.athens, pat, c.date(0))
    rx, _ = c.written(c.athens, pat)
    c.at(0, 22, 30)
    decision = c.app.check_dispense(c.athens, rx)
    assert decision.today == c.date(1)
    assert c.app.check_dispense(c.athens_rph, rx).today == c.date(1)  # the Athens pharmacy's
    assert c.app.check_dispense(c.lisbon_rph, rx).today == c.date(0)  # Lisbon's, UTC+0


def test_the_worklist_judges_today_in_the_clinics_zone(eu: Clinics) -> None:
    """The Athens prescription of day 1 is valid to day 7. At 22:30 UTC on day 1 (day 2 in
    Athens, day 1 in Brussels) a 5-day look-ahead reaches day 7 from Athens only."""
    c = eu
    pat = c.qualified(c.athens, "Eleni")
    c.at(0, 22, 30)
    c.test(c.athens, pat, c.date(1))
    rx, _ = c.written(c.athens, pat)
    c.at(1, 22, 30)
    flags = [(f.code, f.due, f.reference) for f in c.app.due(c.athens, 5) if f.patient == pat]
    assert flags == [(rc.WINDOW_CLOSING, c.date(7), rx)]
    c.at(1, 21, 30)  # 23:30 in Athens: still day 1 there, the look-ahead ends on day 6
    assert [f for f in c.app.due(c.athens, 5) if f.patient == pat] == []


def test_a_changed_zone_is_audited_and_judges_from_then_on(eu: Clinics) -> None:
    c, app, admin = eu, eu.app, eu.world.admin.id
    pat = c.qualified(c.unzoned, "Anna")
    c.test(c.unzoned, pat, c.date(0))
    c.at(0, 23, 30)  # day 1 in Brussels, day 0 in Lisbon
    assert app.check_prescribe(c.unzoned, pat, 30).today == c.date(1)
    changed = app.set_prescriber_zone(admin, c.unzoned, "Europe/Lisbon")
    assert changed.time_zone == "Europe/Lisbon"
    assert app.get_person(admin, c.unzoned).time_zone == "Europe/Lisbon"
    assert app.check_prescribe(c.unzoned, pat, 30).today == c.date(0)
    assert app.set_prescriber_zone(admin, c.unzoned, None).time_zone is None
    assert app.check_prescribe(c.unzoned, pat, 30).today == c.date(1)
    events = [
        e
        for e in app.audit_log(admin, LogFilter(subject=c.unzoned))
        if e.action == "prescriber.set_zone"
    ]
    assert [(e.payload["time_zone_before"], e.payload["time_zone"]) for e in events] == [
        (None, "Europe/Lisbon"),
        ("Europe/Lisbon", None),
    ]
    with pytest.raises(InvalidInput) as caught:
        app.set_prescriber_zone(admin, c.unzoned, "Europe/Lisbn")
    assert caught.value.field == "time_zone"
    with pytest.raises(InvalidInput):
        app.register_prescriber(admin, "Dr Typo", next_npi(), time_zone="Mars/Olympus")
    assert app.verify_audit(admin).ok


# --- the UK clinic in London ------------------------------------------------------------------


@pytest.fixture
def uk_summer(db_url: str) -> Clinics:
    return Clinics(db_url, SUMMER)


def test_a_london_clinic_on_british_summer_time(uk_summer: Clinics) -> None:
    """23:30 UTC on day 0 is 00:30 on day 1 in London (BST): the prescription is written on day
    1, and a test of day -2 is then 3 days old (allowed), of day -3 4 days old (refused)."""
    c, app, admin = uk_summer, uk_summer.app, uk_summer.world.admin.id
    london = app.set_prescriber_zone(admin, c.unzoned, "Europe/London").id
    old = c.qualified(london, "Olivia", "uk-iso")
    ok = c.qualified(london, "Grace", "uk-iso")
    c.test(london, old, c.date(-3))
    c.test(london, ok, c.date(-2))
    c.at(0, 23, 30)
    assert refused(lambda: app.prescribe(london, old, 30)) == (rc.TEST_TOO_OLD_FOR_RX,)
    rx, written = c.written(london, ok)
    assert written == c.date(1)
    # Day 7 is day 7 in the London pharmacy: at 23:30 UTC on day 7 (00:30 BST day 8) expired.
    c.at(7, 22, 30)
    assert c.app.check_dispense(c.london_rph, rx).allowed
    c.at(7, 23, 30)
    assert c.app.check_dispense(c.london_rph, rx).codes == (rc.RX_EXPIRED,)


# --- iPLEDGE: Eastern time for everything -----------------------------------------------------


@pytest.fixture
def ipledge(db_url: str) -> Timeline:
    return Timeline(db_url, STARTS[LEGACY])


def test_ipledge_judges_a_honolulu_prescribers_steps_in_eastern_time(ipledge: Timeline) -> None:
    """rules.md 1.6, 17 C3: "today" is Eastern whatever zone is configured. 20:30 on day 20 in
    Honolulu is 02:30 EDT on day 21: the prescription is written on day 21. The specimen is
    dated by the clinic's own calendar (Day 1 is the documented collection date, C3): day 21
    has not begun in Honolulu, so it is refused as in the future; day 20 is recorded."""
    t = ipledge
    admin = t.world.admin.id
    assert t.app.set_prescriber_zone(admin, t.prs, "Pacific/Honolulu").time_zone == (
        "Pacific/Honolulu"
    )
    pat = enrolled(t)
    day_20 = t.start.date() + timedelta(days=20)
    t.clock.set(datetime.combine(day_20, time(20, 30), ZoneInfo("Pacific/Honolulu")))
    t.app.record_counselling(t.prs, pat)
    assert t.app.check_prescribe(t.prs, pat, 30).today == day_20 + timedelta(days=1)
    written = t.app.prescribe(t.prs, pat, 30).prescription
    assert written is not None and written.written_on == day_20 + timedelta(days=1)
    rx = written.id
    with pytest.raises(InvalidInput) as caught:
        t.test(pat, "confirmation", 21)
    assert caught.value.field == "specimen_date"
    assert "in the future" in str(caught.value) and "Pacific/Honolulu" in str(caught.value)
    t.test(pat, "confirmation", 20)
    t.app.confirm_patient(t.prs, pat)
    t.app.record_comprehension(pat, pat)
    t.app.confirm_contraception(pat, pat, ["iud", "male_condom"])
    decision = t.app.check_dispense(t.rph, rx)
    assert decision.allowed
    assert decision.window is not None
    assert decision.window.zone == "America/New_York"
    assert decision.window.first_day == day_20


def test_ipledge_refuses_a_date_that_is_tomorrow_in_eastern_time(ipledge: Timeline) -> None:
    """A clinic with no zone of its own is judged in Eastern time (rules.md 1.6): at 21:00 EST
    (02:00 UTC the next day) tomorrow's date is in the future for every date the clinic enters,
    though it is already "today" in UTC and beyond."""
    t = ipledge
    pat = enrolled(t)
    day_20 = t.start.date() + timedelta(days=20)
    t.clock.set(datetime.combine(day_20, time(21, 0), ZoneInfo("America/New_York")))
    tomorrow = (day_20 + timedelta(days=1)).isoformat()
    before = t.app.status(t.prs, pat)
    attempts = {
        "specimen_date": lambda: t.test(pat, "confirmation", 21),
        "written_on": lambda: t.app.prescribe(t.prs, pat, 30, written_on=tomorrow),
        "reported_on": lambda: t.app.report_pregnancy(t.prs, pat, reported_on=tomorrow),
    }
    for field, attempt in attempts.items():
        with pytest.raises(InvalidInput) as caught:
            attempt()
        assert caught.value.field == field
        assert "in the future" in str(caught.value) and "America/New_York" in str(caught.value)
    after = t.app.status(t.prs, pat)
    assert (after.course, after.checklist) == (before.course, before.checklist)
    t.test(pat, "confirmation", 20)  # today in Eastern time


# --- EU/UK test settings: the facts the rules judge --------------------------------------------


def first_cycle_dispensed(c: Clinics, prs: str, name: str, programme: str) -> tuple[str, str]:
    pat = c.qualified(prs, name, programme)
    c.test(prs, pat, c.date(0))
    rx, _ = c.written(prs, pat)
    auth = c.app.request_authorization(c.london_rph, rx).authorization
    assert auth is not None
    c.app.record_dispense(c.london_rph, auth.number)
    return pat, rx


def test_uk_remote_supervised_follow_up_test_only_where_the_prescriber_allows_it(
    eu: Clinics,
) -> None:
    """rules.md 2.5 (UK 2025) and the uk-iso note: a follow-up test done remotely with oversight
    (recorded as setting 'home') counts only under the prescriber's opt-in; the EU ruleset
    accepts no follow-up test outside a medical setting, opt-in or not."""
    c, app = eu, eu.app
    uk_pat, _ = first_cycle_dispensed(c, c.lisbon, "Olivia", "uk-iso")
    eu_pat, _ = first_cycle_dispensed(c, c.lisbon, "Ines", "eu-iso")
    c.at(28)
    for pat in (uk_pat, eu_pat):
        c.test(c.lisbon, pat, c.date(28), "monthly", setting="home")
        assert rc.TEST_SETTING_NOT_PERMITTED in app.check_prescribe(c.lisbon, pat, 30).codes
    app.set_home_testing(c.lisbon, True, REMOTE)
    for pat in (uk_pat, eu_pat):
        c.test(c.lisbon, pat, c.date(28), "monthly", setting="home")
    assert app.check_prescribe(c.lisbon, uk_pat, 30).allowed
    assert rc.TEST_SETTING_NOT_PERMITTED in app.check_prescribe(c.lisbon, eu_pat, 30).codes
    # The same follow-up test in the clinic counts under both.
    c.test(c.lisbon, eu_pat, c.date(28), "monthly")
    assert app.check_prescribe(c.lisbon, eu_pat, 30).allowed


@pytest.mark.parametrize("programme", ["eu-iso", "uk-iso"])
def test_eu_uk_pre_treatment_test_setting_sensitivity_and_no_clia(
    eu: Clinics, programme: str
) -> None:
    """rules.md 2.5: medically supervised (lab or clinic; never remote before treatment, even
    with the prescriber's opt-in), at least 25 mIU/mL, no CLIA certification asked."""
    c, app = eu, eu.app
    app.set_home_testing(c.lisbon, True, REMOTE, on=c.date(-1).isoformat())
    pat = c.qualified(c.lisbon, "Ines", programme)
    c.test(c.lisbon, pat, c.date(0), setting="home")
    assert rc.TEST_SETTING_NOT_PERMITTED in app.check_prescribe(c.lisbon, pat, 30).codes
    c.test(c.lisbon, pat, c.date(0), setting="lab", sensitivity=50)
    assert rc.TEST_SENSITIVITY_INSUFFICIENT in app.check_prescribe(c.lisbon, pat, 30).codes
    c.test(c.lisbon, pat, c.date(0), setting="lab", sensitivity=20, clia=False)
    assert app.check_prescribe(c.lisbon, pat, 30).allowed


# --- rules impact: a date is judged from its first instant in each clinic's zone ---------------


def test_rules_impact_as_of_a_date_judges_each_clinic_from_its_own_midnight(
    eu: Clinics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rules impact --as-of D`` under a copy of the EU ruleset: the Lisbon course is judged
    from 00:00 Lisbon on D (D there; 23:00 on D-1 in Brussels would still be D-1), the Athens
    course from 00:00 Athens on D."""
    c, app = eu, eu.app
    lisbon_pat = c.qualified(c.lisbon, "Ines")
    athens_pat = c.qualified(c.athens, "Eleni")
    folder = resources.files("compliance.programs") / "rulesets"
    files = {
        e.name: e.read_text(encoding="utf-8") for e in folder.iterdir() if e.name.endswith(".toml")
    }
    files["eu-copy.toml"] = files["eu-iso-2018.toml"].replace(
        'id = "eu-iso/2018"', 'id = "eu-iso/copy"'
    )
    monkeypatch.setattr(loader, "_files", lambda: files)
    loader.all_rulesets.cache_clear()
    try:
        report = app.rules_impact(c.world.admin.id, "eu-iso/copy", as_of=c.date(5))
    finally:
        monkeypatch.undo()
        loader.all_rulesets.cache_clear()
    rows = {row.patient: row for row in report.courses}
    for pat, zone in ((lisbon_pat, "Europe/Lisbon"), (athens_pat, "Europe/Athens")):
        gate = rows[pat].gate("prescribe")
        assert gate is not None
        midnight = datetime.combine(c.date(5), time(0), ZoneInfo(zone))
        assert (gate.before.today, gate.after.today) == (c.date(5), c.date(5))
        assert gate.before.evaluated_at == midnight
