"""Training databases driven through the public API on a simulated clock.

Shared by the Quickstart demonstration and the timeline simulator, so both build parties and
move time the same way, and every event they write carries the simulated and the real time.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from compliance.api.service import Compliance
from compliance.clock import FixedClock
from compliance.domain.gates import Decision
from compliance.domain.validate import npi_with_check_digit


def fresh_npi() -> str:
    """A random, check-digit-valid NPI: training parties must not collide across runs."""
    return npi_with_check_digit("1" + "".join(secrets.choice("0123456789") for _ in range(8)))


def fresh_ncpdp() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(7))


class SimulatedTime:
    """A second handle on a training database whose clock stands still until moved.

    It shares the engine of ``app``; closing ``app`` closes it too.
    """

    def __init__(self, app: Compliance, start: datetime) -> None:
        self.clock = FixedClock(start)
        self.app = Compliance(app.engine, self.clock, simulated=True)

    def now(self) -> datetime:
        return self.clock.now()

    def move_to(self, instant: datetime) -> None:
        self.clock.set(instant)


def describe(decision: Decision) -> str:
    """A gate decision on one line: outcome, codes, and the window it judged."""
    codes = ", ".join(decision.codes) or "all requirements met"
    window = (
        f" [window {decision.window.first_day} to {decision.window.last_day}]"
        if decision.window
        else ""
    )
    return f"{decision.outcome.value} ({codes}){window}"
