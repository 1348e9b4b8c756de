"""``compliance init`` and ``compliance db ...``: create, migrate and inspect a database."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.cli.output import json_option, say, show_record
from compliance.errors import DatabaseNotReady


@click.command()
@click.option("--admin-name", required=True, help="Name of the first administrator.")
@click.option(
    "--training", is_flag=True, help="A training database: simulated clocks (--now) are accepted."
)
@json_option
@pass_ctx
def init(state: Context, admin_name: str, training: bool, as_json: bool) -> None:
    """Create (or migrate) the database and its first administrator."""
    admin = state.app(create=True).initialize(admin_name, training=training)
    if as_json:
        show_record(admin.to_dict(), True)
        return
    say(f"database ready: {state.app().schema_status().url}")
    say(f"first administrator: {admin.id} ({admin.name})")
    say(f"act as them with: --as {admin.id}  (or export COMPLIANCE_ACTOR={admin.id})")


@click.group()
def db() -> None:
    """Schema migrations: upgrade, current revision, drift check."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@json_option
@pass_ctx
def upgrade(state: Context, revision: str, as_json: bool) -> None:
    """Migrate the database to the latest (or given) schema revision."""
    status = state.app(create=True).migrate(revision)
    show_record(status.to_dict(), as_json, title="Schema")


@db.command()
@json_option
@pass_ctx
def current(state: Context, as_json: bool) -> None:
    """Show the schema revision of the database and the one this version needs."""
    show_record(state.app().schema_status().to_dict(), as_json, title="Schema")


@db.command()
@json_option
@pass_ctx
def check(state: Context, as_json: bool) -> None:
    """Check that the database schema matches the models (no drift); exit 8 if not."""
    problem = state.app().drift()
    show_record({"drift": problem is not None, "detail": problem}, as_json, title="Drift")
    if problem is not None:
        raise DatabaseNotReady(f"schema drift: {problem}")


@db.command()
@click.option("--role", required=True, help="The runtime role the service connects as.")
@click.option("--apply", "apply_", is_flag=True, help="Run the statements (as the tables' owner).")
@pass_ctx
def grants(state: Context, role: str, apply_: bool) -> None:
    """Print (or apply) the PostgreSQL grants of a runtime role that cannot rewrite the audit
    trail: INSERT/SELECT only on audit events, no DELETE, TRUNCATE or trigger changes."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from compliance.db.engine import make_engine, parse_url, resolve_url
    from compliance.db.grants import check_role, grant_statements
    from compliance.errors import InvalidInput

    check_role(role)
    url = parse_url(resolve_url(state.url))
    if url.get_backend_name() != "postgresql":
        raise InvalidInput("--db", "runtime-role grants are for PostgreSQL databases")
    statements = grant_statements(role, url.database or "")
    if not apply_:
        for statement in statements:
            click.echo(statement + ";")
        return
    engine = make_engine(state.url, create=False)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    except DBAPIError as exc:
        raise DatabaseNotReady(f"grants not applied: {exc.orig}") from None
    finally:
        engine.dispose()
    say(f"granted the runtime privileges to {role} on {url.database}")
