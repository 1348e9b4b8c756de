"""The treatment course as a state machine: states an Enum, transitions a table, run by
``transitions`` with no automatic ``to_<state>`` shortcuts.

The engine decides *whether* a step may happen (gates, with reasons) before it fires an event;
the machine only says *where* an allowed event leads, and refuses events the table lacks.
"""

from __future__ import annotations

import enum
import threading
from functools import cache, lru_cache

from transitions import Machine, MachineError

from compliance.errors import Conflict


class CourseState(enum.StrEnum):
    """The states of a treatment course's machine, from enrolment to closure."""

    ENROLLED = "enrolled"  # course opened; category not yet assigned
    PRE_TREATMENT = "pre_treatment"  # qualifying for the first (or, after a change, next) Rx
    QUALIFIED = "qualified"  # a prescription passed the gate for the current cycle
    AUTHORIZED = "authorized"  # a pharmacy holds a dispense authorization for it
    DISPENSED = "dispensed"  # picked up; the next cycle has begun
    TREATMENT_ENDED = "treatment_ended"  # last dose recorded
    POST_TREATMENT = "post_treatment"  # the post-treatment month of contraception and testing
    COMPLETED = "completed"
    SUSPENDED = "suspended"  # positive test or reported pregnancy; never resumes by itself
    WITHDRAWN = "withdrawn"
    LOST_TO_FOLLOW_UP = "lost_to_follow_up"


S = CourseState
TERMINAL = frozenset({S.COMPLETED, S.WITHDRAWN, S.LOST_TO_FOLLOW_UP})
OPEN = frozenset(set(S) - TERMINAL)
TREATING = frozenset({S.PRE_TREATMENT, S.QUALIFIED, S.AUTHORIZED, S.DISPENSED})
_ANY_OPEN = tuple(sorted(OPEN))
_BEFORE_END = (
    S.ENROLLED,
    S.PRE_TREATMENT,
    S.QUALIFIED,
    S.AUTHORIZED,
    S.DISPENSED,
    S.TREATMENT_ENDED,
    S.POST_TREATMENT,
)

# (event, sources, destination)
TRANSITIONS: tuple[tuple[str, tuple[CourseState, ...], CourseState], ...] = (
    ("assign_category", (S.ENROLLED,), S.PRE_TREATMENT),
    ("change_category", (S.PRE_TREATMENT, S.QUALIFIED, S.DISPENSED), S.PRE_TREATMENT),
    ("prescribe", (S.PRE_TREATMENT, S.QUALIFIED, S.DISPENSED), S.QUALIFIED),
    ("authorize", (S.QUALIFIED,), S.AUTHORIZED),
    ("reverse", (S.AUTHORIZED,), S.QUALIFIED),
    ("dispense", (S.AUTHORIZED,), S.DISPENSED),
    ("end_treatment", (S.QUALIFIED, S.DISPENSED), S.TREATMENT_ENDED),
    ("start_post_treatment", (S.TREATMENT_ENDED,), S.POST_TREATMENT),
    ("complete", (S.TREATMENT_ENDED, S.POST_TREATMENT), S.COMPLETED),
    ("suspend", _BEFORE_END, S.SUSPENDED),
    ("resume", (S.SUSPENDED,), S.PRE_TREATMENT),
    ("withdraw", _ANY_OPEN, S.WITHDRAWN),
    ("lose_to_follow_up", _ANY_OPEN, S.LOST_TO_FOLLOW_UP),
)

EVENTS = tuple(sorted({event for event, _, _ in TRANSITIONS}))


class _Course:
    state: str


def _machine(initial: CourseState, model: object) -> Machine:
    return Machine(
        model=model,
        states=[s.value for s in CourseState],
        transitions=[
            {"trigger": e, "source": [s.value for s in src], "dest": dst.value}
            for e, src, dst in TRANSITIONS
        ],
        initial=initial.value,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )


@cache
def _table_machine() -> Machine:
    """The table as one machine with no model of its own; a model joins it per lookup."""
    return _machine(CourseState.ENROLLED, [])


_LOOKUP = threading.Lock()  # a machine's model list is not safe to change from two threads


@lru_cache(maxsize=1024)
def _destination(current: CourseState, event: str) -> CourseState | None:
    """The machine's answer for one (state, event), asked once: the table never changes."""
    course = _Course()
    with _LOOKUP:
        machine = _table_machine()
        machine.add_model(course, initial=current.value)
        try:
            machine.events[event].trigger(course)
        except (MachineError, KeyError):
            return None
        finally:
            machine.remove_model(course)
    return CourseState(course.state)


def next_state(current: CourseState, event: str) -> CourseState:
    """Where ``event`` leads from ``current``; Conflict when the table has no such transition."""
    dest = _destination(current, event)
    if dest is None:
        raise Conflict(f"a course that is {current.value} cannot {event.replace('_', ' ')}")
    return dest


def allowed_events(current: CourseState) -> list[str]:
    return sorted(e for e, sources, _ in TRANSITIONS if current in sources)


def mermaid(title: str | None = None) -> str:
    """The machine as a Mermaid state diagram, generated from the same table."""
    lines = ["stateDiagram-v2"]
    if title:
        lines.insert(0, f"---\ntitle: {title}\n---")
    lines.append(f"    [*] --> {S.ENROLLED.value}")
    for event, sources, dest in TRANSITIONS:
        for source in sources:
            lines.append(f"    {source.value} --> {dest.value}: {event}")
    for state in sorted(TERMINAL):
        lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines) + "\n"
