"""Declarative base with a constraint naming convention and a UTC instant column type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import JSON, DateTime, Dialect, MetaData, String, Table, Uuid
from sqlalchemy.orm import DeclarativeBase, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware instants as UTC and returns them aware; refuses naive values outright."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """On SQLite, the text SQLAlchemy itself writes (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC)
        is read by one C call; anything else, and every other dialect, takes the composed path
        above. Instants are read by the million in whole-population reads, and the composed
        path costs about ten times the parse (``tests/test_utc_datetime.py`` proves the two
        equal)."""
        composed = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or composed is None:
            return composed
        parse = datetime.fromisoformat

        def process(value: Any) -> datetime | None:
            if (
                type(value) is str
                and len(value) == 26
                and value[10] == " "
                and value[19] == "."
                and value[4] == value[7] == "-"
                and value[13] == value[16] == ":"
            ):
                try:
                    return parse(value + "+00:00")
                except ValueError:  # e.g. a zone designator in place of the last digit
                    pass
            return composed(value)

        return process


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (``__table__`` is typed as any ``FromClause``)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


UUIDPk = Annotated[uuid.UUID, mapped_column(primary_key=True, default=uuid.uuid4)]
ShortId = Annotated[str, mapped_column(String(16), unique=True)]
Name = Annotated[str, mapped_column(String(200))]
Status = Annotated[str, mapped_column(String(16))]
Ident = Annotated[str, mapped_column(String(64))]
