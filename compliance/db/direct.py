"""Statements run on the driver's own cursor, inside the session's transaction.

SQLAlchemy spends about 30-45 microseconds of Python on each statement it runs (execution
context, parameter and result set-up, row objects, events) on top of the driver's own work; a
dispense authorization runs about 16, which made that cost most of the engine's client CPU.
A ``Direct`` statement is a Core statement compiled once per dialect by SQLAlchemy, whose
parameters go through the same bind processors SQLAlchemy would use and whose rows come back
as plain tuples after the same result processors, run on the DBAPI cursor of the connection
the session already holds (so in the same transaction, after the same BEGIN). Errors from the
driver are raised as SQLAlchemy's own exception classes, so retries and error handling treat
them alike.

Only statements that SQLAlchemy would send as they are qualify: no Python-side column
defaults to compute, no expanding ``IN`` lists; the constructor's check refuses anything else
at the first execution. On a session, pending ORM changes are flushed first, as its own
``execute`` does. Of the connection events only ``before_cursor_execute`` and
``after_cursor_execute`` fire (with no execution context), when something listens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Select

Processor = Callable[[Any], Any] | None
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str  # the placeholder's name in the compiled statement
    key: str  # the key the caller's parameters give it by
    default: Any  # a value written into the statement (``values(state="x")``)
    required: bool
    process: Processor


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    parameters: tuple[_Parameter, ...]
    positional: bool


class Direct:
    """A Core statement to run many times on the driver's cursor (see the module's note).

    ``columns`` names the columns an INSERT or UPDATE without ``values()`` writes (SQLAlchemy
    derives them from the first parameters it is given; here they are fixed once)."""

    __slots__ = ("_columns", "_compiled", "_results", "statement")

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._columns = None if columns is None else list(columns)
        self._compiled: dict[str, _Compiled] = {}
        self._results: dict[tuple[str, tuple[Any, ...]], tuple[Processor, ...] | None] = {}

    # --- running -----------------------------------------------------------------------------

    def rows(self, session: Session | Connection, params: Mapping[str, Any]) -> list[Row]:
        """Every row of a query, as tuples in the statement's column order."""
        connection = connection_of(session)
        cursor = self._execute(connection, params)
        try:
            found = cursor.fetchall()
            processors = self._processors(connection.dialect, cursor)
        finally:
            cursor.close()
        if processors is None:
            return found  # type: ignore[no-any-return]
        pairs = tuple(enumerate(processors))
        out: list[Row] = []
        for row in found:
            values = list(row)
            for i, process in pairs:
                if process is not None:
                    values[i] = process(values[i])
            out.append(tuple(values))
        return out

    def first(self, session: Session | Connection, params: Mapping[str, Any]) -> Row | None:
        """The first row of a query, or None."""
        found = self.rows(session, params)
        return found[0] if found else None

    def scalar(self, session: Session | Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.first(session, params)
        return None if row is None else row[0]

    def run(self, session: Session | Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        cursor = self._execute(connection_of(session), params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    # --- the compiled form ----------------------------------------------------------------

    def _form(self, dialect: Dialect) -> _Compiled:
        known = self._compiled.get(dialect.name)
        if known is None:
            known = self._compiled[dialect.name] = self._compile(dialect)
        return known

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self._columns)
        assert isinstance(compiled, SQLCompiler)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise TypeError(
                "a Direct statement must be given every column with a Python-side default: "
                + ", ".join(c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch))
            )
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise TypeError("a Direct statement cannot expand parameters at execution")
        names = compiled.positiontup if compiled.positional else list(compiled.binds)
        assert names is not None
        parameters = []
        for name in names:
            bind = compiled.binds[name]
            parameters.append(
                _Parameter(
                    name,
                    bind.key,
                    bind.effective_value,
                    bool(bind.required),
                    bind.type.dialect_impl(dialect).bind_processor(dialect),
                )
            )
        return _Compiled(compiled.string, tuple(parameters), bool(compiled.positional))

    def _arguments(self, form: _Compiled, params: Mapping[str, Any]) -> Any:
        values: list[Any] = []
        for p in form.parameters:
            if p.key in params:
                value = params[p.key]
            elif p.required:
                raise exc.ArgumentError(f"a value is required for parameter {p.key!r}")
            else:
                value = p.default
            values.append(value if p.process is None else p.process(value))
        if form.positional:
            return tuple(values)
        return {p.name: value for p, value in zip(form.parameters, values, strict=True)}

    def _execute(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        if connection._transaction is None:
            # As ``Connection.execute`` does: the statement runs in a transaction the connection
            # knows of, so its commit and rollback apply (not during the BEGIN event itself).
            connection._autobegin()
        dialect = connection.dialect
        form = self._form(dialect)
        arguments = self._arguments(form, params)
        driver = connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        # Listeners (statement counters, tracing) see each statement as SQLAlchemy's own.
        # (Asked of the engine's own listener lists: the joined dispatch costs a microsecond.)
        engine_events = connection.engine.dispatch
        listened = connection._has_events or bool(
            engine_events.before_cursor_execute or engine_events.after_cursor_execute
        )
        if listened:
            connection.dispatch.before_cursor_execute(
                connection, cursor, form.sql, arguments, None, False
            )
        try:
            cursor.execute(form.sql, arguments)
        except dialect.loaded_dbapi.Error as error:
            cursor.close()
            if dialect.is_disconnect(error, driver, cursor):
                connection.invalidate(error)
            raise exc.DBAPIError.instance(
                form.sql, arguments, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        if listened:
            connection.dispatch.after_cursor_execute(
                connection, cursor, form.sql, arguments, None, False
            )
        return cursor

    def _processors(self, dialect: Dialect, cursor: Any) -> tuple[Processor, ...] | None:
        """The result processors of the statement's columns for the driver's column types (None
        when no column needs one), worked out at the first result and kept."""
        types = tuple(d[1] for d in cursor.description or ())
        key = (dialect.name, types)
        if key in self._results:
            return self._results[key]
        statement = self.statement
        if not isinstance(statement, Select):
            raise TypeError("rows are read from a SELECT")
        columns = list(statement.selected_columns)
        found = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, t)
            for c, t in zip(columns, types, strict=True)
        )
        kept = found if any(p is not None for p in found) else None
        self._results[key] = kept
        return kept


def connection_of(session: Session | Connection) -> Connection:
    """A connection as it is, or the session's connection in its transaction with pending ORM
    changes flushed first, as ``Session.execute`` does before each statement: for several
    statements in a row that no ORM change comes between."""
    if isinstance(session, Connection):
        return session
    if session.autoflush:
        session.flush()
    return session.connection()
