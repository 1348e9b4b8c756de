"""Administration through the service: API clients and keys, the rules schedule and the clock
override. Every call needs an administrator's key with the ``admin`` scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from compliance.api.results_clients import Caller
from compliance.domain import reasons as rc
from compliance.errors import NotPermitted
from compliance.http.auth import ServiceDep, act, requires
from compliance.http.models import ClockOverride, NewClient, Rotation, RulesSchedule

router = APIRouter(tags=["administration"])
Admin = Annotated[Caller, Depends(requires("admin"))]


@router.post("/clients", status_code=201, summary="Register a client; its key is shown once")
def add_client(body: NewClient, svc: ServiceDep, caller: Admin) -> JSONResponse:
    issued = act(
        caller,
        lambda: svc.compliance.add_client(
            caller.actor,
            body.name,
            body.kind,
            body.party,
            body.scopes,
            body.lifetime_days,
            pepper=svc.pepper,
        ),
    )
    return JSONResponse(issued.to_dict(), status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/clients", summary="Every client and its keys (never a secret)")
def list_clients(svc: ServiceDep, caller: Admin) -> dict[str, Any]:
    found = act(caller, lambda: svc.compliance.list_clients(caller.actor))
    return {"clients": [c.to_dict() for c in found]}


@router.get("/clients/{client}", summary="One client and its keys")
def get_client(client: str, svc: ServiceDep, caller: Admin) -> dict[str, Any]:
    return act(caller, lambda: svc.compliance.get_client(caller.actor, client)).to_dict()


@router.post("/clients/{client}/keys", status_code=201, summary="Rotate: issue a new key")
def rotate(client: str, body: Rotation, svc: ServiceDep, caller: Admin) -> JSONResponse:
    issued = act(
        caller,
        lambda: svc.compliance.rotate_client_key(
            caller.actor, client, body.overlap_days, body.lifetime_days, pepper=svc.pepper
        ),
    )
    return JSONResponse(issued.to_dict(), status_code=201, headers={"Cache-Control": "no-store"})


@router.delete("/clients/{client}/keys/{key_id}", summary="Revoke one key now")
def revoke_key(client: str, key_id: str, svc: ServiceDep, caller: Admin) -> dict[str, Any]:
    return act(caller, lambda: svc.compliance.revoke_client(caller.actor, client, key_id)).to_dict()


@router.delete("/clients/{client}", summary="Revoke a client and every key now")
def revoke_client(client: str, svc: ServiceDep, caller: Admin) -> dict[str, Any]:
    return act(caller, lambda: svc.compliance.revoke_client(caller.actor, client)).to_dict()


@router.put("/settings/clock-override", summary="Disable (or, on a training database, enable)")
def clock_override(body: ClockOverride, svc: ServiceDep, caller: Admin) -> dict[str, Any]:
    if body.enabled and not svc.compliance.is_training():
        raise NotPermitted(
            "the clock override cannot be enabled through the service on a database not made "
            "for training",
            [rc.CLOCK_OVERRIDE_NOT_ALLOWED],
        )
    return act(caller, lambda: svc.compliance.set_clock_override(caller.actor, body.enabled))


@router.put("/rules/schedule", summary="Set the date a ruleset takes effect on this database")
def rules_schedule(body: RulesSchedule, svc: ServiceDep, caller: Admin) -> dict[str, Any]:
    schedule = act(
        caller,
        lambda: svc.compliance.set_rules_schedule(caller.actor, body.ruleset, body.effective),
    )
    return {"schedule": {k: d.isoformat() for k, d in sorted(schedule.items())}}
