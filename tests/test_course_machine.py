"""The course state machine, from its table: reachability, exits, refusals, no shortcuts and
the diagram."""

from __future__ import annotations

from collections import deque

import pytest
from transitions import MachineError

from compliance.domain import course
from compliance.domain.course import (
    EVENTS,
    OPEN,
    TERMINAL,
    TRANSITIONS,
    CourseState,
    allowed_events,
    mermaid,
    next_state,
)
from compliance.errors import Conflict

S = CourseState
EDGES = {(source, event): dest for event, sources, dest in TRANSITIONS for source in sources}
MISSING = [(state, event) for state in S for event in EVENTS if (state, event) not in EDGES]


def successors(state: CourseState) -> set[CourseState]:
    return {dest for (source, _), dest in EDGES.items() if source is state}


def reachable(start: CourseState) -> set[CourseState]:
    seen, queue = {start}, deque([start])
    while queue:
        for dest in successors(queue.popleft()) - seen:
            seen.add(dest)
            queue.append(dest)
    return seen


def test_table_is_well_formed() -> None:
    assert len(EDGES) == sum(len(sources) for _, sources, _ in TRANSITIONS), "duplicate edge"
    assert set(EVENTS) == {event for event, _, _ in TRANSITIONS}
    assert {S.COMPLETED, S.WITHDRAWN, S.LOST_TO_FOLLOW_UP} == TERMINAL
    assert set(S) - TERMINAL == OPEN


def test_every_state_is_reachable_from_enrolled() -> None:
    assert reachable(S.ENROLLED) == set(S)


@pytest.mark.parametrize("state", sorted(OPEN))
def test_every_open_state_has_a_way_out_and_can_finish(state: CourseState) -> None:
    assert allowed_events(state)
    assert successors(state) - {state}
    assert reachable(state) & TERMINAL


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(state: CourseState) -> None:
    assert allowed_events(state) == []
    assert successors(state) == set()
    for event in EVENTS:
        with pytest.raises(Conflict):
            next_state(state, event)


def test_suspension_never_resumes_by_itself() -> None:
    assert allowed_events(S.SUSPENDED) == ["lose_to_follow_up", "resume", "withdraw"]
    assert next_state(S.SUSPENDED, "resume") is S.PRE_TREATMENT


@pytest.mark.parametrize(
    ("source", "event", "dest"),
    [(source, event, dest) for (source, event), dest in sorted(EDGES.items())],
)
def test_machine_follows_the_table(source: CourseState, event: str, dest: CourseState) -> None:
    assert next_state(source, event) is dest
    assert event in allowed_events(source)


@pytest.mark.parametrize(("state", "event"), MISSING)
def test_events_not_in_the_table_conflict(state: CourseState, event: str) -> None:
    assert event not in allowed_events(state)
    with pytest.raises(Conflict) as info:
        next_state(state, event)
    assert state.value in str(info.value)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.COMPLETED, "prescribe"),
        (S.ENROLLED, "prescribe"),
        (S.SUSPENDED, "authorize"),
        (S.SUSPENDED, "prescribe"),
        (S.PRE_TREATMENT, "dispense"),
        (S.QUALIFIED, "dispense"),
        (S.WITHDRAWN, "resume"),
    ],
)
def test_notable_refusals(state: CourseState, event: str) -> None:
    with pytest.raises(Conflict, match=f"a course that is {state.value} cannot"):
        next_state(state, event)


def test_unknown_event_conflicts() -> None:
    with pytest.raises(Conflict):
        next_state(S.PRE_TREATMENT, "to_completed")
    with pytest.raises(Conflict):
        next_state(S.PRE_TREATMENT, "teleport")


class _Model:
    state: str


def test_no_automatic_to_state_shortcuts() -> None:
    model = _Model()
    course._machine(S.ENROLLED, model)
    names = set(dir(model))
    # the machine did decorate the model with the table's triggers ...
    assert set(EVENTS) <= names
    # ... but with no to_<state> shortcut for any state
    assert not [n for n in names if n.startswith("to_")]
    for state in S:
        assert not hasattr(model, f"to_{state.value}")
    assert model.state == S.ENROLLED.value


def test_model_fires_only_table_events() -> None:
    model = _Model()
    course._machine(S.PRE_TREATMENT, model)
    model.prescribe()  # type: ignore[attr-defined]
    assert model.state == S.QUALIFIED.value
    with pytest.raises(MachineError):
        model.complete()  # type: ignore[attr-defined]
    assert model.state == S.QUALIFIED.value


def test_mermaid_lists_every_transition_and_state() -> None:
    text = mermaid()
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert f"    [*] --> {S.ENROLLED.value}" in lines
    edges = [line for line in lines if ": " in line]
    assert len(edges) == len(EDGES)
    for (source, event), dest in EDGES.items():
        assert f"    {source.value} --> {dest.value}: {event}" in lines
    for state in S:
        assert state.value in text
    for state in TERMINAL:
        assert f"    {state.value} --> [*]" in lines
    for state in OPEN:
        assert f"    {state.value} --> [*]" not in lines


def test_mermaid_title() -> None:
    text = mermaid("Course")
    assert text.startswith("---\ntitle: Course\n---\nstateDiagram-v2\n")
    assert text.endswith("\n")
    assert text.split("---\n", 2)[2] == mermaid()
