"""The permission table, exhaustively, through the public API, on real databases.

Every ``Action`` x every ``Role`` is called through the public ``Compliance`` method that performs
it. An allowed pair succeeds (and writes exactly its own ``ok`` event, or nothing for a read); a
refused pair raises ``NotPermitted`` with ``ACTOR_NOT_PERMITTED``, changes no row outside the audit
trail, and appends exactly one ``refused`` event naming the action, the actor and the reasons.

Then the status and scope refusals (unknown, inactive or uncertified actors, designee grants,
pharmacy certification, prescriber scope), each with its own reason code and audit event.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from compliance.api import Acting, Compliance
from compliance.audit.chain import AuditRecord
from compliance.audit.store import LogFilter
from compliance.clock import FixedClock
from compliance.db.base import Base
from compliance.domain import reasons as rc
from compliance.domain.ids import Kind, new_short_id
from compliance.domain.roles import (
    DELEGABLE,
    PERMISSIONS,
    READ_ONLY,
    Action,
    Role,
    permission_markdown,
)
from compliance.errors import InvalidInput, NotPermitted
from tests.conftest import T0, World, next_npi

# --- the calls: one public entry point per action ---------------------------------------------

Act = Callable[[Acting], object]
"""Performs the action as ``Acting.actor`` (naming ``on_behalf_of`` where the method takes it)."""
Setup = Callable[[Compliance, World], Act]
"""Creates, as the administrator, whatever target the action needs; returns the act itself."""

_ncpdp = itertools.count(2_000_000)


def _new_ncpdp() -> str:
    return str(next(_ncpdp))


@dataclass(frozen=True)
class Case:
    method: str
    setup: Setup


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
    return app.register_patient(w.admin.id, "Pat Target", "2001-02-03").patient.id


def _add_administrator(app: Compliance, w: World) -> Act:
    return lambda a: app.add_administrator(a.actor, "Alex Second Administrator")


def _deactivate_administrator(app: Compliance, w: World) -> Act:
    target = app.add_administrator(w.admin.id, "Alex Target Administrator").id
    return lambda a: app.deactivate_administrator(a.actor, target)


def _register_prescriber(app: Compliance, w: World) -> Act:
    npi = next_npi()
    return lambda a: app.register_prescriber(a.actor, "Dr New Prescriber", npi)


def _activate_prescriber(app: Compliance, w: World) -> Act:
    target = _registered_prescriber(app, w)
    return lambda a: app.activate_prescriber(a.actor, target)


def _suspend_prescriber(app: Compliance, w: World) -> Act:
    target = _activated_prescriber(app, w)
    return lambda a: app.suspend_prescriber(a.actor, target)


def _reinstate_prescriber(app: Compliance, w: World) -> Act:
    target = _suspended_prescriber(app, w)
    return lambda a: app.reinstate_prescriber(a.actor, target)


def _deactivate_prescriber(app: Compliance, w: World) -> Act:
    target = _activated_prescriber(app, w)
    return lambda a: app.deactivate_prescriber(a.actor, target)


def _register_designee(app: Compliance, w: World) -> Act:
    return lambda a: app.register_designee(a.actor, "Dee New Designee")


def _deactivate_designee(app: Compliance, w: World) -> Act:
    target = app.register_designee(w.admin.id, "Dee Target Designee").id
    return lambda a: app.deactivate_designee(a.actor, target)


def _grant_designee(app: Compliance, w: World) -> Act:
    # In scope for the one prescriber who may grant: world.prescriber grants for themselves.
    target = app.register_designee(w.admin.id, "Dee Granted Designee").id
    return lambda a: app.grant_designee(a.actor, target, w.prescriber.id)


def _revoke_grant(app: Compliance, w: World) -> Act:
    target = app.register_designee(w.admin.id, "Dee Revoked Designee").id
    app.grant_designee(w.admin.id, target, w.prescriber.id)
    return lambda a: app.revoke_grant(a.actor, target, w.prescriber.id)


def _register_pharmacy(app: Compliance, w: World) -> Act:
    ncpdp = _new_ncpdp()
    return lambda a: app.register_pharmacy(a.actor, "New Pharmacy", ncpdp, "America/Chicago")


def _activate_pharmacy(app: Compliance, w: World) -> Act:
    target = app.register_pharmacy(w.admin.id, "Target Pharmacy", _new_ncpdp(), "UTC").id
    return lambda a: app.activate_pharmacy(a.actor, target)


def _deactivate_pharmacy(app: Compliance, w: World) -> Act:
    target = app.register_pharmacy(w.admin.id, "Target Pharmacy", _new_ncpdp(), "UTC").id
    app.activate_pharmacy(w.admin.id, target)
    return lambda a: app.deactivate_pharmacy(a.actor, target)


def _register_pharmacist(app: Compliance, w: World) -> Act:
    return lambda a: app.register_pharmacist(a.actor, "Rory New Pharmacist", w.pharmacy.id)


def _deactivate_pharmacist(app: Compliance, w: World) -> Act:
    target = app.register_pharmacist(w.admin.id, "Rory Target Pharmacist", w.pharmacy.id).id
    return lambda a: app.deactivate_pharmacist(a.actor, target)


def _register_patient(app: Compliance, w: World) -> Act:
    return lambda a: app.register_patient(
        a.actor, "Pat New Patient", "1999-12-31", on_behalf_of=a.on_behalf_of
    )


def _add_patient_external_id(app: Compliance, w: World) -> Act:
    target = _patient(app, w)
    return lambda a: app.add_patient_external_id(
        a.actor, target, "MRN", "MRN-0001", on_behalf_of=a.on_behalf_of
    )


def _get_patient(app: Compliance, w: World) -> Act:
    target = _patient(app, w)
    return lambda a: app.get_patient(a.actor, target, on_behalf_of=a.on_behalf_of)


def _get_person(app: Compliance, w: World) -> Act:
    return lambda a: app.get_person(a.actor, w.prescriber.id, on_behalf_of=a.on_behalf_of)


def _audit_log(app: Compliance, w: World) -> Act:
    return lambda a: app.audit_log(a.actor)


def _verify_audit(app: Compliance, w: World) -> Act:
    return lambda a: app.verify_audit(a.actor)


def _checkpoint_audit(app: Compliance, w: World) -> Act:
    return lambda a: app.checkpoint_audit(a.actor)


ACTION_CALLS: dict[Action, Case] = {
    Action.ADMINISTRATOR_CREATE: Case("add_administrator", _add_administrator),
    Action.ADMINISTRATOR_DEACTIVATE: Case("deactivate_administrator", _deactivate_administrator),
    Action.PRESCRIBER_REGISTER: Case("register_prescriber", _register_prescriber),
    Action.PRESCRIBER_ACTIVATE: Case("activate_prescriber", _activate_prescriber),
    Action.PRESCRIBER_SUSPEND: Case("suspend_prescriber", _suspend_prescriber),
    Action.PRESCRIBER_REINSTATE: Case("reinstate_prescriber", _reinstate_prescriber),
    Action.PRESCRIBER_DEACTIVATE: Case("deactivate_prescriber", _deactivate_prescriber),
    Action.DESIGNEE_REGISTER: Case("register_designee", _register_designee),
    Action.DESIGNEE_DEACTIVATE: Case("deactivate_designee", _deactivate_designee),
    Action.GRANT_CREATE: Case("grant_designee", _grant_designee),
    Action.GRANT_REVOKE: Case("revoke_grant", _revoke_grant),
    Action.PHARMACY_REGISTER: Case("register_pharmacy", _register_pharmacy),
    Action.PHARMACY_ACTIVATE: Case("activate_pharmacy", _activate_pharmacy),
    Action.PHARMACY_DEACTIVATE: Case("deactivate_pharmacy", _deactivate_pharmacy),
    Action.PHARMACIST_REGISTER: Case("register_pharmacist", _register_pharmacist),
    Action.PHARMACIST_DEACTIVATE: Case("deactivate_pharmacist", _deactivate_pharmacist),
    Action.PATIENT_REGISTER: Case("register_patient", _register_patient),
    Action.PATIENT_UPDATE: Case("add_patient_external_id", _add_patient_external_id),
    Action.PATIENT_READ: Case("get_patient", _get_patient),
    Action.PARTY_READ: Case("get_person", _get_person),
    Action.AUDIT_READ: Case("audit_log", _audit_log),
    Action.AUDIT_VERIFY: Case("verify_audit", _verify_audit),
    Action.AUDIT_CHECKPOINT: Case("checkpoint_audit", _checkpoint_audit),
}


def _audit_stream(app: Compliance, w: World) -> Act:
    def act(a: Acting) -> object:
        with app.audit_stream(a.actor) as events:
            return list(events)

    return act


# The other public entry points that perform an action already covered above.
OTHER_ENTRY_POINTS: dict[str, tuple[Action, Setup]] = {
    "list_grants": (
        Action.PARTY_READ,
        lambda app, w: lambda a: app.list_grants(a.actor, on_behalf_of=a.on_behalf_of),
    ),
    "get_pharmacy": (
        Action.PARTY_READ,
        lambda app, w: lambda a: app.get_pharmacy(a.actor, w.pharmacy.id, a.on_behalf_of),
    ),
    "list_pharmacies": (
        Action.PARTY_READ,
        lambda app, w: lambda a: app.list_pharmacies(a.actor, on_behalf_of=a.on_behalf_of),
    ),
    "list_people": (
        Action.PARTY_READ,
        lambda app, w: lambda a: app.list_people(a.actor, "prescriber", None, a.on_behalf_of),
    ),
    "find_patients": (
        Action.PATIENT_READ,
        lambda app, w: lambda a: app.find_patients(a.actor, "Pat", on_behalf_of=a.on_behalf_of),
    ),
    "audit_count": (Action.AUDIT_READ, lambda app, w: lambda a: app.audit_count(a.actor)),
    "audit_stream": (Action.AUDIT_READ, _audit_stream),
}


def acting_as(w: World, role: Role) -> Acting:
    """The world's actor for ``role``; the designee acts for world.prescriber."""
    return {
        Role.ADMINISTRATOR: Acting(w.admin.id),
        Role.PRESCRIBER: Acting(w.prescriber.id),
        Role.DESIGNEE: Acting(w.designee.id, w.prescriber.id),
        Role.PHARMACIST: Acting(w.pharmacist.id),
    }[role]


# --- observing the database -------------------------------------------------------------------

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


# --- 1. the permission table, every action x every role ---------------------------------------


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
    """Each action once on PostgreSQL, rotating through the roles (each role both allowed and
    refused, where the table refuses it anything); the full matrix runs on SQLite."""
    roles = list(Role)
    return {(action, roles[i % len(roles)]) for i, action in enumerate(Action)}


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
    assert {a for a, _ in subset} == set(Action)
    for role in Role:
        outcomes = {role in PERMISSIONS[a] for a, r in subset if r is role}
        assert outcomes == {role in PERMISSIONS[a] for a in Action}, role


@pytest.mark.parametrize(("backend", "action", "role"), _matrix_params())
def test_permission_matrix(world: World, action: Action, role: Role) -> None:
    app = world.app
    reader = world.admin.id
    acting = acting_as(world, role)
    act = ACTION_CALLS[action].setup(app, world)

    if role in PERMISSIONS[action]:
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
    """Every reading entry point checks the action it claims, for every role."""
    action, setup = OTHER_ENTRY_POINTS[method]
    app = world.app
    _patient(app, world)
    for role in Role:
        acting = acting_as(world, role)
        act = setup(app, world)
        if role in PERMISSIONS[action]:
            before = all_events(app, world.admin.id)
            act(acting)
            assert all_events(app, world.admin.id) == before, (method, role)
        else:
            assert_refused(
                app,
                world.admin.id,
                functools.partial(act, acting),
                action,
                {rc.ACTOR_NOT_PERMITTED},
                acting.actor,
            )


# --- 2. status and scope refusals -------------------------------------------------------------


def _register_patient_as(app: Compliance, actor: str, on_behalf_of: str | None = None) -> object:
    return app.register_patient(actor, "Pat Attempted", "2002-03-04", on_behalf_of=on_behalf_of)


@pytest.mark.parametrize(
    "make_ref",
    [
        pytest.param(lambda: new_short_id(Kind.ADMINISTRATOR), id="unregistered-admin-id"),
        pytest.param(lambda: new_short_id(Kind.PRESCRIBER), id="unregistered-prescriber-id"),
        pytest.param(lambda: new_short_id(Kind.DESIGNEE), id="unregistered-designee-id"),
        pytest.param(lambda: new_short_id(Kind.PHARMACIST), id="unregistered-pharmacist-id"),
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
        assert_refused(app, world.admin.id, act, action, {rc.ACTOR_UNKNOWN}, ref)


def test_unknown_actor_spelled_loosely_is_recorded_normalised(world: World) -> None:
    app = world.app
    assert_refused(
        app,
        world.admin.id,
        lambda: app.find_patients("  nobody "),
        Action.PATIENT_READ,
        {rc.ACTOR_UNKNOWN},
        "NOBODY",
    )


def test_ids_of_non_people_are_unknown_actors(world: World) -> None:
    app = world.app
    patient = _patient(app, world)
    for ref in (patient, world.pharmacy.id):
        assert_refused(
            app,
            world.admin.id,
            functools.partial(app.find_patients, ref),
            Action.PATIENT_READ,
            {rc.ACTOR_UNKNOWN},
            ref,
        )


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
        lambda: app.find_patients(r),
        Action.PATIENT_READ,
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
    assert app.find_patients(r) == []

    clock.set(local_midnight_after)
    assert_refused(
        app,
        world.admin.id,
        lambda: app.find_patients(r),
        Action.PATIENT_READ,
        {rc.PHARMACY_ACTIVATION_EXPIRED},
        r,
    )
    # The annual renewal restores the pharmacist.
    app.activate_pharmacy(world.admin.id, world.pharmacy.id)
    assert app.find_patients(r) == []


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


@pytest.mark.parametrize("role", [Role.ADMINISTRATOR, Role.PRESCRIBER, Role.PHARMACIST])
def test_only_a_designee_may_name_on_behalf_of(world: World, role: Role) -> None:
    app = world.app
    actor = acting_as(world, role).actor
    assert_invalid_on_behalf_of(
        app, world.admin.id, lambda: app.find_patients(actor, on_behalf_of=world.prescriber.id)
    )


# --- regressions: grant resolution and refusal attribution ------------------------------------


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


# --- 4. the printed table ---------------------------------------------------------------------


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
