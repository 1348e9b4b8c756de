"""The stored-value path of verification and export (``compliance.audit.rows``) gives exactly
what the record path gives: the same hashed bytes (or none where the record has no canonical
form) and the same exported dict, over generated events, odd stored values and a generated
trail, on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from compliance.api import Compliance
from compliance.audit import store
from compliance.audit.chain import GENESIS, AuditRecord, canonical_bytes, format_instant
from compliance.audit.rows import COLUMNS, canonical_of, dict_of
from compliance.clock import FixedClock
from compliance.db.engine import make_engine
from tests.conftest import T0, build_world
from tests.test_audit import tampering

STRFTIME = "%Y-%m-%dT%H:%M:%S.%fZ"

# Text from every plane, quotes, backslashes, control characters and lone surrogates.
ANY_TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) - 3, 2**53 + 3)
    | st.integers()
    | st.floats()
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
COLUMN_TEXT = st.none() | ANY_TEXT.filter(lambda t: "\x00" not in t)
ODD_SCALARS = st.integers() | st.floats(allow_nan=False) | st.binary(max_size=3)


def _record_bytes(record: AuditRecord) -> bytes | None:
    """What the walk hashes on the record path (``_safe_hash``): None where it has no form."""
    try:
        return canonical_bytes(record)
    except (TypeError, ValueError, AttributeError):
        return None


def _sqlite_instant(value: Any) -> str:
    return format_instant(datetime.fromisoformat(value).replace(tzinfo=UTC))


@given(
    instant=st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()),
)
def test_format_instant_is_strftime(instant: datetime) -> None:
    assert format_instant(instant) == instant.strftime(STRFTIME)


@st.composite
def stored_rows(draw: st.DrawFn) -> tuple[Any, ...]:
    """A row as SQLite returns it: JSON columns as ``json.dumps`` wrote them (or other text),
    the instant as the dialect stores it; now and then a value of another kind."""

    def json_text(value: Any) -> Any:
        how = draw(st.sampled_from(["dumps", "dumps", "unicode", "spaced", "other"]))
        if how == "other":
            return draw(st.sampled_from(["", " [] ", "[1,", "NaN", "1e400", "[1.0]"]) | ODD_SCALARS)
        text = json.dumps(value, ensure_ascii=how != "unicode", allow_nan=True)
        return f" {text}\n" if how == "spaced" else text

    def text_column() -> Any:
        return (
            draw(COLUMN_TEXT | ODD_SCALARS) if draw(st.integers(0, 9)) == 0 else draw(COLUMN_TEXT)
        )

    def integer() -> Any:
        return draw(st.integers(-5, 2**20) | st.integers() | ODD_SCALARS)

    instant = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    subjects = draw(st.lists(ANY_TEXT, max_size=3) | JSON_VALUES)
    reasons = draw(st.lists(ANY_TEXT, max_size=2) | JSON_VALUES)
    payload = draw(st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=4) | JSON_VALUES)
    return (
        integer(),
        text_column(),
        integer(),
        instant.isoformat(" ", timespec="microseconds"),
        text_column(),
        text_column(),
        text_column(),
        text_column(),
        json_text(subjects),
        text_column(),
        text_column(),
        json_text(reasons),
        text_column(),
        json_text(payload),
        text_column(),
        draw(st.text("0123456789abcdef", min_size=64, max_size=64)),
    )


def _as_read(row: tuple[Any, ...]) -> dict[str, Any] | None:
    """The row through the column types as SQLite's dialect applies them (``json.loads`` on
    text; a number passes), or None where reading it raises."""
    values = dict(zip(COLUMNS, row, strict=True))
    try:
        for name in ("subjects", "reason_codes", "payload"):
            raw = values[name]
            if not isinstance(raw, int | float):
                values[name] = json.loads(raw)
        values["occurred_at"] = datetime.fromisoformat(values["occurred_at"]).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None
    return values


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=stored_rows())
def test_stored_values_hash_as_the_record_does(row: tuple[Any, ...]) -> None:
    fast = canonical_of(row, _sqlite_instant)
    values = _as_read(row)
    if values is None:  # the record path cannot read it: the fast path must not answer either
        assert fast is None
        return
    record = store.to_record(_Row(values))
    if fast is not None:
        assert fast == _record_bytes(record)
    exported = dict_of(row, _sqlite_instant)
    if exported is not None:
        assert repr(exported) == repr(record.to_dict())  # repr: True, 1 and 1.0 differ


def test_plain_events_take_the_fast_path() -> None:
    """The shortcut is not vacuous: an ordinary event is answered by it."""
    row = (
        7,
        "PAT-00000001",
        3,
        "2026-03-04 05:06:07.000008",
        "PRS-00000002",
        None,
        "course.prescribe",
        "ok",
        '["PAT-00000001"]',
        "enrolled",
        "qualified",
        "[]",
        "ipledge/2026-mod",
        json.dumps({"cycle": 2, "note": "é", "decision": {"reasons": [], "window": None}}),
        GENESIS,
        "0" * 64,
    )
    values = _as_read(row)
    assert values is not None
    assert canonical_of(row, _sqlite_instant) == _record_bytes(store.to_record(_Row(values)))
    assert dict_of(row, _sqlite_instant) == store.to_record(_Row(values)).to_dict()


class _Row:
    """A Core row's attribute access over a dict."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


# --- real databases ----------------------------------------------------------------------------


def _compare_all(session: Session) -> int:
    """Every stored event through both paths; the number the fast path answered."""
    columns = store._stored_columns(session)
    instant = store._instant_reader(session)
    answered = 0
    for row in session.execute(select(*columns).order_by(store._EVENTS.c.id)):
        record = store._record(session, row[0])
        fast = canonical_of(row, instant)
        if fast is not None:
            answered += 1
            assert fast == _record_bytes(record), row[0]
        exported = dict_of(row, instant)
        assert exported is None or repr(exported) == repr(record.to_dict()), row[0]
    return answered


ODD_PAYLOADS = [
    {"float": 1.5, "tiny": 5e-324},
    {"\U0001f600 key": "astral key", "é": "ü"},
    {"astral value": "\U0001f600", "nested": [{"\U00010000": None}]},
    {'quote"back\\slash': "\x01\x1f\u2028"},
    {"list": [True, False, None, 0, -0, 2**53 - 1]},
]


def test_odd_stored_values_read_alike(db_url: str) -> None:
    """Events whose payloads the fast encoder must not write (floats, huge integers, keys beyond
    the plane) and others it must write: both paths agree on each, and verification passes."""
    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        admin = build_world(app).admin.id
        with app.engine.begin() as conn:
            last = conn.execute(select(store._EVENTS.c.id).order_by(store._EVENTS.c.id.desc()))
            next_id = int(last.scalars().first() or 0) + 1
        with Session(app.engine) as session, session.begin():
            for offset, payload in enumerate(ODD_PAYLOADS):
                record = AuditRecord(
                    id=next_id + offset,
                    chain_id=f"ODD-{offset:08d}",
                    chain_seq=1,
                    occurred_at=T0 + timedelta(microseconds=offset * 7),
                    actor_id=admin,
                    on_behalf_of=None,
                    action="test.odd",
                    outcome="ok",
                    subjects=(f"ODD-{offset:08d}",),
                    state_before=None,
                    state_after=None,
                    reason_codes=("x",),
                    ruleset_id=None,
                    payload=payload,
                    prev_hash=GENESIS,
                )
                _store(session, record)
        with Session(app.engine) as session, session.begin():
            answered = _compare_all(session)
        assert answered >= 8  # the parties' events and the plain odd ones
        report = app.verify_audit(admin)
        assert report.ok, report.first_break


def _store(session: Session, record: AuditRecord) -> None:
    """Append ``record`` with its hash, subject index row and chain head, as the store does."""
    from compliance.audit.chain import compute_hash

    digest = compute_hash(record)
    session.execute(
        insert(store._EVENTS).values(
            id=record.id,
            chain_id=record.chain_id,
            chain_seq=record.chain_seq,
            occurred_at=record.occurred_at,
            actor_id=record.actor_id,
            on_behalf_of=record.on_behalf_of,
            action=record.action,
            outcome=record.outcome,
            subjects=list(record.subjects),
            state_before=record.state_before,
            state_after=record.state_after,
            reason_codes=list(record.reason_codes),
            ruleset_id=record.ruleset_id,
            payload=dict(record.payload),
            prev_hash=record.prev_hash,
            hash=digest,
        )
    )
    for subject in record.subjects:
        session.execute(insert(store._SUBJECTS).values(subject=subject, event_id=record.id))
    session.execute(
        insert(store._HEADS).values(
            chain_id=record.chain_id,
            last_seq=record.chain_seq,
            last_hash=digest,
            last_event_id=record.id,
            checkpointed_seq=0,
        )
    )


def test_sqlite_values_of_another_kind_are_read_as_before(sqlite_url: str) -> None:
    """SQLite keeps whatever a tamperer writes: a blob in a text column, a number in a JSON
    one. The fast path declines such rows and verification reports them as before."""
    clock = FixedClock(T0)
    with Compliance.open(sqlite_url, clock) as app:
        admin = build_world(app).admin.id
        with tampering(sqlite_url) as conn:
            conn.exec_driver_sql("UPDATE audit_events SET actor_id = x'35' WHERE id = 2")
            conn.exec_driver_sql("UPDATE audit_events SET payload = 7 WHERE id = 3")
        with Session(app.engine) as session, session.begin():
            answered = _compare_all(session)
        total = app.audit_count(admin)
        assert answered == total - 2
        report = app.verify_audit(admin)
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.event_id == 2


def test_driver_rows_are_the_core_rows(db_url: str) -> None:
    """The rows verification and export read (on SQLite straight from the driver when the
    statement has no parameters), events and the subject index, hold the very values Core rows hold, tampered kinds included,
    in the same order, whatever the batch."""
    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        build_world(app)
        if db_url.startswith("sqlite"):
            with tampering(db_url) as conn:
                conn.exec_driver_sql("UPDATE audit_events SET actor_id = x'35' WHERE id = 2")
                conn.exec_driver_sql("UPDATE audit_events SET payload = 7 WHERE id = 3")
        with Session(app.engine) as session, session.begin():
            columns = store._stored_columns(session)
            for stmt in (
                select(*columns).order_by(store._EVENTS.c.chain_id, store._EVENTS.c.chain_seq),
                store.query(store.LogFilter(), columns),
                store.query(store.LogFilter(action="prescriber.register"), columns),
                select(store._SUBJECTS.c.event_id, store._SUBJECTS.c.subject).order_by(
                    store._SUBJECTS.c.event_id, store._SUBJECTS.c.subject
                ),
            ):
                core = [tuple(row) for row in session.execute(stmt)]
                for batch in (1, 7, 2000):
                    read = [tuple(row) for row in store._stored_rows(session, stmt, batch)]
                    assert repr(read) == repr(core)
                assert len(core) >= 1, stmt


def test_a_generated_trail_reads_alike(tmp_path: Path) -> None:
    """The benchmark generator's trail (written without the engine's append) through both
    paths, every event answered by the fast one; its export equals the records' dicts."""
    url = f"sqlite:///{tmp_path / 'generated.db'}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.generate",
            "--db",
            url,
            "--patients",
            "12",
            "--events",
            "300",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    admin = json.loads(done.stdout[done.stdout.index("{") :])["admin"]
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            answered = _compare_all(session)
            exported = list(store.stream_dicts(session, store.LogFilter(), batch=64))
            records = [r.to_dict() for r in store.stream(session, store.LogFilter())]
    finally:
        engine.dispose()
    assert answered == len(records) >= 300
    assert repr(exported) == repr(records)
    with Compliance.open(url, FixedClock(T0)) as app:
        assert app.verify_audit(admin).ok


@pytest.mark.parametrize("subject", [None, "PAT-NOSUCH00"])
def test_export_dicts_follow_the_filter(db_url: str, subject: str | None) -> None:
    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        world = build_world(app)
        registration = app.register_patient(world.designee.id, "Pat Example", "1990-01-01")
        chosen = store.LogFilter(subject=subject or registration.patient.id)
        with app.audit_export(world.admin.id, chosen) as events:
            exported = list(events)
        expected = [r.to_dict() for r in app.audit_log(world.admin.id, chosen)]
    assert repr(exported) == repr(expected)
    assert (len(exported) > 0) == (subject is None)
