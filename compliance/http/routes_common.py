"""Health, rulesets, a patient's status and the worklist: what every party reads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from compliance.api.results_clients import Credential
from compliance.http.auth import ServiceDep, requires
from compliance.http.problems import problem

router = APIRouter(tags=["common"])


@router.get("/health", summary="Liveness and the database schema's state (no key needed)")
def health(svc: ServiceDep) -> Any:
    status = svc.compliance.schema_status()
    schema = {"current": status.current, "head": status.head, "up_to_date": status.up_to_date}
    if not status.up_to_date:
        return problem(
            503,
            "DATABASE_NOT_READY",
            "the database schema is not current",
            headers={"Retry-After": "5"},
        )
    return {"status": "ok", "schema": schema}


@router.get("/rulesets", summary="Every ruleset with the date it takes effect here")
def rulesets(
    svc: ServiceDep, key: Annotated[Credential, Depends(requires(None))]
) -> dict[str, Any]:
    schedule = svc.compliance.rules_schedule_as(key)
    known = svc.compliance.rulesets()
    return {
        "rulesets": [
            {
                "id": rid,
                "programme": r.programme,
                "title": r.title,
                "effective": schedule[rid].isoformat() if rid in schedule else None,
            }
            for rid, r in sorted(known.items())
        ]
    }


@router.get("/patients/{patient}/status", summary="A patient's course, checklist and flags")
def patient_status(
    patient: str,
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires("course:read"))],
) -> dict[str, Any]:
    return svc.compliance.status(key, patient).to_dict()


@router.get("/worklist", summary="Tests due, windows closing, reversals owed, pregnancies")
def worklist(
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires("worklist:read"))],
    within_days: Annotated[int, Query(ge=0, le=366)] = 7,
) -> dict[str, Any]:
    flags = svc.compliance.due(key, within_days)
    return {"within_days": within_days, "flags": [f.to_dict() for f in flags]}
