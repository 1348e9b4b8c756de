"""Resolving the acting person and deciding whether they may act, every reason listed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from compliance.db import models as m
from compliance.db.base import Base, table_of
from compliance.db.direct import Direct
from compliance.db.rows import PharmacyRow
from compliance.domain import reasons as rc
from compliance.domain.ids import Kind, kind_of, normalise
from compliance.domain.lifecycle import PharmacyStatus, PrescriberStatus, StaffStatus
from compliance.domain.roles import DELEGABLE, Action, Role, allowed
from compliance.errors import InvalidInput, NotPermitted


def _who(model: type[Base]) -> Direct:
    table = table_of(model)
    return Direct(select(table.c.id, table.c.status).where(table.c.short_id == bindparam("ref")))


_PATIENT = table_of(m.Patient)
_PHARMACIST = table_of(m.Pharmacist)
_PHARMACY = table_of(m.Pharmacy)
# Every call starts here: one statement, built once, reads the person (and a pharmacist's
# pharmacy); its row is read by position: id, status, then the pharmacy's columns.
_ROLE_OF_KIND: dict[Kind, tuple[Role, Direct]] = {
    Kind.ADMINISTRATOR: (Role.ADMINISTRATOR, _who(m.Administrator)),
    Kind.PRESCRIBER: (Role.PRESCRIBER, _who(m.Prescriber)),
    Kind.DESIGNEE: (Role.DESIGNEE, _who(m.Designee)),
    Kind.PHARMACIST: (
        Role.PHARMACIST,
        Direct(
            select(
                _PHARMACIST.c.id,
                _PHARMACIST.c.status,
                _PHARMACY.c.id,
                _PHARMACY.c.short_id,
                _PHARMACY.c.time_zone,
                _PHARMACY.c.status,
                _PHARMACY.c.activation_expires_on,
            )
            .join_from(_PHARMACIST, _PHARMACY, _PHARMACY.c.id == _PHARMACIST.c.pharmacy_id)
            .where(_PHARMACIST.c.short_id == bindparam("ref"))
        ),
    ),
    Kind.PATIENT: (
        Role.PATIENT,
        Direct(select(_PATIENT.c.id).where(_PATIENT.c.short_id == bindparam("ref"))),
    ),
}


@dataclass(frozen=True)
class Acting:
    """Who is acting, and for which prescriber when a designee acts."""

    actor: str
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class Actor:
    short_id: str
    uuid: UUID
    role: Role
    on_behalf_of: str | None = None
    on_behalf_of_uuid: UUID | None = None
    pharmacy: PharmacyRow | None = None  # a pharmacist's, as read when the call began

    @property
    def pharmacy_uuid(self) -> UUID | None:
        return self.pharmacy.id if self.pharmacy else None

    @property
    def prescriber_uuid(self) -> UUID | None:
        """The prescriber whose work this is: the actor, or the one a designee acts for."""
        if self.role is Role.PRESCRIBER:
            return self.uuid
        return self.on_behalf_of_uuid


def refuse(
    action: Action,
    codes: list[str],
    subjects: tuple[str, ...] = (),
    on_behalf_of: str | None = None,
) -> NotPermitted:
    detail = "; ".join(rc.MESSAGES.get(c, c) for c in codes)
    return NotPermitted(
        f"not permitted to {action.value}: {detail}",
        codes,
        subjects=subjects,
        on_behalf_of=on_behalf_of,
    )


def grant_active(grant: m.DesigneeGrant, now: datetime) -> bool:
    return grant.revoked_at is None and (grant.expires_at is None or grant.expires_at > now)


def pharmacy_today(pharmacy: m.Pharmacy | PharmacyRow, now: datetime) -> date:
    return now.astimezone(ZoneInfo(pharmacy.time_zone)).date()


def pharmacy_problems(pharmacy: m.Pharmacy | PharmacyRow, now: datetime) -> list[str]:
    if pharmacy.status != PharmacyStatus.ACTIVATED:
        return [rc.PHARMACY_NOT_CERTIFIED]
    expires = pharmacy.activation_expires_on
    if expires is not None and pharmacy_today(pharmacy, now) > expires:
        return [rc.PHARMACY_ACTIVATION_EXPIRED]
    return []


def authorize(session: Session, acting: Acting, action: Action, now: datetime) -> Actor:
    """Resolve ``acting`` and check role, status and (for designees) the grant; raise if refused."""
    if acting.on_behalf_of is not None and not isinstance(acting.on_behalf_of, str):
        raise InvalidInput("on_behalf_of", "must be a prescriber id")
    if not isinstance(acting.actor, str):
        raise refuse(action, [rc.ACTOR_UNKNOWN])
    ref = normalise(acting.actor)
    kind = kind_of(ref)
    if kind is None or kind not in _ROLE_OF_KIND:
        raise refuse(action, [rc.ACTOR_UNKNOWN])
    role, who = _ROLE_OF_KIND[kind]
    row = who.first(session, {"ref": ref})
    if row is None:
        raise refuse(action, [rc.ACTOR_UNKNOWN])
    if acting.on_behalf_of is not None and role is not Role.DESIGNEE:
        raise InvalidInput("on_behalf_of", "only a designee acts on behalf of a prescriber")

    codes: list[str] = []
    if not allowed(role, action):
        codes.append(rc.ACTOR_NOT_PERMITTED)
    actor = Actor(ref, row[0], role)
    if role is Role.PRESCRIBER:
        if row[1] != PrescriberStatus.ACTIVATED:
            codes.append(rc.PRESCRIBER_NOT_CERTIFIED)
    elif role is not Role.PATIENT and row[1] != StaffStatus.ACTIVE:
        codes.append(rc.ACTOR_INACTIVE)
    if role is Role.PHARMACIST:
        pharmacy = PharmacyRow(*row[2:7])
        codes.extend(pharmacy_problems(pharmacy, now))
        actor = Actor(ref, row[0], role, pharmacy=pharmacy)
    if role is Role.DESIGNEE and rc.ACTOR_NOT_PERMITTED not in codes:
        actor, grant_codes = _designee(session, actor, acting.on_behalf_of, action, now)
        codes.extend(grant_codes)
    if codes:
        raise refuse(action, codes, on_behalf_of=actor.on_behalf_of)
    return actor


def _designee(
    session: Session, actor: Actor, on_behalf_of: str | None, action: Action, now: datetime
) -> tuple[Actor, list[str]]:
    grants = session.execute(
        select(m.DesigneeGrant, m.Prescriber)
        .join(m.Prescriber, m.Prescriber.id == m.DesigneeGrant.prescriber_id)
        .where(m.DesigneeGrant.designee_id == actor.uuid)
        .order_by(m.DesigneeGrant.granted_at)
    ).all()
    if on_behalf_of is None:
        live = {p.short_id for g, p in grants if grant_active(g, now)}
        ever = {p.short_id for _, p in grants}
        if len(live) > 1:
            raise InvalidInput(
                "on_behalf_of", "the designee holds grants from several prescribers: name one"
            )
        if not ever:
            return actor, [rc.DESIGNEE_GRANT_MISSING]
        if not live and len(ever) > 1:
            return actor, [rc.DESIGNEE_GRANT_EXPIRED]
        on_behalf_of = (live or ever).pop()
    target = normalise(on_behalf_of)
    if kind_of(target) is not Kind.PRESCRIBER:
        raise InvalidInput("on_behalf_of", f"{on_behalf_of!r} is not a prescriber id")
    mine = [(g, p) for g, p in grants if p.short_id == target]
    if not mine:
        return Actor(actor.short_id, actor.uuid, actor.role, target), [rc.DESIGNEE_GRANT_MISSING]
    # A live grant decides, whatever older or revoked grants from the same prescriber exist.
    live_mine = [(g, p) for g, p in mine if grant_active(g, now)]
    grant, prescriber = (live_mine or mine)[-1]
    resolved = Actor(actor.short_id, actor.uuid, actor.role, target, prescriber.id)
    codes: list[str] = []
    if not live_mine:
        codes.append(rc.DESIGNEE_GRANT_EXPIRED)
    elif action in DELEGABLE and action.value not in grant.scopes:
        codes.append(rc.DESIGNEE_GRANT_SCOPE)
    if prescriber.status != PrescriberStatus.ACTIVATED:
        codes.append(rc.PRESCRIBER_NOT_CERTIFIED)
    return resolved, codes
