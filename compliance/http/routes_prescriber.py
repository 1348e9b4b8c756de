"""The prescriber's side (the prescriber, or a designee through a live grant): enrol, the
steps of a course, the prescribe check, and prescribing. A rule refusal is a 200 answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from compliance.api.results_clients import Credential
from compliance.http.auth import ServiceDep, requires
from compliance.http.models import (
    Category,
    Consent,
    Contraception,
    Counselling,
    Enrolment,
    ExternalId,
    HomeTesting,
    NewPatient,
    Note,
    PatientCorrection,
    PregnancyReport,
    Prescription,
    PrescriptionCheck,
    Resumption,
    TestResult,
    TestSchedule,
    TreatmentEnd,
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


# --- patients ---------------------------------------------------------------------------------


@router.post("/patients", status_code=201, summary="Register a patient (duplicates are warned of)")
def register_patient(body: NewPatient, svc: ServiceDep, key: Writer) -> JSONResponse:
    """The answer lists existing patients with the same name and birth date: the engine never
    merges them, the clinic decides."""
    ids: dict[str, object] | None = dict(body.external_ids) if body.external_ids else None
    made = svc.compliance.register_patient(key, body.name, body.date_of_birth, ids)
    return JSONResponse(made.to_dict(), status_code=201)


@router.get("/patients/{patient}", summary="A patient, by id or SYSTEM:VALUE external id")
def get_patient(patient: str, svc: ServiceDep, key: Reader) -> dict[str, Any]:
    return svc.compliance.get_patient(key, patient).to_dict()


@router.post("/patients/{patient}/corrections", summary="Correct a name or date of birth")
def correct_patient(
    patient: str, body: PatientCorrection, svc: ServiceDep, key: Writer
) -> dict[str, Any]:
    return svc.compliance.correct_patient(
        key, patient, body.reason, body.name, body.date_of_birth
    ).to_dict()


@router.post("/patients/{patient}/external-ids", summary="Add an external identifier")
def add_external_id(patient: str, body: ExternalId, svc: ServiceDep, key: Writer) -> dict[str, Any]:
    return svc.compliance.add_patient_external_id(key, patient, body.system, body.value).to_dict()


# --- the course after prescribing -----------------------------------------------------------


@router.put("/patients/{patient}/test-schedule", summary="Choose the ruleset's testing schedule")
def test_schedule(patient: str, body: TestSchedule, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.set_test_schedule(key, patient, body.schedule))


@router.post("/patients/{patient}/treatment-end", summary="End treatment (the last dose taken)")
def end_treatment(patient: str, body: TreatmentEnd, svc: ServiceDep, key: Writer) -> Any:
    """The prescriber only; the post-treatment tests then fall due."""
    return answer(lambda: svc.compliance.end_treatment(key, patient, body.last_dose_on))


@router.post("/patients/{patient}/pregnancy", summary="Report a pregnancy: the course stops")
def report_pregnancy(patient: str, body: PregnancyReport, svc: ServiceDep, key: Writer) -> Any:
    return answer(
        lambda: svc.compliance.report_pregnancy(key, patient, body.reported_on, body.note)
    )


@router.post("/patients/{patient}/resumption", summary="Resume a suspended course (prescriber)")
def resume(patient: str, body: Resumption, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.resume_course(key, patient, body.note))


@router.post("/patients/{patient}/withdrawal", summary="Withdraw the patient from the course")
def withdraw(patient: str, body: Note, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.withdraw_course(key, patient, body.note))


@router.post("/patients/{patient}/lost-to-follow-up", summary="Mark the course lost to follow-up")
def lost_to_follow_up(patient: str, body: Note, svc: ServiceDep, key: Writer) -> Any:
    return answer(lambda: svc.compliance.mark_lost_to_follow_up(key, patient, body.note))


@router.get("/courses", summary="Courses, newest enrolment first (a prescriber sees their own)")
def list_courses(
    svc: ServiceDep,
    key: Reader,
    state: Annotated[str | None, Query(max_length=64)] = None,
    programme: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    found = svc.compliance.list_courses(key, state, None, programme, limit)
    return {"courses": [c.to_dict() for c in found]}


@router.put("/home-testing", summary="The prescriber opts in to (or out of) home pregnancy tests")
def home_testing(body: HomeTesting, svc: ServiceDep, key: Writer) -> dict[str, Any]:
    return svc.compliance.set_home_testing(key, body.enabled, body.procedure, body.on)
