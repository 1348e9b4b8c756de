"""The pharmacy's calls: the dispense check, authorizations, reversal and pickup.

An authorization request answers 201 with the authorization when approved, 200 ``denied`` with
the decision when the rules refuse it (as NCPDP's REMSResponse Approved / Denied).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse

from compliance.api.results_clients import Credential
from compliance.api.results_course import Authorized, StepResult
from compliance.errors import NotPermitted, Refused
from compliance.http.auth import ServiceDep, requires
from compliance.http.models import (
    AuthorizationRequest,
    DispenseCheck,
    PrescriptionLookup,
    Reversal,
)
from compliance.http.problems import refusal_body

router = APIRouter(tags=["pharmacy"])
Checker = Annotated[Credential, Depends(requires("dispense:check"))]


def approved(issued: Authorized) -> dict[str, Any]:
    data = issued.to_dict()
    auth = issued.authorization
    period = {
        "effective": auth.issued_at.isoformat(),
        "expiration": (
            auth.do_not_dispense_after.isoformat() if auth.do_not_dispense_after else None
        ),
    }
    return {"status": "approved", "authorization_period": period, **data}


def denied(refusal: Refused) -> JSONResponse:
    body = refusal_body(refusal)
    body["status"] = "denied"
    return JSONResponse(body)


def answer(call: Callable[[], StepResult]) -> Any:
    """An outcome, or the rules' refusal as a 200 answer; not-permitted stays a 403."""
    try:
        return {"status": "ok", **call().to_dict()}
    except NotPermitted:
        raise
    except Refused as refusal:
        return JSONResponse(refusal_body(refusal))


@router.post("/dispense-checks", summary="May this prescription be dispensed now? Changes nothing")
def dispense_check(
    body: DispenseCheck,
    svc: ServiceDep,
    key: Checker,
) -> dict[str, Any]:
    decision = svc.compliance.check_dispense(key, body.prescription, days_supply=body.days_supply)
    return decision.to_dict()


@router.post(
    "/authorizations",
    status_code=201,
    summary="Request a dispense authorization (201 approved, 200 denied with the decision)",
    responses={200: {"description": "Denied by the programme rules: every reason, the decision"}},
)
def request_authorization(
    body: AuthorizationRequest,
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires("dispense:authorize"))],
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=64,
            description="The terminal's own request id: a retry returns the same authorization.",
        ),
    ] = None,
) -> Any:
    try:
        outcome = svc.compliance.request_authorization(
            key, body.prescription, idempotency_key, days_supply=body.days_supply
        )
    except NotPermitted:
        raise
    except Refused as refusal:
        return denied(refusal)
    # A replay answers exactly like the first request (``record.replayed`` tells them apart).
    return JSONResponse(approved(outcome), status_code=201)


@router.post(
    "/prescription-lookups",
    summary="Find a paper prescription from the patient's programme id, date of birth and the "
    "prescriber's NPI",
)
def find_prescription(
    body: PrescriptionLookup,
    svc: ServiceDep,
    key: Checker,
) -> dict[str, Any]:
    """A POST, so the date of birth never lands in a URL or an access log."""
    found = svc.compliance.find_prescription(
        key, body.patient, body.date_of_birth, body.prescriber_npi
    )
    return found.to_dict()


@router.get("/authorizations/{number}", summary="An authorization, with reversal and pickup")
def get_authorization(
    number: str,
    svc: ServiceDep,
    key: Checker,
) -> dict[str, Any]:
    return svc.compliance.get_authorization(key, number).to_dict()


@router.post("/authorizations/{number}/reversal", summary="Reverse an authorization")
def reverse(
    number: str,
    body: Reversal,
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires("dispense:reverse"))],
) -> Any:
    return answer(lambda: svc.compliance.reverse_authorization(key, number, body.reason))


@router.post("/authorizations/{number}/dispense", summary="Record the patient's pickup")
def record_pickup(
    number: str,
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires("dispense:record"))],
) -> Any:
    return answer(lambda: svc.compliance.record_dispense(key, number))
