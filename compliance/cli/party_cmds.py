"""Administrators, prescribers, designees, pharmacies and pharmacists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import click

from compliance.cli import vocab
from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, show_record, show_rows
from compliance.cli.vocab import ValuesCommand
from compliance.domain.validate import time_zone
from compliance.errors import InvalidInput

PERSON_COLUMNS = ["id", "name", "status", "external_id", "pharmacy", "created_at"]
PHARMACY_COLUMNS = ["id", "name", "external_id", "time_zone", "status", "activation_expires_on"]
GRANT_COLUMNS = ["designee", "prescriber", "active", "scopes", "expires_at", "revoked_at"]


def parse_instant(
    field: str, value: str | None, bare_date: Literal["refuse", "start", "end"] = "refuse"
) -> datetime | None:
    """An ISO 8601 instant with its offset. A bare date is that day in the reader's zone
    (``--tz``, ``TZ``, the system's): its first instant (``start``) or its last (``end``); with
    ``refuse`` it is an error saying what to type, for options where a day is ambiguous."""
    if value is None:
        return None
    typed = value.strip()
    try:
        parsed = datetime.fromisoformat(typed)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an ISO 8601 date or instant") from None
    if len(typed) == 10:
        if bare_date == "refuse":
            raise InvalidInput(
                field,
                f"{value!r} is a date, not an instant: type the time and its offset, e.g. "
                f"{typed}T09:00:00-05:00 or {typed}T14:00:00Z",
            )
        from compliance.cli.timefmt import user_zone

        zone = user_zone()
        day = parsed.date()
        if bare_date == "start":
            local = datetime(day.year, day.month, day.day, tzinfo=zone)
        else:
            local = datetime(day.year, day.month, day.day, 23, 59, 59, 999999, tzinfo=zone)
        parsed = local
    if parsed.tzinfo is None:
        raise InvalidInput(field, "give the UTC offset, e.g. 2026-12-01T09:00:00-05:00")
    from compliance.clock import ensure_utc

    return ensure_utc(parsed, field)


def _list_people(state: Context, role: str, status: str | None, as_json: bool) -> None:
    people = state.app().list_people(state.who(), role, status, state.on_behalf_of)
    show_rows([p.to_dict() for p in people], PERSON_COLUMNS, as_json, title=role.capitalize())


def _show_person(state: Context, ref: str, as_json: bool) -> None:
    person = state.app().get_person(state.who(), ref, state.on_behalf_of)
    show_record(person.to_dict(), as_json)


status_option = click.option("--status", help="Only people or pharmacies in this status.")


# --- administrators ---------------------------------------------------------------------------


@click.group()
def admin() -> None:
    """Administrators."""


@admin.command("add")
@click.option("--name", required=True)
@json_option
@pass_ctx
def admin_add(state: Context, name: str, as_json: bool) -> None:
    """Add an administrator."""
    show_record(state.app().add_administrator(state.who(), name).to_dict(), as_json)


@admin.command("deactivate")
@click.argument("administrator")
@json_option
@pass_ctx
def admin_deactivate(state: Context, administrator: str, as_json: bool) -> None:
    """Deactivate an administrator (never the last active one)."""
    show_record(state.app().deactivate_administrator(state.who(), administrator).to_dict(), as_json)


@admin.command("clock-override")
@click.option(
    "--enable/--disable",
    required=True,
    help="Accept or refuse simulated clocks (--now) on this database.",
)
@click.option(
    "--hours",
    type=click.IntRange(1, 720),
    default=24,
    show_default=True,
    help="With --enable: how long, in real time, the override lasts before it lapses.",
)
@json_option
@pass_ctx
def admin_clock_override(state: Context, enable: bool, hours: int, as_json: bool) -> None:
    """Allow --now (or an embedding host's clock that is not the real time) on an ordinary
    database for a limited time, for backfilling or training (audited)."""
    show_record(state.app().set_clock_override(state.who(), enable, hours=hours), as_json)


@admin.command("list")
@status_option
@json_option
@pass_ctx
def admin_list(state: Context, status: str | None, as_json: bool) -> None:
    """List administrators."""
    _list_people(state, "administrator", status, as_json)


@admin.command("show")
@click.argument("administrator")
@json_option
@pass_ctx
def admin_show(state: Context, administrator: str, as_json: bool) -> None:
    """Show one administrator."""
    _show_person(state, administrator, as_json)


# --- prescribers ------------------------------------------------------------------------------


@click.group()
def prescriber() -> None:
    """Prescribers: registered -> activated -> suspended / deactivated."""


@prescriber.command("register")
@click.option("--name", required=True)
@click.option("--npi", "external_id", required=True, help="The prescriber's identifier (NPI).")
@click.option(
    "--id-system",
    default="NPI",
    show_default=True,
    help="Identifier scheme; NPI values are check-digit validated.",
)
@click.option(
    "--zone",
    help="The clinic's own IANA zone, e.g. Europe/Lisbon (used where the ruleset judges the "
    "clinic's steps in the prescriber's zone).",
)
@json_option
@pass_ctx
def prescriber_register(
    state: Context, name: str, external_id: str, id_system: str, zone: str | None, as_json: bool
) -> None:
    """Register a prescriber (not yet activated)."""
    checked = None if zone is None else time_zone("--zone", zone)
    person = state.app().register_prescriber(state.who(), name, external_id, id_system, checked)
    show_record(person.to_dict(), as_json)


@prescriber.command("set-zone")
@click.argument("prescriber_id", metavar="PRESCRIBER")
@click.option("--zone", help="The clinic's own IANA zone, e.g. Europe/Athens.")
@click.option("--clear", is_flag=True, help="Remove the zone: the ruleset's zone governs.")
@json_option
@pass_ctx
def prescriber_set_zone(
    state: Context, prescriber_id: str, zone: str | None, clear: bool, as_json: bool
) -> None:
    """Set or clear the clinic's own time zone of a prescriber (administrators; audited)."""
    if clear == (zone is not None):
        raise InvalidInput("--zone", "give --zone ZONE or --clear")
    checked = None if zone is None else time_zone("--zone", zone)
    show_record(
        state.app().set_prescriber_zone(state.who(), prescriber_id, checked).to_dict(), as_json
    )


def _prescriber_change(verb: str, doc: str) -> click.Command:
    @click.argument("prescriber_id", metavar="PRESCRIBER")
    @click.option("--note", help="Why (kept in the audit trail).")
    @json_option
    @pass_ctx
    def command(state: Context, prescriber_id: str, note: str | None, as_json: bool) -> None:
        method = getattr(state.app(), f"{verb}_prescriber")
        show_record(method(state.who(), prescriber_id, note).to_dict(), as_json)

    command.__doc__ = doc
    return prescriber.command(verb)(command)


_prescriber_change("activate", "Activate a registered prescriber.")
_prescriber_change("suspend", "Suspend an activated prescriber.")
_prescriber_change("reinstate", "Reinstate a suspended prescriber.")
_prescriber_change("deactivate", "Deactivate a prescriber for good.")


@prescriber.command("home-testing")
@click.option("--enable/--disable", required=True, help="Allow or stop home pregnancy tests.")
@click.option("--procedure", help="The anti-falsification procedure (required to enable).")
@click.option("--on", "on", help="Date it takes effect (default today).")
@json_option
@pass_ctx
def prescriber_home_testing(
    state: Context, enable: bool, procedure: str | None, on: str | None, as_json: bool
) -> None:
    """The acting prescriber opts in to (or out of) home pregnancy tests."""
    show_record(state.app().set_home_testing(state.who(), enable, procedure, on), as_json)


@prescriber.command("list")
@status_option
@json_option
@pass_ctx
def prescriber_list(state: Context, status: str | None, as_json: bool) -> None:
    """List prescribers."""
    _list_people(state, "prescriber", status, as_json)


@prescriber.command("show")
@click.argument("prescriber_id", metavar="PRESCRIBER")
@json_option
@pass_ctx
def prescriber_show(state: Context, prescriber_id: str, as_json: bool) -> None:
    """Show one prescriber."""
    _show_person(state, prescriber_id, as_json)


# --- designees --------------------------------------------------------------------------------


@click.group()
def designee() -> None:
    """Designees and their grants to act for prescribers."""


@designee.command("register")
@click.option("--name", required=True)
@json_option
@pass_ctx
def designee_register(state: Context, name: str, as_json: bool) -> None:
    """Register a designee (grant them a prescriber with 'designee grant')."""
    show_record(state.app().register_designee(state.who(), name).to_dict(), as_json)


@designee.command("deactivate")
@click.argument("designee_id", metavar="DESIGNEE")
@json_option
@pass_ctx
def designee_deactivate(state: Context, designee_id: str, as_json: bool) -> None:
    """Deactivate a designee."""
    show_record(state.app().deactivate_designee(state.who(), designee_id).to_dict(), as_json)


def _grant_target(help_scope: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The designee, their prescriber, and the scope of a grant: shared by grant and amend."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--scope",
            "scopes",
            multiple=True,
            metavar="ACTION",
            shell_complete=vocab.completer(vocab.scopes),
            help=help_scope,
        )(f)
        f = click.option("--prescriber", "prescriber_id", required=True, metavar="PRESCRIBER")(f)
        return click.argument("designee_id", metavar="DESIGNEE")(f)

    return wrap


@designee.command("grant", cls=ValuesCommand, values={"--scope": vocab.scopes})
@_grant_target("An action the grant covers (repeat); default: every delegable action.")
@click.option(
    "--expires",
    help="When the grant ends: an ISO 8601 instant with offset, or a date (the end of that day "
    "in your zone: --tz, TZ or the system's).",
)
@json_option
@pass_ctx
def designee_grant(
    state: Context,
    designee_id: str,
    prescriber_id: str,
    scopes: tuple[str, ...],
    expires: str | None,
    as_json: bool,
) -> None:
    """Let a designee act for a prescriber."""
    grant = state.app().grant_designee(
        state.who(),
        designee_id,
        prescriber_id,
        list(scopes) or None,
        parse_instant("--expires", expires, "end"),
    )
    show_record(grant.to_dict(), as_json)


@designee.command("amend", cls=ValuesCommand, values={"--scope": vocab.scopes})
@_grant_target("The corrected scope: every action the grant covers (repeat); default: unchanged.")
@click.option(
    "--expires",
    help="The corrected end: an ISO 8601 instant with offset, or a date (the end of that day "
    "in your zone).",
)
@click.option("--no-expiry", is_flag=True, help="The grant no longer expires.")
@click.option("--reason", required=True, help="Why (kept in the audit trail with the old value).")
@json_option
@pass_ctx
def designee_amend(
    state: Context,
    designee_id: str,
    prescriber_id: str,
    scopes: tuple[str, ...],
    expires: str | None,
    no_expiry: bool,
    reason: str,
    as_json: bool,
) -> None:
    """Correct a live grant's scope or expiry; the audit trail keeps the old values."""
    grant = state.app().amend_grant(
        state.who(),
        designee_id,
        prescriber_id,
        reason,
        list(scopes) or None,
        parse_instant("--expires", expires, "end"),
        no_expiry,
    )
    show_record(grant.to_dict(), as_json)


@designee.command("revoke")
@click.argument("designee_id", metavar="DESIGNEE")
@click.option("--prescriber", "prescriber_id", required=True, metavar="PRESCRIBER")
@json_option
@pass_ctx
def designee_revoke(state: Context, designee_id: str, prescriber_id: str, as_json: bool) -> None:
    """Revoke a designee's grant from a prescriber."""
    show_record(
        state.app().revoke_grant(state.who(), designee_id, prescriber_id).to_dict(), as_json
    )


@designee.command("grants")
@click.argument("designee_id", metavar="[DESIGNEE]", required=False)
@json_option
@pass_ctx
def designee_grants(state: Context, designee_id: str | None, as_json: bool) -> None:
    """List grants (of one designee, or all)."""
    grants = state.app().list_grants(state.who(), designee_id, state.on_behalf_of)
    show_rows([g.to_dict() for g in grants], GRANT_COLUMNS, as_json, title="Grants")


@designee.command("list")
@status_option
@json_option
@pass_ctx
def designee_list(state: Context, status: str | None, as_json: bool) -> None:
    """List designees."""
    _list_people(state, "designee", status, as_json)


@designee.command("show")
@click.argument("designee_id", metavar="DESIGNEE")
@json_option
@pass_ctx
def designee_show(state: Context, designee_id: str, as_json: bool) -> None:
    """Show one designee."""
    _show_person(state, designee_id, as_json)


# --- pharmacies and pharmacists ---------------------------------------------------------------


@click.group()
def pharmacy() -> None:
    """Pharmacies: registered -> activated (renewed yearly) -> deactivated."""


@pharmacy.command("register")
@click.option("--name", required=True)
@click.option("--ncpdp", "external_id", required=True, help="The pharmacy's NCPDP provider id.")
@click.option("--time-zone", required=True, help="IANA zone, e.g. America/Chicago.")
@click.option("--id-system", default="NCPDP", show_default=True, help="Identifier scheme.")
@json_option
@pass_ctx
def pharmacy_register(
    state: Context, name: str, external_id: str, time_zone: str, id_system: str, as_json: bool
) -> None:
    """Register a pharmacy (not yet activated)."""
    info = state.app().register_pharmacy(state.who(), name, external_id, time_zone, id_system)
    show_record(info.to_dict(), as_json)


@pharmacy.command("activate")
@click.argument("pharmacy_id", metavar="PHARMACY")
@click.option("--expires-on", help="Last day of the activation (default: one year from today).")
@json_option
@pass_ctx
def pharmacy_activate(
    state: Context, pharmacy_id: str, expires_on: str | None, as_json: bool
) -> None:
    """Activate a pharmacy, or renew its yearly activation."""
    info = state.app().activate_pharmacy(state.who(), pharmacy_id, expires_on)
    show_record(info.to_dict(), as_json)


@pharmacy.command("deactivate")
@click.argument("pharmacy_id", metavar="PHARMACY")
@json_option
@pass_ctx
def pharmacy_deactivate(state: Context, pharmacy_id: str, as_json: bool) -> None:
    """Deactivate a pharmacy."""
    show_record(state.app().deactivate_pharmacy(state.who(), pharmacy_id).to_dict(), as_json)


@pharmacy.command("list")
@status_option
@json_option
@pass_ctx
def pharmacy_list(state: Context, status: str | None, as_json: bool) -> None:
    """List pharmacies."""
    rows = state.app().list_pharmacies(state.who(), status, state.on_behalf_of)
    show_rows([r.to_dict() for r in rows], PHARMACY_COLUMNS, as_json, title="Pharmacies")


@pharmacy.command("show")
@click.argument("pharmacy_id", metavar="PHARMACY")
@json_option
@pass_ctx
def pharmacy_show(state: Context, pharmacy_id: str, as_json: bool) -> None:
    """Show one pharmacy."""
    info = state.app().get_pharmacy(state.who(), pharmacy_id, state.on_behalf_of)
    show_record(info.to_dict(), as_json)


@click.group()
def pharmacist() -> None:
    """Pharmacists (each belongs to one pharmacy)."""


@pharmacist.command("register")
@click.option("--name", required=True)
@click.option("--pharmacy", "pharmacy_id", required=True, metavar="PHARMACY")
@json_option
@pass_ctx
def pharmacist_register(state: Context, name: str, pharmacy_id: str, as_json: bool) -> None:
    """Register a pharmacist at a pharmacy."""
    show_record(state.app().register_pharmacist(state.who(), name, pharmacy_id).to_dict(), as_json)


@pharmacist.command("deactivate")
@click.argument("pharmacist_id", metavar="PHARMACIST")
@json_option
@pass_ctx
def pharmacist_deactivate(state: Context, pharmacist_id: str, as_json: bool) -> None:
    """Deactivate a pharmacist."""
    show_record(state.app().deactivate_pharmacist(state.who(), pharmacist_id).to_dict(), as_json)


@pharmacist.command("list")
@status_option
@json_option
@pass_ctx
def pharmacist_list(state: Context, status: str | None, as_json: bool) -> None:
    """List pharmacists."""
    _list_people(state, "pharmacist", status, as_json)


@pharmacist.command("show")
@click.argument("pharmacist_id", metavar="PHARMACIST")
@json_option
@pass_ctx
def pharmacist_show(state: Context, pharmacist_id: str, as_json: bool) -> None:
    """Show one pharmacist."""
    _show_person(state, pharmacist_id, as_json)
