"""``compliance audit``: verify the chains, read the log, export it, checkpoint it."""

from __future__ import annotations

import csv
import json
import sys
from typing import IO, Any

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, note, say, show_record, show_rows
from compliance.cli.party_cmds import parse_instant
from compliance.errors import AuditVerificationFailed

LOG_COLUMNS = ["id", "at", "actor", "action", "outcome", "subjects", "reasons", "state_after"]
CSV_COLUMNS = [
    "id",
    "chain",
    "seq",
    "at",
    "actor",
    "on_behalf_of",
    "action",
    "outcome",
    "subjects",
    "state_before",
    "state_after",
    "reasons",
    "ruleset",
    "payload",
    "prev",
    "hash",
]


def _filters(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--subject", help="Only events about this id (patient, prescriber...)."),
            click.option("--actor", help="Only events by this person."),
            click.option("--action", help="Only this action, e.g. patient.register."),
            click.option(
                "--since",
                help="From this instant (ISO 8601; a date: its start in your zone).",
            ),
            click.option(
                "--until",
                help="Before this instant (ISO 8601; a date: its start in your zone).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _log_filter(limit: int | None = None, newest_first: bool = False, **kw: Any) -> Any:
    from compliance.audit.store import LogFilter
    from compliance.domain.ids import normalise
    from compliance.domain.validate import text

    def option(name: str) -> str | None:
        value = kw.get(name)
        return None if not value else text(f"--{name}", value, max_len=64)

    subject, actor = option("subject"), option("actor")
    return LogFilter(
        subject=normalise(subject) if subject else None,
        actor=normalise(actor) if actor else None,
        action=option("action"),
        since=parse_instant("--since", kw.get("since"), "start"),
        until=parse_instant("--until", kw.get("until"), "start"),
        limit=limit,
        newest_first=newest_first,
    )


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@audit.command()
@json_option
@pass_ctx
def verify(state: Context, as_json: bool) -> None:
    """Check every chain, head and checkpoint; exit 7 at the first broken event."""
    report = state.app().verify_audit(state.who())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        say(
            f"audit trail intact: {report.events} events in {report.chains} chains, "
            f"{report.checkpoints} checkpoints"
        )
    if not report.ok:
        brk = report.first_break
        assert brk is not None
        raise AuditVerificationFailed(
            f"audit trail broken in chain {brk.chain_id} at event {brk.event_id} "
            f"(sequence {brk.chain_seq}): {brk.problem}"
        )


@audit.command()
@json_option
@pass_ctx
def checkpoint(state: Context, as_json: bool) -> None:
    """Record the heads of all chains that moved; publish the digest to anchor the trail."""
    result = state.app().checkpoint_audit(state.who())
    show_record(result.to_dict(), as_json, title="Checkpoint")


@audit.command()
@_filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--oldest-first", is_flag=True, help="The earliest events first (default: the newest first)."
)
@json_option
@pass_ctx
def log(state: Context, /, limit: int, oldest_first: bool, as_json: bool, **filters: Any) -> None:
    """Show audit events, newest first; says so when more events match than were shown."""
    app = state.app()
    chosen = _log_filter(limit, not oldest_first, **filters)
    events = app.audit_log(state.who(), chosen)
    rows = [e.to_dict() for e in events]
    show_rows(rows, LOG_COLUMNS, as_json, title="Audit log", empty="no audit events match")
    if not as_json and len(rows) == limit:
        total = app.audit_count(state.who(), chosen)
        if total > limit:
            which = "earliest" if oldest_first else "newest"
            note(f"showing the {which} {limit} of {total} matching events (see --limit, filters)")


def _csv_row(event: dict[str, Any]) -> list[str]:
    out = []
    for column in CSV_COLUMNS:
        value = event[column]
        if isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        out.append("" if value is None else str(value))
    return out


@audit.command()
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file instead of stdout.",
)
@_filters
@pass_ctx
def export(state: Context, /, fmt: str, output: str | None, **filters: Any) -> None:
    """Stream the audit trail (any size) as JSON Lines or CSV."""
    app = state.app()
    log_filter = _log_filter(**filters)
    show_progress = sys.stderr.isatty()
    total = app.audit_count(state.who(), log_filter) if show_progress else None
    target: IO[str]
    with (
        open(output, "w", encoding="utf-8", newline="") if output else _stdout() as target,
        app.audit_stream(state.who(), log_filter) as events,
    ):
        writer = csv.writer(target) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        progress = _progress(total) if show_progress else None
        written = 0
        for record in events:
            event = record.to_dict()
            if writer is not None:
                writer.writerow(_csv_row(event))
            else:
                target.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
            written += 1
            if progress is not None and written % 500 == 0:
                progress.advance(500)
        if progress is not None:
            progress.finish(written)


class _stdout:  # noqa: N801 - used like open()
    def __enter__(self) -> IO[str]:
        return sys.stdout

    def __exit__(self, *_: object) -> None:
        sys.stdout.flush()


class _progress:  # noqa: N801
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("exporting", total=total)

    def advance(self, n: int) -> None:
        self._bar.advance(self._task, n)

    def finish(self, written: int) -> None:
        self._bar.update(self._task, completed=written)
        self._bar.stop()
        click.echo(f"exported {written} events", err=True)
