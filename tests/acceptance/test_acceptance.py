"""The acceptance run: every timeline, on SQLite and PostgreSQL, each on a fresh database."""

from __future__ import annotations

import pytest

from tests.acceptance import timelines_ipledge, timelines_programmes  # noqa: F401  (they register)
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
