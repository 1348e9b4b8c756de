"""``UTCDateTime`` reads SQLite's stored text through one C call where that text is what
SQLAlchemy writes; the result is the composed path's (SQLAlchemy's parse, then the column's own
conversion to UTC) for every instant written and for any other text a tampered or foreign
database could hold: the same value, or the same kind of error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.types import TypeDecorator

from compliance.db.base import UTCDateTime

DIALECT = sqlite.dialect()
COLUMN = UTCDateTime()
FAST = COLUMN.dialect_impl(DIALECT).result_processor(DIALECT, None)
COMPOSED = TypeDecorator.result_processor(COLUMN.dialect_impl(DIALECT), DIALECT, None)
WRITE = COLUMN.dialect_impl(DIALECT).bind_processor(DIALECT)

instants = st.datetimes(
    min_value=datetime(1, 1, 1, 14), max_value=datetime(9999, 12, 31, 10)
).flatmap(
    lambda d: st.integers(-14 * 60, 14 * 60).map(
        lambda m: d.replace(tzinfo=timezone(timedelta(minutes=m)))
    )
)


def _outcome(process: Any, value: object) -> tuple[str, object]:
    try:
        got = process(value)
    except Exception as error:  # the kind of error is what is compared
        return "error", type(error)
    return "value", (got, None if got is None else got.tzinfo)


@settings(max_examples=400, deadline=None)
@given(instants)
def test_every_instant_written_reads_back_as_the_composed_path_reads_it(moment: datetime) -> None:
    stored = WRITE(moment)
    assert isinstance(stored, str)
    assert _outcome(FAST, stored) == _outcome(COMPOSED, stored)
    assert FAST(stored) == moment
    assert FAST(stored).tzinfo is UTC


TEMPLATE = "2027-06-01 15:00:00.123456"
_ALPHABET = "0123456789 -:.,+TWZz\x00é"


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(TEMPLATE) - 1), st.sampled_from(_ALPHABET)),
        min_size=1,
        max_size=4,
    )
)
def test_altered_text_of_the_same_shape_reads_as_the_composed_path(
    changes: list[tuple[int, str]],
) -> None:
    """Text of the stored length with characters replaced: a week date, a comma, a missing
    separator, an offset where the fraction was."""
    chars = list(TEMPLATE)
    for at, char in changes:
        chars[at] = char
    text = "".join(chars)
    assert _outcome(FAST, text) == _outcome(COMPOSED, text)


@given(st.one_of(st.none(), st.text(max_size=40), st.integers(), st.binary(max_size=30)))
def test_any_other_value_reads_as_the_composed_path(value: object) -> None:
    assert _outcome(FAST, value) == _outcome(COMPOSED, value)


def test_known_shapes() -> None:
    for text in (
        "2027-W22-1 15:00:00.123456",  # an ISO week date
        "2027-06-01 15:00:00,123456",
        "2027-06-01 15:00:00.12345Z",  # the shape of the stored text, with a zone designator
        "2027-06-01T15:00:00.123456",
        "2027-06-01 15:00:00",
        "2027-06-01 15:00:00.123456+02:00",
        "2027-06-01",
    ):
        assert _outcome(FAST, text) == _outcome(COMPOSED, text), text


def test_other_dialects_keep_the_composed_path() -> None:
    dialect = PGDialect_psycopg()
    process = COLUMN.dialect_impl(dialect).result_processor(dialect, None)
    aware = datetime(2027, 6, 1, 17, 0, tzinfo=timezone(timedelta(hours=2)))
    assert process(aware) == aware and process(aware).tzinfo is UTC
