"""Party lifecycles (prescriber, pharmacy, staff) as transition tables run by ``transitions``.

A machine is attached per check, never kept on an ORM row, and ``auto_transitions`` is off so no
``to_<state>`` shortcut can skip the table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from transitions import Machine, MachineError

from compliance.errors import Conflict


class PrescriberStatus(enum.StrEnum):
    """A prescriber's certification: only an activated prescriber may prescribe."""

    REGISTERED = "registered"
    ACTIVATED = "activated"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


class PharmacyStatus(enum.StrEnum):
    """A pharmacy's certification: only an activated pharmacy is authorized."""

    REGISTERED = "registered"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"


class StaffStatus(enum.StrEnum):
    """An administrator's, designee's or pharmacist's account."""

    ACTIVE = "active"
    DEACTIVATED = "deactivated"


@dataclass(frozen=True)
class Lifecycle:
    name: str
    states: type[enum.StrEnum]
    transitions: tuple[tuple[str, tuple[str, ...], str], ...]

    def next_state(self, current: str, event: str) -> str:
        """The state ``event`` leads to from ``current``; Conflict when the table forbids it."""
        holder = _Holder()
        machine = Machine(
            model=holder,
            states=[s.value for s in self.states],
            transitions=[
                {"trigger": t, "source": [str(x) for x in src], "dest": str(dst)}
                for t, src, dst in self.transitions
            ],
            initial=str(current),
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        try:
            machine.events[event].trigger(holder)
        except (MachineError, KeyError):
            raise Conflict(f"{self.name} is {current}: cannot {event}") from None
        return str(holder.state)

    def events(self) -> list[str]:
        return sorted({t for t, _, _ in self.transitions})


class _Holder:
    state: str


_PS = PrescriberStatus
PRESCRIBER_LIFECYCLE = Lifecycle(
    "prescriber",
    PrescriberStatus,
    (
        ("activate", (_PS.REGISTERED,), _PS.ACTIVATED),
        ("suspend", (_PS.ACTIVATED,), _PS.SUSPENDED),
        ("reinstate", (_PS.SUSPENDED,), _PS.ACTIVATED),
        ("deactivate", (_PS.REGISTERED, _PS.ACTIVATED, _PS.SUSPENDED), _PS.DEACTIVATED),
    ),
)

_PH = PharmacyStatus
PHARMACY_LIFECYCLE = Lifecycle(
    "pharmacy",
    PharmacyStatus,
    (
        # Re-activating an activated pharmacy is the annual renewal: it moves the expiry forward.
        ("activate", (_PH.REGISTERED, _PH.ACTIVATED, _PH.DEACTIVATED), _PH.ACTIVATED),
        ("deactivate", (_PH.REGISTERED, _PH.ACTIVATED), _PH.DEACTIVATED),
    ),
)

STAFF_LIFECYCLE = Lifecycle(
    "person",
    StaffStatus,
    (("deactivate", (StaffStatus.ACTIVE,), StaffStatus.DEACTIVATED),),
)
