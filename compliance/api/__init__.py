"""The public embedding API."""

from compliance.api.authz import Acting
from compliance.api.results import (
    GrantInfo,
    PatientInfo,
    PatientRegistration,
    PersonInfo,
    PharmacyInfo,
    SchemaStatus,
)
from compliance.api.service import Compliance

__all__ = [
    "Acting",
    "Compliance",
    "GrantInfo",
    "PatientInfo",
    "PatientRegistration",
    "PersonInfo",
    "PharmacyInfo",
    "SchemaStatus",
]
