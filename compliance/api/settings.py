"""Database-wide settings: small JSON values under a key, changed in the caller's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from compliance.api.authz import Actor, refuse
from compliance.db.base import table_of
from compliance.db.direct import Direct
from compliance.db.models import Setting
from compliance.domain import reasons as rc
from compliance.domain import validate as v
from compliance.domain.roles import Action
from compliance.errors import NotPermitted

MODE = "database.mode"
CLOCK_OVERRIDE = "clock.override"

_SETTINGS = table_of(Setting)
# Both settings a simulated clock is judged by, in one statement built once: every call made
# with a simulated clock reads them.
_CLOCK_SETTINGS = Direct(
    select(_SETTINGS.c.key, _SETTINGS.c.value).where(
        or_(_SETTINGS.c.key == bindparam("mode"), _SETTINGS.c.key == bindparam("override"))
    )
)


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


# How long an enabled clock override lasts unless the administrator says otherwise: a day of
# backfilling, not a database left open to backdated entries for ever.
OVERRIDE_HOURS = 24
MAX_OVERRIDE_HOURS = 24 * 30


def clock_override_allowed(session: Session, real_now: datetime) -> bool:
    """Whether simulated clocks are accepted: on a training database always; elsewhere while an
    administrator's override lasts, judged on the real clock (a simulated one could claim any
    instant before the expiry)."""
    rows = _CLOCK_SETTINGS.rows(session, {"mode": MODE, "override": CLOCK_OVERRIDE})
    found: dict[str, dict[str, Any]] = dict(rows)
    mode = found.get(MODE) or {}
    if mode.get("training"):
        return True
    override = found.get(CLOCK_OVERRIDE) or {}
    if not override.get("enabled"):
        return False
    expires = override.get("expires_at")
    # An override enabled before overrides expired lasts no longer than a new one.
    return expires is not None and real_now < datetime.fromisoformat(str(expires))


def require_clock_override(session: Session, action: Action, real_now: datetime) -> None:
    if not clock_override_allowed(session, real_now):
        raise refuse(action, [rc.CLOCK_OVERRIDE_NOT_ALLOWED])


def set_clock_override(
    session: Session,
    actor: Actor,
    now: datetime,
    real_now: datetime,
    enabled: bool,
    hours: object = OVERRIDE_HOURS,
    training_only: bool = False,
) -> dict[str, Any]:
    """Set the override; with ``training_only`` (a call through an API client, the HTTP
    service) it may be enabled only on a database made for training."""
    from compliance.api.parties import record

    enabled = v.flag("enable", enabled)
    lasts = v.whole_number("hours", hours, 1, MAX_OVERRIDE_HOURS)
    if enabled and training_only and not (get(session, MODE) or {}).get("training"):
        raise NotPermitted(
            "the clock override cannot be enabled through the service on a database not made "
            "for training",
            [rc.CLOCK_OVERRIDE_NOT_ALLOWED],
        )
    before = get_for_update(session, CLOCK_OVERRIDE, now) or {}
    value: dict[str, Any] = {"enabled": enabled}
    if enabled:
        value["expires_at"] = (real_now + timedelta(hours=lasts)).isoformat()
    put(session, CLOCK_OVERRIDE, value, now)
    record(
        session,
        actor,
        now,
        Action.CLOCK_OVERRIDE_SET,
        subjects=[actor.short_id],
        payload={**value, "previous": bool(before.get("enabled"))},
    )
    training = bool((get(session, MODE) or {}).get("training"))
    return {**value, "training": training}
