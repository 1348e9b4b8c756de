"""The timeline model: dated steps by party, each at a local date-time in an IANA zone, with
the decision the programme documents expect at each checkpoint.

A step's instant is its local date-time in its own zone converted to UTC, because that is what
the injected clock is set to; the calendar dates a step passes to the API (a specimen date, the
date written on a prescription) are the local dates of the party that records them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

PARTIES = frozenset({"admin", "prescriber", "designee", "patient", "pharmacist", "lab"})

MOD, LEGACY = "ipledge/2026-mod", "ipledge/2023-03"
EU, UK = "eu-iso/2018", "uk-iso/2026-01"
LENA = "lenalidomide/2023-03"
IPLEDGE = (MOD, LEGACY)
EU_UK = (EU, UK)
ALL = (MOD, LEGACY, EU, UK)
EASTERN = "America/New_York"


@dataclass(frozen=True)
class Expect:
    """What the documents say a checkpoint decides.

    ``codes`` is the exact set of reason codes; ``optional`` are codes the documents say *may*
    accompany them (e.g. ``WINDOW_EXPIRED`` beside ``AUTHORIZATION_EXPIRED``). ``last_day`` is
    the window's last valid day (``no_window`` where the documents say there is none);
    ``dnda_on`` the local date, in ``dnda_zone``, of the do-not-dispense-after instant, which
    must be the last second of that day; ``earliest`` the earliest date the refusal names.
    """

    outcome: str = "ALLOW"
    codes: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    first_day: date | None = None
    last_day: date | None = None
    no_window: bool = False
    dnda_on: date | None = None
    dnda_zone: str = EASTERN
    earliest: date | None = None
    state: str | None = None
    category: str | None = None
    ruleset: str | None = None
    days_supply: int | None = None
    written_on: date | None = None
    flags: frozenset[str] = frozenset()


def allow(**kw: Any) -> Expect:
    return Expect(outcome="ALLOW", **kw)


def refuse(*codes: str, optional: tuple[str, ...] = (), **kw: Any) -> Expect:
    return Expect(outcome="REFUSE", codes=frozenset(codes), optional=frozenset(optional), **kw)


@dataclass(frozen=True)
class Step:
    """One thing a party does at a local date-time in a zone."""

    party: str
    local: datetime  # naive: the wall-clock time in ``zone``
    zone: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    expect: Expect | None = None

    def __post_init__(self) -> None:
        assert self.party in PARTIES, self.party
        assert self.local.tzinfo is None

    @property
    def instant(self) -> datetime:
        return self.local.replace(tzinfo=ZoneInfo(self.zone)).astimezone(UTC)

    @property
    def local_date(self) -> date:
        return self.local.date()

    def describe(self) -> str:
        return f"{self.local:%Y-%m-%d %H:%M} {self.zone} {self.party} {self.action} {self.args}"


@dataclass(frozen=True)
class Timeline:
    name: str
    ruleset: str
    doc: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        instants = [s.instant for s in self.steps]
        assert instants == sorted(instants), f"{self.name}: steps out of order"


class Builder:
    """Writes a timeline as days counted from a base date, in the parties' own zones.

    The clinic (prescriber, designee, lab, patient) is in ``clinic_zone``; each pharmacy step
    names its pharmacy, whose zone the driver knows (``PHARMACY_ZONES``).
    """

    def __init__(self, name: str, ruleset: str, base: date, clinic_zone: str, doc: str) -> None:
        self.name = name
        self.ruleset = ruleset
        self.base = base
        self.clinic_zone = clinic_zone
        self.doc = doc
        self.steps: list[Step] = []

    def d(self, day: int) -> date:
        return self.base + timedelta(days=day)

    def iso(self, day: int) -> str:
        return self.d(day).isoformat()

    def at(self, day: int, hhmm: str) -> datetime:
        hour, minute = (int(x) for x in hhmm.split(":"))
        return datetime.combine(self.d(day), datetime.min.time()).replace(hour=hour, minute=minute)

    def add(
        self,
        party: str,
        day: int,
        hhmm: str,
        action: str,
        expect: Expect | None = None,
        zone: str | None = None,
        **args: Any,
    ) -> Builder:
        if zone is None:
            zone = PHARMACY_ZONES[args["pharmacy"]] if party == "pharmacist" else self.clinic_zone
        self.steps.append(Step(party, self.at(day, hhmm), zone, action, args, expect))
        return self

    def build(self) -> Timeline:
        return Timeline(self.name, self.ruleset, self.doc, tuple(self.steps))


# The pharmacies a timeline may use, by short name.
PHARMACY_ZONES: dict[str, str] = {
    "la": "America/Los_Angeles",
    "hnl": "Pacific/Honolulu",
    "ny": "America/New_York",
    "london": "Europe/London",
    "lisbon": "Europe/Lisbon",
    "athens": "Europe/Athens",
    "brussels": "Europe/Brussels",
}
