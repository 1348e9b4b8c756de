"""Static checks the suite enforces: ruff, mypy --strict, and one-way import layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "compliance"

# What each layer may not import: domain -> persistence -> API -> CLI, never backwards.
FORBIDDEN = {
    "compliance/domain": (
        "sqlalchemy",
        "alembic",
        "click",
        "rich",
        "psycopg",
        "compliance.db",
        "compliance.api",
        "compliance.cli",
        "compliance.audit.store",
    ),
    "compliance/audit/chain.py": (
        "sqlalchemy",
        "click",
        "compliance.db",
        "compliance.api",
        "compliance.cli",
    ),
    "compliance/errors.py": ("sqlalchemy", "click", "compliance."),
    "compliance/clock.py": ("sqlalchemy", "click"),
    "compliance/db": ("click", "rich", "compliance.api", "compliance.cli"),
    "compliance/audit/store.py": ("click", "rich", "compliance.api", "compliance.cli"),
    "compliance/api": ("click", "rich", "compliance.cli"),
    # The demonstration and the simulator drive the public API only, as an embedding host would.
    "compliance/training.py": (
        "sqlalchemy",
        "click",
        "rich",
        "compliance.db",
        "compliance.cli",
        "compliance.audit.store",
    ),
    "compliance/demo.py": (
        "sqlalchemy",
        "click",
        "rich",
        "compliance.db",
        "compliance.cli",
        "compliance.audit.store",
    ),
    "compliance/simulation": (
        "sqlalchemy",
        "click",
        "rich",
        "compliance.db",
        "compliance.cli",
        "compliance.audit.store",
    ),
}


# Imports a module may make for type annotations only (under ``if TYPE_CHECKING:``), never at
# run time: the one exception tree names the domain's decision a refusal carries.
TYPE_ONLY = {"compliance/errors.py": ("compliance.domain.evaluation",)}


def _type_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements inside ``if TYPE_CHECKING:`` blocks."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        }:
            for inner in node.body:
                found.update(ast.walk(inner))
    return found


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = TYPE_ONLY.get(str(path.relative_to(ROOT)), ())
    typing_only = _type_only(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found = {node.module}
        else:
            continue
        if node in typing_only:
            found -= set(allowed)
        names.update(found)
    return names


def test_type_only_imports_are_not_run() -> None:
    """An allowed annotation-only import must stay one: importing errors loads no domain."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, compliance.errors; "
            "print(sorted(m for m in sys.modules if m.startswith('compliance.')))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "['compliance.errors']"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_import_layers_point_one_way(layer: str) -> None:
    target = ROOT / layer
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files
    offences = [
        f"{f.relative_to(ROOT)} imports {name}"
        for f in files
        for name in _imports(f)
        for banned in FORBIDDEN[layer]
        if name == banned.rstrip(".")
        or name.startswith(banned.rstrip(".") + ".")
        or (banned.endswith(".") and name.startswith(banned))
    ]
    assert offences == []


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "compliance"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
