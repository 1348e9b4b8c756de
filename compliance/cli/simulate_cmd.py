"""``compliance simulate``: replay a timeline and print every decision (docs/simulate.md)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from compliance.cli.output import json_option, say, to_json
from compliance.errors import ExpectationFailed, InvalidInput

if TYPE_CHECKING:
    from compliance.simulation import EventResult, Timeline


@click.command()
@click.argument("timeline", metavar="TIMELINE", required=False)
@click.option("--ruleset", metavar="ID", help="Replay under this ruleset instead of the file's.")
@click.option("--keep", metavar="DB", help="Keep the database in this new SQLite file.")
@click.option("--list", "list_examples", is_flag=True, help="List the shipped example timelines.")
@json_option
def simulate(
    timeline: str | None,
    ruleset: str | None,
    keep: str | None,
    list_examples: bool,
    as_json: bool,
) -> None:
    """Replay a timeline of events on a throwaway database and print every decision.

    TIMELINE is a TOML file or the name of a shipped example (see --list), such as
    ipledge-lockout. Exits 0 when every expectation in the timeline held (refusals are results),
    10 when one did not. The database options (--db, --as, --now) do not apply.
    """
    from compliance import simulation
    from compliance.simulation import examples

    if list_examples:
        _list(as_json)
        return
    if timeline is None:
        raise InvalidInput("TIMELINE", "name a timeline file or a shipped example (see --list)")
    parsed = simulation.load(examples.resolve(timeline))
    try:
        chosen = parsed.ruleset_for(ruleset)
    except InvalidInput as exc:
        raise InvalidInput("--ruleset" if ruleset else exc.field, exc.problem) from None
    kept = Path(keep) if keep else None
    if kept is not None and kept.exists():
        raise InvalidInput("--keep", f"{kept} exists: name a new file")
    if kept is not None and not kept.parent.is_dir():
        raise InvalidInput("--keep", f"folder {kept.parent} does not exist")
    if not as_json:
        _header(parsed, chosen, kept)
    width = len(str(len(parsed.events)))
    show = None if as_json else lambda result: _show(result, width)
    replay = simulation.run(parsed, chosen, keep=kept, on_result=show)
    if as_json:
        click.echo(to_json([r.to_dict() for r in replay.results]))
    else:
        _summary(replay.results)
    if kept is not None:
        note = f"database kept in {kept}; act on it as its administrator, {replay.administrator}"
        click.echo(note, err=as_json)
    if replay.failed:
        listed = ", ".join(f"[{r.event.index}] {r.event.op}" for r in replay.failed)
        raise ExpectationFailed(
            f"{len(replay.failed)} expectation(s) not met: {listed}",
            [r.event.index for r in replay.failed],
        )


def _list(as_json: bool) -> None:
    from compliance import simulation
    from compliance.simulation import examples

    shipped = {name: simulation.load(examples.FOLDER / f"{name}.toml") for name in examples.names()}
    if as_json:
        click.echo(to_json([{"name": n, "title": t.title} for n, t in shipped.items()]))
        return
    for name, parsed in shipped.items():
        say(f"{name}  {parsed.title or ''}".rstrip())


def _header(timeline: Timeline, ruleset: str, keep: Path | None) -> None:
    say(f"{timeline.title or timeline.source}")
    if timeline.description:
        say(timeline.description.strip())
    where = f"kept in {keep}" if keep else "a throwaway training database"
    say(f"Ruleset {ruleset}; times in {timeline.zone.key}; {where}.")
    say("")


def _local(iso: str) -> str:
    """An instant already in the timeline's zone, as the header announces it."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def _detail(result: EventResult) -> str:
    """What an allowed step produced, in a few words."""
    data = result.to_dict()
    decision: dict[str, Any] | None = data["decision"]
    window = decision.get("window") if decision else None
    span = f"window {window['first_day']} to {window['last_day']}" if window else None
    op = result.event.op
    authorization = data["authorization"]
    if op == "dispense" and authorization:
        after = authorization["do_not_dispense_after"]
        limit = f"do not dispense after {_local(after)}" if after else "no time limit"
        what = authorization.get("kind", "authorization").replace("_", " ")
        return f"{what} {authorization['formatted']}, {limit}"
    if op == "prescribe" and result.prescription:
        return ", ".join(filter(None, [f"prescription {result.prescription}", span]))
    if op == "check":
        return span or ""
    course = f"course {result.state}, cycle {result.cycle}" if result.state else ""
    if op == "status" and decision:
        codes = ", ".join(r["code"] for r in decision["reasons"]) or "all requirements met"
        return f"{course}; may prescribe: {decision['outcome']} ({codes})"
    return course


def _show(result: EventResult, width: int) -> None:
    event = result.event
    who = f"{event.patient}  " if event.patient else ""
    when = event.at.strftime("%Y-%m-%d %H:%M")
    line = f"[{event.index:>{width}}] {when}  {who}{event.op} by {event.by}"
    detail = _detail(result) if result.outcome == "ALLOW" else ""
    if result.outcome in {"CONFLICT", "SKIPPED"}:
        detail = result.message or ""
    verdict = f"{result.outcome}{' - ' + detail if detail else ''}"
    held = "" if result.held is None else ("  (as expected)" if result.held else "")
    say(f"{line}: {verdict}{held}")
    indent = " " * (width + 3)
    for reason in result.reasons:
        extra = [f"next: {reason['next_step']}"] if reason.get("next_step") else []
        extra += [f"earliest {reason['earliest']}"] if reason.get("earliest") else []
        tail = f" ({'; '.join(extra)})" if extra else ""
        say(f"{indent}{reason['code']}: {reason['message']}{tail}")
    for flag in result.flags:
        say(f"{indent}flag {flag['code']}: {flag['message']}")
    if result.held is False:
        expect = event.expect
        assert expect is not None
        wanted = " ".join(filter(None, [expect.outcome, ", ".join(expect.codes)]))
        say(f"{indent}EXPECTED {wanted}: not met")


def _summary(results: tuple[EventResult, ...]) -> None:
    counts = Counter(r.outcome for r in results)
    parts = ", ".join(f"{n} {o}" for o, n in counts.items())
    expected = [r for r in results if r.held is not None]
    failed = [r for r in expected if r.held is False]
    noun = "expectation" if len(expected) == 1 else "expectations"
    verdict = f"{len(failed)} not met" if failed else "all held"
    checked = f"{len(expected)} {noun}: {verdict}" if expected else "no expectations"
    say("")
    say(f"{len(results)} events: {parts}. {checked}.")
