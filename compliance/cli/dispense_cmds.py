"""``compliance dispense ...``: the pharmacy's authorizations."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.course_cmds import show_decision, show_outcome
from compliance.cli.output import json_option


@click.group()
def dispense() -> None:
    """Dispense authorizations: check, authorize, reverse, record the pickup."""


@dispense.command("check")
@click.argument("prescription")
@json_option
@pass_ctx
def dispense_check(state: Context, prescription: str, as_json: bool) -> None:
    """May this pharmacy dispense this prescription now? Changes nothing."""
    show_decision(state.app().check_dispense(state.who(), prescription).to_dict(), as_json)


@dispense.command("authorize")
@click.argument("prescription")
@json_option
@pass_ctx
def dispense_authorize(state: Context, prescription: str, as_json: bool) -> None:
    """Request an authorization; refused (exit 3) with every failing reason if not allowed."""
    show_outcome(state.app().request_authorization(state.who(), prescription), as_json)


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
