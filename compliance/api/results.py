"""Plain result objects returned by the public API; each renders itself as JSON-ready data."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias

from compliance.domain.lifecycle import PharmacyStatus, PrescriberStatus, StaffStatus
from compliance.domain.roles import Role

# A calendar date where the API takes one: a ``date``, or its ISO 8601 text (``2027-01-31``)
# as a command line or a form passes it. Either is validated the same way.
DateInput: TypeAlias = date | str


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _Result:
    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data: instants and dates in ISO 8601, ids as text."""
        return {k: _plain(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass(frozen=True)
class PersonInfo(_Result):
    """An administrator, prescriber, designee or pharmacist."""

    id: str
    uuid: uuid.UUID
    role: Role
    name: str
    # A prescriber's PrescriberStatus; an administrator's, designee's or pharmacist's
    # StaffStatus.
    status: PrescriberStatus | StaffStatus
    created_at: datetime
    id_system: str | None = None
    external_id: str | None = None
    pharmacy: str | None = None
    # A prescriber's configured clinic zone (None: not configured, or not a prescriber).
    time_zone: str | None = None


@dataclass(frozen=True)
class PharmacyInfo(_Result):
    """A pharmacy: its identifier, the zone its times are judged in, its certification."""

    id: str
    uuid: uuid.UUID
    name: str
    id_system: str
    external_id: str
    time_zone: str
    status: PharmacyStatus
    created_at: datetime
    activation_expires_on: date | None


@dataclass(frozen=True)
class GrantInfo(_Result):
    """A designee's grant to act for a prescriber in some scopes, until an expiry or revocation."""

    designee: str
    prescriber: str
    scopes: tuple[str, ...]
    granted_at: datetime
    granted_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


@dataclass(frozen=True)
class PatientInfo(_Result):
    """A registered patient and their identifiers in other systems."""

    id: str
    uuid: uuid.UUID
    name: str
    date_of_birth: date
    external_ids: dict[str, str]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class PatientRegistration(_Result):
    """A new patient, and the existing patients that share the name and birth date.

    The engine never merges or matches on name and birth date: a clinic decides whether a
    warning is a real duplicate.
    """

    patient: PatientInfo
    possible_duplicates: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class SchemaStatus(_Result):
    """Which migration a database is at, against the newest this version ships."""

    url: str
    current: str | None
    head: str
    up_to_date: bool
