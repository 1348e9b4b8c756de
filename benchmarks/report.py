"""The report: ``report.md`` for people, ``report.json`` for tools, from the same measurements."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks import population, profile
from benchmarks.common import Measurement, fmt_rate, fmt_seconds

READING = """\
How to read a row: *engine* is the figure through the public API (or the installed command);
*limit* is the same work done the cheapest way available on this machine, measured in the same
run (what it is, per group, is listed under the table). *ratio* is engine / limit:

- for a rate (authorizations/s, events/s) it is the share of the limit's rate the engine reaches:
  1.0 would mean no overhead at all; the dispense target is at least 0.25, the HTTP one (the
  service against the same call in process) at least 0.5;
- for a time (latency, wall time) it is how many times the limit's time the engine takes: the
  history target is under 1.3 (a large database as fast as an empty one, within 30 %), the
  start-up target at most 1.5.

Rows without a target are context: they locate where the time goes.
"""


def _value(m: Measurement, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if m.unit == "s":
        return fmt_seconds(value)
    if m.unit.endswith("/s"):
        return f"{fmt_rate(value)[:-2]} {m.unit}"
    return f"{value:,.3g} {m.unit}"


def _ratio(m: Measurement) -> str:
    r = m.ratio
    if math.isnan(r):
        return "n/a"
    return f"{r:.3f}x" if r < 10 else f"{r:,.1f}x"


def _met(m: Measurement) -> str:
    if m.met is None:
        return "—"
    return "met" if m.met else "**missed**"


def _target(m: Measurement) -> str:
    if m.target is None:
        return "—"
    op, value = m.target
    return f"ratio {op.replace('>=', '≥').replace('<=', '≤')} {value:g}"


def _machine_rows(machine: dict[str, Any]) -> list[tuple[str, str]]:
    disk = machine.get("disk", {})
    pg = machine.get("postgresql", {})
    disk_text = ", ".join(
        str(x)
        for x in (
            disk.get("device"),
            disk.get("filesystem"),
            f"{disk.get('size_gib')} GiB",
            disk.get("model"),
            None if "rotational" not in disk else ("rotational" if disk["rotational"] else "SSD"),
        )
        if x
    )
    pg_text = (
        pg.get("error")
        or f"{pg.get('server_version')} (synchronous_commit={pg.get('synchronous_commit')}, "
        f"fsync={pg.get('fsync')}, wal_sync_method={pg.get('wal_sync_method')}, "
        f"shared_buffers={pg.get('shared_buffers')})"
    )
    packages = ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items() if v)
    return [
        ("CPU", f"{machine.get('cpu_model')}"),
        ("Logical CPUs", f"{machine.get('logical_cpus')}"),
        ("Memory", f"{machine.get('memory_gib')} GiB"),
        ("Virtualisation", f"{machine.get('hypervisor')}"),
        ("OS", f"{machine.get('os')}"),
        ("Python", f"{machine.get('python')}"),
        ("SQLite", f"{machine.get('sqlite')}"),
        ("PostgreSQL", pg_text),
        ("Packages", packages),
        ("Disk (work folder)", disk_text),
        (
            "SQLite WAL commit, synchronous=FULL (median)",
            fmt_seconds(float(machine.get("sqlite_wal_commit_median_s", math.nan))),
        ),
        (
            "Load average (1, 5, 15 min) at start / end",
            f"{machine.get('load_average_at_start')} / {machine.get('load_average_at_end')}",
        ),
    ]


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render_markdown(document: dict[str, Any], measurements: list[Measurement]) -> str:
    lines = [
        "# compliance benchmarks",
        "",
        f"Mode **{document['mode']}**, run {document['generated_at']} in "
        f"{document['seconds']:.0f} s: `{document['command']}`",
        "",
        "## Results",
        "",
        "| measurement | engine | limit | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for m in measurements:
        lines.append(
            f"| {m.group}: {m.name} | {_value(m, m.engine)} | {_value(m, m.limit)} | "
            f"{_ratio(m)} | {_target(m)} | {_met(m)} |"
        )
    targeted = [m for m in measurements if m.met is not None]
    missed = [m for m in targeted if not m.met]
    lines += [
        "",
        f"Targets met: **{len(targeted) - len(missed)} of {len(targeted)}**"
        + (
            "; missed: " + "; ".join(f"{m.group}: {m.name}" for m in missed) + "."
            if missed
            else "."
        ),
        "",
        "What *limit* is in each group:",
        "",
    ]
    seen: dict[str, str] = {}
    for m in measurements:
        seen.setdefault(m.group, m.limit_label)
    lines += [f"- **{group}**: {label}" for group, label in seen.items()]
    lines += ["", READING]
    if document.get("profiles"):
        lines += [
            "## Where the time of an authorization goes",
            "",
            "From `python -m benchmarks.profile` (the cProfile data are in `profiles/`).",
            "",
            *profile.render(document["profiles"]),
        ]
    if document.get("population"):
        lines += [
            "## Whole-population and single-patient commands",
            "",
            "From `benchmarks/population.py`: the installed command on generated databases of"
            " two sizes.",
            "",
            *population.render(document["population"]),
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _machine_rows(document["machine"])]
    lines += ["", "## Sizes and settings", ""]
    parameters = dict(document["parameters"])
    databases = parameters.pop("history_databases", {})
    lines += [f"- {k}: {_plain(v)}" for k, v in parameters.items()]
    lines += [
        f"- history database ({backend}): {d['patients']:,} patients, {d['events']:,} audit "
        f"events (whole cycles per patient: "
        f"{', '.join(f'{k} for {n:,}' for k, n in d['cycles'].items())}), "
        f"generated in {d['seconds']:,.0f} s"
        for backend, d in databases.items()
    ]
    notes = document.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
    lines += [
        "",
        "Every figure above, with its distribution (n, mean, p50, p90, p99, max) and the sizes "
        "it was measured at, is in `report.json`.",
        "",
    ]
    return "\n".join(lines)


def write(out: Path, document: dict[str, Any], measurements: list[Measurement]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    document = {
        **document,
        "measurements": [m.to_dict() for m in measurements],
        "summary": {
            "targets": sum(m.met is not None for m in measurements),
            "met": sum(m.met is True for m in measurements),
            "missed": [f"{m.group}: {m.name}" for m in measurements if m.met is False],
        },
    }
    md, js = out / "report.md", out / "report.json"
    md.write_text(render_markdown(document, measurements), encoding="utf-8")
    js.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return [md, js]
