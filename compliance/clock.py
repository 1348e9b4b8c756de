"""Injected time: the engine never reads the system clock except through a Clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where the engine reads the time: injected, so hosts and tests choose it."""

    def now(self) -> datetime:
        """Return the current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The host's clock, in UTC."""

    def now(self) -> datetime:
        """The current instant, in UTC."""
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for simulation and tests. It stays within the
    years 1900-9000, so that date arithmetic from it never runs off the calendar."""

    def __init__(self, instant: datetime) -> None:
        self._instant = within_calendar(instant, "now")

    def now(self) -> datetime:
        """The instant last set."""
        return self._instant

    def set(self, instant: datetime) -> None:
        """Move the clock to ``instant`` (aware; stored in UTC)."""
        self._instant = within_calendar(instant, "now")


def within_calendar(instant: datetime, field: str) -> datetime:
    """An instant in UTC within the years 1900-9000, refused naming ``field`` otherwise."""
    from compliance.errors import InvalidInput

    utc = ensure_utc(instant, field)
    if not 1900 <= utc.year <= 9000:
        raise InvalidInput(field, f"{utc.isoformat()} is outside the years 1900-9000")
    return utc


def ensure_utc(instant: datetime, field: str) -> datetime:
    """Normalise an aware instant to UTC; a naive one is a caller error, never guessed at."""
    from compliance.errors import InvalidInput

    if not isinstance(instant, datetime):
        raise InvalidInput(field, "must be an instant (a datetime with its zone)")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidInput(field, "instant must carry a time zone")
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(field, f"{instant.isoformat()} is outside the range of dates") from None
