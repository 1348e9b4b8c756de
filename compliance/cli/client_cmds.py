"""API clients of the HTTP service and their keys (administrators only)."""

from __future__ import annotations

from typing import Any

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, show_record, show_rows, warn

CLIENT_COLUMNS = ["id", "name", "kind", "party", "scopes", "live_keys", "revoked_at"]
KINDS = ["pharmacy-terminal", "prescriber-system", "administrator"]


def _issued(data: dict[str, Any], as_json: bool) -> None:
    if not as_json:
        warn("the key is shown only now: store it in the client's secret store")
    client = data["client"]
    shown = {
        "client": client["id"],
        "kind": client["kind"],
        "party": client["party"],
        "scopes": client["scopes"],
        "key_id": data["key_id"],
        "expires_at": data["expires_at"],
        "key": data["key"],
    }
    show_record(data if as_json else shown, as_json, title="New API key")


@click.group()
def client() -> None:
    """API clients of the HTTP service and their keys (administrators only).

    Keys are hashed with the server pepper in COMPLIANCE_API_PEPPER (or the file named by
    COMPLIANCE_API_PEPPER_FILE); the service must run with the same pepper.
    """


@client.command("add")
@click.option("--name", required=True, help="What the client is, e.g. 'Main St. terminal 2'.")
@click.option("--kind", required=True, type=click.Choice(KINDS), help="Who calls.")
@click.option(
    "--party",
    required=True,
    metavar="ID",
    help="The pharmacy (PHA-), prescriber (PRS-) or administrator (ADM-) the key acts for.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="SCOPE",
    help="Narrow the key to these scopes (repeatable; default: all the kind's role allows).",
)
@click.option("--days", default=365, show_default=True, help="Days until the key expires.")
@json_option
@pass_ctx
def client_add(
    state: Context,
    name: str,
    kind: str,
    party: str,
    scopes: tuple[str, ...],
    days: int,
    as_json: bool,
) -> None:
    """Register a client and print its first key, once."""
    issued = state.app().add_client(
        state.who(), name, kind, party, list(scopes) if scopes else None, days
    )
    _issued(issued.to_dict(), as_json)


@client.command("list")
@json_option
@pass_ctx
def client_list(state: Context, as_json: bool) -> None:
    """Every client with its keys (never a secret)."""
    rows = [c.to_dict() for c in state.app().list_clients(state.who())]
    for row in rows:
        row["live_keys"] = sum(1 for k in row["keys"] if k["live"])
    show_rows(rows, CLIENT_COLUMNS, as_json, title="API clients")


@client.command("rotate")
@click.argument("client_id", metavar="CLIENT")
@click.option(
    "--overlap-days",
    default=7,
    show_default=True,
    help="Days the previous key keeps working (0: it stops now).",
)
@click.option("--days", default=365, show_default=True, help="Days until the new key expires.")
@json_option
@pass_ctx
def client_rotate(
    state: Context, client_id: str, overlap_days: int, days: int, as_json: bool
) -> None:
    """Issue a new key for CLIENT; older keys end (the newest after the overlap)."""
    issued = state.app().rotate_client_key(state.who(), client_id, overlap_days, days)
    _issued(issued.to_dict(), as_json)


@client.command("revoke")
@click.argument("client_id", metavar="CLIENT")
@click.option("--key", "key_id", metavar="KEY_ID", help="Revoke only this key.")
@json_option
@pass_ctx
def client_revoke(state: Context, client_id: str, key_id: str | None, as_json: bool) -> None:
    """Revoke CLIENT (every key) or one of its keys, from now on."""
    show_record(state.app().revoke_client(state.who(), client_id, key_id).to_dict(), as_json)
