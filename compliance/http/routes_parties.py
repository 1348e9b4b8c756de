"""Designees and their grants (a prescriber's system for its own prescriber, or an
administrator), and the administration of prescribers, pharmacies and pharmacists."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from compliance.api.results_clients import Credential
from compliance.http.auth import ServiceDep, requires
from compliance.http.models import (
    Grant,
    GrantAmendment,
    NewDesignee,
    NewPharmacist,
    NewPharmacy,
    NewPrescriber,
    Note,
    PharmacyActivation,
    PrescriberZone,
)

router = APIRouter(tags=["parties"])
Designees = Annotated[Credential, Depends(requires("designee:manage"))]
Admin = Annotated[Credential, Depends(requires("admin"))]


def _created(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=201)


# --- designees and grants -------------------------------------------------------------------


@router.post("/designees", status_code=201, summary="Register a designee")
def register_designee(body: NewDesignee, svc: ServiceDep, key: Designees) -> JSONResponse:
    return _created(svc.compliance.register_designee(key, body.name).to_dict())


@router.get("/grants", summary="Grants: a prescriber's own, or (administrators) all")
def list_grants(
    svc: ServiceDep,
    key: Designees,
    designee: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return {"grants": [g.to_dict() for g in svc.compliance.list_grants(key, designee)]}


@router.put(
    "/designees/{designee}/grants/{prescriber}",
    summary="Let a designee act for a prescriber (a new grant)",
)
def grant(
    designee: str, prescriber: str, body: Grant, svc: ServiceDep, key: Designees
) -> dict[str, Any]:
    made = svc.compliance.grant_designee(key, designee, prescriber, body.scopes, body.expires_at)
    return made.to_dict()


@router.patch(
    "/designees/{designee}/grants/{prescriber}",
    summary="Correct a live grant's scopes or expiry, with the reason",
)
def amend_grant(
    designee: str, prescriber: str, body: GrantAmendment, svc: ServiceDep, key: Designees
) -> dict[str, Any]:
    amended = svc.compliance.amend_grant(
        key, designee, prescriber, body.reason, body.scopes, body.expires_at, body.clear_expiry
    )
    return amended.to_dict()


@router.delete("/designees/{designee}/grants/{prescriber}", summary="Revoke a grant now")
def revoke_grant(designee: str, prescriber: str, svc: ServiceDep, key: Designees) -> dict[str, Any]:
    return svc.compliance.revoke_grant(key, designee, prescriber).to_dict()


@router.post("/designees/{designee}/deactivation", summary="Deactivate a designee (administrator)")
def deactivate_designee(designee: str, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return svc.compliance.deactivate_designee(key, designee).to_dict()


# --- prescribers ------------------------------------------------------------------------------


@router.post("/prescribers", status_code=201, summary="Register a prescriber (not yet activated)")
def register_prescriber(body: NewPrescriber, svc: ServiceDep, key: Admin) -> JSONResponse:
    made = svc.compliance.register_prescriber(
        key, body.name, body.npi, body.id_system, body.time_zone
    )
    return _created(made.to_dict())


@router.put("/prescribers/{prescriber}/zone", summary="Set or clear the clinic's own time zone")
def set_prescriber_zone(
    prescriber: str, body: PrescriberZone, svc: ServiceDep, key: Admin
) -> dict[str, Any]:
    """Courses in flight are judged in the new zone from now on; audited."""
    return svc.compliance.set_prescriber_zone(key, prescriber, body.time_zone).to_dict()


PrescriberChange = Literal["activation", "suspension", "reinstatement", "deactivation"]


@router.post(
    "/prescribers/{prescriber}/{change}",
    summary="Activate, suspend, reinstate or deactivate a prescriber",
)
def change_prescriber(
    prescriber: str, change: PrescriberChange, body: Note, svc: ServiceDep, key: Admin
) -> dict[str, Any]:
    app = svc.compliance
    method = {
        "activation": app.activate_prescriber,
        "suspension": app.suspend_prescriber,
        "reinstatement": app.reinstate_prescriber,
        "deactivation": app.deactivate_prescriber,
    }[change]
    return method(key, prescriber, body.note).to_dict()


# --- pharmacies and pharmacists ---------------------------------------------------------------


@router.post("/pharmacies", status_code=201, summary="Register a pharmacy (not yet activated)")
def register_pharmacy(body: NewPharmacy, svc: ServiceDep, key: Admin) -> JSONResponse:
    made = svc.compliance.register_pharmacy(
        key, body.name, body.ncpdp, body.time_zone, body.id_system
    )
    return _created(made.to_dict())


@router.post("/pharmacies/{pharmacy}/activation", summary="Activate (or renew) a pharmacy")
def activate_pharmacy(
    pharmacy: str, body: PharmacyActivation, svc: ServiceDep, key: Admin
) -> dict[str, Any]:
    return svc.compliance.activate_pharmacy(key, pharmacy, body.expires_on).to_dict()


@router.post("/pharmacies/{pharmacy}/deactivation", summary="Deactivate a pharmacy")
def deactivate_pharmacy(pharmacy: str, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return svc.compliance.deactivate_pharmacy(key, pharmacy).to_dict()


@router.post("/pharmacists", status_code=201, summary="Register a pharmacist of a pharmacy")
def register_pharmacist(body: NewPharmacist, svc: ServiceDep, key: Admin) -> JSONResponse:
    return _created(svc.compliance.register_pharmacist(key, body.name, body.pharmacy).to_dict())


@router.post("/pharmacists/{pharmacist}/deactivation", summary="Deactivate a pharmacist")
def deactivate_pharmacist(pharmacist: str, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return svc.compliance.deactivate_pharmacist(key, pharmacist).to_dict()
