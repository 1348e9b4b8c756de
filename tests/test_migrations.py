"""Migrations on both backends: one head, up and down from empty, idempotent re-upgrade that keeps
data and a verifiable audit trail, no drift between models and migrations, the ``alembic`` command
from the repository root, and a clear ``DatabaseNotReady`` on an unmigrated database."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from compliance.api import Compliance
from compliance.audit.store import LogFilter
from compliance.clock import FixedClock
from compliance.db import migrate
from compliance.db.engine import URL_ENV, make_engine
from compliance.db.models import Base
from compliance.errors import DatabaseNotReady, NotPermitted
from tests.conftest import T0, add_pharmacist, build_world, next_npi

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_TABLES = set(Base.metadata.tables)
AUDIT_TRIGGERS = {
    "sqlite": {
        "audit_events_no_update",
        "audit_events_no_delete",
        "audit_event_subjects_no_update",
        "audit_event_subjects_no_delete",
        "audit_chain_heads_no_delete",
        "audit_events_no_replace",
        "audit_event_subjects_no_replace",
    },
    "postgresql": {
        "audit_events_append_only",
        "audit_events_no_truncate",
        "audit_event_subjects_append_only",
        "audit_event_subjects_no_truncate",
        "audit_chain_heads_no_delete",
    },
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest) -> str:
    """A brand-new, unmigrated database on each backend in turn."""
    fixture = "empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url"
    return str(request.getfixturevalue(fixture))


@contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def trigger_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
        return {str(r[0]) for r in rows}


def pg_leftovers(engine: Engine) -> set[str]:
    """Sequences and functions in the public schema (PostgreSQL only)."""
    with engine.connect() as conn:
        sequences = conn.execute(
            text("SELECT sequence_name FROM information_schema.sequences")
        ).scalars()
        functions = conn.execute(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'"
            )
        ).scalars()
        return {str(s) for s in sequences} | {str(f) for f in functions}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every model table the schema has (an older revision lacks later tables), in
    primary-key order, as comparable tuples."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        schema = inspect(conn)
        present = set(schema.get_table_names())
        for name, table in Base.metadata.tables.items():
            if name not in present:
                continue
            columns = {c["name"] for c in schema.get_columns(name)}
            kept = [c for c in table.columns if c.name in columns]
            rows = conn.execute(select(*kept).order_by(*table.primary_key.columns)).all()
            out[name] = [
                tuple(f"{c.name}={v!r}" for c, v in zip(kept, row, strict=True)) for row in rows
            ]
    return out


def same_rows(
    after: dict[str, list[tuple[Any, ...]]], before: dict[str, list[tuple[Any, ...]]]
) -> bool:
    """The tables ``before`` had keep their rows, column for column (a column added since is
    ignored); tables added since are empty."""

    def known(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
        names = {cell.split("=", 1)[0] for cell in before[table][0]} if before[table] else set()
        return tuple(cell for cell in row if cell.split("=", 1)[0] in names)

    kept = {k: [known(k, row) for row in v] for k, v in after.items() if k in before}
    return kept == before and not any(rows for k, rows in after.items() if k not in before)


def populate(app: Compliance, clock: FixedClock) -> str:
    """Parties, patients, a refusal and a checkpoint through the public API; returns admin id."""
    world = build_world(app)
    for i in range(3):
        app.register_patient(world.designee.id, f"Patient Number{i}", "1990-01-01")
    with pytest.raises(NotPermitted):
        app.register_prescriber(world.pharmacist.id, "Dr Not Allowed", next_npi())
    app.checkpoint_audit(world.admin.id)
    clock.set(T0.replace(hour=16))
    app.register_patient(world.designee.id, "Patient After Checkpoint", "1991-02-03")
    return world.admin.id


# --- the script directory ---------------------------------------------------------------------


def test_exactly_one_head_and_a_linear_history() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1, heads
    assert heads[0] == migrate.head_revision()
    revisions = list(script.walk_revisions("base", "heads"))
    assert revisions, "no revisions found"
    assert revisions[-1].down_revision is None
    assert sum(1 for r in revisions if r.down_revision is None) == 1
    assert all(not r.is_merge_point for r in revisions)


def test_repository_alembic_ini_uses_the_same_scripts() -> None:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [migrate.head_revision()]
    assert Path(script.dir).resolve() == migrate.migrations_dir().resolve()


def test_head_is_read_from_the_scripts_without_alembic(tmp_path: Path, monkeypatch: Any) -> None:
    """The schema check reads each script's own revision lines; two heads are refused."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (tmp_path / "env.py").write_text("")
    (versions / "a.py").write_text('revision: str = "a1"\ndown_revision: str | None = None\n')
    (versions / "b.py").write_text('revision = "b2"\ndown_revision = "a1"\n')
    monkeypatch.setattr(migrate, "migrations_dir", lambda: tmp_path)
    assert migrate.head_revision() == "b2"
    (versions / "c.py").write_text('revision = "c3"\ndown_revision = "a1"\n')
    with pytest.raises(DatabaseNotReady, match="exactly one head"):
        migrate.head_revision()


# --- upgrade and downgrade --------------------------------------------------------------------


def test_upgrade_empty_database_to_head(empty_url: str) -> None:
    with engine_for(empty_url) as engine:
        assert migrate.current_revision(engine) is None
        assert table_names(engine) == set()
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert table_names(engine) == MODEL_TABLES | {"alembic_version"}
        assert AUDIT_TRIGGERS[engine.dialect.name] <= trigger_names(engine)
        migrate.require_current(engine)
        assert migrate.drift(engine) is None


def test_downgrade_to_base_and_upgrade_again(empty_url: str) -> None:
    with engine_for(empty_url) as engine:
        migrate.upgrade(engine)
        if engine.dialect.name == "postgresql":
            assert {"audit_event_id_seq", "compliance_append_only"} <= pg_leftovers(engine)
        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert table_names(engine) <= {"alembic_version"}
        assert trigger_names(engine) == set()
        if engine.dialect.name == "postgresql":
            assert pg_leftovers(engine) == set()
        with pytest.raises(DatabaseNotReady):
            migrate.require_current(engine)

        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert table_names(engine) == MODEL_TABLES | {"alembic_version"}
        assert AUDIT_TRIGGERS[engine.dialect.name] <= trigger_names(engine)
        assert migrate.drift(engine) is None

    with Compliance.open(empty_url, FixedClock(T0)) as app:
        admin = app.initialize("Ada Again", training=True)
        assert app.verify_audit(admin.id).ok


def test_upgrade_again_keeps_data_and_audit_trail(empty_url: str) -> None:
    clock = FixedClock(T0)
    with Compliance.open(empty_url, clock) as app:
        status = app.migrate()
        assert status.up_to_date
        admin = populate(app, clock)
        before_report = app.verify_audit(admin)
        assert before_report.ok, before_report.first_break
        before = snapshot(app.engine)
        assert before["audit_events"]
        assert before["patients"]

        # Upgrading an already-current database, through the API and through a fresh engine.
        assert app.migrate().up_to_date
    with engine_for(empty_url) as engine:
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert snapshot(engine) == before
        assert migrate.drift(engine) is None

    with Compliance.open(empty_url, clock) as app:
        report = app.verify_audit(admin)
        assert report.ok, report.first_break
        assert (report.events, report.chains, report.checkpoints) == (
            before_report.events,
            before_report.chains,
            before_report.checkpoints,
        )
        assert report.events == len(before["audit_events"])
        # The database is still fully usable after the no-op upgrade.
        registered = app.register_patient(
            app.list_people(admin, "designee")[0].id, "Patient Post Upgrade", "1992-03-04"
        )
        events = app.audit_log(admin, LogFilter(subject=registered.patient.id))
        assert [e.action for e in events] == ["patient.register"]
        assert app.verify_audit(admin).ok


def test_no_drift_between_models_and_migrations(empty_url: str) -> None:
    with engine_for(empty_url) as engine:
        migrate.upgrade(engine)
        assert migrate.drift(engine) is None
    with Compliance.open(empty_url) as app:
        assert app.drift() is None


def test_drift_is_reported_when_schema_differs(empty_url: str) -> None:
    """The drift check can fail: an extra column the models do not know is reported."""
    with engine_for(empty_url) as engine:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE settings ADD COLUMN stray INTEGER"))
        found = migrate.drift(engine)
    assert found is not None
    assert "stray" in found


@pytest.mark.slow
def test_alembic_command_from_repository_root(empty_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[URL_ENV] = empty_url

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    upgraded = alembic("upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    with engine_for(empty_url) as engine:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert table_names(engine) == MODEL_TABLES | {"alembic_version"}

    checked = alembic("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr

    heads = alembic("heads")
    assert heads.returncode == 0, heads.stderr
    assert heads.stdout.split() == [migrate.head_revision(), "(head)"]


# --- unmigrated databases ---------------------------------------------------------------------


def test_require_current_raises_on_empty_database(empty_url: str) -> None:
    with engine_for(empty_url) as engine:
        with pytest.raises(DatabaseNotReady, match="empty"):
            migrate.require_current(engine)
        assert table_names(engine) == set()


def test_require_current_raises_on_unknown_revision(empty_url: str) -> None:
    with engine_for(empty_url) as engine:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffff'"))
        with pytest.raises(DatabaseNotReady, match="ffffffff"):
            migrate.require_current(engine)


CALLS_ON_UNMIGRATED = {
    "register_prescriber": lambda app: app.register_prescriber(
        "ADM-0000000A", "Dr X", "1234567893"
    ),
    "register_patient": lambda app: app.register_patient("DSG-0000000A", "Pat X", "1990-01-01"),
    "verify_audit": lambda app: app.verify_audit("ADM-0000000A"),
    "checkpoint_audit": lambda app: app.checkpoint_audit("ADM-0000000A"),
    "audit_log": lambda app: app.audit_log("ADM-0000000A"),
    "list_pharmacies": lambda app: app.list_pharmacies("ADM-0000000A"),
    "drift": lambda app: app.drift(),
}


@pytest.mark.parametrize("call", sorted(CALLS_ON_UNMIGRATED))
def test_api_call_on_unmigrated_database_raises_database_not_ready(
    empty_url: str, call: str
) -> None:
    with Compliance.open(empty_url, FixedClock(T0)) as app:
        with pytest.raises(DatabaseNotReady) as caught:
            CALLS_ON_UNMIGRATED[call](app)
        assert caught.value.code == "DATABASE_NOT_READY"
        status = app.schema_status()
        assert status.current is None
        assert not status.up_to_date
        assert table_names(app.engine) == set()


def test_schema_status_after_migrate(empty_url: str) -> None:
    with Compliance.open(empty_url) as app:
        assert not app.schema_status().up_to_date
        status = app.migrate()
        assert status.up_to_date
        assert status.current == status.head == migrate.head_revision()


# --- SQLite file permissions ------------------------------------------------------------------


@contextmanager
def permissive_umask() -> Iterator[None]:
    """Umask 0: any file not created deliberately private would come out world-readable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_new_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    with permissive_umask():
        engine = make_engine(f"sqlite:///{path}")
        try:
            assert path.exists()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            migrate.upgrade(engine)
        finally:
            engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_new_sqlite_file_through_compliance_open_is_private(tmp_path: Path) -> None:
    path = tmp_path / "opened.db"
    with permissive_umask(), Compliance.open(f"sqlite:///{path}", FixedClock(T0)) as app:
        admin = app.initialize("Ada Private", training=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # While connections are open, WAL side files exist; they must be private as well.
        with app.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            wal = path.with_name(path.name + "-wal")
            assert wal.exists(), "the engine should run SQLite in WAL mode"
            for side in (wal, path.with_name(path.name + "-shm")):
                if side.exists():
                    assert stat.S_IMODE(side.stat().st_mode) == 0o600, side
        assert app.verify_audit(admin.id).ok
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- 0005: no statement form may replace an audit row on SQLite --------------------------------

_COLUMNS = (
    "id, chain_id, chain_seq, occurred_at, actor_id, on_behalf_of, action, outcome, subjects, "
    "state_before, state_after, reason_codes, ruleset_id, payload, prev_hash, hash"
)
_FORGED = _COLUMNS.replace(" action,", " 'forged',")
REPLACING = [
    f"INSERT OR REPLACE INTO audit_events ({_COLUMNS}) SELECT {_FORGED} FROM audit_events "
    "WHERE id = 2",
    f"REPLACE INTO audit_events ({_COLUMNS}) SELECT {_FORGED} FROM audit_events WHERE id = 2",
    # A new id at an existing chain position: REPLACE removes the event that held it.
    f"INSERT OR REPLACE INTO audit_events ({_COLUMNS}) SELECT "
    + _FORGED.replace("id,", "id + 1000,", 1).replace("prev_hash, hash", "prev_hash, 'x' || hash")
    + " FROM audit_events WHERE id = 2",
    f"INSERT INTO audit_events ({_COLUMNS}) SELECT {_COLUMNS} FROM audit_events WHERE id = 2 "
    "ON CONFLICT (id) DO UPDATE SET action = 'forged'",
    "INSERT OR REPLACE INTO audit_event_subjects (subject, event_id) "
    "SELECT subject, event_id FROM audit_event_subjects WHERE event_id = 2",
    "UPDATE OR REPLACE audit_events SET id = 3 WHERE id = 2",
]


def _audit_rows(conn: Any) -> list[list[str]]:
    return [
        sorted(repr(tuple(r)) for r in conn.execute(select(Base.metadata.tables[name])).all())
        for name in ("audit_events", "audit_event_subjects")
    ]


def _attempt(engine: Engine, statement: str) -> bool:
    """Whether ``statement`` changed the audit rows (always rolled back); False when the
    database refused it as an append-only violation."""
    with engine.connect() as conn:
        before = _audit_rows(conn)
        conn.rollback()
        with conn.begin() as tx:
            try:
                conn.execute(text(statement))
            except DBAPIError as exc:
                if "append-only" not in str(exc):
                    raise
                return False
            changed = _audit_rows(conn) != before
            tx.rollback()
            return changed


def test_0005_upgrades_a_0003_database_with_data_and_stops_replacing(empty_url: str) -> None:
    clock = FixedClock(T0)
    with Compliance.open(empty_url, clock) as app:
        app.migrate()
        admin = populate(app, clock)
    with engine_for(empty_url) as engine:
        migrate.downgrade(engine, "0003")
        assert migrate.current_revision(engine) == "0003"
        if engine.dialect.name == "sqlite":
            # The attack this revision closes: at 0003 REPLACE slips past the delete trigger.
            assert _attempt(engine, REPLACING[0])
        before = snapshot(engine)
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert same_rows(snapshot(engine), before)
        assert AUDIT_TRIGGERS[engine.dialect.name] <= trigger_names(engine)
        for statement in REPLACING if engine.dialect.name == "sqlite" else REPLACING[3:4]:
            assert not _attempt(engine, statement), statement
        assert same_rows(snapshot(engine), before)
    with Compliance.open(empty_url, clock) as app:
        report = app.verify_audit(admin)
        assert report.ok, report.first_break
        app.register_patient(app.list_people(admin, "designee")[0].id, "After 0005", "1990-01-01")
        app.checkpoint_audit(admin)
        assert app.verify_audit(admin).ok


# --- 0007: the clinic's own zone ------------------------------------------------------------


def test_0007_carries_a_course_in_flight_forward_from_0003(empty_url: str) -> None:
    """An EU course with a prescription written and not yet dispensed, in a 0003 database (no
    zone on prescribers): after the upgrade it keeps its history and the same decisions, with
    the same reasons, judged in the ruleset's zone until an administrator sets the clinic's."""
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    clock = FixedClock(start)
    with Compliance.open(empty_url, clock) as app:
        app.migrate()
        world = build_world(app)
        admin, prs = world.admin.id, world.prescriber.id
        london = add_pharmacist(app, admin, "High Street", "7654321", "Europe/London")
        pat = app.register_patient(prs, "Ines Flight", "2001-02-03").patient.id
        app.enrol(prs, pat, programme="eu-iso")
        app.assign_category(prs, pat, "can_get_pregnant", "CHILDBEARING_POTENTIAL")
        app.record_consent(prs, pat, "ACKNOWLEDGEMENT_FORM")
        app.record_contraception(prs, pat, {"hormonal_implant": "2026-01-05"})
        app.record_counselling(prs, pat)
        app.record_test(
            prs,
            pat,
            kind="confirmation",
            specimen_date="2026-03-02",
            setting="clinic",
            result="negative",
        )
        rx = app.prescribe(prs, pat, 30).prescription
        assert rx is not None
        clock.set(start + timedelta(days=8))  # Day 9: expired for every pharmacy
        expired = app.check_dispense(london, rx.id)
        clock.set(start + timedelta(days=3))
        before = app.check_dispense(london, rx.id)
        status_before = app.status(prs, pat)
        history = len(app.audit_log(admin, LogFilter(subject=pat)))
    with engine_for(empty_url) as engine:
        migrate.downgrade(engine, "0003")
        assert "time_zone" not in {c["name"] for c in inspect(engine).get_columns("prescribers")}
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.drift(engine) is None
    with Compliance.open(empty_url, clock) as app:
        assert app.get_person(admin, prs).time_zone is None
        after = app.check_dispense(london, rx.id)
        assert (after.allowed, after.codes, after.window, after.today) == (
            before.allowed,
            before.codes,
            before.window,
            before.today,
        )
        status_after = app.status(prs, pat)
        assert status_after.checklist == status_before.checklist
        assert status_after.course == status_before.course
        assert len(app.audit_log(admin, LogFilter(subject=pat))) == history
        clock.set(start + timedelta(days=8))
        again = app.check_dispense(london, rx.id)
        assert [(r.code, r.message) for r in again.reasons] == [
            (r.code, r.message) for r in expired.reasons
        ]
        # The clinic's zone can now be set and the course goes on to its dispense.
        clock.set(start + timedelta(days=3))
        assert app.set_prescriber_zone(admin, prs, "Europe/Lisbon").time_zone == "Europe/Lisbon"
        record = app.request_authorization(london, rx.id).authorization
        assert record is not None
        assert app.record_dispense(london, record.number).course.state == "dispensed"
        assert app.verify_audit(admin).ok
