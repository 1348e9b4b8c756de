"""Calendar arithmetic for windows. Day 1 is a documented calendar date and is never shifted by a
time-zone conversion; "today" is the date of ``now`` in the zone the ruleset names; a window
closes at the first instant of the day after its last day, in that zone, so it is safe across
daylight-saving changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from compliance.programs.model import Ruleset


def zone_for(
    ruleset: Ruleset, pharmacy_zone: str | None = None, prescriber_zone: str | None = None
) -> ZoneInfo:
    """The zone of "today": the pharmacy's own when the ruleset judges dispensing there and a
    pharmacy is named; otherwise the zone of the clinic's steps: the prescriber's own when the
    ruleset says so and one is configured, else the ruleset's fixed zone."""
    if pharmacy_zone is None:
        return clinic_zone(ruleset, prescriber_zone)
    if ruleset.dispense_zone == "pharmacy":
        return ZoneInfo(pharmacy_zone)
    return ZoneInfo(ruleset.dispense_zone)


def clinic_zone(ruleset: Ruleset, prescriber_zone: str | None = None) -> ZoneInfo:
    """The zone in which the clinic's steps and worklists are judged."""
    own = ruleset.clinic_zone_for(prescriber_zone)
    if own is not None:
        return ZoneInfo(own)
    if ruleset.clinic_zone == "prescriber":
        return ZoneInfo(ruleset.today_zone)
    return ZoneInfo(ruleset.clinic_zone)


def today_in(zone: ZoneInfo, now: datetime) -> date:
    return now.astimezone(zone).date()


def start_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``zone``, in UTC (zoneinfo resolves DST gaps)."""
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """Days ``first_day`` to ``last_day`` inclusive; open until ``closes_at`` (exclusive)."""

    first_day: date
    last_day: date
    closes_at: datetime
    zone: str

    @property
    def last_instant(self) -> datetime:
        """The do-not-dispense-after instant: the last microsecond of the last day."""
        return self.closes_at - timedelta(microseconds=1)

    def contains(self, now: datetime) -> bool:
        """Whether ``now`` falls in the window, judged in the window's own zone."""
        zone = ZoneInfo(self.zone)
        return self.first_day <= today_in(zone, now) and now < self.closes_at

    def to_dict(self) -> dict[str, str]:
        """The window as JSON data."""
        return {
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "closes_at": self.closes_at.isoformat(),
            "zone": self.zone,
        }


def window(day_one: date, days: int, zone: ZoneInfo) -> Window:
    last = day_one + timedelta(days=days - 1)
    return Window(day_one, last, start_of_day(last + timedelta(days=1), zone), zone.key)
