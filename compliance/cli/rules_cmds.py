"""``compliance rules ...``: the rulesets as data, their schedule, the course diagram, what
differs between two of them, and what moving in-flight courses to one would change."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, say, show_record, show_rows

if TYPE_CHECKING:
    from compliance.api.rule_changes import ImpactStream
    from compliance.domain.evaluation import Decision
    from compliance.domain.impact import GateImpact

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
    """Dry run: what moving every in-flight course of the programme to RULESET would change.

    Each course is written as it is judged and the totals last, so any number of courses runs
    in the same memory."""
    app = state.app()
    # A refusal or a bad argument is raised on entering, before anything is written.
    with app.rules_impact_stream(state.who(), ruleset, as_of, pharmacy_zone) as stream:
        if as_json:
            _impact_json(stream)
        else:
            _impact_text(stream)


def _impact_json(stream: ImpactStream) -> None:
    """One JSON document, written as the courses are judged: the heading, ``courses`` one
    object a line, ``summary`` last (known only once every course is read)."""
    from compliance.api.rule_changes import compact_json

    out = sys.stdout
    out.write("{\n")
    for key, value in stream.heading().items():
        out.write(f"  {compact_json(key)}: {compact_json(value)},\n")
    out.write('  "courses": [')
    separator = "\n    "
    for line in stream.json_lines():
        out.write(separator + line)
        separator = ",\n    "
    out.write(f'\n  ],\n  "summary": {compact_json(stream.summary)}\n}}\n')
    out.flush()


def _decision_cell(decision: Decision) -> str:
    """``verdict`` of a decision object: ALLOW, or REFUSE and its codes."""
    return "ALLOW" if decision.allowed else "REFUSE " + ", ".join(decision.codes)


def _gate_cell(gate: GateImpact | None) -> str:
    if gate is None:
        return "-"
    return f"{_decision_cell(gate.before)} -> {_decision_cell(gate.after)}"


def _impact_text(stream: ImpactStream) -> None:
    """A line per course as it is judged (tab-separated, under a header line written with the
    first course), then the totals."""
    out = sys.stdout
    header = "\t".join(IMPACT_COLUMNS) + "\n"
    for row in stream:
        if header:
            out.write(header)
            header = ""
        cells = (row.patient, row.state, row.ruleset, row.change.value)
        gates = (_gate_cell(row.gate("prescribe")), _gate_cell(row.gate("dispense")))
        out.write("\t".join((*cells, *gates)) + "\n")
    counts = stream.summary
    out.write(
        f"moving to {stream.ruleset} at {stream.evaluated_at.isoformat()}: {counts['courses']} "
        f"course(s); newly allowed {counts['newly_allowed']}, newly refused "
        f"{counts['newly_refused']}, reasons changed {counts['reasons_changed']}, unchanged "
        f"{counts['unchanged']} ({counts['already_on_ruleset']} already on it)\n"
    )
    out.flush()
