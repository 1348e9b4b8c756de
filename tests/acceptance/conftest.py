"""Shared setup of the acceptance run: the parties are registered once per backend in a
template database, and each timeline replays on its own fresh copy of it (a SQLite file copied,
a PostgreSQL database created from the template), so no timeline sees another's records."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance import Compliance, FixedClock
from tests.acceptance.driver import Parties, register_parties
from tests.conftest import _pg_url, create_pg_database, drop_pg_database

# Before the first timeline of every ruleset (the earliest starts in March 2026).
SETUP_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _register(url: str) -> Parties:
    with Compliance.open(url, FixedClock(SETUP_AT)) as app:
        return register_parties(app)


@pytest.fixture(scope="session")
def sqlite_parties(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Parties]:
    path = tmp_path_factory.mktemp("acceptance") / "parties.db"
    shutil.copy(sqlite_template, path)
    return path, _register(f"sqlite:///{path}")


@pytest.fixture(scope="session")
def pg_parties(pg_template: str) -> Iterator[tuple[str, Parties]]:
    name = create_pg_database(template=pg_template)
    try:
        yield name, _register(_pg_url(name))
    finally:
        drop_pg_database(name)


@pytest.fixture
def timeline_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Parties]]:
    """A fresh database with the parties in it, on each backend in turn."""
    if backend == "sqlite":
        template, parties = request.getfixturevalue("sqlite_parties")
        path = tmp_path / "timeline.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}", parties
        return
    template_name, parties = request.getfixturevalue("pg_parties")
    name = create_pg_database(template=template_name)
    try:
        yield _pg_url(name), parties
    finally:
        drop_pg_database(name)
