"""Minimum necessary access (issue 12), every role x every read, allowed and refused.

From the programmes' division of work: a pharmacist finds a patient only with the identifiers
on the prescription in hand and sees only what the dispense needs and its own pharmacy's
authorizations; a designee sees only the grantor's patients; a prescriber their own patients,
designees and grants; each role's worklist shows only its own work. An administrator sees
everything. A record asked for by id out of scope is refused ``OUT_OF_SCOPE`` (and the refusal
audited); a list leaves out what is out of scope.

The scene: clinic A (the world's prescriber, designee, pharmacy and pharmacist) and clinic B (a
second prescriber with their own designee, a second pharmacy and pharmacist). Patient ``a`` is
A's, with an authorization at A's pharmacy left past its expiry (a reversal owed); patient ``b``
is B's, with a reported pregnancy; patient ``new`` was registered by A's designee and not yet
enrolled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from compliance.api import Compliance
from compliance.clock import FixedClock
from compliance.domain import reasons as rc
from compliance.errors import NotPermitted
from tests.conftest import World, add_pharmacist, next_npi


@dataclass(frozen=True)
class Scene:
    app: Compliance
    w: World
    prs_b: str
    dsg_b: str
    rph_b: str
    a: str
    b: str
    new: str
    number: str

    @property
    def admin(self) -> str:
        return self.w.admin.id

    @property
    def prs_a(self) -> str:
        return self.w.prescriber.id

    @property
    def dsg_a(self) -> str:
        return self.w.designee.id

    @property
    def rph_a(self) -> str:
        return self.w.pharmacist.id


def _ready(app: Compliance, prs: str, name: str) -> str:
    """A patient who cannot get pregnant with every step done: the prescribe gate passes."""
    pat = app.register_patient(prs, name, "1990-05-05").patient.id
    app.enrol(prs, pat)
    app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prs, pat)
    app.record_comprehension(pat, pat)
    return pat


@pytest.fixture
def scene(world: World, clock: FixedClock) -> Scene:
    app, admin = world.app, world.admin.id
    # The 2026 modification, in which pharmacies reverse authorizations not picked up.
    app.set_rules_schedule(admin, "ipledge/2026-mod", world.app.clock.now().date())
    prs_b = app.register_prescriber(admin, "Dr Bea Other", next_npi()).id
    app.activate_prescriber(admin, prs_b)
    dsg_b = app.register_designee(prs_b, "Dev Other Designee").id
    app.grant_designee(prs_b, dsg_b, prs_b)
    rph_b = add_pharmacist(app, admin, "Harbour", "7654321", "America/New_York")
    a = _ready(app, world.prescriber.id, "Alma Patient")
    rx = app.prescribe(world.prescriber.id, a, 30).prescription
    assert rx is not None
    auth = app.request_authorization(world.pharmacist.id, rx.id).authorization
    assert auth is not None
    b = app.register_patient(prs_b, "Bruno Patient", "1991-06-06").patient.id
    app.enrol(prs_b, b)
    app.report_pregnancy(prs_b, b)
    new = app.register_patient(
        world.designee.id, "Nadia Waiting", "1992-07-07", on_behalf_of=world.prescriber.id
    ).patient.id
    # Not picked up in the days the programme allows: the pharmacy owes a reversal.
    allowed = Compliance.ruleset("ipledge/2026-mod").authorization.reverse_unpicked_after_days
    clock.set(auth.issued_at + timedelta(days=allowed, hours=1))
    return Scene(app, world, prs_b, dsg_b, rph_b, a, b, new, auth.number)


def refused(call: Callable[[], object], code: str = rc.OUT_OF_SCOPE) -> None:
    with pytest.raises(NotPermitted) as caught:
        call()
    assert code in caught.value.reasons, caught.value.reasons


def names(people: list[object]) -> set[str]:
    return {str(p.id) for p in people}  # type: ignore[attr-defined]


# --- patients ---------------------------------------------------------------------------------


def test_find_patients_shows_each_clinic_only_its_own(scene: Scene) -> None:
    s, app = scene, scene.app
    assert names(app.find_patients(s.admin)) == {s.a, s.b, s.new}
    assert names(app.find_patients(s.prs_a)) == {s.a, s.new}  # new: registered for A
    assert names(app.find_patients(s.dsg_a, on_behalf_of=s.prs_a)) == {s.a, s.new}
    assert names(app.find_patients(s.prs_b)) == {s.b}
    assert names(app.find_patients(s.dsg_b)) == {s.b}
    assert app.find_patients(s.prs_b, name="Alma") == []
    refused(lambda: app.find_patients(s.rph_a), rc.ACTOR_NOT_PERMITTED)
    refused(lambda: app.find_patients(s.a), rc.ACTOR_NOT_PERMITTED)


def test_a_patient_by_id_only_within_scope(scene: Scene) -> None:
    s, app = scene, scene.app
    assert app.get_patient(s.admin, s.b).id == s.b
    assert app.get_patient(s.prs_a, s.a).id == s.a
    assert app.get_patient(s.prs_a, s.new).id == s.new
    assert app.get_patient(s.dsg_a, s.a, on_behalf_of=s.prs_a).id == s.a
    refused(lambda: app.get_patient(s.prs_a, s.b))
    refused(lambda: app.get_patient(s.dsg_a, s.b, on_behalf_of=s.prs_a))
    refused(lambda: app.get_patient(s.prs_b, s.new))
    refused(lambda: app.get_patient(s.rph_a, s.a), rc.ACTOR_NOT_PERMITTED)
    # Correcting another clinic's patient is refused the same way, and changes nothing.
    refused(lambda: app.correct_patient(s.prs_b, s.a, "typo", name="Alma Changed"))
    refused(lambda: app.add_patient_external_id(s.prs_b, s.a, "MRN", "B-1"))
    assert app.get_patient(s.admin, s.a).name == "Alma Patient"


def test_a_refused_read_is_audited(scene: Scene) -> None:
    s, app = scene, scene.app
    refused(lambda: app.get_patient(s.prs_b, s.a))
    event = [e for e in app.audit_log(s.admin) if e.outcome == "refused"][-1]
    assert (event.actor_id, event.action, event.reason_codes) == (
        s.prs_b,
        "patient.read",
        (rc.OUT_OF_SCOPE,),
    )
    assert s.a in event.subjects


def test_course_status_only_for_the_clinic_running_it(scene: Scene) -> None:
    s, app = scene, scene.app
    assert app.status(s.admin, s.b).course.patient == s.b
    assert app.status(s.prs_a, s.a).course.patient == s.a
    assert app.status(s.a, s.a).course.patient == s.a
    refused(lambda: app.status(s.prs_a, s.b))  # who is pregnant is B's to know
    refused(lambda: app.status(s.dsg_a, s.b, on_behalf_of=s.prs_a))
    refused(lambda: app.status(s.rph_a, s.a))  # the pharmacy has the dispense check
    refused(lambda: app.status(s.b, s.a))
    refused(lambda: app.check_prescribe(s.rph_a, s.a, 30))


# --- people, grants and pharmacies ------------------------------------------------------------


def test_people_each_role_may_list(scene: Scene) -> None:
    s, app = scene, scene.app
    assert names(app.list_people(s.admin, "administrator")) == {s.admin}
    assert names(app.list_people(s.admin, "pharmacist")) == {s.rph_a, s.rph_b}
    assert names(app.list_people(s.prs_a, "prescriber")) == {s.prs_a}
    assert names(app.list_people(s.prs_a, "designee")) == {s.dsg_a}
    assert names(app.list_people(s.prs_b, "designee")) == {s.dsg_b}
    assert names(app.list_people(s.dsg_a, "prescriber", on_behalf_of=s.prs_a)) == {s.prs_a}
    assert names(app.list_people(s.rph_a, "pharmacist")) == {s.rph_a}
    for role in ("administrator", "prescriber", "designee"):
        refused(lambda role=role: app.list_people(s.rph_a, role))  # type: ignore[misc]
    for actor in (s.prs_a, s.dsg_a):
        refused(lambda actor=actor: app.list_people(actor, "administrator"))  # type: ignore[misc]
        refused(lambda actor=actor: app.list_people(actor, "pharmacist"))  # type: ignore[misc]


def test_a_person_by_id_only_within_scope(scene: Scene) -> None:
    s, app = scene, scene.app
    assert app.get_person(s.admin, s.rph_b).id == s.rph_b
    assert app.get_person(s.rph_a, s.rph_a).id == s.rph_a
    assert app.get_person(s.prs_a, s.dsg_a).id == s.dsg_a
    assert app.get_person(s.dsg_a, s.prs_a).id == s.prs_a
    refused(lambda: app.get_person(s.rph_a, s.admin))
    refused(lambda: app.get_person(s.rph_a, s.rph_b))
    refused(lambda: app.get_person(s.rph_a, s.prs_a))
    refused(lambda: app.get_person(s.prs_a, s.prs_b))
    refused(lambda: app.get_person(s.prs_a, s.dsg_b))
    refused(lambda: app.get_person(s.dsg_a, s.prs_b))


def test_grants_only_ones_own(scene: Scene) -> None:
    s, app = scene, scene.app
    every = {(g.designee, g.prescriber) for g in app.list_grants(s.admin)}
    assert every == {(s.dsg_a, s.prs_a), (s.dsg_b, s.prs_b)}
    assert {(g.designee, g.prescriber) for g in app.list_grants(s.prs_a)} == {(s.dsg_a, s.prs_a)}
    assert {(g.designee, g.prescriber) for g in app.list_grants(s.dsg_b)} == {(s.dsg_b, s.prs_b)}
    assert app.list_grants(s.prs_a, designee=s.dsg_b) == []
    refused(lambda: app.list_grants(s.rph_a))


def test_pharmacies_a_pharmacist_sees_only_its_own(scene: Scene) -> None:
    s, app = scene, scene.app
    harbour = app.get_person(s.admin, s.rph_b).pharmacy
    assert harbour is not None
    assert {p.id for p in app.list_pharmacies(s.admin)} == {s.w.pharmacy.id, harbour}
    assert [p.id for p in app.list_pharmacies(s.rph_a)] == [s.w.pharmacy.id]
    assert app.get_pharmacy(s.rph_a, s.w.pharmacy.id).id == s.w.pharmacy.id
    refused(lambda: app.get_pharmacy(s.rph_a, harbour))
    refused(lambda: app.get_pharmacy(s.prs_a, s.w.pharmacy.id))
    refused(lambda: app.list_pharmacies(s.prs_a))


# --- worklists and authorizations -------------------------------------------------------------


def test_each_worklist_shows_only_its_own_work(scene: Scene) -> None:
    s, app = scene, scene.app
    every = {(f.patient, f.code) for f in app.due(s.admin, 30)}
    assert (s.a, rc.RMA_REVERSAL_REQUIRED) in every and (s.b, rc.PREGNANCY_ACTIONS) in every
    assert {f.patient for f in app.due(s.prs_a, 30)} == {s.a}
    assert {f.patient for f in app.due(s.dsg_a, 30, on_behalf_of=s.prs_a)} == {s.a}
    assert (s.b, rc.PREGNANCY_ACTIONS) in {(f.patient, f.code) for f in app.due(s.prs_b, 30)}
    assert {f.patient for f in app.due(s.prs_b, 30)} == {s.b}
    # The pharmacy: the reversal it owes, nothing of anyone's pregnancy or tests.
    assert [(f.patient, f.code, f.reference) for f in app.due(s.rph_a, 30)] == [
        (s.a, rc.RMA_REVERSAL_REQUIRED, s.number)
    ]
    assert app.due(s.rph_b, 30) == []
    refused(lambda: app.due(s.a, 30))


def test_course_lists_for_the_clinic_only(scene: Scene) -> None:
    s, app = scene, scene.app
    assert {c.patient for c in app.list_courses(s.admin)} == {s.a, s.b}
    assert {c.patient for c in app.list_courses(s.prs_a)} == {s.a}
    refused(lambda: app.list_courses(s.rph_a))
    refused(lambda: app.list_courses(s.a))


def test_authorizations_only_the_issuing_pharmacys(scene: Scene) -> None:
    s, app = scene, scene.app
    assert app.get_authorization(s.rph_a, s.number).number == s.number
    assert app.get_authorization(s.prs_a, s.number).number == s.number
    refused(lambda: app.get_authorization(s.rph_b, s.number))
    refused(lambda: app.get_authorization(s.prs_b, s.number))
