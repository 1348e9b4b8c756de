"""Rendering: one JSON document with ``--json``; rich tables on a terminal; plain text in a pipe.

rich is imported only when a table is actually drawn, to keep start-up fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout, nothing else."
    )(fn)


def to_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False, default=str)


def _terminal() -> bool:
    return sys.stdout.isatty()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    from compliance.cli.timefmt import when

    return when(value)


def _console() -> Any:
    """``NO_COLOR`` (any value, https://no-color.org) turns off every style, bold and italic
    included, not only colours."""
    from rich.console import Console

    if os.environ.get("NO_COLOR"):
        return Console(no_color=True, color_system=None, highlight=False)
    return Console(highlight=False)


def _longest_word(values: Sequence[str]) -> int:
    """The widest single token of a column: ids, numbers and dates are never broken mid-way,
    so a column is never narrower than this (up to 40 characters)."""
    return min(40, max((len(w) for v in values for w in v.replace(",", " ").split()), default=1))


def show_record(data: Mapping[str, Any], as_json: bool, title: str | None = None) -> None:
    if as_json:
        click.echo(to_json(data))
        return
    if not _terminal():
        for key, value in data.items():
            click.echo(f"{key}: {_cell(value)}")
        return
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in data.items():
        table.add_row(key, _cell(value))
    _console().print(table)


def show_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    as_json: bool,
    title: str | None = None,
    document: Any = None,
    empty: str | None = None,
) -> None:
    """A list of records; ``document`` replaces the rows as the JSON document when given. An
    empty list says so on stderr (``empty``), so a pipe still gets just the header line."""
    if as_json:
        click.echo(to_json(list(rows) if document is None else document))
        return
    if not rows:
        note(empty or f"{(title or 'list').lower()}: nothing to show")
        if _terminal():
            return
    if not _terminal():
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join(_cell(row.get(c)) for c in columns))
        return
    from rich.table import Table

    table = Table(title=title)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    for i, column in enumerate(columns):
        # prose wraps between words; a token wider than 40 characters folds
        widest = _longest_word([column, *(r[i] for r in cells)])
        table.add_column(column, overflow="fold", min_width=widest)
    for row_cells in cells:
        table.add_row(*row_cells)
    _console().print(table)


def say(message: str) -> None:
    """A human line on stdout (never used together with ``--json``)."""
    click.echo(message)


def note(message: str) -> None:
    """A line for the person reading, on stderr so it never mixes with the data."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def deprecated(message: str) -> None:
    """A warning about an old spelling; silent with ``--json``, whose stderr is one document."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not ctx.meta.get("compliance.json"):
        warn(message)


def decision_lines(decision: Mapping[str, Any]) -> list[str]:
    """A refusal as people act on it: each reason with its message, next step and earliest date."""
    lines = [f"reasons: {', '.join(r['code'] for r in decision['reasons'])}"]
    for reason in decision["reasons"]:
        lines.append(f"  {reason['code']}: {reason.get('message') or ''}".rstrip())
        if reason.get("next_step"):
            lines.append(f"    next: {reason['next_step']}")
        if reason.get("earliest"):
            lines.append(f"    earliest: {reason['earliest']}")
    window = decision.get("window")
    if window:
        lines.append(f"  window: {window['first_day']} to {window['last_day']}")
    return lines


#: What the programme requires once a pregnancy is known (reason code ``PREGNANCY_ACTIONS``).
PREGNANCY_ACTION_STEPS = (
    "stop the drug now: the patient takes no further doses",
    "report the pregnancy to the programme",
    "refer the patient to a physician experienced in reproductive toxicity",
)


def pregnancy_alert(event: str, ruleset: str) -> dict[str, Any]:
    """The ``alert`` of a positive test or a reported pregnancy, as ``--json`` carries it."""
    return {
        "code": "PREGNANCY_ACTIONS",
        "event": event,
        "ruleset": ruleset,
        "actions": list(PREGNANCY_ACTION_STEPS),
    }


def shout_alert(alert: Mapping[str, Any]) -> None:
    """A block on stderr that nobody scrolls past: the event and each required action."""
    rule = "!" * 72
    lines = [
        rule,
        f"!! {alert['event'].upper()}: the course is suspended ({alert['code']})",
        f"!! programme {alert['ruleset']}: required now:",
        *(f"!!   {n}. {step}" for n, step in enumerate(alert["actions"], start=1)),
        rule,
    ]
    for line in lines:
        click.echo(line, err=True)
