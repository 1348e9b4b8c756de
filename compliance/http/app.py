"""The FastAPI application: versioned JSON under ``/v1``, OpenAPI 3.1 at ``/v1/openapi.json``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from compliance.api.clients import load_pepper
from compliance.api.service import Compliance
from compliance.http import (
    fhir,
    problems,
    routes_admin,
    routes_common,
    routes_parties,
    routes_pharmacy,
    routes_prescriber,
)
from compliance.http.auth import Service

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": problems.TITLES[status],
        "content": {problems.PROBLEM: {"schema": problems.PROBLEM_SCHEMA}},
    }
    for status in (401, 403, 404, 409, 422, 503)
}


def _version() -> str:
    try:
        return version("compliance-ppp")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
        return "0"


#: Requests served at once per process: SQLAlchemy's default pool holds 5 + 10 connections, and
#: each request holds one, so more threads would only queue for a connection.
THREADS = 15


def create_app(
    compliance: Compliance, *, pepper: bytes | None = None, threads: int = THREADS
) -> FastAPI:
    """The service over one ``Compliance``; ``pepper`` defaults to ``COMPLIANCE_API_PEPPER``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="compliance",
        summary="Pregnancy-prevention programme engine: gates, authorizations, courses",
        version=_version(),
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.service = Service(compliance, load_pepper(pepper))
    problems.install(app)
    for router in (
        routes_common.router,
        routes_pharmacy.router,
        routes_prescriber.router,
        routes_parties.router,
        routes_admin.router,
    ):
        app.include_router(router, prefix="/v1", responses=_ERRORS)
    app.include_router(fhir.router, prefix="/fhir/r4", responses=_ERRORS)
    return app
