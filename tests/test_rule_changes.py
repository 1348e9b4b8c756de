"""Rule changes without cutovers: diff two rulesets, a dry run of moving in-flight courses to
another ruleset, and moving them; through the API and the CLI, on SQLite and PostgreSQL.

The population is built under ipledge/2023-03 (in force until 2026-11-15 by default) on a fixed
clock, each course in a state the 2026 modification changes; every course is judged on day 30.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest

from compliance import Compliance, FixedClock
from compliance.api.rule_changes import ImpactReport
from compliance.audit.store import LogFilter
from compliance.domain import reasons as rc
from compliance.domain.course import CourseState
from compliance.domain.facts import AuthorizationRecord, CourseFacts, PrescriptionRecord
from compliance.domain.gates import Outcome as GateOutcome
from compliance.domain.gates import prescribe_gate
from compliance.domain.ids import Kind, new_short_id
from compliance.domain.impact import Change as ImpactChange
from compliance.domain.impact import classify, course_impact, pending_prescription, under
from compliance.errors import InvalidInput, NotFound, NotPermitted, Refused
from compliance.programs import loader
from compliance.programs.diff import diff, flatten
from compliance.programs.model import CategoryRules, Ruleset
from tests.conftest import World, build_world
from tests.test_cli import Shell

LEGACY = "ipledge/2023-03"
MOD = "ipledge/2026-mod"
START = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
METHODS = ("iud", "male_condom")

IMPACT_KEYS = {
    "ruleset",
    "programme",
    "evaluated_at",
    "as_of",
    "pharmacy_zone",
    "summary",
    "courses",
}
SUMMARY_KEYS = {
    "courses",
    "newly_refused",
    "newly_allowed",
    "reasons_changed",
    "unchanged",
    "already_on_ruleset",
}
ROW_KEYS = {"patient", "course", "state", "cycle", "ruleset", "change", "gates"}
GATE_KEYS = {"gate", "prescription", "change", "before", "after"}
DECISION_KEYS = {
    "gate",
    "outcome",
    "reasons",
    "ruleset",
    "evaluated_at",
    "today",
    "cycle",
    "window",
    "test",
    "earliest",
}
MIGRATION_KEYS = {"to", "migrated", "unchanged", "courses"}
MIGRATED_KEYS = {"patient", "course", "state", "from", "to", "result", "before", "after"}


# --- 1. diff ---------------------------------------------------------------------------------


def test_diff_of_the_2026_modification_lists_exactly_the_known_changes() -> None:
    changes = {
        c.path: (c.change, c.old, c.new) for c in Compliance.ruleset_diff(LEGACY, MOD).changes
    }
    notes = changes.pop("notes")
    assert notes[0] == "changed" and (len(notes[1]), len(notes[2])) == (5, 4)
    assert changes == {
        "id": ("changed", LEGACY, MOD),
        "title": (
            "changed",
            "iPLEDGE REMS as in the March 2023 materials",
            "iPLEDGE REMS as modified 9 Feb 2026",
        ),
        "lockout_days_after_missed_first_window": ("changed", 19, 0),
        "categories.cannot_get_pregnant.counselling": ("changed", "monthly", "enrolment"),
        "categories.cannot_get_pregnant.window.days": ("removed", 30, None),
        "categories.cannot_get_pregnant.window.anchor": ("removed", "office_visit", None),
        "testing.kinds.confirmation.settings": ("changed", ["lab"], ["lab", "clinic"]),
        "testing.kinds.confirmation.clia_required": ("changed", True, False),
        "testing.kinds.monthly.settings": ("changed", ["lab"], ["lab", "clinic"]),
        "testing.kinds.monthly.clia_required": ("changed", True, False),
        "testing.kinds.monthly.home_with_prescriber_opt_in": ("changed", False, True),
        "testing.kinds.end_of_treatment.home_with_prescriber_opt_in": ("changed", False, True),
        "testing.kinds.post_treatment.home_with_prescriber_opt_in": ("changed", False, True),
        "authorization.reverse_unpicked": ("changed", False, True),
    }


def test_diff_backwards_mirrors_forwards() -> None:
    forward = Compliance.ruleset_diff(LEGACY, MOD).changes
    backward = {c.path: c for c in Compliance.ruleset_diff(MOD, LEGACY).changes}
    mirror = {"changed": "changed", "added": "removed", "removed": "added"}
    assert {c.path for c in forward} == set(backward)
    for c in forward:
        assert (backward[c.path].change, backward[c.path].old, backward[c.path].new) == (
            mirror[c.change],
            c.new,
            c.old,
        )


@pytest.mark.parametrize("ruleset_id", [LEGACY, MOD])
def test_diff_of_a_ruleset_with_itself_is_empty(ruleset_id: str) -> None:
    assert Compliance.ruleset_diff(ruleset_id, ruleset_id).changes == ()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("nope/1", MOD, "old"),
        (LEGACY, "ipledge/2099", "new"),
        (LEGACY, ["x"], "new"),
        (None, MOD, "old"),
    ],
)
def test_diff_of_unknown_rulesets_names_the_argument(old: Any, new: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Compliance.ruleset_diff(old, new)
    assert caught.value.field == field


def test_diff_walks_fields_it_was_never_told_about() -> None:
    """A field, a nested structure and a category added to the model later appear in the diff
    with no change to the diff itself."""

    @dataclass(frozen=True)
    class Schedule:
        every_days: int
        kinds: tuple[str, ...]

    @dataclass(frozen=True)
    class Extended(Ruleset):
        pickup_zone: str = "America/New_York"
        schedules: tuple[Schedule, ...] = ()
        test_age_limit: int | None = None
        limits: dict[str, int] = dataclasses.field(default_factory=dict)

    base = loader.get(MOD)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Ruleset)}
    old = Extended(**fields)
    extra = dataclasses.replace(
        base.categories["cannot_get_pregnant"], name="unknown", label="Not yet known"
    )
    new = Extended(
        **{**fields, "categories": {**base.categories, "unknown": extra}},
        pickup_zone="pharmacy",
        schedules=(Schedule(28, ("monthly",)), Schedule(90, ("post_treatment", "monthly"))),
        test_age_limit=12,
        limits={"age.min": 12},
    )
    changes = {c.path: (c.change, c.old, c.new) for c in diff(old, new).changes}
    assert changes["pickup_zone"] == ("changed", "America/New_York", "pharmacy")
    assert changes["schedules[0].every_days"] == ("added", None, 28)
    assert changes["schedules[1].kinds"] == ("added", None, ["post_treatment", "monthly"])
    assert changes["test_age_limit"] == ("changed", None, 12)
    assert changes["limits['age.min']"] == ("added", None, 12)
    assert changes["categories.unknown.label"] == ("added", None, "Not yet known")
    assert changes["categories.unknown.counselling"] == ("added", None, "enrolment")
    assert "schedules" not in changes  # the empty placeholder is not reported beside its items
    assert all(c[0] == "added" for p, c in changes.items() if p.startswith("categories."))
    assert isinstance(extra, CategoryRules)
    assert len(flatten(new)) > len(flatten(base))


def test_impact_classification_and_pending_prescription() -> None:
    """The pure comparison: outcome first, then the set of codes; messages do not count."""
    facts = CourseFacts(
        ruleset=loader.get(LEGACY), state=CourseState.ENROLLED, cycle=1, enrolled_on=START.date()
    )
    refused = prescribe_gate(facts, START)
    # no category: judged as a patient who can get pregnant, so her requirements are listed too
    assert refused.codes[0] == rc.CATEGORY_NOT_ASSIGNED
    assert rc.CONSENT_NOT_SIGNED in refused.codes
    allowed = dataclasses.replace(refused, outcome=GateOutcome.ALLOW, reasons=())
    other = dataclasses.replace(
        refused, reasons=(dataclasses.replace(refused.reasons[0], code=rc.CONSENT_NOT_SIGNED),)
    )
    reworded = dataclasses.replace(
        refused,
        reasons=(
            dataclasses.replace(refused.reasons[0], message="said differently"),
            *refused.reasons[1:],
        ),
    )
    assert classify(allowed, refused) is ImpactChange.NEWLY_REFUSED
    assert classify(refused, allowed) is ImpactChange.NEWLY_ALLOWED
    assert classify(refused, other) is ImpactChange.REASONS_CHANGED
    assert classify(refused, reworded) is ImpactChange.UNCHANGED
    assert classify(allowed, allowed) is ImpactChange.UNCHANGED
    impact = course_impact(facts, loader.get(MOD), START)
    assert [g.gate for g in impact.gates] == ["prescribe"]
    assert impact.change is ImpactChange.UNCHANGED

    rx = PrescriptionRecord("RX-1", 1, START.date(), START.date(), 30, 0)
    with_rx = dataclasses.replace(facts, prescriptions=(rx,))
    assert pending_prescription(with_rx) == rx
    picked = AuthorizationRecord("1", "RX-1", 1, START, None, None, 30, dispensed_at=START)
    assert pending_prescription(dataclasses.replace(with_rx, authorizations=(picked,))) is None
    assert pending_prescription(dataclasses.replace(with_rx, cycle=2)) is None


def test_facts_under_another_ruleset_are_replace_of_the_ruleset() -> None:
    """``under`` (the dry run's copy of a course's facts) is ``dataclasses.replace`` of the
    ruleset: every other field the same, the original untouched."""
    rx = PrescriptionRecord("RX-1", 1, START.date(), START.date(), 30, 0)
    facts = CourseFacts(
        ruleset=loader.get(LEGACY),
        state=CourseState.QUALIFIED,
        cycle=2,
        enrolled_on=START.date(),
        category="can_get_pregnant",
        consents=frozenset({"PATIENT_INFORMATION_CONSENT"}),
        patient_confirmed={2: frozenset(METHODS)},
        prescriptions=(rx,),
        prescriber_zone="America/Chicago",
    )
    moved = under(facts, loader.get(MOD))
    assert moved == dataclasses.replace(facts, ruleset=loader.get(MOD))
    assert type(moved) is CourseFacts and moved.ruleset.id == MOD and facts.ruleset.id == LEGACY
    assert vars(moved).keys() == vars(facts).keys()


# --- the population ----------------------------------------------------------------------------


@dataclass
class Population:
    app: Compliance
    clock: FixedClock
    world: World
    lockout: str  # missed the first window; second confirmation test inside the 19 days
    non_clia: str  # confirmation test in the clinic, no CLIA laboratory
    non_clia_no_comprehension: str  # the same, comprehension not done either
    office_visit_expired: str  # cannot get pregnant, prescription 30 days old, not dispensed
    allowed: str  # cannot get pregnant, paperwork done: allowed under both
    completed: str  # course closed

    @property
    def admin(self) -> str:
        return self.world.admin.id

    @property
    def prs(self) -> str:
        return self.world.prescriber.id

    def day(self, n: int) -> str:
        self.clock.set(START + n * DAY)
        return (START.date() + n * DAY).isoformat()

    @property
    def in_flight(self) -> list[str]:
        return [
            self.lockout,
            self.non_clia,
            self.non_clia_no_comprehension,
            self.office_visit_expired,
            self.allowed,
        ]


def _patient(p: Population, name: str) -> str:
    pat = p.app.register_patient(p.prs, name, "1999-04-05").patient.id
    assert p.app.enrol(p.prs, pat).course.ruleset == LEGACY
    return pat


def _can_get_pregnant(p: Population, name: str) -> str:
    app, prs = p.app, p.prs
    pat = _patient(p, name)
    app.assign_category(prs, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    for form in ("PATIENT_INFORMATION_CONSENT", "BIRTH_DEFECTS_CONSENT"):
        app.record_consent(prs, pat, form)
    started = (START.date() - 60 * DAY).isoformat()
    app.record_contraception(prs, pat, dict.fromkeys(METHODS, started))
    return pat


def _test(p: Population, pat: str, kind: str, day: int, setting: str, clia: bool) -> None:
    p.app.record_test(
        p.prs,
        pat,
        kind=kind,
        specimen_date=p.day(day),
        setting=setting,
        result="negative",
        clia=clia,
    )


def _paperwork(p: Population, pat: str, comprehension: bool = True) -> None:
    p.app.record_counselling(p.prs, pat)
    if comprehension:
        p.app.record_comprehension(pat, pat)
    p.app.confirm_contraception(pat, pat, list(METHODS))


def _cannot_get_pregnant(p: Population, name: str) -> str:
    app, prs = p.app, p.prs
    pat = _patient(p, name)
    app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prs, pat)
    app.record_comprehension(pat, pat)
    return pat


def build_population(app: Compliance, clock: FixedClock) -> Population:
    clock.set(START)
    world = build_world(app)
    p = Population(app, clock, world, "", "", "", "", "", "")
    p.day(0)
    p.lockout = _can_get_pregnant(p, "Lou Lockout")
    p.non_clia = _can_get_pregnant(p, "Cleo Clinic")
    p.non_clia_no_comprehension = _can_get_pregnant(p, "Nina Clinic")
    p.office_visit_expired = _cannot_get_pregnant(p, "Otto Visit")
    app.prescribe(p.prs, p.office_visit_expired, 30)  # office visit day 0: last day is day 29
    p.completed = _cannot_get_pregnant(p, "Cora Completed")
    app.prescribe(p.prs, p.completed, 30)
    assert app.end_treatment(p.prs, p.completed, p.day(0)).course.open is False

    _test(p, p.lockout, "screening", 0, "lab", True)
    _test(p, p.lockout, "confirmation", 19, "lab", True)  # its window, days 19 to 25, lapses
    for pat in (p.non_clia, p.non_clia_no_comprehension):
        _test(p, pat, "screening", 11, "clinic", False)

    p.day(30)
    p.allowed = _cannot_get_pregnant(p, "Ada Allowed")
    _test(p, p.lockout, "confirmation", 30, "lab", True)  # 11 days after the first: locked out
    app.confirm_patient(p.prs, p.lockout)
    _paperwork(p, p.lockout)
    for pat in (p.non_clia, p.non_clia_no_comprehension):
        _test(p, pat, "confirmation", 30, "clinic", False)
        app.confirm_patient(p.prs, pat)  # the result is in; its setting is judged by the gates
    _paperwork(p, p.non_clia)
    _paperwork(p, p.non_clia_no_comprehension, comprehension=False)
    return p


@pytest.fixture
def population(app: Compliance, clock: FixedClock) -> Population:
    return build_population(app, clock)


def by_patient(report: ImpactReport) -> dict[str, Any]:
    return {row.patient: row for row in report.courses}


def codes(decision: dict[str, Any]) -> set[str]:
    return {r["code"] for r in decision["reasons"]}


# --- 2. impact ---------------------------------------------------------------------------------


def test_impact_of_the_2026_modification_on_each_course(population: Population) -> None:
    p = population
    report = p.app.rules_impact(p.admin, MOD)
    assert report.evaluated_at == START + 30 * DAY and report.as_of is None
    rows = by_patient(report)
    assert list(rows) == sorted(p.in_flight)  # the completed course is not in flight
    assert {pat: row.change.value for pat, row in rows.items()} == {
        p.lockout: "newly_allowed",
        p.non_clia: "newly_allowed",
        p.non_clia_no_comprehension: "reasons_changed",
        p.office_visit_expired: "newly_allowed",
        p.allowed: "unchanged",
    }
    assert report.summary == {
        "courses": 5,
        "newly_refused": 0,
        "newly_allowed": 3,
        "reasons_changed": 1,
        "unchanged": 1,
        "already_on_ruleset": 0,
    }

    lockout = rows[p.lockout].gate("prescribe")
    assert lockout.before.codes == (rc.LOCKOUT_19D,) and lockout.after.allowed
    assert lockout.before.ruleset_id == LEGACY and lockout.after.ruleset_id == MOD
    assert lockout.before.reasons[0].earliest == START.date() + 38 * DAY
    assert rows[p.lockout].gate("dispense") is None  # nothing prescribed yet

    non_clia = rows[p.non_clia].gate("prescribe")
    assert rc.TEST_SETTING_NOT_PERMITTED in non_clia.before.codes and non_clia.after.allowed
    assert "confirmation test" in next(
        r.message for r in non_clia.before.reasons if r.code == rc.TEST_SETTING_NOT_PERMITTED
    )

    both = rows[p.non_clia_no_comprehension].gate("prescribe")
    assert set(both.before.codes) == {
        rc.COMPREHENSION_NOT_DONE,
        rc.TEST_SETTING_NOT_PERMITTED,
        rc.PRETREATMENT_TESTS_INCOMPLETE,
        rc.NO_NEGATIVE_TEST_IN_WINDOW,
    }
    assert both.after.codes == (rc.COMPREHENSION_NOT_DONE,)

    expired = rows[p.office_visit_expired]
    assert expired.state == "qualified"
    assert expired.gate("prescribe").change.value == "unchanged"
    dispense = expired.gate("dispense")
    assert dispense.prescription is not None
    assert dispense.before.codes == (rc.WINDOW_EXPIRED,) and dispense.after.allowed
    assert dispense.before.window is not None and dispense.after.window is None

    unchanged = rows[p.allowed].gate("prescribe")
    assert unchanged.before.allowed and unchanged.after.allowed


def test_impact_is_a_dry_run(population: Population) -> None:
    p = population
    before = p.app.audit_count(p.admin)
    p.app.rules_impact(p.admin, MOD)
    p.app.rules_impact(p.prs, MOD, as_of=START.date() + 29 * DAY)
    assert p.app.audit_count(p.admin) == before
    assert {p.app.status(p.prs, pat).course.ruleset for pat in p.in_flight} == {LEGACY}


def test_impact_as_of_a_date_is_judged_at_its_start_in_the_rulesets_zone(
    population: Population,
) -> None:
    p = population
    day_29 = START.date() + 29 * DAY  # the last day of the office-visit window
    report = p.app.rules_impact(p.admin, MOD, as_of=day_29.isoformat())
    assert report.as_of == day_29
    assert report.evaluated_at == datetime(2026, 6, 30, 4, 0, tzinfo=UTC)  # 00:00 EDT
    expired = by_patient(report)[p.office_visit_expired]
    assert expired.change.value == "unchanged"
    assert expired.gate("dispense").before.allowed
    assert report.to_dict()["as_of"] == "2026-06-30"


def test_impact_in_the_opposite_direction_is_newly_refused(population: Population) -> None:
    p = population
    p.app.migrate_courses(p.admin, MOD, all_from=LEGACY)
    report = p.app.rules_impact(p.admin, LEGACY)
    assert {pat: row.change.value for pat, row in by_patient(report).items()} == {
        p.lockout: "newly_refused",
        p.non_clia: "newly_refused",
        p.non_clia_no_comprehension: "reasons_changed",
        p.office_visit_expired: "newly_refused",
        p.allowed: "unchanged",
    }
    rows = by_patient(report)
    assert rows[p.lockout].gate("prescribe").after.codes == (rc.LOCKOUT_19D,)
    assert rows[p.office_visit_expired].gate("dispense").after.codes == (rc.WINDOW_EXPIRED,)
    assert {r.ruleset for r in rows.values()} == {MOD}
    assert report.summary["newly_refused"] == 3
    assert p.app.rules_impact(p.admin, MOD).summary == {
        "courses": 0,
        "newly_refused": 0,
        "newly_allowed": 0,
        "reasons_changed": 0,
        "unchanged": 0,
        "already_on_ruleset": 5,
    }


def test_a_prescriber_sees_the_impact_on_their_own_courses(population: Population) -> None:
    p = population
    assert len(p.app.rules_impact(p.prs, MOD).courses) == 5
    other = p.app.register_prescriber(p.admin, "Dr Other", "1234567893").id
    p.app.activate_prescriber(p.admin, other)
    assert p.app.rules_impact(other, MOD).courses == ()


IMPACT_INPUT_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"ruleset": "ipledge/2099"}, "ruleset"),
    ({"ruleset": 7}, "ruleset"),
    ({"ruleset": MOD, "as_of": "2026-02-30"}, "as_of"),
    ({"ruleset": MOD, "as_of": datetime(2026, 7, 1, tzinfo=UTC)}, "as_of"),
    ({"ruleset": MOD, "pharmacy_zone": "Mars/Olympus"}, "pharmacy_zone"),
    ({"ruleset": MOD, "pharmacy_zone": 5}, "pharmacy_zone"),
]


def test_impact_input_errors_name_the_field(population: Population) -> None:
    """Each bad argument, on one population (nothing is changed by any of them)."""
    for kwargs, field in IMPACT_INPUT_ERRORS:
        with pytest.raises(InvalidInput) as caught:
            population.app.rules_impact(population.admin, **kwargs)
        assert caught.value.field == field, kwargs


def test_impact_refused_to_others_and_audited(population: Population) -> None:
    p = population
    for actor in (p.world.pharmacist.id, p.lockout):
        with pytest.raises(NotPermitted) as caught:
            p.app.rules_impact(actor, MOD)
        assert caught.value.reasons == (rc.ACTOR_NOT_PERMITTED,)
        (event,) = p.app.audit_log(p.admin, LogFilter(actor=actor, action="rules.impact"))
        assert event.outcome == "refused"


# --- 3. migrate --------------------------------------------------------------------------------


def migrate_events(p: Population) -> list[Any]:
    return p.app.audit_log(p.admin, LogFilter(action="course.migrate"))


def test_migrate_one_course(population: Population) -> None:
    p = population
    # iPLEDGE judges the test at the request: the prescription is written, the request refused
    rx = p.app.prescribe(p.prs, p.lockout, 30).prescription
    assert rx is not None
    with pytest.raises(Refused) as locked:
        p.app.request_authorization(p.world.pharmacist.id, rx.id)
    assert locked.value.reasons == (rc.LOCKOUT_19D,)
    report = p.app.migrate_courses(p.admin, MOD, [p.lockout])
    assert (report.migrated, report.unchanged) == (1, 0)
    (row,) = report.courses
    assert (row.patient, row.old, row.new, row.result) == (p.lockout, LEGACY, MOD, "migrated")
    assert row.before.codes == (rc.LOCKOUT_19D,) and row.after.allowed

    (event,) = migrate_events(p)
    assert (event.outcome, event.actor_id, event.subjects) == ("ok", p.admin, (p.lockout,))
    assert event.ruleset_id == MOD
    assert event.state_before == event.state_after == "qualified"
    assert (event.payload["from"], event.payload["to"]) == (LEGACY, MOD)
    assert event.payload["before"]["reasons"][0]["code"] == rc.LOCKOUT_19D
    assert event.payload["after"]["outcome"] == "ALLOW"
    assert event.payload["after"]["ruleset"] == MOD

    decision = p.app.check_prescribe(p.prs, p.lockout, 30)
    assert decision.allowed and decision.ruleset_id == MOD
    outcome = p.app.prescribe(p.prs, p.lockout, 30)
    assert outcome.decision is not None and outcome.decision.ruleset_id == MOD
    assert outcome.course.ruleset == MOD
    assert p.app.status(p.prs, p.non_clia).course.ruleset == LEGACY  # the others stay
    assert p.app.verify_audit(p.admin).ok


def test_migrate_a_selection_and_report_courses_already_there(population: Population) -> None:
    p = population
    p.app.migrate_courses(p.admin, MOD, [p.allowed])
    selection = [p.non_clia, p.office_visit_expired, p.allowed, p.non_clia.lower()]
    report = p.app.migrate_courses(p.admin, MOD, selection)
    assert (report.migrated, report.unchanged) == (2, 1)
    results = {c.patient: (c.old, c.result) for c in report.courses}
    assert results == {
        p.non_clia: (LEGACY, "migrated"),
        p.office_visit_expired: (LEGACY, "migrated"),
        p.allowed: (MOD, "unchanged"),
    }
    assert [c.patient for c in report.courses] == sorted(results)
    assert sorted(e.subjects[0] for e in migrate_events(p)) == sorted(
        [p.allowed, p.non_clia, p.office_visit_expired]
    )
    rx = p.app.status(p.prs, p.office_visit_expired).current_prescription
    assert rx is not None
    decision = p.app.check_dispense(p.world.pharmacist.id, rx.id)
    assert decision.allowed and decision.ruleset_id == MOD  # no office-visit window any more
    assert p.app.verify_audit(p.admin).ok


def test_migrate_all_from_a_ruleset(population: Population) -> None:
    p = population
    report = p.app.migrate_courses(p.admin, MOD, all_from=LEGACY)
    assert report.migrated == 5 and {c.patient for c in report.courses} == set(p.in_flight)
    assert len(migrate_events(p)) == 5
    assert p.app.migrate_courses(p.admin, MOD, all_from=LEGACY).courses == ()
    again = p.app.migrate_courses(p.admin, MOD, all_from=MOD)
    assert (again.migrated, again.unchanged) == (0, 5)
    assert len(migrate_events(p)) == 5
    assert p.app.verify_audit(p.admin).ok


def _assert_nothing_migrated(p: Population, call: Callable[[], object], field: str) -> str:
    before = p.app.audit_count(p.admin)
    with pytest.raises(InvalidInput) as caught:
        call()
    assert caught.value.field == field
    assert p.app.audit_count(p.admin) == before
    assert {p.app.status(p.prs, pat).course.ruleset for pat in p.in_flight} == {LEGACY}
    return caught.value.message


def test_migrate_is_all_or_nothing(population: Population) -> None:
    p = population
    message = _assert_nothing_migrated(
        p,
        lambda: p.app.migrate_courses(p.admin, MOD, [p.lockout, p.completed, p.non_clia]),
        "patients",
    )
    assert p.completed in message and "completed" in message
    never = p.app.register_patient(p.prs, "Nev Never", "2000-01-01").patient.id
    message = _assert_nothing_migrated(
        p, lambda: p.app.migrate_courses(p.admin, MOD, [p.lockout, never]), "patients"
    )
    assert "never enrolled" in message
    with pytest.raises(NotFound):
        p.app.migrate_courses(p.admin, MOD, [p.lockout, new_short_id(Kind.PATIENT)])
    assert migrate_events(p) == []


MIGRATE_INPUT_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"to": "ipledge/2099"}, "to"),
    ({"to": None}, "to"),
    ({"to": MOD, "patients": None}, "patients"),
    ({"to": MOD, "patients": []}, "patients"),
    ({"to": MOD, "patients": "PAT-0000000"}, "patients"),
    ({"to": MOD, "patients": ["nobody"]}, "patients"),
    ({"to": MOD, "patients": [None]}, "patients"),
    ({"to": MOD, "patients": {"PAT-0000000": 1}}, "patients"),
    ({"to": MOD, "all_from": 5}, "all_from"),
    ({"to": MOD, "all_from": "ipledge/1999"}, "all_from"),
]


def test_migrate_input_errors_name_the_field(population: Population) -> None:
    """Each bad argument, on one population: each must leave every course where it was."""
    p = population
    for kwargs, field in MIGRATE_INPUT_ERRORS:
        _assert_nothing_migrated(p, lambda kw=kwargs: p.app.migrate_courses(p.admin, **kw), field)


def test_migrate_names_and_all_from_together_are_refused(population: Population) -> None:
    p = population
    _assert_nothing_migrated(
        p, lambda: p.app.migrate_courses(p.admin, MOD, [p.lockout], all_from=LEGACY), "all_from"
    )


def add_rulesets(monkeypatch: pytest.MonkeyPatch, **edits: Callable[[str], str]) -> None:
    """The packaged rulesets plus, per keyword (a file name), a copy of ipledge/2026-mod's file
    edited by the function given."""
    folder = resources.files("compliance.programs") / "rulesets"
    files = {
        e.name: e.read_text(encoding="utf-8") for e in folder.iterdir() if e.name.endswith(".toml")
    }
    for name, edit in edits.items():
        files[f"{name}.toml"] = edit(files["ipledge-2026-mod.toml"])
    monkeypatch.setattr(loader, "_files", lambda: files)
    loader.all_rulesets.cache_clear()


@pytest.fixture
def other_programme(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ruleset of another programme (otherwise ipledge/2026-mod)."""
    add_rulesets(
        monkeypatch,
        other=lambda text: text.replace('id = "ipledge/2026-mod"', 'id = "other/1"').replace(
            'programme = "ipledge"', 'programme = "other"'
        ),
    )
    yield "other/1"
    loader.all_rulesets.cache_clear()


@pytest.fixture
def pharmacy_zoned(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An iPLEDGE version that judges dispensing in the pharmacy's own zone."""
    add_rulesets(
        monkeypatch,
        local=lambda text: text.replace('id = "ipledge/2026-mod"', 'id = "ipledge/local"').replace(
            'today_zone = "America/New_York"',
            'today_zone = "America/New_York"\ndispense_zone = "pharmacy"',
        ),
    )
    yield "ipledge/local"
    loader.all_rulesets.cache_clear()


def test_impact_under_a_ruleset_judged_in_the_pharmacys_zone(
    population: Population, pharmacy_zoned: str
) -> None:
    p = population
    day_30 = START.date() + 30 * DAY
    clinic = p.app.rules_impact(p.admin, pharmacy_zoned, as_of=day_30)
    assert clinic.pharmacy_zone == "America/New_York"
    assert clinic.evaluated_at == datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
    honolulu = p.app.rules_impact(
        p.admin, pharmacy_zoned, as_of=day_30, pharmacy_zone="Pacific/Honolulu"
    )
    assert honolulu.evaluated_at == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    dispense = by_patient(honolulu)[p.office_visit_expired].gate("dispense")
    assert dispense.after.today == day_30 and dispense.after.allowed
    assert dispense.before.codes == (rc.WINDOW_EXPIRED,)  # 06:00 on day 30 in New York
    assert by_patient(honolulu)[p.lockout].gate("prescribe").after.allowed
    now = p.app.rules_impact(p.prs, pharmacy_zoned)  # no pharmacy named: the clinic's zone
    assert now.evaluated_at == START + 30 * DAY and now.summary["newly_allowed"] == 3


def test_a_ruleset_of_another_programme_is_refused(
    population: Population, other_programme: str
) -> None:
    p = population
    message = _assert_nothing_migrated(
        p, lambda: p.app.migrate_courses(p.admin, other_programme, [p.allowed]), "to"
    )
    assert "programme 'other'" in message and p.allowed in message
    _assert_nothing_migrated(
        p, lambda: p.app.migrate_courses(p.admin, other_programme, all_from=LEGACY), "to"
    )
    # impact covers the target's own programme only; diff works across programmes
    assert p.app.rules_impact(p.admin, other_programme).courses == ()
    paths = {c.path for c in Compliance.ruleset_diff(LEGACY, other_programme).changes}
    assert {"id", "programme", "lockout_days_after_missed_first_window"} <= paths


def test_migrate_is_for_administrators_only(population: Population) -> None:
    p = population
    with pytest.raises(NotPermitted) as caught:
        p.app.migrate_courses(p.prs, MOD, [p.lockout])
    assert caught.value.reasons == (rc.ACTOR_NOT_PERMITTED,)
    (event,) = p.app.audit_log(p.admin, LogFilter(action="course.migrate"))
    assert event.outcome == "refused" and event.subjects == (p.lockout,)
    assert p.app.status(p.prs, p.lockout).course.ruleset == LEGACY


def test_new_courses_take_the_version_in_force_on_their_enrolment_date(
    population: Population,
) -> None:
    """Migrating courses changes no schedule: enrolment still picks the version in force."""
    p = population
    p.app.migrate_courses(p.admin, MOD, all_from=LEGACY)
    p.app.set_rules_schedule(p.admin, MOD, p.day(20))
    cases = [(p.day(19), LEGACY), (p.day(20), MOD), (None, MOD)]
    for enrolled_on, expected in cases:
        pat = p.app.register_patient(p.prs, "Eve Enrol", "1995-05-05").patient.id
        assert p.app.enrol(p.prs, pat, enrolled_on=enrolled_on).course.ruleset == expected
    p.app.withdraw_course(p.prs, p.lockout, "starts again")
    again = p.app.enrol(p.prs, p.lockout, enrolled_on=p.day(5)).course
    assert again.ruleset == LEGACY


# --- 5. the command line -----------------------------------------------------------------------


def _shell_on(url: str) -> Iterator[tuple[Shell, Population]]:
    """The population on ``url``, and a shell acting as its administrator on a set clock."""
    clock = FixedClock(START)
    with Compliance.open(url, clock) as app:
        p = build_population(app, clock)
        app.set_clock_override(p.admin, True)
        sh = Shell(url)
        sh.actor = p.admin
        yield sh, p


@pytest.fixture
def cli_population(sqlite_url: str) -> Iterator[tuple[Shell, Population]]:
    yield from _shell_on(sqlite_url)


NOW_30 = ["--now", (START + 30 * DAY).isoformat()]


def test_cli_rules_diff(sqlite_url: str) -> None:
    shell = Shell(sqlite_url)  # no database is opened: rulesets are data
    data = shell.json("rules", "diff", LEGACY, MOD)
    assert set(data) == {"from", "to", "changes"} and (data["from"], data["to"]) == (LEGACY, MOD)
    assert {
        "path": "lockout_days_after_missed_first_window",
        "change": "changed",
        "old": 19,
        "new": 0,
    } in data["changes"]
    assert all(set(c) == {"path", "change", "old", "new"} for c in data["changes"])
    assert shell.json("rules", "diff", MOD, MOD) == {"from": MOD, "to": MOD, "changes": []}
    table = shell.run("rules", "diff", LEGACY, MOD).stdout
    assert "lockout_days_after_missed_first_window\tchanged\t19\t0" in table
    assert "no differences" in shell.run("rules", "diff", MOD, MOD).stdout
    bad = shell.run("rules", "diff", LEGACY, "nope/1", "--json", expect=2)
    assert json.loads(bad.stderr)["field"] == "new" and bad.stdout == ""
    assert "nope/1" in shell.run("rules", "diff", "nope/1", MOD, expect=2).stderr


def test_cli_rules_impact(cli_population: tuple[Shell, Population]) -> None:
    sh, p = cli_population
    data = sh.json(*NOW_30, "rules", "impact", MOD)
    assert set(data) == IMPACT_KEYS and set(data["summary"]) == SUMMARY_KEYS
    assert data["summary"]["newly_allowed"] == 3 and data["pharmacy_zone"] == "America/New_York"
    rows = {row["patient"]: row for row in data["courses"]}
    assert all(set(row) == ROW_KEYS for row in rows.values())
    expired = rows[p.office_visit_expired]
    assert [g["gate"] for g in expired["gates"]] == ["prescribe", "dispense"]
    assert all(set(g) == GATE_KEYS for g in expired["gates"])
    dispense = expired["gates"][1]
    assert set(dispense["before"]) == DECISION_KEYS
    assert (
        codes(dispense["before"]) == {rc.WINDOW_EXPIRED} and dispense["after"]["outcome"] == "ALLOW"
    )
    assert codes(rows[p.lockout]["gates"][0]["before"]) == {rc.LOCKOUT_19D}

    as_of = sh.json(
        *NOW_30,
        "rules",
        "impact",
        MOD,
        "--as-of",
        "2026-06-30",
        "--pharmacy-zone",
        "America/Denver",
    )
    assert as_of["as_of"] == "2026-06-30" and as_of["pharmacy_zone"] == "America/Denver"
    assert as_of["evaluated_at"] == "2026-06-30T04:00:00+00:00"

    table = sh.run(*NOW_30, "rules", "impact", MOD).stdout
    assert "newly allowed 3" in table
    assert (
        f"{p.lockout}\tpre_treatment\t{LEGACY}\tnewly_allowed\tREFUSE LOCKOUT_19D -> ALLOW\t-"
        in table
    )
    bad = sh.run("rules", "impact", MOD, "--as-of", "soon", "--json", expect=2)
    assert json.loads(bad.stderr)["field"] == "--as-of"  # the option as typed
    assert (
        "--pharmacy-zone"
        in sh.run("rules", "impact", MOD, "--pharmacy-zone", "Nowhere", expect=2).stderr
    )
    refused = sh.run("rules", "impact", MOD, "--json", actor=p.world.pharmacist.id, expect=4)
    assert json.loads(refused.stderr)["reasons"] == ["ACTOR_NOT_PERMITTED"]
    assert sh.json(*NOW_30, "rules", "impact", MOD, actor=p.prs)["summary"]["courses"] == 5


@pytest.fixture
def cli_everywhere(db_url: str) -> Iterator[tuple[Shell, Population]]:
    """``cli_population`` on each backend in turn."""
    yield from _shell_on(db_url)


IMPACT_ORDER = ["ruleset", "programme", "evaluated_at", "as_of", "pharmacy_zone"]


@pytest.mark.parametrize("as_of", [None, "2026-06-30"])
def test_cli_impact_streams_the_report_of_the_api(
    cli_everywhere: tuple[Shell, Population], as_of: str | None
) -> None:
    """The streamed document parses as one JSON document equal to the API's report: the
    heading, then ``courses`` one object a line, then ``summary``."""
    sh, p = cli_everywhere
    extra = [] if as_of is None else ["--as-of", as_of]
    result = sh.run(*NOW_30, "rules", "impact", MOD, *extra, "--json")
    assert result.stderr == ""
    data = json.loads(result.stdout)
    p.day(30)
    report = p.app.rules_impact(p.admin, MOD, as_of=as_of).to_dict()
    assert data == report
    assert list(data) == [*IMPACT_ORDER, "courses", "summary"]
    lines = result.stdout.splitlines()
    rows = [json.loads(line.strip().rstrip(",")) for line in lines if line.startswith("    {")]
    assert rows == report["courses"] and len(rows) == 5
    assert lines[-2].startswith('  "summary": {') and lines[-1] == "}"

    text = sh.run(*NOW_30, "rules", "impact", MOD, *extra).stdout.splitlines()
    assert text[0] == "\t".join(["patient", "state", "ruleset", "change", "prescribe", "dispense"])
    assert [line.split("\t")[0] for line in text[1:-1]] == [c["patient"] for c in rows]
    assert text[-1].startswith(f"moving to {MOD} at ") and (
        f"newly allowed {report['summary']['newly_allowed']}," in text[-1]
    )


def test_cli_impact_with_no_course_and_refused(cli_everywhere: tuple[Shell, Population]) -> None:
    """No course: an empty list and the totals. A refusal or a bad argument writes nothing on
    stdout, with the exit codes of old."""
    sh, p = cli_everywhere
    other = p.app.register_prescriber(p.admin, "Dr Other", "1234567893").id
    p.app.activate_prescriber(p.admin, other)
    data = sh.json(*NOW_30, "rules", "impact", MOD, actor=other)
    assert data["courses"] == [] and data["summary"]["courses"] == 0
    assert list(data) == [*IMPACT_ORDER, "courses", "summary"]
    text = sh.run(*NOW_30, "rules", "impact", MOD, actor=other).stdout
    assert text.startswith(f"moving to {MOD} at ") and text.count("\n") == 1
    pharmacist = p.world.pharmacist.id
    for args in (["--json"], []):
        refused = sh.run("rules", "impact", MOD, *args, actor=pharmacist, expect=4)
        assert refused.stdout == "" and "ACTOR_NOT_PERMITTED" in refused.stderr
        bad = sh.run("rules", "impact", MOD, "--as-of", "soon", *args, expect=2)
        assert bad.stdout == "" and "--as-of" in bad.stderr
        unknown = sh.run("rules", "impact", "ipledge/2099", *args, expect=2)
        assert unknown.stdout == "" and "ipledge/2099" in unknown.stderr


def test_cli_course_migrate(cli_population: tuple[Shell, Population]) -> None:
    sh, p = cli_population
    one = sh.json(*NOW_30, "course", "migrate", p.lockout, "--to", MOD)
    assert set(one) == MIGRATION_KEYS and (one["to"], one["migrated"], one["unchanged"]) == (
        MOD,
        1,
        0,
    )
    (row,) = one["courses"]
    assert set(row) == MIGRATED_KEYS and (row["from"], row["to"], row["result"]) == (
        LEGACY,
        MOD,
        "migrated",
    )
    assert set(row["before"]) == DECISION_KEYS and row["after"]["outcome"] == "ALLOW"

    table = sh.run(*NOW_30, "course", "migrate", p.lockout, p.allowed, "--to", MOD).stdout
    assert "migrated 1, unchanged 1" in table
    assert f"{p.lockout}\tpre_treatment\t{MOD}\t{MOD}\tunchanged\tALLOW -> ALLOW" in table

    closed = sh.run(
        *NOW_30, "course", "migrate", p.non_clia, p.completed, "--to", MOD, "--json", expect=2
    )
    assert json.loads(closed.stderr)["field"] == "patients"
    unknown = sh.run("course", "migrate", p.non_clia, "--to", "ipledge/2099", "--json", expect=2)
    assert json.loads(unknown.stderr)["field"] == "--to"
    assert "patients" in sh.run("course", "migrate", "--to", MOD, expect=2).stderr
    assert "--to" in sh.run("course", "migrate", p.non_clia, expect=2).stderr
    sh.run("course", "migrate", p.non_clia, "--to", MOD, actor=p.prs, expect=4)
    assert sh.json("status", p.non_clia)["course"]["ruleset"] == LEGACY

    rest = sh.json(*NOW_30, "course", "migrate", "--to", MOD, "--all-from", LEGACY)
    assert rest["migrated"] == 3
    events = sh.json("audit", "log", "--action", "course.migrate", "--oldest-first")
    assert [e["outcome"] for e in events] == ["ok", "ok", "refused", "ok", "ok", "ok"]
    assert all(e["payload"]["to"] == MOD for e in events if e["outcome"] == "ok")
    assert sh.json("audit", "verify")["ok"] is True
    assert sh.json(*NOW_30, "course", "check", p.non_clia)["ruleset"] == MOD


def test_diff_between_the_eu_and_uk_rulesets() -> None:
    changes = {
        c.path: (c.change, c.old, c.new)
        for c in diff(loader.get("eu-iso/2018"), loader.get("uk-iso/2026-01")).changes
    }
    assert changes["today_zone"] == ("changed", "Europe/Brussels", "Europe/London")
    assert changes["contraception.waivers"] == ("changed", [], ["no_expected_risk_agreement"])
    assert changes["testing.kinds.monthly.home_with_prescriber_opt_in"] == ("changed", False, True)
    assert "testing.max_days_before_prescription" not in changes  # 3 days in both
    assert "dispense_zone" not in changes and "authorization.central" not in changes


@pytest.mark.parametrize("chunk", [1, 2, 500])
def test_the_streamed_impact_is_the_report_whatever_the_chunk(
    population: Population, chunk: int
) -> None:
    """Read a chunk of courses at a time, the report is the same rows in the same order, the
    heading is known before any course and the totals only after the last."""
    p = population
    whole = p.app.rules_impact(p.admin, MOD)
    with p.app.rules_impact_stream(p.admin, MOD, chunk=chunk) as stream:
        heading = stream.heading()
        assert heading["ruleset"] == MOD
        rows = list(stream)
        summary = stream.summary
    assert [r.to_dict() for r in rows] == [r.to_dict() for r in whole.courses]
    assert summary == whole.summary
    with (
        pytest.raises(InvalidInput, match="chunk"),
        p.app.rules_impact_stream(p.admin, MOD, chunk=0),
    ):
        pass


# --- a dry run judged by two processes --------------------------------------------------------


def _lines(report: ImpactReport) -> list[str]:
    from compliance.api.rule_changes import compact_json

    return [compact_json(r.to_dict()) for r in report.courses]


@pytest.mark.parametrize("chunk", [1, 2])
def test_two_processes_write_the_report_one_writes(
    population: Population, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other chunk judged by a second process on the same snapshot: the same lines in the
    same order, and the same totals, whatever the chunk (chunks with no course to move
    included: some courses are already on the target)."""
    from contextlib import contextmanager

    from compliance.db import workers

    p = population
    seen: list[object] = []
    real = workers.beside

    @contextmanager
    def recorded(*args: Any) -> Iterator[Any]:
        with real(*args) as (mains, other):
            seen.append(other)
            yield mains, other

    monkeypatch.setattr(workers, "beside", recorded)
    p.app.migrate_courses(p.admin, MOD, patients=[p.lockout, p.allowed])
    whole = p.app.rules_impact(p.admin, MOD)
    assert whole.summary["already_on_ruleset"] == 2 and len(whole.courses) + 2 > 2 * chunk
    with p.app.rules_impact_stream(p.admin, MOD, chunk=chunk, processes=2) as stream:
        lines = list(stream.json_lines())
        summary = stream.summary
    assert lines == _lines(whole)
    assert summary == whole.summary
    assert len(seen) == 1 and isinstance(seen[0], workers.Worker)  # the work was shared
    with p.app.rules_impact_stream(p.admin, MOD, processes=1) as stream:
        assert list(stream.json_lines()) == _lines(whole)
    assert len(seen) == 1
    with (
        pytest.raises(InvalidInput, match="processes"),
        p.app.rules_impact_stream(p.admin, MOD, processes=3),
    ):
        pass


def test_a_second_process_that_fails_is_an_error_not_a_short_report(
    population: Population,
) -> None:
    from compliance.api import rule_changes
    from compliance.db import workers

    p = population
    with p.app.rules_impact_stream(p.admin, MOD, chunk=1, processes=2) as stream:
        args = {**rule_changes._plan_args(stream._plan), "target": "ipledge/no-such-ruleset"}
        with workers.beside(stream._session, rule_changes._judged_elsewhere, args) as (
            _,
            other,
        ):
            assert other is not None
            assert other.next_frame().decode() == loader.fingerprint()
            with pytest.raises(workers.WorkerFailed):
                other.next_frame()


def test_a_second_process_reading_other_rulesets_judges_nothing(
    population: Population, pharmacy_zoned: str
) -> None:
    """This process reads a ruleset file the second process does not have (a test's own): the
    second process says so first, and this process judges every course itself."""
    p = population
    whole = p.app.rules_impact(p.admin, pharmacy_zoned)
    with p.app.rules_impact_stream(p.admin, pharmacy_zoned, chunk=1, processes=2) as stream:
        assert list(stream.json_lines()) == _lines(whole)
        assert stream.summary == whole.summary


def test_with_the_write_lock_held_elsewhere_one_process_judges_all(
    population: Population, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from compliance.db import snapshots

    p = population
    if p.app.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL shares a snapshot without any lock")
    whole = p.app.rules_impact(p.admin, MOD)
    monkeypatch.setattr(snapshots, "LOCK_WAIT_MS", 50)
    writer = sqlite3.connect(str(p.app.engine.url.database), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with p.app.rules_impact_stream(p.admin, MOD, chunk=1, processes=2) as stream:
            assert list(stream.json_lines()) == _lines(whole)
            assert stream.summary == whole.summary
    finally:
        writer.execute("ROLLBACK")
        writer.close()
