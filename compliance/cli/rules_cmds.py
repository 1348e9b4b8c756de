"""``compliance rules ...``: the rulesets as data, their schedule, the course diagram, what
differs between two of them, and what moving in-flight courses to one would change."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, say, show_record, show_rows

DIFF_COLUMNS = ["path", "change", "old", "new"]
IMPACT_COLUMNS = ["patient", "state", "ruleset", "change", "prescribe", "dispense"]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@click.group()
def rules() -> None:
    """Programme rulesets: list, show, diff, impact, schedule, diagram."""


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
            "clinic_zone": r.clinic_zone,
        }
        for r in all_rulesets().values()
    ]
    columns = ["id", "title", "effective", "today_zone", "clinic_zone", "dispense_zone"]
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


@rules.command("diff")
@click.argument("old", metavar="OLD")
@click.argument("new", metavar="NEW")
@json_option
def rules_diff(old: str, new: str, as_json: bool) -> None:
    """Every parameter added, removed or changed from ruleset OLD to ruleset NEW."""
    from compliance.api.service import Compliance

    data = Compliance.ruleset_diff(old, new).to_dict()
    if as_json:
        show_record(data, True)
        return
    if not data["changes"]:
        say(f"{data['from']} -> {data['to']}: no differences")
        return
    say(f"{data['from']} -> {data['to']}: {len(data['changes'])} parameter(s) differ")
    show_rows(data["changes"], DIFF_COLUMNS, False, title="Differences")


def verdict(decision: dict[str, Any]) -> str:
    """A decision in one cell: ALLOW, or REFUSE and its codes."""
    if decision["outcome"] == "ALLOW":
        return "ALLOW"
    return "REFUSE " + ", ".join(r["code"] for r in decision["reasons"])


def before_after(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return "-"
    return f"{verdict(gate['before'])} -> {verdict(gate['after'])}"


@rules.command("impact")
@click.argument("ruleset")
@click.option(
    "--as-of",
    metavar="DATE",
    help="Judge at the start of this day in RULESET's zone (default: now).",
)
@click.option(
    "--pharmacy-zone",
    metavar="ZONE",
    help="IANA zone of the dispense, for rulesets judging dispensing in the pharmacy's zone "
    "[default: the ruleset's clinic zone].",
)
@json_option
@pass_ctx
def rules_impact(
    state: Context, ruleset: str, as_of: str | None, pharmacy_zone: str | None, as_json: bool
) -> None:
    """Dry run: what moving every in-flight course of the programme to RULESET would change."""
    report = state.app().rules_impact(state.who(), ruleset, as_of, pharmacy_zone).to_dict()
    if as_json:
        show_record(report, True)
        return
    counts = report["summary"]
    say(
        f"moving to {report['ruleset']} at {report['evaluated_at']}: {counts['courses']} "
        f"course(s); newly allowed {counts['newly_allowed']}, newly refused "
        f"{counts['newly_refused']}, reasons changed {counts['reasons_changed']}, unchanged "
        f"{counts['unchanged']} ({counts['already_on_ruleset']} already on it)"
    )
    rows = []
    for course in report["courses"]:
        gates = {g["gate"]: g for g in course["gates"]}
        rows.append(
            {
                **{k: course[k] for k in ("patient", "state", "ruleset", "change")},
                "prescribe": before_after(gates.get("prescribe")),
                "dispense": before_after(gates.get("dispense")),
            }
        )
    if rows:
        show_rows(rows, IMPACT_COLUMNS, False, title="Impact")
