"""The prescriber's side (the prescriber, or a designee through a live grant): enrol, the
steps of a course, the prescribe check, and prescribing. A rule refusal is a 200 answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from compliance.api.results_clients import Caller
from compliance.http.auth import ServiceDep, act, requires
from compliance.http.models import (
    Category,
    Consent,
    Contraception,
    Counselling,
    Enrolment,
    Prescription,
    PrescriptionCheck,
    TestResult,
)
from compliance.http.routes_pharmacy import answer

router = APIRouter(tags=["prescriber"])
Writer = Annotated[Caller, Depends(requires("course:write"))]


@router.post("/prescription-checks", summary="May this patient be prescribed now? Changes nothing")
def prescription_check(
    body: PrescriptionCheck,
    svc: ServiceDep,
    caller: Annotated[Caller, Depends(requires("course:read"))],
) -> dict[str, Any]:
    decision = act(
        caller,
        lambda: svc.compliance.check_prescribe(
            caller.actor, body.patient, body.days_supply, body.refills, caller.on_behalf_of
        ),
    )
    return decision.to_dict()


@router.post("/prescriptions", summary="Prescribe, if the prescribe gate passes")
def prescribe(
    body: Prescription,
    svc: ServiceDep,
    caller: Annotated[Caller, Depends(requires("prescribe"))],
) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.prescribe(
                caller.actor,
                body.patient,
                body.days_supply,
                body.refills,
                body.written_on,
                body.office_visit_on,
            )
        ),
    )


@router.post("/courses", summary="Enrol a patient: open a course")
def enrol(body: Enrolment, svc: ServiceDep, caller: Writer) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.enrol(
                caller.actor, body.patient, body.enrolled_on, body.programme, caller.on_behalf_of
            )
        ),
    )


@router.post("/patients/{patient}/category", summary="Assign the reproductive-potential category")
def category(patient: str, body: Category, svc: ServiceDep, caller: Writer) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.assign_category(
                caller.actor, patient, body.category, body.reason, caller.on_behalf_of
            )
        ),
    )


@router.post("/patients/{patient}/consents", summary="Record a signed consent form")
def consent(patient: str, body: Consent, svc: ServiceDep, caller: Writer) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.record_consent(
                caller.actor, patient, body.form, body.signed_on, caller.on_behalf_of
            )
        ),
    )


@router.post("/patients/{patient}/tests", summary="Record a pregnancy test")
def record_test(patient: str, body: TestResult, svc: ServiceDep, caller: Writer) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.record_test(
                caller.actor,
                patient,
                kind=body.kind,
                specimen_date=body.specimen_date,
                setting=body.setting,
                result=body.result,
                sensitivity_miu_ml=body.sensitivity_miu_ml,
                clia=body.clia,
                on_behalf_of=caller.on_behalf_of,
            )
        ),
    )


@router.post(
    "/patients/{patient}/confirmation",
    summary="The prescriber confirms the patient for the latest negative result (iPLEDGE)",
)
def confirm_patient(patient: str, svc: ServiceDep, caller: Writer) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.confirm_patient(caller.actor, patient, caller.on_behalf_of)
        ),
    )


@router.post("/patients/{patient}/counselling", summary="Record counselling")
def counselling(patient: str, body: Counselling, svc: ServiceDep, caller: Writer) -> Any:
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.record_counselling(
                caller.actor, patient, body.counselled_on, caller.on_behalf_of
            )
        ),
    )


@router.post("/patients/{patient}/contraception", summary="Record contraception methods")
def contraception(patient: str, body: Contraception, svc: ServiceDep, caller: Writer) -> Any:
    methods: dict[str, object] = dict(body.methods)
    return act(
        caller,
        lambda: answer(
            lambda: svc.compliance.record_contraception(
                caller.actor, patient, methods, caller.on_behalf_of
            )
        ),
    )
