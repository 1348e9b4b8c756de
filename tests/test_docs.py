"""The README: the two-command Quickstart, CI parity, generated blocks, and a runnable example."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from compliance.cli.reference import commands_without_help, render

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## )", README, flags=re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_readme_opens_with_a_two_command_quickstart() -> None:
    first_heading = re.findall(r"^## (.+)$", README, flags=re.M)[0]
    assert first_heading == "Quickstart"
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", _section("Quickstart"), flags=re.S)
    assert len(blocks) == 2
    assert all(len(b.strip().splitlines()) == 1 for b in blocks)
    assert "compliance demo" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1] and "[test]" in blocks[1]


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", _section("Quickstart"), flags=re.S)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert blocks[1].strip() in ci.splitlines()


def test_generated_blocks_are_current() -> None:
    assert render(README) == README, "run: python -m compliance.cli.reference README.md"


def test_every_command_has_help_text() -> None:
    assert commands_without_help() == []


def test_embedding_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code = re.search(r"```python\n(.*?)```", _section("Embedding"), flags=re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.startswith("ALLOW ()\n")
    assert "refused: ('AUTHORIZATION_ALREADY_ISSUED',)" in out
    assert (tmp_path / "pharmacy.db").exists()
    assert os.stat(tmp_path / "pharmacy.db").st_mode & 0o777 == 0o600
