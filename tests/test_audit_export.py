"""``audit export -o FILE``: the actor is checked before any file is touched, the database file is
never a target, the export appears complete or not at all (0600), and CSV cells cannot carry a
spreadsheet formula."""

from __future__ import annotations

import contextlib
import csv
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from compliance.api import Compliance
from compliance.cli.main import cli
from compliance.clock import FixedClock
from compliance.errors import NotPermitted
from tests.conftest import T0, build_world

FORMULA = '=HYPERLINK("http://example.invalid","x")'


def _trail(sqlite_url: str) -> str:
    with Compliance.open(sqlite_url, FixedClock(T0)) as app:
        world = build_world(app)
        with contextlib.suppress(NotPermitted):
            app.register_patient(FORMULA, "Patient Formula", "1990-01-01")
        return world.admin.id


def _run(sqlite_url: str, actor: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--db", sqlite_url, "--as", actor, "audit", "export", *args])
    return result.exit_code, result.output


def test_a_refused_actor_leaves_the_target_untouched(sqlite_url: str, tmp_path: Path) -> None:
    _trail(sqlite_url)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    code, output = _run(sqlite_url, "ADM-00000000", "-o", str(target))
    assert code == 4, output
    assert target.read_text() == "keep me"
    missing = tmp_path / "never.jsonl"
    code, _ = _run(sqlite_url, "ADM-00000000", "-o", str(missing))
    assert code == 4 and not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_the_database_file_is_never_a_target(sqlite_url: str) -> None:
    admin = _trail(sqlite_url)
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    size = database.stat().st_size
    for target in (str(database), str(database.parent / "." / database.name)):
        code, output = _run(sqlite_url, admin, "-o", target)
        assert code == 2 and "database file" in output, output
    link = database.with_name("alias.db")
    link.symlink_to(database)
    code, output = _run(sqlite_url, admin, "-o", str(link))
    assert code == 2 and "database file" in output, output
    assert database.stat().st_size == size
    with Compliance.open(sqlite_url, FixedClock(T0)) as app:
        assert app.verify_audit(admin).ok


def test_export_is_private_and_formulas_are_neutralised(sqlite_url: str, tmp_path: Path) -> None:
    admin = _trail(sqlite_url)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    target = tmp_path / "trail.csv"
    target.write_text("old contents")
    os.chmod(target, 0o644)
    code, output = _run(sqlite_url, admin, "--format", "csv", "-o", str(target))
    assert code == 0, output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trail.csv"]
    rows = list(csv.DictReader(target.open(encoding="utf-8", newline="")))
    actors = [r["actor"] for r in rows]
    # the refused unknown actor is recorded without the text typed, so no formula reaches it
    assert "UNKNOWN_ACTOR" in actors
    assert not any("HYPERLINK" in cell.upper() for row in rows for cell in row.values())
    dangerous = ("=", "+", "-", "@", "\t", "\r")
    assert not any(cell.startswith(dangerous) for row in rows for cell in row.values())


def test_every_csv_cell_that_a_spreadsheet_would_run_is_made_plain_text() -> None:
    from compliance.cli.audit_cmds import CSV_COLUMNS, _csv_row

    for lead in ("=", "+", "-", "@", "\t", "\r"):
        event = dict.fromkeys(CSV_COLUMNS, f"{lead}1+1")
        assert _csv_row(event) == [f"'{lead}1+1"] * len(CSV_COLUMNS)
    plain = dict.fromkeys(CSV_COLUMNS, "PAT-1")
    assert _csv_row(plain) == ["PAT-1"] * len(CSV_COLUMNS)


def test_an_export_in_two_processes_is_the_export_of_one(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other chunk of event ids encoded by a second process on the same snapshot: the same
    lines in the same order as one process writes, with and without a filter; a limit is read
    by one process."""
    import json
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from compliance.audit import store
    from compliance.db import workers

    with Compliance.open(db_url, FixedClock(T0)) as app:
        world = build_world(app)
        admin = world.admin.id
    started: list[object] = []
    real = workers._start
    monkeypatch.setattr(workers, "_start", lambda request: started.append(1) or real(request))
    monkeypatch.setattr(store, "EXPORT_SPLIT_FROM", 0)
    monkeypatch.setattr(store, "EXPORT_CHUNK", 3)
    filters = [
        store.LogFilter(),
        store.LogFilter(action="pharmacy.register"),
        store.LogFilter(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1)),
        store.LogFilter(limit=4),
    ]
    sizes = []
    with Compliance.open(db_url, FixedClock(T0)) as app:
        for f in filters:
            with Session(app.engine) as session, session.begin():
                alone = [store.json_line(e) for e in store.stream_dicts(session, f)]
            with app.audit_export_lines(admin, f) as lines:
                assert list(lines) == alone
            assert all(json.loads(line) for line in alone)
            sizes.append(len(alone))
    assert sizes[0] > 2 * 3 and 0 < sizes[1] < sizes[0] and sizes[3] == 4
    assert started == [1, 1, 1]  # each export without a limit was shared
