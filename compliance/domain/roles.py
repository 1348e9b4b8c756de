"""Who may do what: one permission table, printed by the docs and the CLI.

The table is data. Scope rules that depend on the subject (a prescriber manages only their own
designees; a designee acts only inside an explicit grant) live in ``authorize`` beside it.
"""

from __future__ import annotations

import enum
from types import MappingProxyType


class Role(enum.StrEnum):
    ADMINISTRATOR = "administrator"
    PRESCRIBER = "prescriber"
    DESIGNEE = "designee"
    PHARMACIST = "pharmacist"


class Action(enum.StrEnum):
    ADMINISTRATOR_CREATE = "administrator.create"
    ADMINISTRATOR_DEACTIVATE = "administrator.deactivate"
    PRESCRIBER_REGISTER = "prescriber.register"
    PRESCRIBER_ACTIVATE = "prescriber.activate"
    PRESCRIBER_SUSPEND = "prescriber.suspend"
    PRESCRIBER_REINSTATE = "prescriber.reinstate"
    PRESCRIBER_DEACTIVATE = "prescriber.deactivate"
    DESIGNEE_REGISTER = "designee.register"
    DESIGNEE_DEACTIVATE = "designee.deactivate"
    GRANT_CREATE = "grant.create"
    GRANT_REVOKE = "grant.revoke"
    PHARMACY_REGISTER = "pharmacy.register"
    PHARMACY_ACTIVATE = "pharmacy.activate"
    PHARMACY_DEACTIVATE = "pharmacy.deactivate"
    PHARMACIST_REGISTER = "pharmacist.register"
    PHARMACIST_DEACTIVATE = "pharmacist.deactivate"
    PATIENT_REGISTER = "patient.register"
    PATIENT_UPDATE = "patient.update"
    PATIENT_READ = "patient.read"
    PARTY_READ = "party.read"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_CHECKPOINT = "audit.checkpoint"


_A, _P, _D, _R = Role.ADMINISTRATOR, Role.PRESCRIBER, Role.DESIGNEE, Role.PHARMACIST

PERMISSIONS: MappingProxyType[Action, frozenset[Role]] = MappingProxyType(
    {
        Action.ADMINISTRATOR_CREATE: frozenset({_A}),
        Action.ADMINISTRATOR_DEACTIVATE: frozenset({_A}),
        Action.PRESCRIBER_REGISTER: frozenset({_A}),
        Action.PRESCRIBER_ACTIVATE: frozenset({_A}),
        Action.PRESCRIBER_SUSPEND: frozenset({_A}),
        Action.PRESCRIBER_REINSTATE: frozenset({_A}),
        Action.PRESCRIBER_DEACTIVATE: frozenset({_A}),
        Action.DESIGNEE_REGISTER: frozenset({_A, _P}),
        Action.DESIGNEE_DEACTIVATE: frozenset({_A}),
        Action.GRANT_CREATE: frozenset({_A, _P}),
        Action.GRANT_REVOKE: frozenset({_A, _P}),
        Action.PHARMACY_REGISTER: frozenset({_A}),
        Action.PHARMACY_ACTIVATE: frozenset({_A}),
        Action.PHARMACY_DEACTIVATE: frozenset({_A}),
        Action.PHARMACIST_REGISTER: frozenset({_A}),
        Action.PHARMACIST_DEACTIVATE: frozenset({_A}),
        Action.PATIENT_REGISTER: frozenset({_A, _P, _D}),
        Action.PATIENT_UPDATE: frozenset({_A, _P, _D}),
        Action.PATIENT_READ: frozenset({_A, _P, _D, _R}),
        Action.PARTY_READ: frozenset({_A, _P, _D, _R}),
        Action.AUDIT_READ: frozenset({_A}),
        Action.AUDIT_VERIFY: frozenset({_A}),
        Action.AUDIT_CHECKPOINT: frozenset({_A}),
    }
)

# Actions a designee performs only on behalf of a prescriber, inside a grant that lists them.
DELEGABLE: frozenset[Action] = frozenset(a for a, roles in PERMISSIONS.items() if _D in roles)

# Actions that change nothing: refusals are audited, successes are not.
READ_ONLY: frozenset[Action] = frozenset(
    {Action.PATIENT_READ, Action.PARTY_READ, Action.AUDIT_READ, Action.AUDIT_VERIFY}
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
