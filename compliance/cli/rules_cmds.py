"""``compliance rules ...``: the rulesets as data, their schedule and the course diagram."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, say, show_record, show_rows


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@click.group()
def rules() -> None:
    """Programme rulesets: list, show, schedule, diagram."""


@rules.command("list")
@json_option
@pass_ctx
def rules_list(state: Context, as_json: bool) -> None:
    """The rulesets this version knows, with the date each takes effect."""
    from compliance.programs.loader import all_rulesets, default_schedule

    try:
        schedule = state.app().rules_schedule()
    except Exception:
        schedule = default_schedule()
    rows = [
        {
            "id": r.id,
            "title": r.title,
            "effective": str(schedule.get(r.id, "-")),
            "today_zone": r.today_zone,
            "dispense_zone": r.dispense_zone,
        }
        for r in all_rulesets().values()
    ]
    columns = ["id", "title", "effective", "today_zone", "dispense_zone"]
    show_rows(rows, columns, as_json, title="Rulesets")


@rules.command("show")
@click.argument("ruleset")
@json_option
def rules_show(ruleset: str, as_json: bool) -> None:
    """Every parameter of one ruleset."""
    from compliance.api.service import Compliance

    data = _plain(asdict(Compliance.ruleset(ruleset)))
    if as_json:
        show_record(data, True)
        return
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", data)
    show_record(flat, False, title=ruleset)


@rules.command("diagram")
@click.argument("ruleset")
def rules_diagram(ruleset: str) -> None:
    """The course state machine as a Mermaid diagram."""
    from compliance.api.service import Compliance

    say(Compliance.course_diagram(ruleset).rstrip())


@rules.command("schedule")
@click.argument("ruleset", required=False)
@click.argument("effective", required=False, metavar="[DATE]")
@json_option
@pass_ctx
def rules_schedule(
    state: Context, ruleset: str | None, effective: str | None, as_json: bool
) -> None:
    """Show when each ruleset takes effect, or set RULESET's date (administrators; audited)."""
    app = state.app()
    if ruleset is None:
        schedule = app.rules_schedule()
    else:
        if effective is None:
            raise click.BadParameter("give the date the ruleset takes effect", param_hint="DATE")
        schedule = app.set_rules_schedule(state.who(), ruleset, effective)
    rows = [{"ruleset": r, "effective": d.isoformat()} for r, d in sorted(schedule.items())]
    show_rows(rows, ["ruleset", "effective"], as_json, title="Schedule")
