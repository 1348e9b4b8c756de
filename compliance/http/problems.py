"""Caller errors as RFC 9457 problem details, and rule refusals as answers.

A refusal by the programme rules is HTTP 200 with the whole decision: the caller asked a fair
question and got an answer. Only a fault of the caller (or a busy database) is an HTTP error,
carrying the engine's reason codes; no exception text of our own internals ever leaves.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from compliance.domain import reasons as rc
from compliance.errors import (
    Busy,
    ComplianceError,
    Conflict,
    DatabaseNotReady,
    InvalidInput,
    NotFound,
    NotPermitted,
    Refused,
    Unauthenticated,
)

LOG = logging.getLogger("compliance.http")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://github.com/compliance-ppp/compliance/blob/main/docs/http.md#problem-"
RETRY_AFTER = {Busy: "1", DatabaseNotReady: "5"}
TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Not permitted",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid input",
    500: "Internal error",
    503: "Service unavailable",
}

# The shape of every problem response, for the OpenAPI description.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "codes": {"type": "array", "items": {"type": "string"}},
        "field": {"type": "string"},
    },
}


def problem(
    status: int,
    code: str,
    detail: str | None = None,
    *,
    codes: tuple[str, ...] | list[str] = (),
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.lower().replace("_", "-"),
        "title": TITLES.get(status, "Error"),
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if codes:
        body["codes"] = list(codes)
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def refusal_body(refusal: Refused) -> dict[str, Any]:
    """A rule refusal as an answer: every reason with message, next step and earliest date."""
    decision = refusal.decision.to_dict() if refusal.decision is not None else None
    if decision is not None:
        reasons = decision["reasons"]
    else:
        reasons = [
            {"code": c, "message": rc.MESSAGES.get(c, c), "next_step": None, "earliest": None}
            for c in refusal.reasons
        ]
    return {
        "status": "refused",
        "message": refusal.message,
        "codes": list(refusal.reasons),
        "reasons": reasons,
        "decision": decision,
    }


def from_error(exc: ComplianceError) -> JSONResponse:
    """The problem response for a library error that reached the edge."""
    if isinstance(exc, Unauthenticated):
        return problem(
            401,
            exc.code,
            exc.message,
            codes=exc.reasons,
            headers={"WWW-Authenticate": 'Bearer realm="compliance"'},
        )
    if isinstance(exc, NotPermitted):
        return problem(403, exc.code, exc.message, codes=exc.reasons)
    if isinstance(exc, Refused):
        if rc.AUTHORIZATION_NOT_FOUND in exc.reasons:
            return problem(404, "NOT_FOUND", exc.message, codes=exc.reasons)
        return JSONResponse(refusal_body(exc))  # a rule refusal that reached the edge
    if isinstance(exc, InvalidInput):
        return problem(422, exc.code, exc.message, field=exc.field)
    if isinstance(exc, NotFound):
        return problem(404, exc.code, exc.message)
    if isinstance(exc, Conflict):
        return problem(409, exc.code, exc.message)
    if isinstance(exc, Busy | DatabaseNotReady):
        LOG.warning("%s: %s", exc.code, exc.message)
        detail = "the database is busy" if isinstance(exc, Busy) else "the database is not ready"
        retry = RETRY_AFTER[type(exc)]
        return problem(503, exc.code, detail, headers={"Retry-After": retry})
    LOG.error("unexpected library error %s: %s", exc.code, exc.message)
    return problem(500, "INTERNAL_ERROR", "the request could not be completed")


def install(app: FastAPI) -> None:
    """Every error path of the app ends in a problem document."""

    async def library_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ComplianceError)
        return from_error(exc)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in {"body", "query", "path"}]
        field = ".".join(loc) or "body"
        message = str(first.get("msg", "invalid"))
        return problem(422, InvalidInput.code, f"{field}: {message}", field=field)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, code, str(exc.detail), headers=headers)

    async def pool_timeout(_: Request, exc: Exception) -> JSONResponse:
        return from_error(Busy(f"no database connection free: {exc}"))

    async def anything(_: Request, exc: Exception) -> JSONResponse:
        LOG.exception("unhandled error", exc_info=exc)
        return problem(500, "INTERNAL_ERROR", "the request could not be completed")

    app.add_exception_handler(ComplianceError, library_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(PoolTimeout, pool_timeout)
    app.add_exception_handler(Exception, anything)
