"""The worklist reads the facts of many courses in a few queries per chunk (``load_many``): the
facts must be exactly those ``load`` reads one course at a time, for courses in every state and
across chunk boundaries, on both backends."""

from __future__ import annotations

import pytest
from rich.console import Console
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from benchmarks.generate import generate
from compliance.db import course_facts as cf
from compliance.db import models as m
from compliance.db.engine import make_engine
from compliance.db.rows import COURSE_COLUMNS, CourseRow
from tests.conftest import next_npi
from tests.test_timelines_mechanics import (
    LEGACY,
    STARTS,
    Timeline,
    monthly_visit,
    pcgp_first_dispense,
)


@pytest.mark.parametrize("chunk", [2, 500])
def test_bulk_facts_are_the_single_course_facts(
    db_url: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = Timeline(db_url, STARTS[LEGACY])
    app, prs = t.app, t.prs
    dispensed = pcgp_first_dispense(t, "Ana")
    ended = pcgp_first_dispense(t, "Bea")
    monthly = pcgp_first_dispense(t, "Cleo")
    t.day(50)
    app.end_treatment(prs, ended, t.date(50))
    monthly_visit(t, monthly, 50)
    app.prescribe(prs, monthly, 30)
    pregnant = app.register_patient(prs, "Dora", "1999-01-01").patient.id
    app.enrol(prs, pregnant)
    app.report_pregnancy(prs, pregnant)
    other = app.register_prescriber(
        t.world.admin.id, "Dr Zoned", next_npi(), time_zone="Asia/Tokyo"
    )
    app.activate_prescriber(t.world.admin.id, other.id)
    zoned = app.register_patient(other.id, "Emi", "1998-02-02").patient.id
    app.enrol(other.id, zoned)
    assert dispensed and zoned

    monkeypatch.setattr(cf, "CHUNK", chunk)
    with Session(app.engine) as session:
        courses = list(session.execute(select(m.Course).order_by(m.Course.created_at)).scalars())
        assert len(courses) == 5
        single = [cf.load(session, c) for c in courses]
        bulk = list(cf.load_many(session, courses))
    assert bulk == single
    assert {f.state.value for f in bulk} >= {"dispensed", "treatment_ended", "qualified"}
    assert {f.prescriber_zone for f in bulk} == {None, "Asia/Tokyo"}
    t.app.close()


@pytest.fixture(
    params=["empty_sqlite_url", pytest.param("empty_pg_url", marks=pytest.mark.postgres)]
)
def generated_url(request: pytest.FixtureRequest) -> str:
    """A population written by the benchmark generator (as ``rules impact`` is measured on)."""
    url = str(request.getfixturevalue(request.param))
    generate(url, 40, 800, workers=1, replace=True, console=Console(quiet=True))
    return url


def test_bulk_facts_of_a_generated_population(generated_url: str) -> None:
    """Every course of a generated population, read in chunks that do not divide it, as plain
    rows (as the dry run reads them) and as ORM courses: the same facts as ``load``."""
    engine = make_engine(generated_url, create=False)
    try:
        with Session(engine) as session:
            courses = list(session.execute(select(m.Course).order_by(m.Course.id)).scalars())
            rows = [CourseRow(*(getattr(c, name) for name in COURSE_COLUMNS)) for c in courses]
            single = [cf.load(session, c) for c in courses]
            assert list(cf.load_many(session, courses, 7)) == single
            assert list(cf.load_many(session, rows, 500)) == single
            # An authorization naming a prescription outside the chunk (not written by the
            # engine; the bulk read names it as the join does): read on its own, then undone.
            first, second = courses[0], courses[1]
            theirs = session.execute(
                select(m.Prescription.id, m.Prescription.short_id)
                .where(m.Prescription.course_id == second.id)
                .order_by(m.Prescription.seq)
                .limit(1)
            ).one()
            session.execute(
                update(m.Authorization)
                .where(m.Authorization.course_id == first.id)
                .values(prescription_id=theirs.id)
            )
            moved = cf.load(session, first)
            assert {a.prescription_id for a in moved.authorizations} == {theirs.short_id}
            assert list(cf.load_many(session, [first], 1)) == [moved]
            session.rollback()
    finally:
        engine.dispose()
    assert len(single) == 40
    assert all(f.authorizations and f.prescriptions and f.consents for f in single)
