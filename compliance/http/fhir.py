"""The FHIR facade for EHRs: ``POST /fhir/r4/GuidanceResponse/$rems-etasu`` (HL7 US Medication
REMS IG, STU2, on FHIR R4).

In: a Parameters resource with ``patient`` (a Patient whose ``id`` is our patient id, or whose
first identifier is a ``system`` and ``value`` registered with the patient) and optionally
``medication``, or with ``case_number`` / ``caseNumber`` (a prescription id). Out: Parameters with
``rems-etasu``, a GuidanceResponse whose status is ``success`` when the gate allows,
``data-required`` when it refuses (one nested GuidanceResponse per reason, carrying our reason
code, message, next step and earliest date), or ``failure`` when the case is unknown.

The gate asked is the caller's: a pharmacy terminal gets the dispense gate for the case's
prescription, or for the prescription in hand when it asks by patient (the Patient's id or
identifier with its ``birthDate``, and ``prescriber``, a Practitioner with an NPI identifier: what
is written on the prescription, nothing more); a prescriber's system the prescribe gate. JSON is
built as plain dicts; the tests validate it against a maintained FHIR model library.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from compliance.api.results_clients import Credential
from compliance.domain import reasons as rc
from compliance.domain.gates import Decision
from compliance.errors import InvalidInput, NotFound, NotPermitted, Refused
from compliance.http.auth import Service, ServiceDep, requires
from compliance.http.problems import PROBLEM, PROBLEM_SCHEMA

router = APIRouter(tags=["fhir"])
FHIR_JSON = "application/fhir+json"
REASON_SYSTEM = "https://github.com/compliance-ppp/compliance/blob/main/docs/rules.md#reason-codes"
MODULE = "urn:compliance-ppp:ruleset:"


def _fhir(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def outcome(status: int, code: str, text: str) -> JSONResponse:
    """An OperationOutcome for a request the operation cannot even evaluate."""
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return _fhir({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def _parameters(body: object) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidInput("resourceType", "the body must be a FHIR Parameters resource")
    params = body.get("parameter") or []
    if not isinstance(params, list):
        raise InvalidInput("parameter", "must be a list")
    found: dict[str, Any] = {}
    for p in params:
        if isinstance(p, dict) and isinstance(p.get("name"), str):
            found[p["name"]] = p
    return found


def _case_number(params: dict[str, Any]) -> str | None:
    for name in ("case_number", "caseNumber"):
        if name in params:
            value = params[name].get("valueString")
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(name, "must be a valueString with a prescription id")
            return value.strip()
    return None


def _patient_ref(params: dict[str, Any]) -> str:
    resource = params.get("patient", {}).get("resource")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise InvalidInput("patient", "give a Patient resource, or a case_number")
    if isinstance(resource.get("id"), str) and resource["id"].strip():
        return str(resource["id"]).strip()
    identifiers = resource.get("identifier") or []
    first = identifiers[0] if isinstance(identifiers, list) and identifiers else {}
    system, value = first.get("system"), first.get("value")
    if isinstance(system, str) and isinstance(value, str) and system and value:
        return f"{system}:{value}"
    raise InvalidInput("patient", "the Patient needs an id or an identifier with system and value")


NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


def _prescription_in_hand(params: dict[str, Any]) -> tuple[str, str]:
    """The Patient's ``birthDate`` and the ``prescriber`` Practitioner's NPI identifier."""
    patient = params.get("patient", {}).get("resource") or {}
    born = patient.get("birthDate")
    if not isinstance(born, str) or not born.strip():
        raise InvalidInput(
            "patient.birthDate",
            "a pharmacy asking by patient gives the birth date and the prescriber's NPI as on the"
            " prescription (or the case_number)",
        )
    prescriber = params.get("prescriber", {}).get("resource")
    if not isinstance(prescriber, dict) or prescriber.get("resourceType") != "Practitioner":
        raise InvalidInput("prescriber", "give the prescriber as a Practitioner resource")
    for identifier in prescriber.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == NPI_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str) and value.strip():
                return born.strip(), value.strip()
    raise InvalidInput(
        "prescriber.identifier", f"the Practitioner needs an {NPI_SYSTEM} identifier"
    )


def _requirement(reason: dict[str, Any], module: str) -> dict[str, Any]:
    notes = [{"text": str(reason["message"])}]
    if reason.get("next_step"):
        notes.append({"text": f"Next step: {reason['next_step']}"})
    if reason.get("earliest"):
        notes.append({"text": f"Earliest: {reason['earliest']}"})
    return {
        "resourceType": "GuidanceResponse",
        "status": "data-required",
        "moduleUri": module,
        "reasonCode": [
            {
                "coding": [{"system": REASON_SYSTEM, "code": reason["code"]}],
                "text": str(reason["message"]),
            }
        ],
        "note": notes,
    }


def guidance(
    decision: dict[str, Any] | None,
    reasons: list[dict[str, Any]],
    patient: str | None,
    case: str | None,
    status: str,
) -> dict[str, Any]:
    """The ``$rems-etasu`` answer: one GuidanceResponse, a nested one per unmet requirement."""
    module = MODULE + (str(decision["ruleset"]) if decision else "unknown")
    nested = [{"name": "requirement", "resource": _requirement(r, module)} for r in reasons]
    response: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "id": "rems-etasu",
        "status": status,
        "moduleUri": module,
        "contained": [{"resourceType": "Parameters", "id": "etasu", "parameter": nested}],
        "outputParameters": {"reference": "#etasu"},
    }
    if decision is not None:
        response["occurrenceDateTime"] = decision["evaluated_at"]
    if patient is not None:
        response["subject"] = {"reference": f"Patient/{patient}"}
    answer: list[dict[str, Any]] = [{"name": "rems-etasu", "resource": response}]
    if case is not None:
        answer.append({"name": "case_number", "valueString": case})
    return {"resourceType": "Parameters", "parameter": answer}


def _from_decision(decision: Decision, patient: str | None, case: str | None) -> dict[str, Any]:
    data = decision.to_dict()
    status = "data-required" if data["outcome"] == "REFUSE" else "success"
    return guidance(data, list(data["reasons"]), patient, case, status)


#: Fields of an InvalidInput about the request's headers (who acts), not about its body.
_HEADERS = frozenset({"X-Acting-Person", "X-On-Behalf-Of"})


def _in_hand(params: dict[str, Any]) -> tuple[str | None, str | None, InvalidInput | None]:
    """The prescription in hand, for a pharmacy asking by patient; who asks is known only in
    the call, so a missing part is kept as the error a pharmacy would get, not raised."""
    try:
        born, npi = _prescription_in_hand(params)
    except InvalidInput as exc:
        return None, None, exc
    return born, npi, None


def _evaluate(svc: Service, key: Credential, params: dict[str, Any]) -> dict[str, Any]:
    case = _case_number(params)
    if case is not None:
        found = svc.compliance.rems_etasu(key, case=case)
    else:
        patient = _patient_ref(params)
        born, npi, missing = _in_hand(params)
        try:
            found = svc.compliance.rems_etasu(
                key, patient=patient, date_of_birth=born, prescriber_npi=npi
            )
        except InvalidInput as exc:
            if exc.field == "date_of_birth" and missing is not None:
                raise missing from None  # in the FHIR terms of what is missing
            raise
    return _from_decision(found.decision, found.patient, found.case)


@router.post(
    "/GuidanceResponse/$rems-etasu",
    summary="Are the REMS requirements (ETASU) met? One GuidanceResponse per unmet requirement",
    response_class=JSONResponse,
    responses={
        200: {
            "description": "Parameters with the rems-etasu GuidanceResponse",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        },
        422: {
            "description": "An OperationOutcome (bad body) or a problem document (bad header)",
            "content": {
                FHIR_JSON: {"schema": {"type": "object"}},
                PROBLEM: {"schema": PROBLEM_SCHEMA},
            },
        },
    },
)
def rems_etasu(
    svc: ServiceDep,
    key: Annotated[Credential, Depends(requires(None))],
    body: Annotated[dict[str, Any], Body(description="A FHIR Parameters resource")],
) -> JSONResponse:
    # The gate asked depends on who asks: one call resolves the key, chooses the gate and
    # answers, in one read transaction (errors of the key or the asserted person are problem
    # documents, raised by the call like any other endpoint's).
    try:
        params = _parameters(body)
        answer = _evaluate(svc, key, params)
    except NotPermitted:
        raise
    except InvalidInput as exc:
        if exc.field in _HEADERS:  # the key's asserted person: a problem document
            raise
        return outcome(422, "invalid", exc.message)
    except NotFound as exc:
        answer = guidance(None, [], None, _case_or_none(exc), "failure")
        answer["parameter"][0]["resource"]["note"] = [{"text": exc.message}]
        return _fhir(answer)
    except Refused as refusal:
        # A refusal before any gate ran (e.g. no open course): its reasons are the requirements.
        decision = refusal.decision.to_dict() if refusal.decision is not None else None
        reasons = (
            list(decision["reasons"])
            if decision is not None
            else [{"code": c, "message": rc.MESSAGES.get(c, c)} for c in refusal.reasons]
        )
        return _fhir(guidance(decision, reasons, None, None, "data-required"))
    return _fhir(answer)


def _case_or_none(exc: NotFound) -> str | None:
    return exc.ref if exc.kind == "prescription" else None
