"""Shared fixtures: real SQLite files and real, throwaway PostgreSQL databases.

PostgreSQL tests use the server on 127.0.0.1:5432 (override with COMPLIANCE_TEST_PG_URL). Outside
CI they skip with a message when it is unreachable; under CI=true that is a failure.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from compliance.api import Compliance, PersonInfo, PharmacyInfo
from compliance.audit.signing import KEY_ENV, KEY_FILE_ENV, Ed25519Signer
from compliance.clock import FixedClock
from compliance.db.engine import make_engine
from compliance.db.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "COMPLIANCE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)

# Checkpoints are signed: the suite's own key, outside every database, as an operator would set it.
TEST_SIGNER = Ed25519Signer.generate()
os.environ.pop(KEY_FILE_ENV, None)
os.environ[KEY_ENV] = base64.b64encode(TEST_SIGNER.private_pem()).decode()


def _admin_conn() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


def _pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        with _admin_conn() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests may not be skipped)")
        pytest.skip(message)
    return PG_ADMIN_URL


def create_pg_database(template: str | None = None) -> str:
    name = f"compliance_test_{uuid.uuid4().hex[:12]}"
    with _admin_conn() as conn:
        suffix = f" TEMPLATE {template}" if template else ""
        conn.execute(f"CREATE DATABASE {name}{suffix}")
    return name


def drop_pg_database(name: str) -> None:
    with _admin_conn() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_pg_url(pg_server: str) -> Iterator[str]:
    """A brand-new empty PostgreSQL database, dropped afterwards."""
    name = create_pg_database()
    try:
        yield _pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    name = create_pg_database()
    engine = make_engine(_pg_url(name))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    try:
        yield name
    finally:
        drop_pg_database(name)


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    name = create_pg_database(template=pg_template)
    try:
        yield _pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    path = tmp_path / "compliance.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A migrated database on each backend in turn."""
    return str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def app(db_url: str, clock: FixedClock) -> Iterator[Compliance]:
    with Compliance.open(db_url, clock) as compliance:
        yield compliance


@dataclass
class World:
    """One of each party, all active: the usual starting point of a test."""

    app: Compliance
    admin: PersonInfo
    prescriber: PersonInfo
    designee: PersonInfo
    pharmacy: PharmacyInfo
    pharmacist: PersonInfo


_npi_counter = iter(range(100_000_000, 999_999_999))


def next_npi() -> str:
    from compliance.domain.validate import npi_with_check_digit

    return npi_with_check_digit(str(next(_npi_counter)))


def build_world(app: Compliance) -> World:
    # Every test runs on a fixed clock, which the engine treats as simulated: a training database.
    admin = app.initialize("Ada Administrator", training=True)
    prescriber = app.register_prescriber(admin.id, "Dr Paula Prescriber", next_npi())
    prescriber = app.activate_prescriber(admin.id, prescriber.id)
    designee = app.register_designee(prescriber.id, "Dana Designee")
    app.grant_designee(prescriber.id, designee.id, prescriber.id)
    pharmacy = app.register_pharmacy(
        admin.id, "Main Street Pharmacy", "1234567", "America/Los_Angeles"
    )
    pharmacy = app.activate_pharmacy(admin.id, pharmacy.id)
    pharmacist = app.register_pharmacist(admin.id, "Riley Pharmacist", pharmacy.id)
    return World(app, admin, prescriber, designee, pharmacy, pharmacist)


@pytest.fixture
def world(app: Compliance) -> World:
    return build_world(app)


def add_pharmacist(app: Compliance, admin: str, name: str, ncpdp: str, zone: str) -> str:
    """An activated pharmacy in ``zone`` with one pharmacist; returns the pharmacist's id."""
    pharmacy = app.register_pharmacy(admin, name, ncpdp, zone)
    app.activate_pharmacy(admin, pharmacy.id)
    return app.register_pharmacist(admin, f"Pharmacist at {name}", pharmacy.id).id
