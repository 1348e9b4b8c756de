"""The one exception tree of the library.

Every error carries a stable ``code`` and the CLI exit code that represents it, so an embedding
host and a shell script can both branch on the kind of failure without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the domain's decision; errors import nothing at run time
    from compliance.domain.evaluation import Decision


class ComplianceError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1
    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message}


class InvalidInput(ComplianceError):
    """A value given by the caller is malformed or out of range; nothing was written."""

    exit_code = 2
    code = "INVALID_INPUT"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "field": self.field}


class Refused(ComplianceError):
    """The request was understood and refused; the refusal is recorded in the audit trail."""

    exit_code = 3
    code = "REFUSED"

    def __init__(
        self,
        message: str,
        reasons: Sequence[str],
        *,
        subjects: Sequence[str] = (),
        on_behalf_of: str | None = None,
        ruleset_id: str | None = None,
        state: str | None = None,
        decision: Decision | None = None,
    ) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)
        # What the refused request was about, for whom, under which ruleset, in which state,
        # and the full decision: all go into the audit event that records the refusal.
        self.subjects = tuple(subjects)
        self.on_behalf_of = on_behalf_of
        self.ruleset_id = ruleset_id
        self.state = state
        self.decision = decision

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error": self.code,
            "message": self.message,
            "reasons": list(self.reasons),
        }
        if self.decision is not None:
            body["decision"] = self.decision.to_dict()
        return body


class NotPermitted(Refused):
    """The acting person may not perform this action (unknown, inactive, or wrong role)."""

    exit_code = 4
    code = "NOT_PERMITTED"


class Unauthenticated(ComplianceError):
    """No credential, or one that is unknown, expired or revoked (the HTTP service's 401)."""

    exit_code = 4
    code = "UNAUTHENTICATED"

    def __init__(self, message: str, reasons: Sequence[str]) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "reasons": list(self.reasons)}


class NotFound(ComplianceError):
    """A referenced record does not exist."""

    exit_code = 5
    code = "NOT_FOUND"

    def __init__(self, kind: str, ref: str) -> None:
        super().__init__(f"{kind} not found: {ref}")
        self.kind = kind
        self.ref = ref


class Conflict(ComplianceError):
    """The request contradicts the stored state (duplicate, or a transition not allowed now)."""

    exit_code = 6
    code = "CONFLICT"


class AuditVerificationFailed(ComplianceError):
    """The audit trail does not verify: some chain was altered."""

    exit_code = 7
    code = "AUDIT_BROKEN"


class DatabaseNotReady(ComplianceError):
    """The database is unreachable, or its schema is not at the version this code needs."""

    exit_code = 8
    code = "DATABASE_NOT_READY"


class Busy(ComplianceError):
    """A transient lock or serialization conflict persisted through every retry."""

    exit_code = 9
    code = "BUSY"


class ExpectationFailed(ComplianceError):
    """A simulated timeline ran, but an expectation written in it did not hold."""

    exit_code = 10
    code = "EXPECTATION_FAILED"

    def __init__(self, message: str, events: Sequence[int]) -> None:
        super().__init__(message)
        self.events = tuple(events)

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "events": list(self.events)}


#: Exit code of a check command (``course check``, ``dispense check``) whose answer is REFUSE.
#: The check itself succeeded and wrote nothing, so it is not ``Refused`` (3); scripts branch on it.
CHECK_REFUSE_EXIT = 11

EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (0, "OK", "success"),
    (1, ComplianceError.code, "unexpected internal error"),
    (2, InvalidInput.code, "invalid input or usage: the message names the field and the problem"),
    (3, Refused.code, "refused by the programme rules (reason codes listed)"),
    (4, NotPermitted.code, "the acting person may not do this (unknown, inactive, wrong role)"),
    (5, NotFound.code, "a referenced record does not exist"),
    (6, Conflict.code, "conflicts with stored state (duplicate, transition not allowed)"),
    (7, AuditVerificationFailed.code, "audit verification failed"),
    (8, DatabaseNotReady.code, "database unreachable or not migrated to the current schema"),
    (9, Busy.code, "database busy: lock or serialization conflict after retries"),
    (
        10,
        ExpectationFailed.code,
        "a simulated timeline ran, but an expectation written in it did not hold (the events "
        "are named)",
    ),
    (
        CHECK_REFUSE_EXIT,
        "CHECK_REFUSE",
        "a check command (`course check`, `dispense check`) answered REFUSE; it changed nothing "
        "and printed every reason (ALLOW exits 0)",
    ),
)
