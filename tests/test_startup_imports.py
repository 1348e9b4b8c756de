"""A single-patient command loads what it uses: start-up is most of its cost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Index

from compliance import Compliance, FixedClock
from compliance.cli.main import SUBCOMMANDS, SUMMARIES, cli
from compliance.db.models import Base, index_conditions
from tests.conftest import T0

NOT_FOR_A_SQLITE_READ = (
    "sqlalchemy.dialects.postgresql",
    "compliance.cli.audit_cmds",
    "compliance.cli.client_cmds",
    "compliance.cli.rules_cmds",
    "compliance.cli.serve_cmd",
    "compliance.cli.simulate_cmd",
    "compliance.cli.demo_cmd",
)


MIGRATING_ONLY = ("alembic", "mako", "pygments")


def test_a_sqlite_read_command_loads_neither_postgresql_nor_other_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Compliance.open(url, FixedClock(T0)) as app:
        admin = app.initialize("Admin", training=True).id
    probe = (
        "import sys\n"
        "from compliance.cli.main import main\n"
        "try:\n"
        f"    main(['--db', {url!r}, '--as', {admin!r}, 'patient', 'find', '--name', 'x'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        f"named = [m for m in {NOT_FOR_A_SQLITE_READ!r} if m in sys.modules]\n"
        # Alembic, Mako and Pygments are for migrating; a read command must not pay for them.
        f"tools = [m for m in sys.modules if m.split('.')[0] in {MIGRATING_ONLY!r}]\n"
        "print('loaded=' + ','.join(sorted(named + tools)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.strip().splitlines()[-1] == "loaded=", done.stdout


def test_every_lazy_subcommand_is_listed_and_loads() -> None:
    assert set(SUBCOMMANDS) <= set(cli.list_commands(None))  # type: ignore[arg-type]
    for name in SUBCOMMANDS:
        command = cli.commands[name]
        assert command.name == name


def test_each_summary_is_the_first_paragraph_of_its_commands_help() -> None:
    assert set(SUMMARIES) == set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        command = cli.commands[name]
        # The listing derives the short help from the summary as click does from the help.
        assert command.short_help is None and not command.deprecated and not command.hidden
        assert (command.help or "").split("\n\n")[0].strip() == SUMMARIES[name], name


_HELP_PROBE = (
    "import sys\n"
    "from compliance.cli.main import cli\n"
    "if sys.argv[1] == 'loaded':\n"
    "    cli.commands\n"
    "try:\n"
    "    cli.main(['--help'], prog_name='compliance')\n"
    "except SystemExit:\n"
    "    pass\n"
    "loaded = sorted(m for m in sys.modules if m.startswith('compliance.cli.') and "
    "m.endswith(('_cmds', '_cmd')))\n"
    "print('loaded=' + ','.join(loaded))\n"
)


def test_the_top_level_help_loads_no_subcommand_and_reads_as_if_all_were_loaded(
    tmp_path: Path,
) -> None:
    for columns in ("60", "200"):
        env = {**os.environ, "COLUMNS": columns}
        lazy, loaded = (
            subprocess.run(
                [sys.executable, "-c", _HELP_PROBE, how],
                capture_output=True,
                text=True,
                check=True,
                cwd=tmp_path,
                env=env,
            ).stdout.splitlines()
            for how in ("lazy", "loaded")
        )
        assert lazy[-1] == "loaded=", lazy[-1]
        assert loaded[-1] != "loaded="  # the comparison is with every command loaded
        assert lazy[:-1] == loaded[:-1]
        assert any(line.strip().startswith("resident ") for line in lazy)


def test_partial_indexes_get_their_condition_for_a_dialect() -> None:
    partial = [
        index
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if isinstance(index, Index) and "where" in index.info
    ]
    assert {i.name for i in partial} == {
        "uq_courses_open_patient",
        "uq_authorizations_live_cycle",
        "uq_authorizations_idempotency",
        "ix_authorizations_waiting",
    }
    index_conditions("sqlite")
    for index in partial:
        assert str(index.dialect_kwargs["sqlite_where"]) == index.info["where"]


def test_the_launcher_loads_neither_click_nor_sqlalchemy(tmp_path: Path) -> None:
    """The console script's entry point decides where the command runs before anything heavy
    loads: with a resident process the work never happens in this interpreter at all."""
    probe = (
        "import sys\n"
        "import compliance.launcher\n"
        "heavy = ('click', 'sqlalchemy', 'rich', 'json', 'tempfile', 'threading')\n"
        "named = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "named += sorted(m for m in sys.modules if m.startswith('compliance.') and "
        "m != 'compliance.launcher')\n"
        "print('loaded=' + ','.join(named))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.strip().splitlines()[-1] == "loaded=", done.stdout


def test_the_console_script_is_the_launcher() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["compliance"] == "compliance.launcher:main"
    main_module = (root / "compliance" / "__main__.py").read_text(encoding="utf-8")
    assert "from compliance.launcher import main" in main_module
