"""A ``Direct`` statement stores and reads exactly what SQLAlchemy's own execution does, on both
backends, for every column type the engine stores: values written one way read back equal the
other way, rows read both ways are equal, and driver errors arrive as SQLAlchemy's classes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc

from compliance.db.base import UTCDateTime
from compliance.db.direct import Direct
from compliance.db.engine import make_engine

METADATA = MetaData()
THINGS = Table(
    "direct_things",
    METADATA,
    Column("id", Uuid(), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("label", String(200)),
    Column("flag", Boolean),
    Column("day", Date),
    Column("at", UTCDateTime()),
    Column("doc", JSON),
    Column("state", String(16)),
)
WITH_DEFAULT = Table(
    "direct_defaults",
    METADATA,
    Column("id", Uuid(), primary_key=True, default=uuid.uuid4),
    Column("n", Integer),
)
COLUMNS = [c.key for c in THINGS.c]
ADD = Direct(insert(THINGS), COLUMNS)
READ = Direct(select(*THINGS.c).where(THINGS.c.n == bindparam("n")).order_by(THINGS.c.id))
MOVE = Direct(
    update(THINGS)
    .where(THINGS.c.id == bindparam("thing"))
    .values(state="moved", at=bindparam("when"), n=THINGS.c.n + 1)
)
COUNT = Direct(select(func.count()).select_from(THINGS))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = (
        str(request.getfixturevalue("empty_sqlite_url"))
        if request.param == "sqlite"
        else str(request.getfixturevalue("empty_pg_url"))
    )
    made = make_engine(url, create=True) if request.param == "sqlite" else make_engine(url)
    METADATA.create_all(made)
    try:
        yield made
    finally:
        made.dispose()


instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.builds(
    lambda d, minutes: d.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
    st.integers(-14 * 60, 14 * 60),
)
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
things = st.fixed_dictionaries(
    {
        "n": st.integers(-(2**31), 2**31 - 1),
        "label": st.none() | texts.map(lambda s: s[:200]),
        "flag": st.none() | st.booleans(),
        "day": st.none() | st.dates(date(1900, 1, 1), date(2200, 1, 1)),
        "at": st.none() | instants,
        "doc": st.dictionaries(texts, documents, max_size=4),
        "state": st.sampled_from(["open", "closed"]),
    }
)


def _row(values: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4(), **values}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=things, second=things)
def test_written_and_read_as_sqlalchemy_does(
    engine: Engine, first: dict[str, Any], second: dict[str, Any]
) -> None:
    mine, theirs = _row(first), _row({**second, "n": first["n"]})
    with engine.begin() as conn:
        ADD.run(conn, mine)
        conn.execute(insert(THINGS), theirs)
        by_core = [tuple(r) for r in conn.execute(READ.statement, {"n": first["n"]})]
        direct = READ.rows(conn, {"n": first["n"]})
        conn.execute(THINGS.delete())
    assert direct == by_core
    stored = {row[0]: row for row in direct}
    for written in (mine, theirs):
        row = dict(zip(COLUMNS, stored[written["id"]], strict=True))
        expected = dict(written)
        if expected["at"] is not None:
            expected["at"] = expected["at"].astimezone(UTC)
        assert row == expected


def test_update_with_literal_values_and_rowcount(engine: Engine) -> None:
    thing = _row(
        {"n": 7, "label": "x", "flag": True, "day": None, "at": None, "doc": {}, "state": "open"}
    )
    when = datetime(2027, 6, 1, 15, 0, 0, 123456, tzinfo=UTC)
    with engine.begin() as conn:
        ADD.run(conn, thing)
        assert MOVE.run(conn, {"thing": thing["id"], "when": when}) == 1
        assert MOVE.run(conn, {"thing": uuid.uuid4(), "when": when}) == 0
        got = conn.execute(select(THINGS.c.state, THINGS.c.at, THINGS.c.n)).one()
        assert COUNT.scalar(conn, {}) == 1
    assert tuple(got) == ("moved", when, 8)


def test_inside_the_callers_transaction(engine: Engine) -> None:
    thing = _row(
        {"n": 1, "label": None, "flag": None, "day": None, "at": None, "doc": {}, "state": "a"}
    )
    with engine.connect() as conn:
        with conn.begin() as tx:
            ADD.run(conn, thing)
            assert COUNT.scalar(conn, {}) == 1
            tx.rollback()
        assert COUNT.scalar(conn, {}) == 0
        conn.rollback()


def test_driver_errors_are_sqlalchemy_errors_and_name_the_problem(engine: Engine) -> None:
    thing = _row(
        {"n": 1, "label": None, "flag": None, "day": None, "at": None, "doc": {}, "state": "a"}
    )
    with engine.connect() as conn:
        ADD.run(conn, thing)
        with pytest.raises(sa_exc.IntegrityError):
            ADD.run(conn, thing)
        conn.rollback()
        with pytest.raises(sa_exc.ArgumentError, match="'thing'"):
            MOVE.run(conn, {"when": None})
        with pytest.raises(ValueError, match="naive"):
            ADD.run(conn, {**thing, "at": datetime(2027, 1, 1)})
        conn.rollback()


def test_statements_sqlalchemy_would_change_are_refused(engine: Engine) -> None:
    with engine.connect() as conn:
        with pytest.raises(TypeError, match="default"):
            Direct(insert(WITH_DEFAULT), ["n"]).run(conn, {"n": 1})
        expanding = select(THINGS.c.id).where(THINGS.c.n.in_(bindparam("ns", expanding=True)))
        with pytest.raises(TypeError, match="expand"):
            Direct(expanding).rows(conn, {"ns": [1, 2]})
        conn.rollback()


def test_cursor_listeners_see_each_statement(engine: Engine) -> None:
    seen: list[tuple[str, str, Any]] = []

    def before(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append(("before", sql, params))

    def after(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
        seen.append(("after", sql, params))

    thing = _row(
        {"n": 3, "label": None, "flag": None, "day": None, "at": None, "doc": {}, "state": "a"}
    )
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        with engine.connect() as conn:
            seen.clear()  # whatever the connection ran on checkout
            ADD.run(conn, thing)
            assert COUNT.scalar(conn, {}) == 1
            conn.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    ours = [(when, sql) for when, sql, _ in seen if "direct_things" in sql]
    assert [when for when, _ in ours] == ["before", "after", "before", "after"]
    assert ours[0][1].startswith("INSERT INTO direct_things")
    assert ours[2][1].startswith("SELECT count(*)")
    with engine.connect() as conn:  # no listener: still runs
        assert COUNT.scalar(conn, {}) == 0
