"""The REMS ETASU question (the FHIR facade's ``$rems-etasu``): which gate is asked depends on who
asks, so the caller, the gate and its answer are read in one transaction.

A pharmacist gets the dispense gate: of the prescription named (the case), or of the prescription
in hand when asking by patient (the patient's date of birth and the prescriber's NPI as written
on it). Anyone else gets the prescribe gate of the patient. A caller through an API key also needs
the key's scopes for that path: ``dispense:check`` for a case, ``course:read`` for a patient (and
``dispense:check`` for a pharmacy terminal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from compliance.api import courses, dispensing, patients
from compliance.api.authz import Acting, Actor, authorize
from compliance.api.clients import require_scope
from compliance.api.results import _Result
from compliance.api.results_clients import Caller
from compliance.domain.gates import Decision
from compliance.domain.roles import Action, Role
from compliance.errors import InvalidInput


@dataclass(frozen=True)
class EtasuAnswer(_Result):
    """The gate's decision, the patient it is about and the prescription (case) it judged."""

    decision: Decision
    patient: str | None
    case: str | None


def answer(
    session: Session,
    actor: Actor,
    now: datetime,
    caller: Caller | None,
    case: str | None,
    patient: str | None,
    date_of_birth: object,
    prescriber_npi: object,
) -> EtasuAnswer:
    """``actor`` is already allowed ``course.read``; ``caller`` is the key it came through."""

    def need(scope: str) -> None:
        if caller is not None:
            require_scope(caller, scope)

    def may(action: Action) -> None:
        authorize(session, Acting(actor.short_id, actor.on_behalf_of), action, now)

    if case is not None:
        need("dispense:check")
        return EtasuAnswer(dispensing.check_dispense(session, actor, now, case), None, case)
    if patient is None:
        raise InvalidInput("patient", "give a patient, or a case (a prescription id)")
    need("course:read")
    if actor.role is Role.PHARMACIST:
        # A pharmacy reaches a patient only through the prescription in hand.
        if date_of_birth is None or prescriber_npi is None:
            raise InvalidInput(
                "date_of_birth",
                "a pharmacy asking by patient gives the date of birth and the prescriber's NPI"
                " as on the prescription (or the case)",
            )
        need("dispense:check")
        may(Action.PRESCRIPTION_FIND)
        rx = dispensing.find_prescription(
            session, actor, now, patient, date_of_birth, prescriber_npi
        )
        decision = dispensing.check_dispense(session, actor, now, rx.id)
        return EtasuAnswer(decision, rx.patient, rx.id)
    may(Action.PATIENT_READ)
    found = patients.show(session, actor, patient)
    return EtasuAnswer(courses.check_prescribe(session, actor, now, found.id), found.id, None)
