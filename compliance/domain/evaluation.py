"""What a gate answers, and the state one evaluation carries while its checks run."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from compliance.domain import reasons as rc
from compliance.domain.facts import CourseFacts, TestRecord
from compliance.domain.timing import Window, today_in, zone_for
from compliance.programs.model import Anchor, CategoryRules, ContraceptionOption, JudgedAt


class Outcome(enum.StrEnum):
    """A gate's answer: allow, refuse, or allow with a flag someone must act on."""

    ALLOW = "ALLOW"
    REFUSE = "REFUSE"
    FLAG = "FLAG"


@dataclass(frozen=True)
class Reason:
    """Why a gate refused or flagged: a stable reason code, its message, what to do next and
    the earliest day it could pass."""

    code: str
    message: str
    next_step: str | None = None
    earliest: date | None = None

    def to_dict(self) -> dict[str, Any]:
        """The reason as JSON data."""
        return {
            "code": self.code,
            "message": self.message,
            "next_step": self.next_step,
            "earliest": self.earliest.isoformat() if self.earliest else None,
        }


@dataclass(frozen=True)
class Decision:
    """A gate's whole answer: the outcome, every reason, the ruleset, the day it was judged
    and the window the step falls in."""

    gate: str
    outcome: Outcome
    reasons: tuple[Reason, ...]
    ruleset_id: str
    evaluated_at: datetime
    today: date
    cycle: int
    window: Window | None = None
    test_id: str | None = None

    @property
    def allowed(self) -> bool:
        """True when the step may go ahead now."""
        return self.outcome is Outcome.ALLOW

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in the order the reasons are listed."""
        return tuple(r.code for r in self.reasons)

    @property
    def earliest(self) -> date | None:
        """The earliest day every dated reason could pass (None when no reason carries a date)."""
        dates = [r.earliest for r in self.reasons if r.earliest is not None]
        return max(dates) if dates else None

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON data, as the CLI, the service and the audit trail show it."""
        return {
            "gate": self.gate,
            "outcome": self.outcome.value,
            "reasons": [r.to_dict() for r in self.reasons],
            "ruleset": self.ruleset_id,
            "evaluated_at": self.evaluated_at.isoformat(),
            "today": self.today.isoformat(),
            "cycle": self.cycle,
            "window": self.window.to_dict() if self.window else None,
            "test": self.test_id,
            "earliest": self.earliest.isoformat() if self.earliest else None,
        }


@dataclass
class Evaluation:
    """One gate's evaluation in progress: the facts, the instant, what has failed so far."""

    facts: CourseFacts
    now: datetime
    pharmacy_zone: str | None
    # The prescription's date: tests are dated against it where the ruleset says so (EU/UK).
    prescription_date: date | None = None
    # A prescription is being dispensed: only tests collected by its date can support it.
    dispensing: bool = False
    reasons: list[Reason] = field(default_factory=list)
    window: Window | None = None
    test: TestRecord | None = None
    stop: bool = False

    def __post_init__(self) -> None:
        self.ruleset = self.facts.ruleset
        self.zone = zone_for(self.ruleset, self.pharmacy_zone, self.facts.prescriber_zone)
        self.today = today_in(self.zone, self.now)
        # The category the patient is judged under: the safe side when none is valid.
        facts = self.facts
        self.category: CategoryRules | None = self.ruleset.judged_category(
            facts.category, facts.category_reason
        )
        if self.prescription_date is None:
            self.prescription_date = self.today

    @property
    def by_prescription_date(self) -> bool:
        """Tests are judged by their age at the prescription's date, not by their own window."""
        rule = self.category.window if self.category else None
        return rule is not None and rule.anchor is Anchor.PRESCRIPTION_DATE

    @property
    def at_request(self) -> bool:
        """The patient's status is judged at the pharmacy's request, not at writing (iPLEDGE):
        a prescription may then be dated before the specimen of the test that supports it."""
        return self.ruleset.prescription.status_judged_at is JudgedAt.REQUEST

    @property
    def options(self) -> tuple[ContraceptionOption, ...]:
        override = self.category.contraception_options if self.category else None
        return override or self.ruleset.contraception.options

    @property
    def lead_in_days(self) -> int:
        own = self.category.contraception_lead_in_days if self.category else None
        return self.ruleset.contraception.lead_in_days if own is None else own

    def add(
        self,
        code: str,
        detail: str | None = None,
        next_step: str | None = None,
        earliest: date | None = None,
    ) -> None:
        if any(r.code == code for r in self.reasons):
            return
        message = rc.MESSAGES[code] + (f": {detail}" if detail else "")
        self.reasons.append(Reason(code, message, next_step, earliest))


Check = Callable[[Evaluation], None]
