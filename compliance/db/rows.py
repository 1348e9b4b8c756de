"""Courses and pharmacies as plain rows, for the paths that run on every dispense.

Read with Core, a row costs a fraction of an ORM object and nothing tracks it: whoever changes a
``CourseRow`` saves the change with its own statement. The API's helpers take either kind of
course through ``CourseFields``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from compliance.db import models as m


@dataclass(slots=True)
class CourseRow:
    id: uuid.UUID
    patient_id: uuid.UUID
    prescriber_id: uuid.UUID
    ruleset_id: str
    state: str
    is_open: bool
    cycle: int
    enrolled_on: date
    category: str | None
    category_reason: str | None
    first_dispensed_on: date | None
    last_dose_on: date | None
    pregnancy_actions: bool
    last_seq: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> CourseRow:
        """From a result row holding every column of ``courses`` under its own name."""
        return cls(**{name: row[name] for name in COURSE_COLUMNS})


COURSE_COLUMNS = tuple(f.name for f in fields(CourseRow))

# A course as the helpers read and change it: an ORM ``Course`` or a ``CourseRow``.
CourseFields = m.Course | CourseRow


@dataclass(frozen=True, slots=True)
class PharmacyRow:
    id: uuid.UUID
    short_id: str
    time_zone: str
    status: str
    activation_expires_on: date | None


@dataclass(frozen=True, slots=True)
class Named:
    """A party or record known by its key and its short id."""

    id: uuid.UUID
    short_id: str
