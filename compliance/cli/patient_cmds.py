"""Patients: register (with a duplicate warning, never a match), look up, add external ids."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import deprecated, json_option, show_record, show_rows, warn
from compliance.errors import InvalidInput

PATIENT_COLUMNS = ["id", "name", "date_of_birth", "external_ids", "created_at"]


def external_id(field: str, raw: str) -> tuple[str, str]:
    """``SYSTEM:VALUE``, the one spelling of an external id everywhere (as ``patient show``
    takes it). The old ``SYSTEM=VALUE`` is still read, with a warning naming the new form."""
    colon, equals = raw.find(":"), raw.find("=")
    if colon > 0 and (equals < 0 or colon < equals):
        system, value = raw[:colon], raw[colon + 1 :]
    elif equals > 0:
        system, value = raw[:equals], raw[equals + 1 :]
        new = f"{system.strip()}:{value.strip()}"
        deprecated(f"{field} {raw}: write {new} (SYSTEM=VALUE is deprecated)")
    else:
        system, value = "", ""
    if not system.strip() or not value.strip():
        raise InvalidInput(field, f"{raw!r} is not SYSTEM:VALUE (e.g. MRN:12345)")
    return system.strip(), value.strip()


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    return dict(external_id("--external-id", raw) for raw in values)


@click.group()
def patient() -> None:
    """Patients."""


@patient.command("register")
@click.option("--name", required=True)
@click.option("--dob", "date_of_birth", required=True, help="Date of birth, YYYY-MM-DD.")
@click.option(
    "--external-id",
    "external_ids",
    multiple=True,
    metavar="SYSTEM:VALUE",
    help="An identifier from another system, e.g. MRN:12345 (repeatable).",
)
@json_option
@pass_ctx
def patient_register(
    state: Context, name: str, date_of_birth: str, external_ids: tuple[str, ...], as_json: bool
) -> None:
    """Register a patient. Shared name and birth date give a warning, never a merge."""
    result = state.app().register_patient(
        state.who(), name, date_of_birth, _pairs(external_ids), state.on_behalf_of
    )
    if as_json:
        show_record(result.to_dict(), True)
        return
    show_record(result.patient.to_dict(), False, title="Patient registered")
    if result.possible_duplicates:
        warn(
            "possible duplicate: same name (ignoring case, accents and look-alike letters)"
            " and date of birth as "
            + ", ".join(result.possible_duplicates)
            + " (check before continuing; patients are never matched automatically)"
        )


@patient.command("show")
@click.argument("ref", metavar="PATIENT")
@json_option
@pass_ctx
def patient_show(state: Context, ref: str, as_json: bool) -> None:
    """Show a patient by id (PAT-...), UUID, or SYSTEM:VALUE external id."""
    show_record(state.app().get_patient(state.who(), ref, state.on_behalf_of).to_dict(), as_json)


@patient.command("find")
@click.option("--name", help="Part of the name (case and accents ignored).")
@click.option("--dob", "date_of_birth", help="Exact date of birth, YYYY-MM-DD.")
@click.option("--limit", default=50, show_default=True, type=int)
@json_option
@pass_ctx
def patient_find(
    state: Context, name: str | None, date_of_birth: str | None, limit: int, as_json: bool
) -> None:
    """Search patients; a search lists candidates, it never picks one."""
    rows = state.app().find_patients(state.who(), name, date_of_birth, limit, state.on_behalf_of)
    show_rows([r.to_dict() for r in rows], PATIENT_COLUMNS, as_json, title="Patients")


@patient.command("add-id")
@click.argument("ref", metavar="PATIENT")
@click.argument("identifier", metavar="SYSTEM:VALUE")
@click.argument("old_value", metavar="[VALUE]", required=False)
@json_option
@pass_ctx
def patient_add_id(
    state: Context, ref: str, identifier: str, old_value: str | None, as_json: bool
) -> None:
    """Attach an external identifier written SYSTEM:VALUE (as in MRN:12345).

    The old spelling, SYSTEM and VALUE as two words, still works with a warning."""
    if old_value is not None:  # the old spelling: SYSTEM VALUE as two words
        deprecated(f"write {identifier}:{old_value} (SYSTEM VALUE as two words is deprecated)")
        system, value = identifier, old_value
    else:
        system, value = external_id("SYSTEM:VALUE", identifier)
    info = state.app().add_patient_external_id(state.who(), ref, system, value, state.on_behalf_of)
    show_record(info.to_dict(), as_json)


@patient.command("correct")
@click.argument("ref", metavar="PATIENT")
@click.option("--name", help="The corrected name.")
@click.option("--dob", "date_of_birth", help="The corrected date of birth, YYYY-MM-DD.")
@click.option("--reason", required=True, help="Why (kept in the audit trail with the old value).")
@json_option
@pass_ctx
def patient_correct(
    state: Context,
    ref: str,
    name: str | None,
    date_of_birth: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Correct a misspelt name or a wrong date of birth; the audit trail keeps the old value."""
    info = state.app().correct_patient(
        state.who(), ref, reason, name, date_of_birth, state.on_behalf_of
    )
    show_record(info.to_dict(), as_json, title="Patient corrected")
