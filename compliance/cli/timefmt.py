"""Instants as people read them: to the minute, in the zone that governs them and in the user's.

The user's zone is ``--tz`` (or ``COMPLIANCE_TZ``), else ``TZ``, else the system's local zone.
``--json`` never goes through here: it keeps ISO 8601 in UTC.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from compliance.errors import InvalidInput

_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def zone_named(field: str, name: str) -> ZoneInfo:
    """An IANA zone, or an error naming the option it came from."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        problem = f"{name!r} is not an IANA time zone (e.g. America/Chicago)"
        raise InvalidInput(field, problem) from None


def user_zone() -> tzinfo:
    """The zone the person at the keyboard reads clocks in."""
    ctx = click.get_current_context(silent=True)
    chosen = getattr(ctx.find_root().obj, "tz", None) if ctx is not None else None
    if isinstance(chosen, tzinfo):
        return chosen
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX TZ string: the system's own conversion understands it
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def as_instant(value: object) -> datetime | None:
    """``value`` as an aware datetime when it is one or spells one in ISO 8601; else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, str) and _INSTANT.match(value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _minute(at: datetime, with_date: bool = True) -> str:
    clock = at.strftime("%H:%M")
    return f"{at.day} {at.strftime('%b %Y')} {clock}" if with_date else clock


def local_minute(value: datetime) -> str:
    """An instant in the user's zone to the minute, e.g. ``8 Jan 2027 20:59 PST``."""
    here = value.astimezone(user_zone())
    return f"{_minute(here)} {here.tzname()}"


def human_instant(value: datetime, governing: str | None) -> str:
    """``8 Jan 2027 23:59 EST (20:59 your time, PST)``: the governing zone first (UTC when the
    zone is not known here), then the user's when its clock differs."""
    zone: tzinfo = UTC if governing is None else ZoneInfo(governing)
    there = value.astimezone(zone)
    here = value.astimezone(user_zone())
    shown = f"{_minute(there)} {there.tzname()}"
    if here.utcoffset() == there.utcoffset():
        return shown
    same_day = here.date() == there.date()
    return f"{shown} ({_minute(here, with_date=not same_day)} your time, {here.tzname()})"


def deadline(value: object, zone: str | None) -> str | None:
    """A deadline as people read it, in ``zone`` (the one that governs it, as the engine
    reports beside the instant) and the user's own; None stays None."""
    at = as_instant(value)
    return None if at is None else human_instant(at, zone)


def when(value: object) -> str:
    """Any instant in the user's zone to the minute; other values unchanged."""
    at = as_instant(value)
    return str(value) if at is None else local_minute(at)
