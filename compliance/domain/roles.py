"""Who may do what: one permission table, printed by the docs and the CLI.

The table is data. Scope rules that depend on the subject (a prescriber manages only their own
designees; a designee acts only inside an explicit grant) live in ``authorize`` beside it.
"""

from __future__ import annotations

import enum
from types import MappingProxyType


class Role(enum.StrEnum):
    """Who may act: each role's permitted actions are listed in the permission table."""

    ADMINISTRATOR = "administrator"
    PRESCRIBER = "prescriber"
    DESIGNEE = "designee"
    PHARMACIST = "pharmacist"
    PATIENT = "patient"  # acts only on their own course: comprehension, confirming methods


class Action(enum.StrEnum):
    ADMINISTRATOR_CREATE = "administrator.create"
    ADMINISTRATOR_DEACTIVATE = "administrator.deactivate"
    PRESCRIBER_REGISTER = "prescriber.register"
    PRESCRIBER_ACTIVATE = "prescriber.activate"
    PRESCRIBER_SUSPEND = "prescriber.suspend"
    PRESCRIBER_REINSTATE = "prescriber.reinstate"
    PRESCRIBER_DEACTIVATE = "prescriber.deactivate"
    PRESCRIBER_ZONE_SET = "prescriber.set_zone"
    DESIGNEE_REGISTER = "designee.register"
    DESIGNEE_DEACTIVATE = "designee.deactivate"
    GRANT_CREATE = "grant.create"
    GRANT_REVOKE = "grant.revoke"
    GRANT_AMEND = "grant.amend"
    PHARMACY_REGISTER = "pharmacy.register"
    PHARMACY_ACTIVATE = "pharmacy.activate"
    PHARMACY_DEACTIVATE = "pharmacy.deactivate"
    PHARMACIST_REGISTER = "pharmacist.register"
    PHARMACIST_DEACTIVATE = "pharmacist.deactivate"
    PATIENT_REGISTER = "patient.register"
    PATIENT_UPDATE = "patient.update"
    PATIENT_CORRECT = "patient.correct"
    PATIENT_READ = "patient.read"
    PARTY_READ = "party.read"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    RULES_SCHEDULE = "rules.schedule"
    RULES_IMPACT = "rules.impact"
    CLOCK_OVERRIDE_SET = "settings.clock_override"
    HOME_TESTING_SET = "prescriber.home_testing"
    COURSE_ENROL = "course.enrol"
    COURSE_READ = "course.read"
    CATEGORY_ASSIGN = "course.category"
    TEST_SCHEDULE_SET = "course.test_schedule"
    CONSENT_RECORD = "course.consent"
    COUNSELLING_RECORD = "course.counselling"
    CONTRACEPTION_RECORD = "course.contraception"
    CONTRACEPTION_CONFIRM = "course.contraception_confirm"
    COMPREHENSION_RECORD = "course.comprehension"
    TEST_RECORD = "course.test"
    PATIENT_CONFIRM = "course.confirm_patient"
    PRESCRIBE = "course.prescribe"
    TREATMENT_END = "course.end"
    PREGNANCY_REPORT = "course.pregnancy"
    COURSE_RESUME = "course.resume"
    COURSE_WITHDRAW = "course.withdraw"
    COURSE_LOST = "course.lost"
    COURSE_MIGRATE = "course.migrate"
    PRESCRIPTION_FIND = "dispense.find"
    AUTHORIZATION_REQUEST = "dispense.authorize"
    AUTHORIZATION_REVERSE = "dispense.reverse"
    DISPENSE_RECORD = "dispense.record"
    CLIENT_ADD = "client.add"
    CLIENT_ROTATE = "client.rotate"
    CLIENT_REVOKE = "client.revoke"
    CLIENT_READ = "client.read"


_A, _P, _D, _R = Role.ADMINISTRATOR, Role.PRESCRIBER, Role.DESIGNEE, Role.PHARMACIST
_PT = Role.PATIENT

PERMISSIONS: MappingProxyType[Action, frozenset[Role]] = MappingProxyType(
    {
        Action.ADMINISTRATOR_CREATE: frozenset({_A}),
        Action.ADMINISTRATOR_DEACTIVATE: frozenset({_A}),
        Action.PRESCRIBER_REGISTER: frozenset({_A}),
        Action.PRESCRIBER_ACTIVATE: frozenset({_A}),
        Action.PRESCRIBER_SUSPEND: frozenset({_A}),
        Action.PRESCRIBER_REINSTATE: frozenset({_A}),
        Action.PRESCRIBER_DEACTIVATE: frozenset({_A}),
        Action.PRESCRIBER_ZONE_SET: frozenset({_A}),
        Action.DESIGNEE_REGISTER: frozenset({_A, _P}),
        Action.DESIGNEE_DEACTIVATE: frozenset({_A}),
        Action.GRANT_CREATE: frozenset({_A, _P}),
        Action.GRANT_REVOKE: frozenset({_A, _P}),
        Action.GRANT_AMEND: frozenset({_A, _P}),
        Action.PHARMACY_REGISTER: frozenset({_A}),
        Action.PHARMACY_ACTIVATE: frozenset({_A}),
        Action.PHARMACY_DEACTIVATE: frozenset({_A}),
        Action.PHARMACIST_REGISTER: frozenset({_A}),
        Action.PHARMACIST_DEACTIVATE: frozenset({_A}),
        Action.PATIENT_REGISTER: frozenset({_A, _P, _D}),
        Action.PATIENT_UPDATE: frozenset({_A, _P, _D}),
        Action.PATIENT_CORRECT: frozenset({_A, _P, _D}),
        Action.PATIENT_READ: frozenset({_A, _P, _D}),
        Action.PARTY_READ: frozenset({_A, _P, _D, _R}),
        Action.AUDIT_READ: frozenset({_A}),
        Action.AUDIT_VERIFY: frozenset({_A}),
        Action.AUDIT_CHECKPOINT: frozenset({_A}),
        Action.RULES_SCHEDULE: frozenset({_A}),
        Action.RULES_IMPACT: frozenset({_A, _P}),
        Action.CLOCK_OVERRIDE_SET: frozenset({_A}),
        Action.HOME_TESTING_SET: frozenset({_P}),
        Action.COURSE_ENROL: frozenset({_P, _D}),
        Action.COURSE_READ: frozenset({_A, _P, _D, _R, _PT}),
        Action.CATEGORY_ASSIGN: frozenset({_P, _D}),
        Action.TEST_SCHEDULE_SET: frozenset({_P, _D}),
        Action.CONSENT_RECORD: frozenset({_P, _D}),
        Action.COUNSELLING_RECORD: frozenset({_P, _D}),
        Action.CONTRACEPTION_RECORD: frozenset({_P, _D}),
        Action.CONTRACEPTION_CONFIRM: frozenset({_PT}),
        Action.COMPREHENSION_RECORD: frozenset({_PT}),
        Action.TEST_RECORD: frozenset({_P, _D}),
        Action.PATIENT_CONFIRM: frozenset({_P, _D}),
        Action.PRESCRIBE: frozenset({_P}),
        Action.TREATMENT_END: frozenset({_P}),
        Action.PREGNANCY_REPORT: frozenset({_P, _D, _R, _PT}),
        Action.COURSE_RESUME: frozenset({_P}),
        Action.COURSE_WITHDRAW: frozenset({_A, _P}),
        Action.COURSE_LOST: frozenset({_A, _P}),
        Action.COURSE_MIGRATE: frozenset({_A}),
        Action.PRESCRIPTION_FIND: frozenset({_R}),
        Action.AUTHORIZATION_REQUEST: frozenset({_R}),
        Action.AUTHORIZATION_REVERSE: frozenset({_R}),
        Action.DISPENSE_RECORD: frozenset({_R}),
        Action.CLIENT_ADD: frozenset({_A}),
        Action.CLIENT_ROTATE: frozenset({_A}),
        Action.CLIENT_REVOKE: frozenset({_A}),
        Action.CLIENT_READ: frozenset({_A}),
    }
)

# Actions a designee performs only on behalf of a prescriber, inside a grant that lists them.
DELEGABLE: frozenset[Action] = frozenset(a for a, roles in PERMISSIONS.items() if _D in roles)

# Actions that change nothing: refusals are audited, successes are not.
READ_ONLY: frozenset[Action] = frozenset(
    {
        Action.PATIENT_READ,
        Action.PARTY_READ,
        Action.AUDIT_READ,
        Action.AUDIT_VERIFY,
        Action.COURSE_READ,
        Action.RULES_IMPACT,
        Action.PRESCRIPTION_FIND,
        Action.CLIENT_READ,
    }
)


def allowed(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]


def permission_rows() -> list[tuple[str, list[bool]]]:
    """The table as rows of (action, allowed per role in ``Role`` order), for docs and the CLI."""
    return [(a.value, [r in PERMISSIONS[a] for r in Role]) for a in Action]


def permission_markdown() -> str:
    roles = list(Role)
    lines = ["| action | " + " | ".join(r.value for r in roles) + " |"]
    lines.append("|---|" + "---|" * len(roles))
    for action, flags in permission_rows():
        cells = " | ".join("yes" if f else "-" for f in flags)
        lines.append(f"| `{action}` | {cells} |")
    return "\n".join(lines) + "\n"
