"""The prescriber's side (the prescriber, or a designee through a live grant): enrol, the
steps of a course, the prescribe check, and prescribing. A rule refusal is a 200 answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from compliance.api.results_clients import Credential
from compliance.http.auth import ServiceDep, requires
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
Reader = Annotated[Credential, Depends(requires("course:read"))]
Writer = Annotated[Credential, Depends(requires("course:write"))]


@router.post("/prescription-checks", summary="May this patient be prescribed now? Changes nothing")
def prescription_check(body: PrescriptionCheck, svc: ServiceDep, key: Reader) -> dict[str, Any]:
    decision = svc.compliance.check_prescribe(key, body.patient, body.days_supply, body.refills)
    return decision.to_dict()


@router.post("/prescriptions", summary="Prescribe, if the prescribe gate passes")
def prescribe(
    body: Prescription,
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires("prescribe"))],
) -> Any:
    return answer(
        lambda: svc.compliance.prescribe(
            key, body.patient, body.days_supply, body.refills, body.written_on, body.office_visit_on
        )
    )


@router.post("/courses", summary="Enrol a patient: open a course")
def enrol(body: Enrolment, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.enrol(key, body.patient, body.enrolled_on, body.programme))


@router.post("/patients/{patient}/category", summary="Assign the reproductive-potential category")
def category(patient: str, body: Category, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.assign_category(key, patient, body.category, body.reason))


@router.post("/patients/{patient}/consents", summary="Record a signed consent form")
def consent(patient: str, body: Consent, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.record_consent(key, patient, body.form, body.signed_on))


@router.post("/patients/{patient}/tests", summary="Record a pregnancy test")
def record_test(patient: str, body: TestResult, svc: ServiceDep, key: Writer) -> Any:
    return answer(
        lambda: svc.compliance.record_test(
            key,
            patient,
            kind=body.kind,
            specimen_date=body.specimen_date,
            setting=body.setting,
            result=body.result,
            sensitivity_miu_ml=body.sensitivity_miu_ml,
            clia=body.clia,
        )
    )


@router.post(
    "/patients/{patient}/confirmation",
    summary="The prescriber confirms the patient for the latest negative result (iPLEDGE)",
)
def confirm_patient(patient: str, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.confirm_patient(key, patient))


@router.post("/patients/{patient}/counselling", summary="Record counselling")
def counselling(patient: str, body: Counselling, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.record_counselling(key, patient, body.counselled_on))


@router.post("/patients/{patient}/contraception", summary="Record contraception methods")
def contraception(patient: str, body: Contraception, svc: ServiceDep, key: Writer) -> Any:
    methods: dict[str, object] = dict(body.methods)
    return answer(lambda: svc.compliance.record_contraception(key, patient, methods))
