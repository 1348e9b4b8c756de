"""The words commands accept, read from the rulesets: for ``--help`` and shell completion.

Which values a course accepts depends on its ruleset, so help lists the values of every ruleset;
the API still judges each value against the course's own ruleset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem


def _rulesets() -> list[Any]:
    from compliance.programs.loader import all_rulesets

    return list(all_rulesets().values())


def categories() -> list[str]:
    return sorted({name for r in _rulesets() for name in r.categories})


def category_reasons() -> list[str]:
    return sorted(
        {reason for r in _rulesets() for c in r.categories.values() for reason in c.reasons}
    )


def consent_forms() -> list[str]:
    return sorted({form for r in _rulesets() for form in r.consent_catalogue})


def methods() -> list[str]:
    return sorted(
        {m for r in _rulesets() for m in (*r.contraception.methods, *r.contraception.waivers)}
    )


def test_kinds() -> list[str]:
    """The kinds of test, then the names programmes give them (EU/UK "pretreatment")."""
    from compliance.programs.model import TestKind

    named = sorted({n for r in _rulesets() for n in r.testing.names})
    return [k.value for k in TestKind] + named


def schedules() -> list[str]:
    return sorted({s for r in _rulesets() for s in r.testing.schedules})


def programmes() -> list[str]:
    ids = [r.id for r in _rulesets()]
    return sorted({i.partition("/")[0] for i in ids} | set(ids))


def scopes() -> list[str]:
    from compliance.domain.roles import DELEGABLE

    return sorted(a.value for a in DELEGABLE)


def completer(values: Callable[[], list[str]], suffix: str = "") -> Any:
    """A click ``shell_complete`` callback offering ``values`` (each followed by ``suffix``)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        typed = incomplete.lower()
        return [CompletionItem(v + suffix) for v in values() if v.lower().startswith(typed)]

    return complete


class ValuesCommand(click.Command):
    """A command whose help ends with the valid values of its arguments and options, read
    from the rulesets only when the help is shown (start-up stays fast)."""

    def __init__(self, *args: Any, values: dict[str, Callable[[], list[str]]], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.values = values

    def values_text(self) -> list[tuple[str, list[str]]]:
        return [(name, listing()) for name, listing in self.values.items()]

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for name, listed in self.values_text():
            with formatter.section(f"Valid {name}"):
                formatter.write_text(", ".join(listed))
        super().format_epilog(ctx, formatter)
