"""The built wheel works without the repository: it carries its migrations, and an installed copy
creates and migrates a database from any folder."""

from __future__ import annotations

import json
import os
import site
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from compliance.db import migrate

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env.pop("COMPLIANCE_DATABASE_URL", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-w",
            str(out),
            str(REPO_ROOT),
        ],
        cwd=out,
    )
    wheels = list(out.glob("compliance_ppp-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees the system's dependencies but has its own, non-editable compliance."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        venv.parent,
    )
    python = venv / "bin" / "python"
    assert python.exists()
    if sys.prefix != sys.base_prefix:
        # The tests themselves run in a virtual environment, whose packages (pip, SQLAlchemy ...)
        # --system-site-packages does not reach: list them after the new venv's own.
        purelib = _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            venv.parent,
        ).stdout.strip()
        parents = "\n".join(site.getsitepackages())
        (Path(purelib) / "_parent_environment.pth").write_text(parents + "\n")
    # pip comes from the outer site-packages; it installs into the venv's prefix.
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            str(wheel),
        ],
        cwd=venv.parent,
    )
    return python


def test_wheel_contains_migrations_and_type_marker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    expected_versions = {
        f"compliance/_migrations/versions/{p.name}"
        for p in (REPO_ROOT / "migrations" / "versions").glob("*.py")
    }
    assert "compliance/_migrations/versions/0001_foundation.py" in expected_versions
    assert expected_versions <= names
    assert "compliance/_migrations/env.py" in names
    assert "compliance/_migrations/script.py.mako" in names
    assert "compliance/py.typed" in names
    assert "compliance/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("tests/", "migrations/")) for n in names)


def test_wheel_ships_its_licence_examples_and_metadata(wheel: Path) -> None:
    from compliance.simulation import examples

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(metadata_name).decode()
        (licence_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        licence = zf.read(licence_name).decode()
    assert licence == (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0" in licence
    shipped = {f"compliance/simulation/timelines/{n}.toml" for n in examples.names()}
    assert len(shipped) >= 7 and shipped <= names
    headers = [line for line in metadata.splitlines() if ": " in line]
    assert "Name: compliance-ppp" in headers
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers
    assert any(
        h.startswith("Classifier: Intended Audience :: Healthcare Industry") for h in headers
    )
    assert {h.split(",")[0] for h in headers if h.startswith("Project-URL: ")} >= {
        "Project-URL: Homepage",
        "Project-URL: Changelog",
        "Project-URL: Issues",
    }


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import compliance
    from compliance import Compliance
    from compliance.db import migrate

    c = Compliance.open("sqlite:///x.db")
    try:
        status = c.migrate()
        admin = c.initialize("Ada Installed")
        report = c.verify_audit(admin.id)
        drift = c.drift()
    finally:
        c.close()
    print(json.dumps({
        "file": compliance.__file__,
        "migrations": str(migrate.migrations_dir()),
        "current": status.current,
        "head": status.head,
        "up_to_date": status.up_to_date,
        "verified": report.ok,
        "drift": drift,
        "prefix": sys.prefix,
    }))
    """
)


def test_installed_wheel_migrates_a_database_outside_the_repository(
    venv_python: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert not workdir.resolve().is_relative_to(REPO_ROOT)
    result = _run([str(venv_python), "-c", SCRIPT], cwd=workdir)
    info = json.loads(result.stdout.strip().splitlines()[-1])

    venv = venv_python.parent.parent.resolve()
    assert Path(info["prefix"]).resolve() == venv
    package_file = Path(info["file"]).resolve()
    assert package_file.is_relative_to(venv), package_file
    assert not package_file.is_relative_to(REPO_ROOT)
    migrations = Path(info["migrations"]).resolve()
    assert migrations.is_relative_to(venv), migrations
    assert migrations.name == "_migrations"
    assert (migrations / "env.py").is_file()

    head = migrate.head_revision()  # from the source checkout
    assert info["head"] == head
    assert info["current"] == head
    assert info["up_to_date"] is True
    assert info["verified"] is True
    assert info["drift"] is None

    database = workdir / "x.db"
    assert database.is_file()
    assert (database.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(database) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert version == head
    assert {"audit_events", "audit_chain_heads", "patients"} <= tables


def test_installed_wheel_replays_a_shipped_example_by_name(
    venv_python: Path, tmp_path: Path
) -> None:
    """The docs' ``compliance simulate NAME`` works from any folder after a plain wheel install."""
    from compliance.simulation import examples

    command = venv_python.parent / "compliance"
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    listed = _run([str(command), "simulate", "--list", "--json"], cwd=workdir)
    assert [e["name"] for e in json.loads(listed.stdout)] == examples.names()
    replay = _run([str(command), "simulate", "ipledge-lockout", "--json"], cwd=workdir)
    results = json.loads(replay.stdout)
    assert results and all(r["expected"] is None or r["expected"]["held"] for r in results)
    version = _run([str(command), "--version"], cwd=workdir)
    assert version.stdout.startswith("compliance ")
    assert list(workdir.iterdir()) == []
