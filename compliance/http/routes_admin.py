"""Administration through the service: API clients and keys, the rules schedule and the clock
override. Every call needs an administrator's key with the ``admin`` scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from compliance.api.results_clients import Credential
from compliance.http.auth import ServiceDep, requires
from compliance.http.models import ClockOverride, NewClient, Rotation, RulesSchedule

router = APIRouter(tags=["administration"])
Admin = Annotated[Credential, Depends(requires("admin"))]


@router.post("/clients", status_code=201, summary="Register a client; its key is shown once")
def add_client(body: NewClient, svc: ServiceDep, key: Admin) -> JSONResponse:
    issued = svc.compliance.add_client(
        key, body.name, body.kind, body.party, body.scopes, body.lifetime_days, pepper=svc.pepper
    )
    return JSONResponse(issued.to_dict(), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/clients", summary="Every client and its keys (never a secret)")
def list_clients(svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return {"clients": [c.to_dict() for c in svc.compliance.list_clients(key)]}


@router.get("/clients/{client}", summary="One client and its keys")
def get_client(client: str, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return svc.compliance.get_client(key, client).to_dict()


@router.post("/clients/{client}/keys", status_code=201, summary="Rotate: issue a new key")
def rotate(client: str, body: Rotation, svc: ServiceDep, key: Admin) -> JSONResponse:
    issued = svc.compliance.rotate_client_key(
        key, client, body.overlap_days, body.lifetime_days, pepper=svc.pepper
    )
    return JSONResponse(issued.to_dict(), status_code=201, headers={"Cache-Control": "no-store"})


@router.delete("/clients/{client}/keys/{key_id}", summary="Revoke one key now")
def revoke_key(client: str, key_id: str, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return svc.compliance.revoke_client(key, client, key_id).to_dict()


@router.delete("/clients/{client}", summary="Revoke a client and every key now")
def revoke_client(client: str, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    return svc.compliance.revoke_client(key, client).to_dict()


@router.put("/settings/clock-override", summary="Disable (or, on a training database, enable)")
def clock_override(body: ClockOverride, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    """Through the service the override may be enabled only on a database made for training
    (``CLOCK_OVERRIDE_NOT_ALLOWED``), which the engine checks in the same transaction."""
    return svc.compliance.set_clock_override(key, body.enabled)


@router.put("/rules/schedule", summary="Set the date a ruleset takes effect on this database")
def rules_schedule(body: RulesSchedule, svc: ServiceDep, key: Admin) -> dict[str, Any]:
    schedule = svc.compliance.set_rules_schedule(key, body.ruleset, body.effective)
    return {"schedule": {k: d.isoformat() for k, d in sorted(schedule.items())}}
