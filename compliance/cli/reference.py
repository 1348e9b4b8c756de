"""Generated documentation blocks: the CLI reference and exit codes (docs/cli.md), the course
diagram, reason codes and permissions (docs/rules.md), the timeline operations (docs/simulate.md).

The CLI reference is rendered from the commands' own data (names, parameters, choices, help
sentences) into Markdown of this project's making, never from click's help formatter, so a new
click release that wraps lines differently changes nothing here. ``python -m
compliance.cli.reference`` rewrites every block in place; a test fails, with a short diff, when a
block is out of date.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

from compliance.errors import EXIT_CODES

#: Each generated documentation file and the blocks it holds, relative to the repository root.
DOCUMENTS: dict[str, tuple[str, ...]] = {
    "docs/cli.md": ("cli-reference", "exit-codes"),
    "docs/rules.md": ("course-diagram", "reason-codes", "permissions"),
    "docs/simulate.md": ("timeline-operations",),
}


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found.extend(_walk(command.commands[name], [*path, name]))
    return found


def _help_of(text: str | None) -> str:
    """Help as written, without click's ``\\f`` tail or ``\\b`` markers; a line a paragraph."""
    body = inspect.cleandoc(text or "").split("\f", 1)[0]
    paragraphs = [p for p in re.split(r"\n\s*\n", body) if p.strip() and p.strip() != "\b"]
    return "\n\n".join(" ".join(p.replace("\b", " ").split()) for p in paragraphs)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _argument_name(argument: click.Argument) -> str:
    name = (argument.metavar or argument.name or "").upper()
    if argument.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if argument.required or name.startswith("[") else f"[{name}]"


def _value_of(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        listed = "one of: " + ", ".join(f"`{c}`" for c in param.type.choices)
        return listed + (" (required)" if param.required else "")
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    name = f"`{param.metavar or param.type.name.upper()}`"
    if getattr(param, "multiple", False):
        name += " (repeatable)"
    return name + (" (required)" if param.required else "")


def _command_section(path: list[str], command: click.Command) -> str:
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    usage = " ".join([*path, "[OPTIONS]", *(_argument_name(a) for a in arguments)])
    if isinstance(command, click.Group):
        usage += " COMMAND [ARGS]..."
    lines = [f"### `{' '.join(path)}`", "", f"Usage: `{usage}`", ""]
    help_text = _help_of(command.help)
    if help_text:
        lines += [help_text, ""]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    rows = [
        f"| {_cell(', '.join(f'`{n}`' for n in [*o.opts, *o.secondary_opts]))} "
        f"| {_cell(_value_of(o))} "
        f"| {_cell(_help_of(o.help))} |"
        for o in options
    ]
    rows.append("| `-h`, `--help` | flag | Show this message and exit. |")
    lines += ["| option | value | meaning |", "|---|---|---|", *rows, ""]
    for name, listed in getattr(command, "values_text", list)():
        lines += [f"Valid {name}: " + ", ".join(f"`{v}`" for v in listed) + ".", ""]
    if isinstance(command, click.Group):
        lines += ["| command | what it does |", "|---|---|"]
        for name in sorted(command.commands):
            sub = command.commands[name]
            first = _help_of(sub.short_help or sub.help).split("\n", 1)[0]
            sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
            lines.append(f"| [`{name}`](#{_anchor([*path, name])}) | {_cell(sentence)} |")
        lines.append("")
    return "\n".join(lines)


def _anchor(path: list[str]) -> str:
    return "-".join(path).lower()


def cli_reference() -> str:
    from compliance.cli.main import cli

    return "\n".join(_command_section(p, c) for p, c in _walk(cli, ["compliance"]))


def commands_without_help() -> list[str]:
    from compliance.cli.main import cli

    return [" ".join(p) for p, c in _walk(cli, ["compliance"]) if not (c.help or "").strip()]


def exit_code_table() -> str:
    lines = ["| code | name | meaning |", "|---|---|---|"]
    lines += [f"| {code} | `{name}` | {meaning} |" for code, name, meaning in EXIT_CODES]
    return "\n".join(lines) + "\n"


def reason_code_table() -> str:
    from compliance.domain.reasons import MESSAGES

    lines = ["| code | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {message} |" for code, message in MESSAGES.items()]
    return "\n".join(lines) + "\n"


def blocks() -> dict[str, Callable[[], str]]:
    """Every generated block by marker name, each built only when asked for."""
    from compliance.domain.course import mermaid
    from compliance.domain.roles import permission_markdown
    from compliance.simulation.timeline import operations_markdown

    return {
        "cli-reference": cli_reference,
        "permissions": permission_markdown,
        "exit-codes": exit_code_table,
        "course-diagram": lambda: f"```mermaid\n{mermaid()}```\n",
        "reason-codes": reason_code_table,
        "timeline-operations": operations_markdown,
    }


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", flags=re.DOTALL)


def _replacement(body: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + body + match.group(2)

    return replace


def render(text: str, names: tuple[str, ...]) -> str:
    """``text`` with each named block regenerated; a missing marker is an error."""
    makers = blocks()
    for name in names:
        pattern = _pattern(name)
        if not pattern.search(text):
            raise SystemExit(f"marker <!-- {name}:start --> missing")
        text = pattern.sub(_replacement(makers[name]()), text)
    return text


def _normalised(text: str) -> list[str]:
    """The lines that carry content, whitespace collapsed: what a reader sees, not its layout."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def stale_blocks(root: Path, limit: int = 30) -> str:
    """A short diff of every generated block that no longer matches the code ('' when current)."""
    report: list[str] = []
    for relative, names in DOCUMENTS.items():
        current = (root / relative).read_text(encoding="utf-8")
        fresh = render(current, names)
        diff = list(
            difflib.unified_diff(
                _normalised(current), _normalised(fresh), relative, "generated", n=1, lineterm=""
            )
        )
        if diff:
            shown = diff[:limit]
            if len(diff) > limit:
                shown.append(f"... {len(diff) - limit} more diff lines")
            report += shown
    return "\n".join(report)


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else Path.cwd()
    for relative, names in DOCUMENTS.items():
        target = root / relative
        target.write_text(render(target.read_text(encoding="utf-8"), names), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
