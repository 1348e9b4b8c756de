"""``compliance serve``: the HTTP service on this database (needs the ``http`` extra)."""

from __future__ import annotations

import click

from compliance.cli.context import Context, pass_ctx
from compliance.errors import DatabaseNotReady, InvalidInput


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDRESS",
    help="A reverse proxy whose X-Forwarded-For/-Proto headers are believed (repeatable; "
    "default: none).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log one line per request (a proxy in front may already do so).",
)
@pass_ctx
def serve(
    state: Context, host: str, port: int, trusted_proxies: tuple[str, ...], access_log: bool
) -> None:
    """Run the HTTP service (JSON under /v1) until interrupted.

    Callers authenticate with API keys (see 'compliance client'); keys are checked with the pepper
    in COMPLIANCE_API_PEPPER or the file named by COMPLIANCE_API_PEPPER_FILE.
    """
    if state.now is not None:
        raise InvalidInput("--now", "the service runs on the real clock only")
    if state.actor:
        raise InvalidInput("--as", "the service takes who acts from each request's API key")
    try:
        import uvicorn

        from compliance.http import create_app
    except ImportError as exc:
        raise InvalidInput(
            "serve",
            f"the HTTP service needs the http extra: pip install 'compliance-ppp[http]' "
            f"({exc.name} is missing)",
        ) from None
    app = state.app()
    status = app.schema_status()
    if not status.up_to_date:
        raise DatabaseNotReady(
            f"database schema is at {status.current or 'empty'}, this version needs {status.head}: "
            "run 'compliance db upgrade' (or 'compliance init' for a new database)"
        )
    service = create_app(app)
    config = uvicorn.Config(
        service,
        host=host,
        port=port,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies) or None,
        server_header=False,
        access_log=access_log,
        log_level="info",
    )
    click.echo(
        f"compliance: serving on http://{host}:{port}/v1 (OpenAPI: /v1/openapi.json)", err=True
    )
    uvicorn.Server(config).run()
