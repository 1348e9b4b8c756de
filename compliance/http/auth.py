"""Who calls: a bearer API key names the client and its party; the person acting comes from the
key, or from ``X-Acting-Person`` checked against the key's party. Never from the body.

The dependency here only reads the headers into a ``Credential`` and refuses, before anything
else (the body included), a request without a key. The key itself, the asserted
person and the scope are checked by the engine inside the transaction of the one call the
handler makes, so a request is one transaction and nobody is refused half-way through.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from compliance.api.results_clients import Credential
from compliance.api.service import Compliance
from compliance.domain import reasons as rc
from compliance.errors import Unauthenticated

_BEARER = HTTPBearer(auto_error=False, description="An API key: cpl_<key id>_<secret>")


@dataclass(frozen=True)
class Service:
    compliance: Compliance
    pepper: bytes


async def service(request: Request) -> Service:
    """The app's service; ``async`` (it does no I/O) so it runs on the event loop, not in a
    worker thread: each thread hop of a dependency costs a request about as much as a query."""
    found = request.app.state.service
    assert isinstance(found, Service)
    return found


ServiceDep = Annotated[Service, Depends(service)]


def _unauthenticated(code: str) -> Unauthenticated:
    return Unauthenticated(rc.MESSAGES[code], [code])


def requires(scope: str | None) -> Callable[..., Coroutine[Any, Any, Credential]]:
    """A dependency: the request's credential, needing ``scope`` (None: any valid key).

    A missing key is a 401 here, before the body is even read; a malformed, unknown, expired
    or revoked one is the same 401 from the call, which checks it in its transaction (after
    the body and the database's schema: a bad body is then a 422, an old schema a 503).
    """

    async def presented(  # no I/O: on the event loop, like ``service``
        svc: ServiceDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        x_acting_person: Annotated[
            str | None,
            Header(description="The pharmacist (a pharmacy terminal) or designee acting."),
        ] = None,
        x_on_behalf_of: Annotated[
            str | None, Header(description="For a designee: the prescriber acted for.")
        ] = None,
    ) -> Credential:
        key = credentials.credentials if credentials is not None else None
        if not key:
            raise _unauthenticated(rc.CREDENTIAL_MISSING)
        return Credential(
            key,
            pepper=svc.pepper,
            acting_person=x_acting_person,
            on_behalf_of=x_on_behalf_of,
            scope=scope,
        )

    return presented
