"""``compliance audit``: verify the chains, read the log, export it, checkpoint it."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


def _read_published(path: str) -> dict[str, Any]:
    from compliance.errors import InvalidInput

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput("--against", f"cannot read {path!r}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("--against", f"{path!r} is not a JSON checkpoint") from None
    if not isinstance(doc, dict):
        raise InvalidInput("--against", f"{path!r} is not a signed checkpoint")
    return doc


@audit.command()
@click.option(
    "--against",
    type=click.Path(dir_okay=False),
    help="A signed checkpoint published earlier (from 'audit checkpoint --out'): the database "
    "must contain it unchanged and must not have fallen behind it.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    help="The checkpoint signing public key (PEM); default: the configured signing key's.",
)
@json_option
@pass_ctx
def verify(state: Context, against: str | None, public_key: str | None, as_json: bool) -> None:
    """Check every chain, head, checkpoint and signature; exit 7 at the first broken event."""
    from compliance.audit.signing import read_public_key

    key = read_public_key(public_key) if public_key else None
    published = _read_published(against) if against else None
    report = state.app().verify_audit(state.who(), public_key=key, against=published)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        say(
            f"audit trail intact: {report.events} events in {report.chains} chains, "
            f"{report.checkpoints} checkpoints ({report.signed_checkpoints} signed)"
        )
        if report.signed_checkpoints and not report.key_trusted:
            say(
                f"warning: signatures checked only against the key the database names "
                f"({report.key}); give --public-key or --against to trust them"
            )
    if not report.ok:
        brk = report.first_break
        assert brk is not None
        raise AuditVerificationFailed(
            f"audit trail broken in chain {brk.chain_id} at event {brk.event_id} "
            f"(sequence {brk.chain_seq}): {brk.problem}"
        )


@audit.command()
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    help="The Ed25519 private key (PEM); default $COMPLIANCE_AUDIT_KEY_FILE or "
    "$COMPLIANCE_AUDIT_KEY.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write the signed checkpoint (canonical JSON) to this file, or - for stdout, "
    "to publish it outside the database.",
)
@json_option
@pass_ctx
def checkpoint(state: Context, key_file: str | None, out: str | None, as_json: bool) -> None:
    """Sign the heads of every chain; publish the signed checkpoint to anchor the trail."""
    from compliance.audit.signing import configured_signer
    from compliance.audit.store import canonical_json

    signer = configured_signer(key_file)
    app = state.app()
    if out and out != "-":
        _refuse_database_file(app, out, "--out")
    result = app.checkpoint_audit(state.who(), signer)
    published = canonical_json(result.signed).decode() + "\n"
    if out == "-":
        click.echo(published, nl=False)
        return
    if out:
        with _replacing(out) as target:
            target.write(published)
    show_record(result.to_dict(), as_json, title="Checkpoint")


@audit.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="New file for the private key (created 0600; never overwritten).",
)
def keygen(out: str) -> None:
    """Make an Ed25519 key pair for signing checkpoints; print the public key."""
    from compliance.audit.signing import fingerprint, generate_key_file, public_pem

    signer = generate_key_file(out)
    click.echo(public_pem(signer.public_key), nl=False)
    click.echo(
        f"private key written to {out} (keep it outside the database host's backups)", err=True
    )
    click.echo(f"fingerprint: {fingerprint(signer.public_key)}", err=True)


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


#: A cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas: a leading quote makes the cell plain text."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_row(event: dict[str, Any]) -> list[str]:
    out = []
    for column in CSV_COLUMNS:
        value = event[column]
        if isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        out.append("" if value is None else _cell(str(value)))
    return out


def _refuse_database_file(app: Any, path: str, option: str) -> None:
    """An output file must never be the database (or its journal) the command is reading."""
    from compliance.errors import InvalidInput

    database = app.engine.url.database if app.engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    target = Path(path).resolve()
    db = Path(database).resolve()
    protected = [db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    for candidate in protected:
        same = target == candidate
        if not same and target.exists() and candidate.exists():
            same = os.path.samefile(target, candidate)
        if same:
            raise InvalidInput(option, f"{path!r} is the database file: choose another file")


@contextmanager
def _replacing(path: str) -> Iterator[IO[str]]:
    """Write to a private temporary file beside ``path``, renamed over it only when complete,
    so a failed or refused export leaves whatever was there untouched."""
    folder = Path(path).resolve().parent
    fd, temp = tempfile.mkstemp(prefix=".export-", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as target:
            yield target
            target.flush()
            os.fsync(target.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@audit.command()
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write to this file (created 0600, replaced only when complete) instead of stdout.",
)
@_filters
@pass_ctx
def export(state: Context, /, fmt: str, output: str | None, **filters: Any) -> None:
    """Stream the audit trail (any size) as JSON Lines or CSV."""
    app = state.app()
    log_filter = _log_filter(**filters)
    if output:
        _refuse_database_file(app, output, "--output")
    show_progress = sys.stderr.isatty()
    total = app.audit_count(state.who(), log_filter) if show_progress else None
    target: IO[str]
    opened = (
        app.audit_export(state.who(), log_filter)
        if fmt == "csv"
        else app.audit_export_lines(state.who(), log_filter)
    )
    # The actor is checked (on entering the export) before any file is created.
    with opened as events, _replacing(output) if output else _stdout() as target:
        writer = csv.writer(target) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        progress = _progress(total) if show_progress else None
        written = 0
        # Lines go out a batch at a time: one write per line costs as much as encoding it.
        lines: list[str] = []
        for event in events:
            if writer is not None:
                writer.writerow(_csv_row(event))  # type: ignore[arg-type]
            else:
                lines.append(event)  # type: ignore[arg-type]
                if len(lines) == 500:
                    target.write("\n".join(lines) + "\n")
                    lines.clear()
            written += 1
            if progress is not None and written % 500 == 0:
                progress.advance(500)
        if lines:
            target.write("\n".join(lines) + "\n")
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
