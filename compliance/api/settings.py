"""Database-wide settings: small JSON values under a key, changed in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from compliance.api.authz import Actor, refuse
from compliance.db.models import Setting
from compliance.domain import reasons as rc
from compliance.domain.roles import Action

MODE = "database.mode"
CLOCK_OVERRIDE = "clock.override"


def get(session: Session, key: str) -> dict[str, Any] | None:
    row = session.get(Setting, key)
    return None if row is None else dict(row.value)


def get_for_update(session: Session, key: str, now: datetime) -> dict[str, Any] | None:
    """The value, with its row locked until commit (PostgreSQL), for a read-modify-write: two
    concurrent changes then apply one after the other instead of one overwriting the other.
    A missing row is created empty at once, so two first writers collide on the primary key
    (the loser is retried and reads the winner's value) instead of both writing blind."""
    row = session.get(Setting, key, with_for_update=True, populate_existing=True)
    if row is None:
        session.add(Setting(key=key, value={}, updated_at=now))
        session.flush()
        return None
    return dict(row.value)


def put(session: Session, key: str, value: dict[str, Any], now: datetime) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value, updated_at=now))
    else:
        row.value, row.updated_at = value, now
    session.flush()


def clock_override_allowed(session: Session) -> bool:
    mode = get(session, MODE) or {}
    override = get(session, CLOCK_OVERRIDE) or {}
    return bool(mode.get("training")) or bool(override.get("enabled"))


def require_clock_override(session: Session, action: Action) -> None:
    if not clock_override_allowed(session):
        raise refuse(action, [rc.CLOCK_OVERRIDE_NOT_ALLOWED])


def set_clock_override(
    session: Session, actor: Actor, now: datetime, enabled: bool
) -> dict[str, Any]:
    from compliance.api.parties import record

    before = bool((get(session, CLOCK_OVERRIDE) or {}).get("enabled"))
    put(session, CLOCK_OVERRIDE, {"enabled": bool(enabled)}, now)
    record(
        session,
        actor,
        now,
        Action.CLOCK_OVERRIDE_SET,
        subjects=[actor.short_id],
        payload={"enabled": bool(enabled), "previous": before},
    )
    return {"enabled": bool(enabled), "training": bool((get(session, MODE) or {}).get("training"))}
