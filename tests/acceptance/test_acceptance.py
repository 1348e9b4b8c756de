"""The acceptance run: every timeline, on SQLite and PostgreSQL, each on a fresh database."""

from __future__ import annotations

import pytest

from tests.acceptance import (  # noqa: F401  (they register)
    timelines_ipledge,
    timelines_lenalidomide,
    timelines_programmes,
)
from tests.acceptance.driver import Parties, replay
from tests.acceptance.gaps import GAPS
from tests.acceptance.model import Timeline
from tests.acceptance.registry import build_all

TIMELINES = build_all()
BY_NAME = {t.name: t for t in TIMELINES}


def _param(t: Timeline) -> object:
    marks = [pytest.mark.xfail(reason=GAPS[t.name], strict=True)] if t.name in GAPS else []
    return pytest.param(t.name, id=t.name, marks=marks)


def test_every_gap_names_a_timeline() -> None:
    assert set(GAPS) <= set(BY_NAME), sorted(set(GAPS) - set(BY_NAME))


@pytest.mark.parametrize("name", [_param(t) for t in TIMELINES])
def test_timeline(name: str, timeline_db: tuple[str, Parties]) -> None:
    url, parties = timeline_db
    assert replay(url, parties, BY_NAME[name]) > 0, "a timeline without a checkpoint cannot fail"


DEFINES = {"prescribe": "rx", "authorize": "auth", "find_prescription": "rx", "collect": "label"}
USES = {
    "check_dispense": "rx",
    "authorize": "rx",
    "pickup": "auth",
    "reverse": "auth",
    "result": "label",
}


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_timeline_is_well_formed(name: str) -> None:
    """Every prescription, authorization and specimen a step refers to was made by an earlier
    step, and every timeline has a checkpoint: so a gap fails for the engine's reason, not for
    a slip in the timeline."""
    timeline = BY_NAME[name]
    made: set[tuple[str, object]] = set()
    defaults = {"rx": "rx", "auth": "auth"}
    for step in timeline.steps:
        if step.action in USES:
            key = USES[step.action]
            ref = step.args.get(key, defaults.get(key))
            assert (key, ref) in made, f"{step.describe()}: {key} {ref} not made earlier"
        if step.action in DEFINES and (step.expect is None or step.expect.outcome == "ALLOW"):
            key = DEFINES[step.action]
            made.add((key, step.args.get(key, defaults.get(key))))
    assert any(s.expect is not None for s in timeline.steps), "no checkpoint"
    assert timeline.doc, "every timeline says what it shows and where the documents say it"
