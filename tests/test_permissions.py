"""The permission table, exhaustively, through the public API, on real databases.

Every ``Action`` x every ``Role`` is called through the public ``Compliance`` method that performs
it. An allowed pair succeeds (and writes exactly its own ``ok`` event, or nothing for a read); a
refused pair raises ``NotPermitted`` with ``ACTOR_NOT_PERMITTED``, changes no row outside the audit
trail, and appends exactly one ``refused`` event naming the action, the actor and the reasons.

The patient acts with their own id, on their own course: every course action targets the course
of the scene's patient, enrolled by world.prescriber, so every role is in scope and only the table
decides. Then the status and scope refusals (unknown, inactive or uncertified actors, designee
grants, pharmacy certification, prescriber, patient, designee and pharmacy scope), each with its
own reason code and audit event.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from compliance.api import Acting, Compliance
from compliance.api.service import UNKNOWN_ACTOR
from compliance.audit.chain import AuditRecord
from compliance.audit.store import LogFilter
from compliance.clock import FixedClock
from compliance.db.base import Base
from compliance.domain import reasons as rc
from compliance.domain.ids import Kind, kind_of, new_short_id
from compliance.domain.roles import (
    DELEGABLE,
    PERMISSIONS,
    READ_ONLY,
    Action,
    Role,
    permission_markdown,
)
from compliance.errors import InvalidInput, NotPermitted
from tests.conftest import (
    PG_ADMIN_URL,
    T0,
    World,
    build_world,
    create_pg_database,
    drop_pg_database,
    next_npi,
)

# --- the world, built once per backend and copied for each test -----------------------------------
# The same world as conftest's ``world`` fixture (one active party of each kind, its own fresh
# database per test), but built once per session into a template database that each test copies:
# a few hundred tests here would otherwise spend most of their time rebuilding it.


def _pg_database_url(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def sqlite_world_template(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, World]:
    path = tmp_path_factory.mktemp("world") / "world.db"
    shutil.copy(sqlite_template, path)
    with Compliance.open(f"sqlite:///{path}", FixedClock(T0)) as app:
        return path, build_world(app)


@pytest.fixture(scope="session")
def pg_world_template(pg_template: str) -> Iterator[tuple[str, World]]:
    name = create_pg_database(template=pg_template)
    try:
        with Compliance.open(_pg_database_url(name), FixedClock(T0)) as app:
            template = build_world(app)
        yield name, template
    finally:
        drop_pg_database(name)


@pytest.fixture
def world(
    backend: str, request: pytest.FixtureRequest, clock: FixedClock, tmp_path: Path
) -> Iterator[World]:
    """A copy of the world template on ``backend``, opened with this test's ``clock``."""
    database = None
    if backend == "sqlite":
        source, template = request.getfixturevalue("sqlite_world_template")
        path = tmp_path / "compliance.db"
        shutil.copy(source, path)
        url = f"sqlite:///{path}"
    else:
        source, template = request.getfixturevalue("pg_world_template")
        database = create_pg_database(template=source)
        url = _pg_database_url(database)
    try:
        with Compliance.open(url, clock) as app:
            yield dataclasses.replace(template, app=app)
    finally:
        if database is not None:
            drop_pg_database(database)


# --- the calls: one public entry point per action -------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """The world, plus the patient who acts as ``Role.PATIENT`` and whose course is the target
    of every course action (enrolled, when the action needs it, by world.prescriber unless
    ``prescriber`` names another)."""

    app: Compliance
    w: World
    patient: str
    prescriber: str | None = None

    @property
    def by(self) -> str:
        """The prescriber who enrols the patient and writes the prescription."""
        return self.prescriber or self.w.prescriber.id


Act = Callable[[Acting], object]
"""Performs the action as ``Acting.actor`` (naming ``on_behalf_of`` where the method takes it)."""
Setup = Callable[[Scene], Act]
"""Creates, as whoever may, whatever target the action needs; returns the act itself."""

_ncpdp = itertools.count(2_000_000)

SPECIMEN_DAY = T0.date().isoformat()
METHODS = {"iud": "2026-10-01", "male_condom": "2026-10-01"}


def _new_ncpdp() -> str:
    return str(next(_ncpdp))


@dataclass(frozen=True)
class Case:
    method: str
    setup: Setup


def new_scene(w: World, prescriber: str | None = None) -> Scene:
    patient = w.app.register_patient(w.admin.id, "Pia Scene Patient", "1998-07-06").patient.id
    return Scene(w.app, w, patient, prescriber)


def _registered_prescriber(app: Compliance, w: World) -> str:
    return app.register_prescriber(w.admin.id, "Dr Target Registered", next_npi()).id


def _activated_prescriber(app: Compliance, w: World) -> str:
    ref = _registered_prescriber(app, w)
    app.activate_prescriber(w.admin.id, ref)
    return ref


def _suspended_prescriber(app: Compliance, w: World) -> str:
    ref = _activated_prescriber(app, w)
    app.suspend_prescriber(w.admin.id, ref)
    return ref


def _patient(app: Compliance, w: World) -> str:
    # Registered by world.prescriber: their patient, so in scope for them and their designee.
    return app.register_patient(w.prescriber.id, "Pat Target", "2001-02-03").patient.id


# --- the course in the state each action needs (world.prescriber's, the scene patient's) ----------


def _enrolled(s: Scene) -> str:
    s.app.enrol(s.by, s.patient)
    return s.patient


def _prescribable(s: Scene) -> str:
    """A course that passes the prescribe gate now: under ipledge/2026-mod (brought forward), a
    patient who cannot get pregnant needs only the category, one consent, counselling and the
    patient's comprehension at enrolment."""
    app, p, pat = s.app, s.by, s.patient
    app.set_rules_schedule(s.w.admin.id, "ipledge/2026-mod", "2026-01-01")
    _enrolled(s)
    app.assign_category(p, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(p, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(p, pat)
    app.record_comprehension(pat, pat)
    return pat


def _prescribed(s: Scene) -> str:
    """The id of a prescription that the dispense gate lets world.pharmacist's pharmacy fill."""
    prescription = s.app.prescribe(s.by, _prescribable(s), 30).prescription
    assert prescription is not None
    return prescription.id


def _authorized(s: Scene) -> str:
    """The number of a live authorization issued to world.pharmacist's pharmacy."""
    authorization = s.app.request_authorization(s.w.pharmacist.id, _prescribed(s)).authorization
    assert authorization is not None
    return authorization.number


def _suspended(s: Scene) -> str:
    s.app.report_pregnancy(s.by, _enrolled(s))
    return s.patient


# --- the setups -----------------------------------------------------------------------------------


def _add_administrator(s: Scene) -> Act:
    return lambda a: s.app.add_administrator(a.actor, "Alex Second Administrator")


def _deactivate_administrator(s: Scene) -> Act:
    target = s.app.add_administrator(s.w.admin.id, "Alex Target Administrator").id
    return lambda a: s.app.deactivate_administrator(a.actor, target)


def _register_prescriber(s: Scene) -> Act:
    npi = next_npi()
    return lambda a: s.app.register_prescriber(a.actor, "Dr New Prescriber", npi)


def _activate_prescriber(s: Scene) -> Act:
    target = _registered_prescriber(s.app, s.w)
    return lambda a: s.app.activate_prescriber(a.actor, target)


def _suspend_prescriber(s: Scene) -> Act:
    target = _activated_prescriber(s.app, s.w)
    return lambda a: s.app.suspend_prescriber(a.actor, target)


def _reinstate_prescriber(s: Scene) -> Act:
    target = _suspended_prescriber(s.app, s.w)
    return lambda a: s.app.reinstate_prescriber(a.actor, target)


def _set_prescriber_zone(s: Scene) -> Act:
    target = _activated_prescriber(s.app, s.w)
    return lambda a: s.app.set_prescriber_zone(a.actor, target, "Europe/Athens")


def _deactivate_prescriber(s: Scene) -> Act:
    target = _activated_prescriber(s.app, s.w)
    return lambda a: s.app.deactivate_prescriber(a.actor, target)


def _register_designee(s: Scene) -> Act:
    return lambda a: s.app.register_designee(a.actor, "Dee New Designee")


def _deactivate_designee(s: Scene) -> Act:
    target = s.app.register_designee(s.w.admin.id, "Dee Target Designee").id
    return lambda a: s.app.deactivate_designee(a.actor, target)


def _grant_designee(s: Scene) -> Act:
    # In scope for the one prescriber who may grant: world.prescriber grants for themselves.
    target = s.app.register_designee(s.w.admin.id, "Dee Granted Designee").id
    return lambda a: s.app.grant_designee(a.actor, target, s.w.prescriber.id)


def _revoke_grant(s: Scene) -> Act:
    target = s.app.register_designee(s.w.admin.id, "Dee Revoked Designee").id
    s.app.grant_designee(s.w.admin.id, target, s.w.prescriber.id)
    return lambda a: s.app.revoke_grant(a.actor, target, s.w.prescriber.id)


def _amend_grant(s: Scene) -> Act:
    target = s.app.register_designee(s.w.admin.id, "Dee Amended Designee").id
    s.app.grant_designee(s.w.admin.id, target, s.w.prescriber.id)
    return lambda a: s.app.amend_grant(
        a.actor, target, s.w.prescriber.id, "scope too wide", ["patient.register"]
    )


def _correct_patient(s: Scene) -> Act:
    target = _patient(s.app, s.w)
    return lambda a: s.app.correct_patient(
        a.actor,
        target,
        "misspelt at registration",
        name="Pat Corrected",
        on_behalf_of=a.on_behalf_of,
    )


def _register_pharmacy(s: Scene) -> Act:
    ncpdp = _new_ncpdp()
    return lambda a: s.app.register_pharmacy(a.actor, "New Pharmacy", ncpdp, "America/Chicago")


def _activate_pharmacy(s: Scene) -> Act:
    target = s.app.register_pharmacy(s.w.admin.id, "Target Pharmacy", _new_ncpdp(), "UTC").id
    return lambda a: s.app.activate_pharmacy(a.actor, target)


def _deactivate_pharmacy(s: Scene) -> Act:
    target = s.app.register_pharmacy(s.w.admin.id, "Target Pharmacy", _new_ncpdp(), "UTC").id
    s.app.activate_pharmacy(s.w.admin.id, target)
    return lambda a: s.app.deactivate_pharmacy(a.actor, target)


def _register_pharmacist(s: Scene) -> Act:
    return lambda a: s.app.register_pharmacist(a.actor, "Rory New Pharmacist", s.w.pharmacy.id)


def _deactivate_pharmacist(s: Scene) -> Act:
    target = s.app.register_pharmacist(s.w.admin.id, "Rory Target Pharmacist", s.w.pharmacy.id).id
    return lambda a: s.app.deactivate_pharmacist(a.actor, target)


def _register_patient(s: Scene) -> Act:
    return lambda a: s.app.register_patient(
        a.actor, "Pat New Patient", "1999-12-31", on_behalf_of=a.on_behalf_of
    )


def _add_patient_external_id(s: Scene) -> Act:
    target = _patient(s.app, s.w)
    return lambda a: s.app.add_patient_external_id(
        a.actor, target, "MRN", "MRN-0001", on_behalf_of=a.on_behalf_of
    )


def _get_patient(s: Scene) -> Act:
    target = _patient(s.app, s.w)
    return lambda a: s.app.get_patient(a.actor, target, on_behalf_of=a.on_behalf_of)


def _get_person(s: Scene) -> Act:
    # Each person reads themselves (in everyone's scope); the others read world.prescriber.
    people = {Kind.ADMINISTRATOR, Kind.PRESCRIBER, Kind.DESIGNEE, Kind.PHARMACIST}

    def act(a: Acting) -> object:
        target = a.actor if kind_of(a.actor) in people else s.w.prescriber.id
        return s.app.get_person(a.actor, target, on_behalf_of=a.on_behalf_of)

    return act


def _audit_log(s: Scene) -> Act:
    return lambda a: s.app.audit_log(a.actor)


def _verify_audit(s: Scene) -> Act:
    return lambda a: s.app.verify_audit(a.actor)


def _checkpoint_audit(s: Scene) -> Act:
    return lambda a: s.app.checkpoint_audit(a.actor)


def _set_rules_schedule(s: Scene) -> Act:
    return lambda a: s.app.set_rules_schedule(a.actor, "ipledge/2026-mod", "2026-12-01")


def _rules_impact(s: Scene) -> Act:
    _enrolled(s)  # under ipledge/2023-03, in force on the world's date
    return lambda a: s.app.rules_impact(a.actor, "ipledge/2026-mod")


def _rules_impact_stream(s: Scene) -> Act:
    _enrolled(s)

    def act(a: Acting) -> object:
        with s.app.rules_impact_stream(a.actor, "ipledge/2026-mod") as stream:
            return list(stream)

    return act


def _migrate_courses(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.migrate_courses(a.actor, "ipledge/2026-mod", [pat])


def _set_clock_override(s: Scene) -> Act:
    return lambda a: s.app.set_clock_override(a.actor, True)


def _set_home_testing(s: Scene) -> Act:
    procedure = "the patient photographs the dated test beside their ID; reviewed by video"
    return lambda a: s.app.set_home_testing(a.actor, True, procedure)


def _enrol(s: Scene) -> Act:
    return lambda a: s.app.enrol(a.actor, s.patient, on_behalf_of=a.on_behalf_of)


def _status(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.status(a.actor, pat, on_behalf_of=a.on_behalf_of)


def _assign_category(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.assign_category(
        a.actor, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL", on_behalf_of=a.on_behalf_of
    )


def _set_test_schedule(s: Scene) -> Act:
    s.app.enrol(s.by, s.patient, programme="lenalidomide")
    return lambda a: s.app.set_test_schedule(
        a.actor, s.patient, "irregular_cycles", on_behalf_of=a.on_behalf_of
    )


def _record_consent(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.record_consent(
        a.actor, pat, "PATIENT_INFORMATION_CONSENT", on_behalf_of=a.on_behalf_of
    )


def _record_counselling(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.record_counselling(a.actor, pat, on_behalf_of=a.on_behalf_of)


def _record_contraception(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.record_contraception(a.actor, pat, METHODS, on_behalf_of=a.on_behalf_of)


def _confirm_contraception(s: Scene) -> Act:
    pat = _enrolled(s)
    s.app.record_contraception(s.by, pat, METHODS)
    return lambda a: s.app.confirm_contraception(a.actor, pat, list(METHODS))


def _confirm_patient(s: Scene) -> Act:
    pat = _enrolled(s)
    s.app.assign_category(s.by, pat, "can_get_pregnant", "REPRODUCTIVE_POTENTIAL")
    s.app.record_test(
        s.by, pat, kind="screening", specimen_date=SPECIMEN_DAY, setting="lab", result="negative"
    )
    return lambda a: s.app.confirm_patient(a.actor, pat, on_behalf_of=a.on_behalf_of)


def _find_prescription(s: Scene) -> Act:
    _prescribed(s)
    npi = s.app.get_person(s.w.admin.id, s.by).external_id
    assert npi is not None
    return lambda a: s.app.find_prescription(a.actor, s.patient, "1998-07-06", npi)


def _record_comprehension(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.record_comprehension(a.actor, pat)


def _record_test(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.record_test(
        a.actor,
        pat,
        kind="screening",
        specimen_date=SPECIMEN_DAY,
        setting="lab",
        result="negative",
        clia=True,
        on_behalf_of=a.on_behalf_of,
    )


def _prescribe(s: Scene) -> Act:
    pat = _prescribable(s)
    return lambda a: s.app.prescribe(a.actor, pat, 30)


def _end_treatment(s: Scene) -> Act:
    _prescribed(s)
    return lambda a: s.app.end_treatment(a.actor, s.patient, SPECIMEN_DAY)


def _report_pregnancy(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.report_pregnancy(a.actor, pat, on_behalf_of=a.on_behalf_of)


def _resume_course(s: Scene) -> Act:
    pat = _suspended(s)
    return lambda a: s.app.resume_course(a.actor, pat, "negative serum test; not pregnant")


def _withdraw_course(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.withdraw_course(a.actor, pat, "patient moved away")


def _mark_lost(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.mark_lost_to_follow_up(a.actor, pat, "three calls unanswered")


def _request_authorization(s: Scene) -> Act:
    rx = _prescribed(s)
    return lambda a: s.app.request_authorization(a.actor, rx)


def _reverse_authorization(s: Scene) -> Act:
    number = _authorized(s)
    return lambda a: s.app.reverse_authorization(a.actor, number, "wrong quantity")


def _record_dispense(s: Scene) -> Act:
    number = _authorized(s)
    return lambda a: s.app.record_dispense(a.actor, number)


_PEPPER = b"permissions-test-pepper-000000000"


def _add_client(s: Scene) -> Act:
    return lambda a: s.app.add_client(
        a.actor, "Terminal", "pharmacy-terminal", s.w.pharmacy.id, pepper=_PEPPER
    )


def _a_client(s: Scene) -> str:
    admin = s.w.admin.id
    return s.app.add_client(admin, "EHR", "prescriber-system", s.by, pepper=_PEPPER).client.id


def _get_authorization(s: Scene) -> Act:
    number = _authorized(s)
    return lambda a: s.app.get_authorization(a.actor, number, a.on_behalf_of)


def _get_client(s: Scene) -> Act:
    client = _a_client(s)
    return lambda a: s.app.get_client(a.actor, client)


def _rotate_client_key(s: Scene) -> Act:
    client = _a_client(s)
    return lambda a: s.app.rotate_client_key(a.actor, client, pepper=_PEPPER)


def _revoke_client(s: Scene) -> Act:
    client = _a_client(s)
    return lambda a: s.app.revoke_client(a.actor, client)


ACTION_CALLS: dict[Action, Case] = {
    Action.ADMINISTRATOR_CREATE: Case("add_administrator", _add_administrator),
    Action.ADMINISTRATOR_DEACTIVATE: Case("deactivate_administrator", _deactivate_administrator),
    Action.PRESCRIBER_REGISTER: Case("register_prescriber", _register_prescriber),
    Action.PRESCRIBER_ACTIVATE: Case("activate_prescriber", _activate_prescriber),
    Action.PRESCRIBER_SUSPEND: Case("suspend_prescriber", _suspend_prescriber),
    Action.PRESCRIBER_REINSTATE: Case("reinstate_prescriber", _reinstate_prescriber),
    Action.PRESCRIBER_DEACTIVATE: Case("deactivate_prescriber", _deactivate_prescriber),
    Action.PRESCRIBER_ZONE_SET: Case("set_prescriber_zone", _set_prescriber_zone),
    Action.DESIGNEE_REGISTER: Case("register_designee", _register_designee),
    Action.DESIGNEE_DEACTIVATE: Case("deactivate_designee", _deactivate_designee),
    Action.GRANT_CREATE: Case("grant_designee", _grant_designee),
    Action.GRANT_REVOKE: Case("revoke_grant", _revoke_grant),
    Action.GRANT_AMEND: Case("amend_grant", _amend_grant),
    Action.PHARMACY_REGISTER: Case("register_pharmacy", _register_pharmacy),
    Action.PHARMACY_ACTIVATE: Case("activate_pharmacy", _activate_pharmacy),
    Action.PHARMACY_DEACTIVATE: Case("deactivate_pharmacy", _deactivate_pharmacy),
    Action.PHARMACIST_REGISTER: Case("register_pharmacist", _register_pharmacist),
    Action.PHARMACIST_DEACTIVATE: Case("deactivate_pharmacist", _deactivate_pharmacist),
    Action.PATIENT_REGISTER: Case("register_patient", _register_patient),
    Action.PATIENT_UPDATE: Case("add_patient_external_id", _add_patient_external_id),
    Action.PATIENT_CORRECT: Case("correct_patient", _correct_patient),
    Action.PATIENT_READ: Case("get_patient", _get_patient),
    Action.PARTY_READ: Case("get_person", _get_person),
    Action.AUDIT_READ: Case("audit_log", _audit_log),
    Action.AUDIT_VERIFY: Case("verify_audit", _verify_audit),
    Action.AUDIT_CHECKPOINT: Case("checkpoint_audit", _checkpoint_audit),
    Action.RULES_SCHEDULE: Case("set_rules_schedule", _set_rules_schedule),
    Action.RULES_IMPACT: Case("rules_impact", _rules_impact),
    Action.CLOCK_OVERRIDE_SET: Case("set_clock_override", _set_clock_override),
    Action.HOME_TESTING_SET: Case("set_home_testing", _set_home_testing),
    Action.COURSE_ENROL: Case("enrol", _enrol),
    Action.COURSE_READ: Case("status", _status),
    Action.CATEGORY_ASSIGN: Case("assign_category", _assign_category),
    Action.TEST_SCHEDULE_SET: Case("set_test_schedule", _set_test_schedule),
    Action.CONSENT_RECORD: Case("record_consent", _record_consent),
    Action.COUNSELLING_RECORD: Case("record_counselling", _record_counselling),
    Action.CONTRACEPTION_RECORD: Case("record_contraception", _record_contraception),
    Action.CONTRACEPTION_CONFIRM: Case("confirm_contraception", _confirm_contraception),
    Action.COMPREHENSION_RECORD: Case("record_comprehension", _record_comprehension),
    Action.TEST_RECORD: Case("record_test", _record_test),
    Action.PATIENT_CONFIRM: Case("confirm_patient", _confirm_patient),
    Action.PRESCRIBE: Case("prescribe", _prescribe),
    Action.TREATMENT_END: Case("end_treatment", _end_treatment),
    Action.PREGNANCY_REPORT: Case("report_pregnancy", _report_pregnancy),
    Action.COURSE_RESUME: Case("resume_course", _resume_course),
    Action.COURSE_WITHDRAW: Case("withdraw_course", _withdraw_course),
    Action.COURSE_LOST: Case("mark_lost_to_follow_up", _mark_lost),
    Action.COURSE_MIGRATE: Case("migrate_courses", _migrate_courses),
    Action.PRESCRIPTION_FIND: Case("find_prescription", _find_prescription),
    Action.AUTHORIZATION_REQUEST: Case("request_authorization", _request_authorization),
    Action.AUTHORIZATION_REVERSE: Case("reverse_authorization", _reverse_authorization),
    Action.DISPENSE_RECORD: Case("record_dispense", _record_dispense),
    Action.CLIENT_ADD: Case("add_client", _add_client),
    Action.CLIENT_READ: Case("list_clients", lambda s: lambda a: s.app.list_clients(a.actor)),
    Action.CLIENT_ROTATE: Case("rotate_client_key", _rotate_client_key),
    Action.CLIENT_REVOKE: Case("revoke_client", _revoke_client),
}


def _audit_stream(s: Scene) -> Act:
    def act(a: Acting) -> object:
        with s.app.audit_stream(a.actor) as events:
            return list(events)

    return act


def _audit_export(s: Scene) -> Act:
    def act(a: Acting) -> object:
        with s.app.audit_export(a.actor) as events:
            return list(events)

    return act


def _audit_export_lines(s: Scene) -> Act:
    def act(a: Acting) -> object:
        with s.app.audit_export_lines(a.actor) as lines:
            return list(lines)

    return act


def _check_prescribe(s: Scene) -> Act:
    pat = _enrolled(s)
    return lambda a: s.app.check_prescribe(a.actor, pat, 30, on_behalf_of=a.on_behalf_of)


def _check_dispense(s: Scene) -> Act:
    rx = _prescribed(s)
    return lambda a: s.app.check_dispense(a.actor, rx)


def _rems_etasu(s: Scene) -> Act:
    rx = _prescribed(s)
    return lambda a: s.app.rems_etasu(a.actor, case=rx, on_behalf_of=a.on_behalf_of)


# The other public entry points that perform an action already covered above.
OTHER_ENTRY_POINTS: dict[str, tuple[Action, Setup]] = {
    "rules_impact_stream": (Action.RULES_IMPACT, _rules_impact_stream),
    "get_authorization": (
        Action.COURSE_READ,
        _get_authorization,
    ),
    "get_client": (
        Action.CLIENT_READ,
        _get_client,
    ),
    "list_grants": (
        Action.PARTY_READ,
        lambda s: lambda a: s.app.list_grants(a.actor, on_behalf_of=a.on_behalf_of),
    ),
    "get_pharmacy": (
        Action.PARTY_READ,
        lambda s: lambda a: s.app.get_pharmacy(a.actor, s.w.pharmacy.id, a.on_behalf_of),
    ),
    "list_pharmacies": (
        Action.PARTY_READ,
        lambda s: lambda a: s.app.list_pharmacies(a.actor, on_behalf_of=a.on_behalf_of),
    ),
    "list_people": (
        Action.PARTY_READ,
        lambda s: lambda a: s.app.list_people(a.actor, "prescriber", None, a.on_behalf_of),
    ),
    "find_patients": (
        Action.PATIENT_READ,
        lambda s: lambda a: s.app.find_patients(a.actor, "Pat", on_behalf_of=a.on_behalf_of),
    ),
    "audit_count": (Action.AUDIT_READ, lambda s: lambda a: s.app.audit_count(a.actor)),
    "audit_stream": (Action.AUDIT_READ, _audit_stream),
    "audit_export": (Action.AUDIT_READ, _audit_export),
    "audit_export_lines": (Action.AUDIT_READ, _audit_export_lines),
    "check_prescribe": (Action.COURSE_READ, _check_prescribe),
    "check_dispense": (Action.COURSE_READ, _check_dispense),
    "rems_etasu": (Action.COURSE_READ, _rems_etasu),
    "due": (
        Action.COURSE_READ,
        lambda s: lambda a: s.app.due(a.actor, 30, on_behalf_of=a.on_behalf_of),
    ),
    "list_courses": (
        Action.COURSE_READ,
        lambda s: lambda a: s.app.list_courses(a.actor, on_behalf_of=a.on_behalf_of),
    ),
}

# Entry points that the table allows a role but whose own scope rule refuses it outright
# (minimum necessary access): a patient may read their own course, not the flags across every
# course; a pharmacist reaches a course only through the prescription in hand, sees no grants
# and no prescribers; the clinic sees no pharmacies.
SCOPE_REFUSED_ENTRY_POINTS: frozenset[tuple[str, Role]] = frozenset(
    {
        ("due", Role.PATIENT),
        ("list_courses", Role.PATIENT),
        ("list_courses", Role.PHARMACIST),
        ("status", Role.PHARMACIST),
        ("check_prescribe", Role.PHARMACIST),
        ("list_grants", Role.PHARMACIST),
        ("list_people", Role.PHARMACIST),
        ("get_pharmacy", Role.PRESCRIBER),
        ("get_pharmacy", Role.DESIGNEE),
        ("list_pharmacies", Role.PRESCRIBER),
        ("list_pharmacies", Role.DESIGNEE),
    }
)


def acting_as(s: Scene, role: Role) -> Acting:
    """The scene's actor for ``role``; the designee acts for world.prescriber, the patient is
    the scene's own patient."""
    w = s.w
    return {
        Role.ADMINISTRATOR: Acting(w.admin.id),
        Role.PRESCRIBER: Acting(w.prescriber.id),
        Role.DESIGNEE: Acting(w.designee.id, w.prescriber.id),
        Role.PHARMACIST: Acting(w.pharmacist.id),
        Role.PATIENT: Acting(s.patient),
    }[role]


# --- observing the database -----------------------------------------------------------------------

AUDIT_TABLES = {"audit_events", "audit_event_subjects", "audit_chain_heads"}


def snapshot(app: Compliance) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table outside the audit trail, in a stable order."""
    with app.engine.connect() as conn:
        return {
            table.name: sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
            if table.name not in AUDIT_TABLES
        }


def all_events(app: Compliance, reader: str) -> list[AuditRecord]:
    # Reading the log as an active administrator is a read: it writes no event itself.
    return app.audit_log(reader)


def assert_refused(
    app: Compliance,
    reader: str,
    act: Callable[[], object],
    action: Action,
    codes: set[str],
    actor_ref: str,
    *,
    on_behalf_of: str | None = None,
) -> AuditRecord:
    """``act`` is refused with exactly ``codes``, writes nothing but one matching refused event."""
    state = snapshot(app)
    before = all_events(app, reader)
    same_before = app.audit_count(reader, LogFilter(actor=actor_ref, action=action.value))

    with pytest.raises(NotPermitted) as caught:
        act()

    reasons = caught.value.reasons
    assert set(reasons) == codes, reasons
    assert len(reasons) == len(set(reasons)), f"a reason is listed twice: {reasons}"
    assert snapshot(app) == state, "the refused call wrote outside the audit trail"

    after = all_events(app, reader)
    assert after[: len(before)] == before
    new = after[len(before) :]
    assert len(new) == 1, [(e.action, e.outcome) for e in new]
    (event,) = new
    assert event.outcome == "refused"
    assert event.action == action.value
    assert event.actor_id == actor_ref
    assert event.on_behalf_of == on_behalf_of
    assert tuple(event.reason_codes) == tuple(reasons)

    same = app.audit_log(reader, LogFilter(actor=actor_ref, action=action.value))
    assert len(same) == same_before + 1
    assert same[-1] == event
    return event


def assert_invalid_on_behalf_of(app: Compliance, reader: str, act: Callable[[], object]) -> None:
    """``act`` fails as invalid input naming ``on_behalf_of``, and writes nothing at all."""
    state = snapshot(app)
    before = all_events(app, reader)
    with pytest.raises(InvalidInput) as caught:
        act()
    assert caught.value.field == "on_behalf_of"
    assert snapshot(app) == state
    assert all_events(app, reader) == before


# --- 1. the permission table, every action x every role -------------------------------------------


def test_every_action_has_a_call() -> None:
    assert set(ACTION_CALLS) == set(Action)
    assert set(PERMISSIONS) == set(Action)


def test_every_public_method_taking_an_actor_is_covered() -> None:
    taking_actor = {
        name
        for name, member in inspect.getmembers(Compliance, inspect.isfunction)
        if not name.startswith("_") and list(inspect.signature(member).parameters)[1:2] == ["actor"]
    }
    covered = {case.method for case in ACTION_CALLS.values()} | set(OTHER_ENTRY_POINTS)
    assert taking_actor == covered
    assert len(ACTION_CALLS) + len(OTHER_ENTRY_POINTS) == len(covered), "a method is used twice"


def _pg_subset() -> set[tuple[Action, Role]]:
    """Each action once on PostgreSQL, rotating through the roles, except that an action goes to
    the first role (in rotation order) still lacking the outcome the table gives it there, so
    each role is seen both allowed and refused (where the table refuses it anything) even when
    the rotation alone would miss it (the patient is allowed only four course actions). The full
    matrix runs on SQLite."""
    roles = list(Role)
    seen: set[tuple[Role, bool]] = set()
    subset = set()
    for i, action in enumerate(Action):
        rotation = roles[i % len(roles) :] + roles[: i % len(roles)]
        missing = [r for r in rotation if (r, r in PERMISSIONS[action]) not in seen]
        role = missing[0] if missing else rotation[0]
        seen.add((role, role in PERMISSIONS[action]))
        subset.add((action, role))
    return subset


def _matrix_params() -> list[Any]:
    params = []
    for action in Action:
        for role in Role:
            pair_id = f"{action.value}-{role.value}"
            params.append(pytest.param("sqlite", action, role, id=f"sqlite-{pair_id}"))
    for action, role in sorted(_pg_subset()):
        params.append(
            pytest.param(
                "postgresql",
                action,
                role,
                id=f"postgresql-{action.value}-{role.value}",
                marks=pytest.mark.postgres,
            )
        )
    return params


def test_pg_subset_is_representative() -> None:
    subset = _pg_subset()
    assert len(subset) == len(Action)
    assert {a for a, _ in subset} == set(Action)
    for role in Role:
        outcomes = {role in PERMISSIONS[a] for a, r in subset if r is role}
        assert outcomes == {role in PERMISSIONS[a] for a in Action}, role


@pytest.mark.parametrize(("backend", "action", "role"), _matrix_params())
def test_permission_matrix(world: World, action: Action, role: Role) -> None:
    app = world.app
    reader = world.admin.id
    scene = new_scene(world)
    acting = acting_as(scene, role)
    act = ACTION_CALLS[action].setup(scene)

    if (ACTION_CALLS[action].method, role) in SCOPE_REFUSED_ENTRY_POINTS:
        assert_refused(app, reader, lambda: act(acting), action, {rc.OUT_OF_SCOPE}, acting.actor)
    elif role in PERMISSIONS[action]:
        state = snapshot(app)
        before = all_events(app, reader)
        result = act(acting)
        assert result is not None
        new = all_events(app, reader)[len(before) :]
        if action in READ_ONLY:
            assert new == [], "a successful read wrote an audit event"
            assert snapshot(app) == state, "a successful read changed a row"
        else:
            assert [(e.action, e.outcome) for e in new] == [(action.value, "ok")]
            assert new[0].actor_id == acting.actor
            expected_for = world.prescriber.id if role is Role.DESIGNEE else None
            assert new[0].on_behalf_of == expected_for
    else:
        event = assert_refused(
            app,
            reader,
            lambda: act(acting),
            action,
            {rc.ACTOR_NOT_PERMITTED},
            acting.actor,
            # Only the delegable methods take on_behalf_of, and those a designee may do.
            on_behalf_of=None,
        )
        assert event.reason_codes == (rc.ACTOR_NOT_PERMITTED,)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("method", sorted(OTHER_ENTRY_POINTS))
def test_other_entry_points_check_their_action(world: World, method: str) -> None:
    """Every other entry point checks the action it claims, for every role; all of them are
    reads, which write nothing when allowed."""
    action, setup = OTHER_ENTRY_POINTS[method]
    assert action in READ_ONLY
    app = world.app
    scene = new_scene(world)
    _patient(app, world)
    act = setup(scene)
    for role in Role:
        acting = acting_as(scene, role)
        if role not in PERMISSIONS[action]:
            expected: set[str] | None = {rc.ACTOR_NOT_PERMITTED}
        elif (method, role) in SCOPE_REFUSED_ENTRY_POINTS:
            expected = {rc.OUT_OF_SCOPE}
        else:
            expected = None
        if expected is not None:
            assert_refused(
                app,
                world.admin.id,
                functools.partial(act, acting),
                action,
                expected,
                acting.actor,
                # A scope refusal names the prescriber a designee acted for.
                on_behalf_of=acting.on_behalf_of if expected == {rc.OUT_OF_SCOPE} else None,
            )
            continue
        state = snapshot(app)
        before = all_events(app, world.admin.id)
        assert act(acting) is not None, (method, role)
        assert all_events(app, world.admin.id) == before, (method, role)
        assert snapshot(app) == state, (method, role)


# --- 2. status and scope refusals -----------------------------------------------------------------


def _register_patient_as(app: Compliance, actor: str, on_behalf_of: str | None = None) -> object:
    return app.register_patient(actor, "Pat Attempted", "2002-03-04", on_behalf_of=on_behalf_of)


@pytest.mark.parametrize(
    "make_ref",
    [
        pytest.param(lambda: new_short_id(Kind.ADMINISTRATOR), id="unregistered-admin-id"),
        pytest.param(lambda: new_short_id(Kind.PRESCRIBER), id="unregistered-prescriber-id"),
        pytest.param(lambda: new_short_id(Kind.DESIGNEE), id="unregistered-designee-id"),
        pytest.param(lambda: new_short_id(Kind.PHARMACIST), id="unregistered-pharmacist-id"),
        pytest.param(lambda: new_short_id(Kind.PATIENT), id="unregistered-patient-id"),
        pytest.param(lambda: "NOBODY", id="malformed"),
    ],
)
def test_unknown_actor(world: World, make_ref: Callable[[], str]) -> None:
    ref = make_ref()
    app = world.app
    for action, act in [
        (Action.PATIENT_READ, lambda: app.find_patients(ref)),
        (Action.ADMINISTRATOR_CREATE, lambda: app.add_administrator(ref, "Mallory")),
    ]:
        assert_refused(app, world.admin.id, act, action, {rc.ACTOR_UNKNOWN}, UNKNOWN_ACTOR)


def test_unknown_actor_is_recorded_without_what_was_typed(world: World) -> None:
    app = world.app
    event = assert_refused(
        app,
        world.admin.id,
        lambda: app.find_patients("  nobody'); DROP TABLE x;-- "),
        Action.PATIENT_READ,
        {rc.ACTOR_UNKNOWN},
        UNKNOWN_ACTOR,
    )
    assert "nobody" not in str(event.to_dict()).lower()


def test_ids_of_non_people_are_unknown_actors(world: World) -> None:
    app = world.app
    prescription = _prescribed(new_scene(world))
    for ref in (world.pharmacy.id, prescription):
        assert_refused(
            app,
            world.admin.id,
            functools.partial(app.find_patients, ref),
            Action.PATIENT_READ,
            {rc.ACTOR_UNKNOWN},
            UNKNOWN_ACTOR,
        )


def test_a_patient_id_acts_as_a_patient(world: World) -> None:
    """A registered patient is a person who acts (``Role.PATIENT``, no status of their own): a
    patient's id is refused what the table does not give a patient, not an unknown actor."""
    app = world.app
    patient = _patient(app, world)
    cases: list[tuple[Action, Callable[[], object]]] = [
        (Action.PATIENT_READ, lambda: app.find_patients(patient)),
        (Action.PARTY_READ, lambda: app.get_person(patient, world.prescriber.id)),
        (Action.COURSE_ENROL, lambda: app.enrol(patient, patient)),
    ]
    for action, act in cases:
        assert_refused(app, world.admin.id, act, action, {rc.ACTOR_NOT_PERMITTED}, patient)


@pytest.mark.parametrize("state", ["registered", "suspended", "deactivated"])
def test_prescriber_not_certified(world: World, state: str) -> None:
    app = world.app
    ref = _registered_prescriber(app, world)
    if state != "registered":
        app.activate_prescriber(world.admin.id, ref)
        if state == "suspended":
            app.suspend_prescriber(world.admin.id, ref)
        else:
            app.deactivate_prescriber(world.admin.id, ref)
    assert app.get_person(world.admin.id, ref).status == state

    for action, act in [
        (Action.DESIGNEE_REGISTER, lambda: app.register_designee(ref, "Dee Attempted")),
        (Action.PATIENT_REGISTER, lambda: _register_patient_as(app, ref)),
        (Action.PARTY_READ, lambda: app.get_person(ref, ref)),
    ]:
        assert_refused(app, world.admin.id, act, action, {rc.PRESCRIBER_NOT_CERTIFIED}, ref)
    # Several reasons at once: wrong role and not certified.
    assert_refused(
        app,
        world.admin.id,
        lambda: app.verify_audit(ref),
        Action.AUDIT_VERIFY,
        {rc.ACTOR_NOT_PERMITTED, rc.PRESCRIBER_NOT_CERTIFIED},
        ref,
    )
    assert app.verify_audit(world.admin.id).ok


def test_reinstated_prescriber_may_act_again(world: World) -> None:
    app = world.app
    app.suspend_prescriber(world.admin.id, world.prescriber.id)
    with pytest.raises(NotPermitted):
        app.register_designee(world.prescriber.id, "Dee Attempted")
    app.reinstate_prescriber(world.admin.id, world.prescriber.id)
    assert app.register_designee(world.prescriber.id, "Dee Allowed").status == "active"


def test_deactivated_designee(world: World) -> None:
    app = world.app
    d = world.designee.id
    app.deactivate_designee(world.admin.id, d)
    assert_refused(
        app,
        world.admin.id,
        lambda: _register_patient_as(app, d, world.prescriber.id),
        Action.PATIENT_REGISTER,
        {rc.ACTOR_INACTIVE},
        d,
        on_behalf_of=world.prescriber.id,
    )
    # Wrong role as well: both listed (the grant is not consulted for an action never delegable).
    assert_refused(
        app,
        world.admin.id,
        lambda: app.register_designee(d, "Dee Attempted"),
        Action.DESIGNEE_REGISTER,
        {rc.ACTOR_NOT_PERMITTED, rc.ACTOR_INACTIVE},
        d,
    )


def test_deactivated_pharmacist(world: World) -> None:
    app = world.app
    r = world.pharmacist.id
    app.deactivate_pharmacist(world.admin.id, r)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.list_people(r, "pharmacist"),
        Action.PARTY_READ,
        {rc.ACTOR_INACTIVE},
        r,
    )
    assert_refused(
        app,
        world.admin.id,
        lambda: app.add_administrator(r, "Mallory"),
        Action.ADMINISTRATOR_CREATE,
        {rc.ACTOR_NOT_PERMITTED, rc.ACTOR_INACTIVE},
        r,
    )
    # Representative end state: the trail with all these refusals still verifies.
    report = app.verify_audit(world.admin.id)
    assert report.ok, report.first_break


def test_deactivated_administrator(world: World) -> None:
    app = world.app
    other = app.add_administrator(world.admin.id, "Otto Other Administrator").id
    app.deactivate_administrator(other, world.admin.id)
    me = world.admin.id
    for action, act in [
        (Action.ADMINISTRATOR_CREATE, lambda: app.add_administrator(me, "Mallory")),
        (Action.AUDIT_READ, lambda: app.audit_log(me)),
        (Action.AUDIT_VERIFY, lambda: app.verify_audit(me)),
    ]:
        assert_refused(app, other, act, action, {rc.ACTOR_INACTIVE}, me)
    assert app.verify_audit(other).ok


def test_several_reasons_at_once(world: World) -> None:
    """A deactivated pharmacist of a deactivated pharmacy trying an administrator's action."""
    app = world.app
    r = world.pharmacist.id
    app.deactivate_pharmacist(world.admin.id, r)
    app.deactivate_pharmacy(world.admin.id, world.pharmacy.id)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.checkpoint_audit(r),
        Action.AUDIT_CHECKPOINT,
        {rc.ACTOR_NOT_PERMITTED, rc.ACTOR_INACTIVE, rc.PHARMACY_NOT_CERTIFIED},
        r,
    )


def test_pharmacist_of_deactivated_pharmacy(world: World) -> None:
    app = world.app
    r = world.pharmacist.id
    app.deactivate_pharmacy(world.admin.id, world.pharmacy.id)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.get_pharmacy(r, world.pharmacy.id),
        Action.PARTY_READ,
        {rc.PHARMACY_NOT_CERTIFIED},
        r,
    )
    # Re-activation restores the pharmacist.
    app.activate_pharmacy(world.admin.id, world.pharmacy.id)
    assert app.get_pharmacy(r, world.pharmacy.id).status == "activated"


def test_pharmacy_activation_expires_at_local_midnight(world: World, clock: FixedClock) -> None:
    app = world.app
    r = world.pharmacist.id
    expires = world.pharmacy.activation_expires_on
    assert expires is not None
    zone = ZoneInfo(world.pharmacy.time_zone)
    local_midnight_after = datetime.combine(expires + timedelta(days=1), time(0), tzinfo=zone)

    last_valid = local_midnight_after - timedelta(seconds=1)
    # Non-vacuous: in UTC that instant is already after the expiry date; only the zone keeps it.
    assert last_valid.astimezone(ZoneInfo("UTC")).date() > expires
    clock.set(last_valid)
    assert [p.id for p in app.list_people(r, "pharmacist")] == [r]

    clock.set(local_midnight_after)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.list_people(r, "pharmacist"),
        Action.PARTY_READ,
        {rc.PHARMACY_ACTIVATION_EXPIRED},
        r,
    )
    # The annual renewal restores the pharmacist.
    app.activate_pharmacy(world.admin.id, world.pharmacy.id)
    assert [p.id for p in app.list_people(r, "pharmacist")] == [r]


def test_designee_without_grant_from_named_prescriber(world: World) -> None:
    app = world.app
    other = _activated_prescriber(app, world)
    d = world.designee.id
    assert_refused(
        app,
        world.admin.id,
        lambda: _register_patient_as(app, d, other),
        Action.PATIENT_REGISTER,
        {rc.DESIGNEE_GRANT_MISSING},
        d,
        on_behalf_of=other,
    )
    # A designee holding no grant at all, naming a prescriber.
    lonely = app.register_designee(world.prescriber.id, "Lonny Lonely").id
    assert_refused(
        app,
        world.admin.id,
        lambda: app.get_person(lonely, lonely, on_behalf_of=world.prescriber.id),
        Action.PARTY_READ,
        {rc.DESIGNEE_GRANT_MISSING},
        lonely,
        on_behalf_of=world.prescriber.id,
    )


def test_designee_grant_expires_at_its_instant(world: World, clock: FixedClock) -> None:
    app = world.app
    p = world.prescriber.id
    d = app.register_designee(p, "Eve Expiring").id
    expires_at = T0 + timedelta(days=30)
    app.grant_designee(p, d, p, expires_at=expires_at)

    clock.set(expires_at - timedelta(microseconds=1))
    assert app.find_patients(d, on_behalf_of=p) == []
    clock.set(expires_at)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.find_patients(d, on_behalf_of=p),
        Action.PATIENT_READ,
        {rc.DESIGNEE_GRANT_EXPIRED},
        d,
        on_behalf_of=p,
    )


def test_designee_grant_revoked(world: World) -> None:
    app = world.app
    p, d = world.prescriber.id, world.designee.id
    app.revoke_grant(p, d, p)
    assert_refused(
        app,
        world.admin.id,
        lambda: _register_patient_as(app, d, p),
        Action.PATIENT_REGISTER,
        {rc.DESIGNEE_GRANT_EXPIRED},
        d,
        on_behalf_of=p,
    )


def test_designee_grant_scope(world: World) -> None:
    app = world.app
    p = world.prescriber.id
    d = app.register_designee(p, "Sam Scoped").id
    app.grant_designee(p, d, p, scopes=[Action.PATIENT_READ.value])
    assert app.find_patients(d, on_behalf_of=p) == []
    for action, act in [
        (Action.PATIENT_REGISTER, lambda: _register_patient_as(app, d, p)),
        (Action.PARTY_READ, lambda: app.get_person(d, d, on_behalf_of=p)),
    ]:
        assert_refused(
            app, world.admin.id, act, action, {rc.DESIGNEE_GRANT_SCOPE}, d, on_behalf_of=p
        )


@pytest.mark.parametrize("status", ["suspended", "deactivated"])
def test_designee_acting_for_uncertified_prescriber(world: World, status: str) -> None:
    app = world.app
    p, d = world.prescriber.id, world.designee.id
    if status == "suspended":
        app.suspend_prescriber(world.admin.id, p)
    else:
        app.deactivate_prescriber(world.admin.id, p)
    assert_refused(
        app,
        world.admin.id,
        lambda: _register_patient_as(app, d, p),
        Action.PATIENT_REGISTER,
        {rc.PRESCRIBER_NOT_CERTIFIED},
        d,
        on_behalf_of=p,
    )


def test_designee_grant_and_prescriber_problems_together(world: World) -> None:
    app = world.app
    p, d = world.prescriber.id, world.designee.id
    app.revoke_grant(world.admin.id, d, p)
    app.suspend_prescriber(world.admin.id, p)
    app.deactivate_designee(world.admin.id, d)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.find_patients(d, on_behalf_of=p),
        Action.PATIENT_READ,
        {rc.ACTOR_INACTIVE, rc.DESIGNEE_GRANT_EXPIRED, rc.PRESCRIBER_NOT_CERTIFIED},
        d,
        on_behalf_of=p,
    )


def test_prescriber_grants_only_for_themselves(world: World) -> None:
    app = world.app
    p = world.prescriber.id
    other = _activated_prescriber(app, world)
    d = app.register_designee(p, "Dee Contested").id

    event = assert_refused(
        app,
        world.admin.id,
        lambda: app.grant_designee(p, d, other),
        Action.GRANT_CREATE,
        {rc.OUT_OF_SCOPE},
        p,
    )
    assert event.subjects == (other,)
    assert app.list_grants(world.admin.id, d) == []

    # world.designee's grant from world.prescriber may not be revoked by the other prescriber.
    event = assert_refused(
        app,
        world.admin.id,
        lambda: app.revoke_grant(other, world.designee.id, p),
        Action.GRANT_REVOKE,
        {rc.OUT_OF_SCOPE},
        other,
    )
    assert event.subjects == (p,)
    (grant,) = app.list_grants(world.admin.id, world.designee.id)
    assert grant.active
    # In scope, the same calls succeed.
    assert app.grant_designee(other, d, other).active
    assert not app.revoke_grant(p, world.designee.id, p).active


def test_designee_with_two_prescribers_must_name_one(world: World) -> None:
    app = world.app
    d = world.designee.id
    other = _activated_prescriber(app, world)
    app.grant_designee(other, d, other)

    assert_invalid_on_behalf_of(app, world.admin.id, lambda: _register_patient_as(app, d))
    assert_invalid_on_behalf_of(app, world.admin.id, lambda: app.find_patients(d))

    before = all_events(app, world.admin.id)
    _register_patient_as(app, d, other)
    (event,) = all_events(app, world.admin.id)[len(before) :]
    assert (event.action, event.actor_id, event.on_behalf_of) == (
        Action.PATIENT_REGISTER.value,
        d,
        other,
    )


def test_designee_with_one_grant_need_not_name_the_prescriber(world: World) -> None:
    app = world.app
    before = all_events(app, world.admin.id)
    _register_patient_as(app, world.designee.id)
    (event,) = all_events(app, world.admin.id)[len(before) :]
    assert event.on_behalf_of == world.prescriber.id


def test_designee_naming_a_non_prescriber_is_invalid(world: World) -> None:
    app = world.app
    d = world.designee.id
    for bad in (world.admin.id, "nobody"):
        assert_invalid_on_behalf_of(
            app,
            world.admin.id,
            functools.partial(_register_patient_as, app, d, bad),
        )


@pytest.mark.parametrize("role", sorted(set(Role) - {Role.DESIGNEE}))
def test_only_a_designee_may_name_on_behalf_of(world: World, role: Role) -> None:
    app = world.app
    actor = acting_as(new_scene(world), role).actor
    assert_invalid_on_behalf_of(
        app, world.admin.id, lambda: app.find_patients(actor, on_behalf_of=world.prescriber.id)
    )


# --- 3. course and dispensing scope ---------------------------------------------------------------


def test_patient_acts_only_on_their_own_course(world: World) -> None:
    """Every course action the table gives a patient, tried on another patient's course."""
    app = world.app
    me = new_scene(world).patient
    other = new_scene(world)
    prescription = _prescribed(other)  # the other patient's course, qualified
    theirs = other.patient
    cases: list[tuple[Action, Callable[[], object]]] = [
        (Action.COURSE_READ, lambda: app.status(me, theirs)),
        (Action.COURSE_READ, lambda: app.check_prescribe(me, theirs)),
        (Action.COURSE_READ, lambda: app.check_dispense(me, prescription)),
        (Action.COMPREHENSION_RECORD, lambda: app.record_comprehension(me, theirs)),
        (Action.CONTRACEPTION_CONFIRM, lambda: app.confirm_contraception(me, theirs, ["iud"])),
        (Action.PREGNANCY_REPORT, lambda: app.report_pregnancy(me, theirs)),
    ]
    assert {a for a, _ in cases} == {a for a in Action if Role.PATIENT in PERMISSIONS[a]}
    for action, act in cases:
        event = assert_refused(app, world.admin.id, act, action, {rc.OUT_OF_SCOPE}, me)
        assert event.subjects == (theirs,), action
    # Nor the flags across every course, though course.read is theirs.
    assert_refused(
        app, world.admin.id, lambda: app.due(me), Action.COURSE_READ, {rc.OUT_OF_SCOPE}, me
    )
    # Their own course is theirs (the patient has none yet: enrolled, it is in scope).
    app.enrol(world.prescriber.id, me)
    assert app.status(me, me).course.patient == me
    assert app.record_comprehension(me, me).course.patient == me
    assert app.verify_audit(world.admin.id).ok


def test_patient_out_of_scope_whether_or_not_the_other_has_a_course(world: World) -> None:
    app = world.app
    me = new_scene(world).patient
    theirs = _patient(app, world)  # registered, never enrolled
    cases: list[tuple[Action, Callable[[], object]]] = [
        (Action.COURSE_READ, lambda: app.status(me, theirs)),
        (Action.COMPREHENSION_RECORD, lambda: app.record_comprehension(me, theirs)),
        (Action.PREGNANCY_REPORT, lambda: app.report_pregnancy(me, theirs)),
    ]
    for action, act in cases:
        assert_refused(app, world.admin.id, act, action, {rc.OUT_OF_SCOPE}, me)


def test_designee_acts_only_on_their_prescribers_courses(world: World) -> None:
    """Every course action the table gives a designee, acting for world.prescriber (A) on a
    course whose prescriber is B."""
    app = world.app
    a, d = world.prescriber.id, world.designee.id
    b = _activated_prescriber(app, world)
    scene = new_scene(world, prescriber=b)
    prescription = _prescribed(scene)  # B's patient, B's prescription
    pat = scene.patient
    cases: list[tuple[Action, Callable[[], object]]] = [
        (Action.COURSE_READ, lambda: app.status(d, pat, on_behalf_of=a)),
        (Action.COURSE_READ, lambda: app.check_prescribe(d, pat, on_behalf_of=a)),
        (Action.COURSE_READ, lambda: app.check_dispense(d, prescription)),  # resolves to A
        (
            Action.CATEGORY_ASSIGN,
            lambda: app.assign_category(
                d, pat, "cannot_get_pregnant", "HYSTERECTOMY", on_behalf_of=a
            ),
        ),
        (
            Action.TEST_SCHEDULE_SET,
            lambda: app.set_test_schedule(d, pat, "irregular_cycles", on_behalf_of=a),
        ),
        (
            Action.CONSENT_RECORD,
            lambda: app.record_consent(d, pat, "PATIENT_INFORMATION_CONSENT", on_behalf_of=a),
        ),
        (Action.COUNSELLING_RECORD, lambda: app.record_counselling(d, pat, on_behalf_of=a)),
        (
            Action.CONTRACEPTION_RECORD,
            lambda: app.record_contraception(d, pat, METHODS, on_behalf_of=a),
        ),
        (
            Action.TEST_RECORD,
            lambda: app.record_test(
                d,
                pat,
                kind="screening",
                specimen_date=SPECIMEN_DAY,
                setting="lab",
                result="negative",
                on_behalf_of=a,
            ),
        ),
        (Action.PREGNANCY_REPORT, lambda: app.report_pregnancy(d, pat, on_behalf_of=a)),
        (Action.PATIENT_CONFIRM, lambda: app.confirm_patient(d, pat, on_behalf_of=a)),
    ]
    # Enrolment opens a course under the designee's prescriber: there is no course to be out of.
    on_a_course = {act for act in DELEGABLE if act.value.startswith("course.")}
    assert {act for act, _ in cases} == on_a_course - {Action.COURSE_ENROL}
    for action, act in cases:
        event = assert_refused(
            app, world.admin.id, act, action, {rc.OUT_OF_SCOPE}, d, on_behalf_of=a
        )
        assert event.subjects == (pat,), action

    # A grant from B brings B's courses into scope, when the designee acts for B.
    app.grant_designee(b, d, b)
    assert app.status(d, pat, on_behalf_of=b).course.prescriber == b
    before = all_events(app, world.admin.id)
    app.record_counselling(d, pat, on_behalf_of=b)
    (event,) = all_events(app, world.admin.id)[len(before) :]
    assert (event.action, event.outcome, event.on_behalf_of) == (
        Action.COUNSELLING_RECORD.value,
        "ok",
        b,
    )
    # ... and still not when acting for A.
    assert_refused(
        app,
        world.admin.id,
        lambda: app.status(d, pat, on_behalf_of=a),
        Action.COURSE_READ,
        {rc.OUT_OF_SCOPE},
        d,
        on_behalf_of=a,
    )


def test_pharmacist_acts_only_on_their_pharmacys_authorizations(world: World) -> None:
    app = world.app
    scene = new_scene(world)
    number = _authorized(scene)  # issued to world.pharmacist's pharmacy
    elsewhere = app.register_pharmacy(world.admin.id, "Other Pharmacy", _new_ncpdp(), "UTC").id
    app.activate_pharmacy(world.admin.id, elsewhere)
    other = app.register_pharmacist(world.admin.id, "Olive Other Pharmacist", elsewhere).id
    for action, act in [
        (
            Action.AUTHORIZATION_REVERSE,
            lambda: app.reverse_authorization(other, number, "not ours"),
        ),
        (Action.DISPENSE_RECORD, lambda: app.record_dispense(other, number)),
    ]:
        event = assert_refused(app, world.admin.id, act, action, {rc.OUT_OF_SCOPE}, other)
        assert event.subjects == (scene.patient,), action
    # Untouched by those attempts, the authorization is still the issuing pharmacy's to fill.
    outcome = app.record_dispense(world.pharmacist.id, number)
    assert outcome.authorization is not None
    assert outcome.authorization.dispensed_at == T0
    assert outcome.course.state == "dispensed"


# --- 4. regressions: grant resolution and refusal attribution -------------------------------------


def test_live_grant_wins_over_an_older_revoked_one(world: World, clock: FixedClock) -> None:
    app = world.app
    p, d = world.prescriber.id, world.designee.id
    app.revoke_grant(p, d, p)
    clock.set(T0 - timedelta(hours=1))  # the host's clock was stepped back (NTP correction)
    assert app.grant_designee(p, d, p).active
    _register_patient_as(app, d, p)


def test_refusal_records_the_resolved_prescriber(world: World) -> None:
    app = world.app
    p, d = world.prescriber.id, world.designee.id
    app.suspend_prescriber(world.admin.id, p)
    assert_refused(
        app,
        world.admin.id,
        lambda: _register_patient_as(app, d),
        Action.PATIENT_REGISTER,
        {rc.PRESCRIBER_NOT_CERTIFIED},
        d,
        on_behalf_of=p,
    )


def test_designee_with_only_a_revoked_grant_is_refused_not_invalid(world: World) -> None:
    app = world.app
    p, d = world.prescriber.id, world.designee.id
    app.revoke_grant(p, d, p)
    assert_refused(
        app,
        world.admin.id,
        lambda: _register_patient_as(app, d),
        Action.PATIENT_REGISTER,
        {rc.DESIGNEE_GRANT_EXPIRED},
        d,
        on_behalf_of=p,  # the only prescriber the designee ever had a grant from
    )


# --- 5. the printed table -------------------------------------------------------------------------


def test_permission_markdown_lists_every_action_and_role() -> None:
    text = permission_markdown()
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["action", *(r.value for r in Role)]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    assert set(rows) == {a.value for a in Action}
    assert len(lines) == 2 + len(Action)
    for action in Action:
        assert rows[action.value] == ["yes" if r in PERMISSIONS[action] else "-" for r in Role]


def test_delegable_is_exactly_what_a_designee_may_do() -> None:
    assert {a for a in Action if Role.DESIGNEE in PERMISSIONS[a]} == DELEGABLE
    assert set(Action) >= READ_ONLY
