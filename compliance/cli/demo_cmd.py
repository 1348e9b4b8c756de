"""``compliance demo``: the Quickstart's main job."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.errors import AuditVerificationFailed


@click.command()
@pass_ctx
def demo(state: Context) -> None:
    """Walk through what the engine does, on a database made for training.

    Without --db (or COMPLIANCE_DATABASE_URL) the demonstration uses its own file,
    compliance-demo.db in this folder, created on first use and reused afterwards. It writes
    fictional prescribers, pharmacies and patients, so it refuses (exit 6, before writing
    anything) any database that was not made for training.
    """
    from compliance import demo as scenario

    if state.url is None:
        state.url = scenario.DEMO_URL
    if not scenario.run(state.app(create=True), state.actor, click.echo):
        raise AuditVerificationFailed("the demonstration's audit trail did not verify")
