"""Embedding: a host's own engine, the module entry point, the CLI on PostgreSQL, terminal tables."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from compliance import Compliance, FixedClock
from compliance.cli import output
from compliance.cli.main import cli
from compliance.db.engine import configure_sqlite, make_engine
from compliance.errors import InvalidInput
from tests.conftest import T0, next_npi


def test_host_engine_is_used_as_is(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        app = Compliance(engine, FixedClock(T0))
        admin = app.initialize("Host Admin", training=True)
        prescriber = app.register_prescriber(admin.id, "Dr Host", next_npi())
        assert app.get_person(admin.id, prescriber.id).status == "registered"
        app.close()  # does not dispose an engine it does not own
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM prescribers").scalar() == 1
    finally:
        engine.dispose()


def test_configure_sqlite_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    configure_sqlite(engine)  # a second call must not register the listeners twice
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_clock_must_be_aware_and_is_recorded(sqlite_url: str) -> None:
    clock = FixedClock(T0)
    with Compliance.open(sqlite_url, clock) as app:
        admin = app.initialize("Ada", training=True)
        clock.set(T0 + timedelta(days=3))
        app.add_administrator(admin.id, "Bo")
        times = [e.occurred_at for e in app.audit_log(admin.id)]
        assert times == [T0, T0 + timedelta(days=3)]
    with pytest.raises(InvalidInput, match="time zone"):
        FixedClock(T0.replace(tzinfo=None))


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "compliance", "exit-codes", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert json.loads(result.stdout)[0] == {"code": 0, "name": "OK", "meaning": "success"}


@pytest.mark.postgres
def test_cli_on_postgresql(pg_url: str) -> None:
    runner = CliRunner()
    env = {"COMPLIANCE_DATABASE_URL": pg_url, "COMPLIANCE_ACTOR": None}
    init = runner.invoke(cli, ["init", "--admin-name", "Pg Admin", "--json"], env=env)
    assert init.exit_code == 0, init.stderr
    admin = json.loads(init.stdout)["id"]
    verify = runner.invoke(cli, ["--as", admin, "audit", "verify", "--json"], env=env)
    assert json.loads(verify.stdout)["ok"] is True
    assert json.loads(runner.invoke(cli, ["db", "check", "--json"], env=env).stdout) == {
        "drift": False,
        "detail": None,
    }


def test_rich_table_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(output, "_terminal", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    output.show_rows([{"id": "PAT-1", "name": "Ana"}], ["id", "name"], False, title="Patients")
    drawn = capsys.readouterr().out
    assert "Patients" in drawn and "PAT-1" in drawn
    assert any(edge in drawn for edge in "┃│━─")  # a drawn table, not tab-separated text
    assert "\t" not in drawn
    assert "\x1b[" not in drawn  # NO_COLOR: no escape sequences
