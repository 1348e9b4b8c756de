"""Reading one authorization by its number, for the pharmacy that holds it or the course's side."""

from __future__ import annotations

from sqlalchemy.orm import Session

from compliance.api.authz import Actor, refuse
from compliance.api.courses import authorization_info, check_scope
from compliance.api.dispensing import refuse_not_found
from compliance.api.results_course import AuthorizationInfo
from compliance.db import models as m
from compliance.domain import reasons as rc
from compliance.domain.authorization_number import is_valid, normalise
from compliance.domain.roles import Action, Role
from compliance.errors import InvalidInput


def get_authorization(session: Session, actor: Actor, ref: object) -> AuthorizationInfo:
    """A pharmacist sees only their pharmacy's authorizations; a prescriber (or designee) those
    on their own patients' courses; an administrator any."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("authorization", "must be an authorization number")
    number = normalise(ref)
    if not is_valid(number):
        raise InvalidInput(
            "authorization", f"{ref!r} is not a valid authorization number (21 digits, check digit)"
        )
    found = session.get(m.Authorization, number)
    if found is None:
        raise refuse_not_found(number)
    course = session.get(m.Course, found.course_id)
    assert course is not None
    patient = session.get(m.Patient, course.patient_id)
    assert patient is not None
    if actor.role is Role.PHARMACIST and found.pharmacy_id != actor.pharmacy_uuid:
        raise refuse(Action.COURSE_READ, [rc.OUT_OF_SCOPE], (patient.short_id,))
    if actor.role is Role.PRESCRIBER and course.prescriber_id != actor.uuid:
        raise refuse(Action.COURSE_READ, [rc.OUT_OF_SCOPE], (patient.short_id,))
    check_scope(actor, Action.COURSE_READ, course, patient)
    return authorization_info(session, found, patient.short_id)


__all__ = ["get_authorization"]
