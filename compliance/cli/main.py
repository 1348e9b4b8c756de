"""Root of the ``compliance`` command and its error handling.

Every failure ends as one message on stderr naming the field and the problem, and an exit code
from ``compliance.errors.EXIT_CODES``; tracebacks appear only with ``COMPLIANCE_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import decision_lines, json_option, show_record, show_rows, to_json
from compliance.errors import EXIT_CODES, ComplianceError, InvalidInput, Refused

#: The name the package is published under (the import package and the command are ``compliance``).
DISTRIBUTION = "compliance-ppp"

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: The subcommands defined in other modules: name -> (module, attribute, summary). A module is
#: imported only when its command runs or the whole tree is walked (the reference), so
#: ``compliance status`` does not load the audit, client, rules, simulation or server commands,
#: and ``compliance --help`` lists each by its summary, the first paragraph of its help
#: (``tests/test_startup_imports.py`` holds each summary to its command's).
_LAZY: tuple[tuple[str, str, str, str], ...] = (
    ("init", "db_cmds", "init", "Create (or migrate) the database and its first administrator."),
    ("db", "db_cmds", "db", "Schema migrations: upgrade, current revision, drift check."),
    (
        "demo",
        "demo_cmd",
        "demo",
        "Walk through what the engine does, on a database made for training.",
    ),
    ("admin", "party_cmds", "admin", "Administrators."),
    (
        "prescriber",
        "party_cmds",
        "prescriber",
        "Prescribers: registered -> activated -> suspended / deactivated.",
    ),
    ("designee", "party_cmds", "designee", "Designees and their grants to act for prescribers."),
    (
        "pharmacy",
        "party_cmds",
        "pharmacy",
        "Pharmacies: registered -> activated (renewed yearly) -> deactivated.",
    ),
    ("pharmacist", "party_cmds", "pharmacist", "Pharmacists (each belongs to one pharmacy)."),
    ("patient", "patient_cmds", "patient", "Patients."),
    ("audit", "audit_cmds", "audit", "The tamper-evident audit trail."),
    (
        "course",
        "course_cmds",
        "course",
        "Treatment courses: what the clinic records, and prescribing.",
    ),
    (
        "status",
        "course_cmds",
        "status",
        "A patient's course: state, this cycle's checklist, window and deadlines, flags.",
    ),
    (
        "due",
        "course_cmds",
        "due",
        "The worklist: tests due, windows closing, reversals owed, overdue tests, pregnancies.",
    ),
    (
        "dispense",
        "dispense_cmds",
        "dispense",
        "Dispense authorizations: check, authorize, reverse, record the pickup.",
    ),
    (
        "rules",
        "rules_cmds",
        "rules",
        "Programme rulesets: list, show, diff, impact, schedule, diagram.",
    ),
    (
        "simulate",
        "simulate_cmd",
        "simulate",
        "Replay a timeline of events on a throwaway database and print every decision.",
    ),
    (
        "client",
        "client_cmds",
        "client",
        "API clients of the HTTP service and their keys (administrators only).",
    ),
    ("serve", "serve_cmd", "serve", "Run the HTTP service (JSON under /v1) until interrupted."),
    (
        "resident",
        "resident_cmds",
        "resident",
        "A resident process that keeps the command line loaded and forks a child per command.",
    ),
)
SUBCOMMANDS: Mapping[str, tuple[str, str]] = {
    name: (f"compliance.cli.{module}", attribute) for name, module, attribute, _ in _LAZY
}
SUMMARIES: Mapping[str, str] = {name: summary for name, _, _, summary in _LAZY}


#: The root's options that take a value; they may be typed before or after the subcommand.
GLOBAL_OPTIONS = ("--db", "--as", "--on-behalf-of", "--now", "--tz")


def _value_options(command: click.Command) -> set[str]:
    return {
        name
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in param.opts
    }


def hoist_globals(root: click.Group, ctx: click.Context, args: list[str]) -> list[str]:
    """One rule for the global options: anywhere on the line. ``--db``, ``--as``,
    ``--on-behalf-of``, ``--now`` and ``--tz`` typed after the subcommand move before it;
    ``--json`` typed before the subcommand moves after it. Values of the command's own options
    and everything after ``--`` are left alone."""
    front: list[str] = []
    rest: list[str] = []
    command: click.Command = root
    json_early = False
    tokens = iter(args)
    for word in tokens:
        if word == "--":
            rest += [word, *tokens]
            break
        name = word.partition("=")[0]
        if name in GLOBAL_OPTIONS:
            front.append(word)
            value = None if "=" in word else next(tokens, None)
            if value is not None:
                front.append(value)
            continue
        if word == "--json" and isinstance(command, click.Group):
            json_early = True
            continue
        rest.append(word)
        if name in _value_options(command) and "=" not in word:
            following = next(tokens, None)
            if following is not None:
                rest.append(following)
            continue
        if isinstance(command, click.Group) and not word.startswith("-"):
            sub = command.get_command(ctx, word)
            if sub is not None:
                command = sub
    if json_early:
        rest.append("--json")
    ctx.meta["compliance.command"] = command
    return front + rest


#: API field names whose option is spelt differently from the parameter that carries it.
_FIELD_ALIASES = {
    "expires_at": "expires",
    "sensitivity_miu_ml": "sensitivity",
    "actor": "actor",
    "on_behalf_of": "on_behalf_of",
}


def as_typed(
    error: InvalidInput, command: click.Command | None, root: click.Command
) -> InvalidInput:
    """The error naming the option as the user typed it (``--npi``, ``--dob``) rather than the
    API's field (``external_id``, ``date_of_birth``); a field no option carries stays as is,
    and so do the fields of ``simulate``, which name keys of the timeline file."""
    if command is not None and command.name == "simulate":
        return error
    head, dot, tail = error.field.partition(".")
    name = _FIELD_ALIASES.get(head, head)
    for candidate in (command, root):
        for param in candidate.params if candidate is not None else ():
            if isinstance(param, click.Option) and param.name == name:
                option = max(param.opts, key=len)
                field = f"{option} {tail}" if dot else option
                return InvalidInput(field, error.problem)
    return error


class _Root(click.Group):
    """Turns library errors into a message on stderr and a documented exit code, and loads
    each subcommand of ``SUBCOMMANDS`` when it is first asked for."""

    _commands: dict[str, click.Command]

    @property
    def commands(self) -> MutableMapping[str, click.Command]:
        """Every subcommand, loaded: for whoever walks the whole tree (help, reference)."""
        for name in SUBCOMMANDS:
            self._load(name)
        return self._commands

    @commands.setter
    def commands(self, value: MutableMapping[str, click.Command]) -> None:
        self._commands = dict(value)  # click's Group.__init__ passes a mapping

    def _load(self, name: str) -> click.Command | None:
        if name not in self._commands and name in SUBCOMMANDS:
            module, attribute = SUBCOMMANDS[name]
            self._commands[name] = getattr(importlib.import_module(module), attribute)
        return self._commands.get(name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        self._commands[name] = cmd

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self._commands, *SUBCOMMANDS})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands as click lists them, each not yet loaded shown by its summary: help
        at the top level loads no subcommand's module."""
        shown = []
        for name in self.list_commands(ctx):
            command = self._commands.get(name)
            if command is None:
                command = click.Command(name, help=SUMMARIES[name])
            if not command.hidden:
                shown.append((name, command))
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in shown])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["compliance.json"] = "--json" in args
        return super().parse_args(ctx, hoist_globals(self, ctx, args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if not ctx.meta.get("compliance.json"):
                raise
            field = None
            if isinstance(exc, click.BadParameter):
                hint = exc.param_hint if isinstance(exc.param_hint, str) else None
                field = exc.param.opts[0] if exc.param else hint
            _report(InvalidInput(field or "usage", exc.format_message()), True)
            ctx.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except ComplianceError as exc:
            if isinstance(exc, InvalidInput):
                exc = as_typed(exc, ctx.meta.get("compliance.command"), self)
            _report(exc, bool(ctx.meta.get("compliance.json")))
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            _reader_went_away()
            ctx.exit(0)
        except Exception as exc:
            if os.environ.get("COMPLIANCE_DEBUG"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=_Root, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--db",
    "url",
    envvar="COMPLIANCE_DATABASE_URL",
    metavar="URL",
    help="Database URL [env COMPLIANCE_DATABASE_URL; default sqlite:///compliance.db].",
)
@click.option(
    "--as",
    "actor",
    envvar="COMPLIANCE_ACTOR",
    metavar="ID",
    help="The person acting, e.g. ADM-XXXXXXXX [env COMPLIANCE_ACTOR].",
)
@click.option(
    "--on-behalf-of",
    metavar="PRESCRIBER",
    help="For a designee: the prescriber acted for (optional with a single grant).",
)
@click.option(
    "--now",
    "now",
    metavar="INSTANT",
    help="Simulate this instant (ISO 8601 with offset) for training; recorded in every event.",
)
@click.option(
    "--tz",
    "tz",
    envvar="COMPLIANCE_TZ",
    metavar="ZONE",
    help="Show instants in this IANA zone too [env COMPLIANCE_TZ; default TZ or the system's].",
)
@click.version_option(
    package_name=DISTRIBUTION,
    message="compliance %(version)s",
    help="Show the version and exit.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    actor: str | None,
    on_behalf_of: str | None,
    now: str | None,
    tz: str | None,
) -> None:
    """Pregnancy-prevention programme engine: treatment courses, gates, authorizations."""
    instant = None
    if now is not None:  # the parser lives with the party commands: load it only when used
        from compliance.cli.party_cmds import parse_instant
        from compliance.clock import within_calendar

        parsed = parse_instant("--now", now)
        instant = None if parsed is None else within_calendar(parsed, "--now")
    zone = None
    if tz:
        from compliance.cli.timefmt import zone_named

        zone = zone_named("--tz", tz)
    state = Context(url=url, actor=actor, on_behalf_of=on_behalf_of, now=instant, tz=zone)
    ctx.obj = state
    ctx.call_on_close(state.close)


@cli.command()
@json_option
def permissions(as_json: bool) -> None:
    """Print the permission table: which role may perform which action."""
    from compliance.domain.roles import Role, permission_rows

    roles = [r.value for r in Role]
    rows = [{"action": a, **dict(zip(roles, flags, strict=True))} for a, flags in permission_rows()]
    shown = [{"action": r["action"], **{k: "yes" if r[k] else "-" for k in roles}} for r in rows]
    show_rows(shown, ["action", *roles], as_json, title="Permissions", document=rows)


@cli.command("exit-codes")
@json_option
def exit_codes(as_json: bool) -> None:
    """Print the exit codes and what each means."""
    rows = [{"code": c, "name": n, "meaning": m} for c, n, m in EXIT_CODES]
    show_rows(rows, ["code", "name", "meaning"], as_json, title="Exit codes")


@cli.command()
@json_option
@pass_ctx
def whoami(state: Context, as_json: bool) -> None:
    """Show the acting person (--as) as the database knows them."""
    person = state.app().get_person(state.who(), state.who(), state.on_behalf_of)
    show_record(person.to_dict(), as_json, title="Acting as")


def _report(error: ComplianceError, as_json: bool) -> None:
    if as_json:
        click.echo(to_json(error.to_dict()), err=True)
        return
    click.echo(f"error: {error.message}", err=True)
    reasons = getattr(error, "reasons", ())
    decision = error.decision if isinstance(error, Refused) else None
    if decision is not None and decision.reasons:
        for line in decision_lines(decision.to_dict()):
            click.echo(line, err=True)
    elif reasons:
        click.echo(f"reasons: {', '.join(reasons)}", err=True)


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="compliance")


def _reader_went_away() -> None:
    """``compliance audit export | head -1``: stop quietly, and keep Python from complaining
    again when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
