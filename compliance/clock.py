"""Injected time: the engine never reads the system clock except through a Clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for simulation and tests."""

    def __init__(self, instant: datetime) -> None:
        self._instant = ensure_utc(instant, "now")

    def now(self) -> datetime:
        return self._instant

    def set(self, instant: datetime) -> None:
        self._instant = ensure_utc(instant, "now")


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
