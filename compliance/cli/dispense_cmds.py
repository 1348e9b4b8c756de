"""``compliance dispense ...``: the pharmacy's authorizations."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.course_cmds import show_decision, show_outcome
from compliance.cli.output import json_option, show_record


@click.group()
def dispense() -> None:
    """Dispense authorizations: check, authorize, reverse, record the pickup."""


_SUPPLY_HELP = "Days' supply being dispensed (default: the prescription's own)."


@dispense.command("check")
@click.argument("prescription")
@click.option("--days-supply", type=click.IntRange(1, 366), default=None, help=_SUPPLY_HELP)
@json_option
@pass_ctx
def dispense_check(
    state: Context, prescription: str, days_supply: int | None, as_json: bool
) -> None:
    """May this pharmacy dispense this prescription now? Changes nothing."""
    decision = state.app().check_dispense(state.who(), prescription, days_supply=days_supply)
    show_decision(decision.to_dict(), as_json)


@dispense.command("authorize")
@click.argument("prescription")
@click.option("--days-supply", type=click.IntRange(1, 366), default=None, help=_SUPPLY_HELP)
@json_option
@pass_ctx
def dispense_authorize(
    state: Context, prescription: str, days_supply: int | None, as_json: bool
) -> None:
    """Request an authorization stating the days' supply; refused (exit 3) with every failing
    reason if not allowed."""
    outcome = state.app().request_authorization(state.who(), prescription, days_supply=days_supply)
    show_outcome(outcome, as_json)


@dispense.command("find")
@click.option("--patient", required=True, help="The patient's programme id (PAT-...).")
@click.option("--dob", required=True, help="The patient's date of birth (YYYY-MM-DD).")
@click.option("--prescriber-npi", required=True, help="The prescriber's NPI on the prescription.")
@json_option
@pass_ctx
def dispense_find(
    state: Context, patient: str, dob: str, prescriber_npi: str, as_json: bool
) -> None:
    """Find a paper prescription: the latest undispensed one of this prescriber for this patient."""
    found = state.app().find_prescription(state.who(), patient, dob, prescriber_npi)
    show_record(found.to_dict(), as_json)


@dispense.command("reverse")
@click.argument("number")
@click.option("--reason", required=True, help="Why (not picked up, wrong quantity, ...).")
@json_option
@pass_ctx
def dispense_reverse(state: Context, number: str, reason: str, as_json: bool) -> None:
    """Reverse an authorization (it may be requested again inside the window)."""
    show_outcome(state.app().reverse_authorization(state.who(), number, reason), as_json)


@dispense.command("record")
@click.argument("number")
@json_option
@pass_ctx
def dispense_record(state: Context, number: str, as_json: bool) -> None:
    """Record the pickup; refused after the do-not-dispense-after instant or once reversed."""
    show_outcome(state.app().record_dispense(state.who(), number), as_json)
