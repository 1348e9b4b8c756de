"""The README front page, CI parity, the generated reference blocks, links, the constraints file
and the runnable embedding example."""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import click
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from compliance.cli import reference
from compliance.cli.reference import DOCUMENTS, commands_without_help, stale_blocks

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no '## {title}' section"
    return match.group(1)


def _quickstart_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", _section(README, "Quickstart"), flags=re.S)
    return [b.strip() for b in blocks]


def test_readme_opens_with_a_two_command_quickstart() -> None:
    first_heading = re.findall(r"^## (.+)$", README, flags=re.M)[0]
    assert first_heading == "Quickstart"
    blocks = _quickstart_commands()
    assert len(blocks) == 2
    assert all(len(b.splitlines()) == 1 for b in blocks)
    assert "compliance demo" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1] and "[test]" in blocks[1]


def test_readme_is_a_front_page() -> None:
    words = len(re.sub(r"```.*?```", "", README, flags=re.S).split())
    assert words < 1200, f"README has {words} words of prose: move detail to docs/"
    contents = _section(README, "Documentation")
    for page in ("cli", "embedding", "configuration", "operations", "rules", "guarantees"):
        assert f"(docs/{page}.md)" in contents, page
    assert "cli-reference:start" not in README


def test_ci_runs_the_readme_test_command_in_a_fresh_environment() -> None:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = _quickstart_commands()[1]
    assert command in lines
    before = lines[: lines.index(command)]
    assert any(re.search(r"-m venv ", line) for line in before), "CI must create a new venv"
    assert any(re.search(r"^\. .*/bin/activate", line) for line in before)
    assert any(line.startswith("trap ") and "rm -rf" in line for line in before)


def test_generated_blocks_are_current() -> None:
    diff = stale_blocks(ROOT)
    assert diff == "", f"run: python -m compliance.cli.reference\n{diff}"


def test_a_stale_block_is_reported_as_a_short_diff(tmp_path: Path) -> None:
    for relative in DOCUMENTS:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    cli_doc = tmp_path / "docs" / "cli.md"
    text = cli_doc.read_text(encoding="utf-8")
    edited = re.sub(r"^Record a pregnancy test", "Record a test", text, count=1, flags=re.M)
    edited = "\n".join(line for line in edited.splitlines() if "`--clia`" not in line) + "\n"
    cli_doc.write_text(edited.replace("\n\n", "\n\n\n"), encoding="utf-8")
    diff = stale_blocks(tmp_path, limit=30).splitlines()
    assert 0 < len(diff) <= 31
    assert "-Record a test (a positive result suspends the course at once)." in diff
    assert "+Record a pregnancy test (a positive result suspends the course at once)." in diff
    assert any(line.startswith("+| `--clia` |") for line in diff)


def test_the_reference_does_not_depend_on_clicks_help_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = reference.cli_reference()

    def scrambled(text: str, *args: object, **kwargs: object) -> str:
        return "~".join(text.split())

    monkeypatch.setattr(click.formatting, "wrap_text", scrambled)
    monkeypatch.setattr(click.Command, "format_help", lambda *a, **k: None)
    assert reference.cli_reference() == before


def _commands() -> list[tuple[list[str], click.Command]]:
    from compliance.cli.main import cli

    return reference._walk(cli, ["compliance"])


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=" ".join)
def test_every_command_option_argument_and_choice_is_documented(path: list[str]) -> None:
    command = {tuple(p): c for p, c in _commands()}[tuple(path)]
    section = CLI_DOC.split(f"### `{' '.join(path)}`\n", 1)[1].split("\n### ", 1)[0]
    flat = " ".join(section.split())
    assert " ".join((command.help or "").split("\f")[0].split()) in flat
    for param in command.params:
        if isinstance(param, click.Argument):
            usage = re.search(r"^Usage: `(.*)`$", section, flags=re.M)
            assert usage and (param.metavar or param.name or "").upper() in usage.group(1)
            continue
        for opt in param.opts:
            assert f"`{opt}" in section, opt
        if isinstance(param.type, click.Choice):
            for choice in param.type.choices:
                assert f"`{choice}`" in section, choice
        if isinstance(param, click.Option) and param.help:
            assert " ".join(param.help.split()) in flat


def test_every_command_has_help_text() -> None:
    assert commands_without_help() == []


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [
        Requirement(r)
        for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]
    ]


def test_constraints_pin_every_declared_dependency_within_its_range() -> None:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not a pin (name==version)"
            pins[canonicalize_name(name)] = version.strip()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"constraints.txt does not pin {requirement.name}: run bash .ci/update-constraints"
        )
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement}"
        )
    for extra in ("binary",):
        assert canonicalize_name(f"psycopg-{extra}") in pins


def test_embedding_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (ROOT / "docs" / "embedding.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", page, flags=re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "docs/embedding.md", "exec"), {"__name__": "embedding"})
    out = capsys.readouterr().out
    assert out.startswith("ALLOW ()\n")
    assert "refused: ('AUTHORIZATION_ALREADY_ISSUED',)" in out
    assert (tmp_path / "pharmacy.db").exists()
    assert os.stat(tmp_path / "pharmacy.db").st_mode & 0o777 == 0o600
