"""A PostgreSQL runtime role, separate from the owner, that runs the service but cannot rewrite
the audit trail: ``compliance db grants --role NAME --apply`` gives it only what the engine needs.

Role names are cluster-wide: each test makes its own, and drops it (and its privileges) after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from compliance.api import Compliance
from compliance.cli.main import cli
from compliance.clock import FixedClock
from compliance.db.engine import make_engine
from tests.conftest import _admin_conn, build_world
from tests.test_course_api import START, Clinic, qualified_pcgp

pytestmark = pytest.mark.postgres


@pytest.fixture
def runtime_role(pg_url: str) -> Iterator[tuple[str, str]]:
    """A fresh LOGIN role with no privileges; yields (role, its database URL)."""
    role = f"compliance_rt_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    with _admin_conn() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")  # type: ignore[arg-type]
    url = make_url(pg_url).set(username=role, password=password)
    try:
        yield role, url.render_as_string(hide_password=False)
    finally:
        database = make_url(pg_url).database
        with psycopg.connect(
            make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        ) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = %s AND datname = %s",
                (role, database),
            )
            conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
        with _admin_conn() as conn:
            conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]


def test_grants_are_printed_and_refuse_bad_role_names(pg_url: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["--db", pg_url, "db", "grants", "--role", "compliance_app"])
    assert shown.exit_code == 0, shown.output
    assert "GRANT SELECT, INSERT ON TABLE audit_events TO compliance_app;" in shown.stdout
    assert "DELETE" not in shown.stdout and "TRUNCATE" not in shown.stdout
    bad = runner.invoke(cli, ["--db", pg_url, "db", "grants", "--role", "x; DROP TABLE y"])
    assert bad.exit_code == 2 and "--role" in bad.output


def test_the_runtime_role_runs_the_service_but_cannot_rewrite_history(
    pg_url: str, runtime_role: tuple[str, str]
) -> None:
    role, runtime_url = runtime_role
    applied = CliRunner().invoke(cli, ["--db", pg_url, "db", "grants", "--role", role, "--apply"])
    assert applied.exit_code == 0, applied.output

    # The whole service as the runtime role: parties, a course, an authorization, a dispense,
    # a schedule change, a checkpoint, verification and export.
    clock = FixedClock(START)
    app = Compliance.open(runtime_url, clock)
    try:
        c = Clinic(app, clock, build_world(app), honolulu="")
        pat = qualified_pcgp(c)
        rx = app.prescribe(c.prs, pat, 30).prescription
        assert rx is not None
        auth = app.request_authorization(c.rph, rx.id).authorization
        assert auth is not None
        app.record_dispense(c.rph, auth.number)
        admin = c.world.admin.id
        app.set_rules_schedule(admin, "uk-iso/2026-01", "2031-01-01")
        app.checkpoint_audit(admin)
        assert app.verify_audit(admin).ok
        with app.audit_stream(admin) as events:
            assert sum(1 for _ in events) > 20
    finally:
        app.close()

    engine = make_engine(runtime_url)
    forbidden = [
        "UPDATE audit_events SET action = 'forged' WHERE id = 2",
        "DELETE FROM audit_events WHERE id = 2",
        "DELETE FROM audit_event_subjects",
        "DELETE FROM audit_chain_heads",
        "TRUNCATE audit_events CASCADE",
        "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "DROP TRIGGER audit_events_append_only ON audit_events",
        "SET session_replication_role = replica",
        "DELETE FROM authorizations",
        "ALTER TABLE authorizations DROP CONSTRAINT pk_authorizations",
    ]
    try:
        for statement in forbidden:
            with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
                conn.execute(text(statement))
            message = str(caught.value.orig)
            assert "permission denied" in message or "must be owner" in message, statement
    finally:
        engine.dispose()
    with Compliance.open(pg_url, FixedClock(START)) as owner:
        assert owner.verify_audit(admin).ok
