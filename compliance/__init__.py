"""compliance: pregnancy-prevention programme engine for teratogenic drugs.

Importing the package is cheap: every public name below loads its module only when it is first
used, so the command line starts fast and no engine exists until a host opens one. A host types
its code against these names; everything else is internal and may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives. The package re-exports them so that a host imports one module.
_HOMES = {
    "Compliance": "compliance.api.service",
    "Clock": "compliance.clock",
    "FixedClock": "compliance.clock",
    "SystemClock": "compliance.clock",
    "DateInput": "compliance.api.results",
    "GrantInfo": "compliance.api.results",
    "PatientInfo": "compliance.api.results",
    "PatientRegistration": "compliance.api.results",
    "PersonInfo": "compliance.api.results",
    "PharmacyInfo": "compliance.api.results",
    "SchemaStatus": "compliance.api.results",
    "AuthorizationInfo": "compliance.api.results_course",
    "AuthorizationUpdated": "compliance.api.results_course",
    "Authorized": "compliance.api.results_course",
    "ChecklistItem": "compliance.api.results_course",
    "CourseInfo": "compliance.api.results_course",
    "CourseStatus": "compliance.api.results_course",
    "Flag": "compliance.api.results_course",
    "Prescribed": "compliance.api.results_course",
    "PrescriptionInfo": "compliance.api.results_course",
    "StepResult": "compliance.api.results_course",
    "CourseListing": "compliance.api.course_list",
    "Caller": "compliance.api.results_clients",
    "ClientInfo": "compliance.api.results_clients",
    "IssuedKey": "compliance.api.results_clients",
    "KeyInfo": "compliance.api.results_clients",
    "EtasuAnswer": "compliance.api.etasu",
    "ImpactReport": "compliance.api.rule_changes",
    "ImpactStream": "compliance.api.rule_changes",
    "MigrationReport": "compliance.api.rule_changes",
    "AuditRecord": "compliance.audit.chain",
    "Checkpoint": "compliance.audit.store",
    "LogFilter": "compliance.audit.store",
    "VerifyReport": "compliance.audit.store",
    "Ed25519Signer": "compliance.audit.signing",
    "Signer": "compliance.audit.signing",
    "CourseState": "compliance.domain.course",
    "Decision": "compliance.domain.evaluation",
    "Outcome": "compliance.domain.evaluation",
    "Reason": "compliance.domain.evaluation",
    "PharmacyStatus": "compliance.domain.lifecycle",
    "PrescriberStatus": "compliance.domain.lifecycle",
    "StaffStatus": "compliance.domain.lifecycle",
    "NextStep": "compliance.domain.next_step",
    "Role": "compliance.domain.roles",
    "Window": "compliance.domain.timing",
    "TestResult": "compliance.domain.facts",
    "Setting": "compliance.programs.model",
    "TestKind": "compliance.programs.model",
}

__all__ = [
    "AuditRecord",
    "AuthorizationInfo",
    "AuthorizationUpdated",
    "Authorized",
    "Caller",
    "ChecklistItem",
    "Checkpoint",
    "ClientInfo",
    "Clock",
    "Compliance",
    "CourseInfo",
    "CourseListing",
    "CourseState",
    "CourseStatus",
    "DateInput",
    "Decision",
    "Ed25519Signer",
    "EtasuAnswer",
    "FixedClock",
    "Flag",
    "GrantInfo",
    "ImpactReport",
    "ImpactStream",
    "IssuedKey",
    "KeyInfo",
    "LogFilter",
    "MigrationReport",
    "NextStep",
    "Outcome",
    "PatientInfo",
    "PatientRegistration",
    "PersonInfo",
    "PharmacyInfo",
    "PharmacyStatus",
    "Prescribed",
    "PrescriberStatus",
    "PrescriptionInfo",
    "Reason",
    "Role",
    "SchemaStatus",
    "Setting",
    "Signer",
    "StaffStatus",
    "StepResult",
    "SystemClock",
    "TestKind",
    "TestResult",
    "VerifyReport",
    "Window",
    "__version__",
    "errors",
]

if TYPE_CHECKING:
    from compliance import errors
    from compliance.api.course_list import CourseListing
    from compliance.api.etasu import EtasuAnswer
    from compliance.api.results import (
        DateInput,
        GrantInfo,
        PatientInfo,
        PatientRegistration,
        PersonInfo,
        PharmacyInfo,
        SchemaStatus,
    )
    from compliance.api.results_clients import Caller, ClientInfo, IssuedKey, KeyInfo
    from compliance.api.results_course import (
        AuthorizationInfo,
        AuthorizationUpdated,
        Authorized,
        ChecklistItem,
        CourseInfo,
        CourseStatus,
        Flag,
        Prescribed,
        PrescriptionInfo,
        StepResult,
    )
    from compliance.api.rule_changes import ImpactReport, ImpactStream, MigrationReport
    from compliance.api.service import Compliance
    from compliance.audit.chain import AuditRecord
    from compliance.audit.signing import Ed25519Signer, Signer
    from compliance.audit.store import Checkpoint, LogFilter, VerifyReport
    from compliance.clock import Clock, FixedClock, SystemClock
    from compliance.domain.course import CourseState
    from compliance.domain.evaluation import Decision, Outcome, Reason
    from compliance.domain.facts import TestResult
    from compliance.domain.lifecycle import PharmacyStatus, PrescriberStatus, StaffStatus
    from compliance.domain.next_step import NextStep
    from compliance.domain.roles import Role
    from compliance.domain.timing import Window
    from compliance.programs.model import Setting, TestKind


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module("compliance.errors")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'compliance' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
