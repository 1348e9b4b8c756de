"""Generated documentation blocks for the README (CLI reference, permissions, exit codes, the
course state diagram) and for docs/simulate.md (the timeline operations).

``python -m compliance.cli.reference README.md docs/simulate.md`` rewrites the blocks in place;
tests fail when either file is out of date, so the reference stays complete.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

from compliance.errors import EXIT_CODES


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found.extend(_walk(command.commands[name], [*path, name]))
    return found


def cli_reference() -> str:
    from compliance.cli.main import cli

    parts: list[str] = []
    for path, command in _walk(cli, ["compliance"]):
        with click.Context(
            command,
            info_name=" ".join(path),
            help_option_names=["-h", "--help"],
            terminal_width=100,
            max_content_width=100,
        ) as ctx:
            help_text = command.get_help(ctx)
        parts.append(f"### `{' '.join(path)}`\n\n```text\n{help_text.rstrip()}\n```\n")
    return "\n".join(parts)


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


def blocks() -> dict[str, str]:
    from compliance.domain.course import mermaid
    from compliance.domain.roles import permission_markdown

    return {
        "cli-reference": cli_reference(),
        "permissions": permission_markdown(),
        "exit-codes": exit_code_table(),
        "course-diagram": f"```mermaid\n{mermaid()}```\n",
        "reason-codes": reason_code_table(),
    }


def simulate_blocks() -> dict[str, str]:
    from compliance.simulation.timeline import operations_markdown

    return {"timeline-operations": operations_markdown()}


def _replacement(body: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + body + match.group(2)

    return replace


def render(text: str, generated: dict[str, str] | None = None) -> str:
    for name, body in (blocks() if generated is None else generated).items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", flags=re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"marker <!-- {name}:start --> missing")
        text = pattern.sub(_replacement(body), text)
    return text


if __name__ == "__main__":
    for name in sys.argv[1:] or ["README.md"]:
        target = Path(name)
        generated = simulate_blocks() if target.name == "simulate.md" else None
        target.write_text(render(target.read_text(encoding="utf-8"), generated), encoding="utf-8")
