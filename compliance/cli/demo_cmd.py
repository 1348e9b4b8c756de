"""``compliance demo``: the Quickstart's main job."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.errors import AuditVerificationFailed


@click.command()
@pass_ctx
def demo(state: Context) -> None:
    """Create (or reuse) the database and walk through what the engine does so far."""
    from compliance import demo as scenario

    if not scenario.run(state.app(), state.actor, click.echo):
        raise AuditVerificationFailed("the demonstration's audit trail did not verify")
