"""Who calls: a bearer API key names the client and its party; the person acting comes from the
key, or from ``X-Acting-Person`` checked against the key's party. Never from the body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from compliance.api.clients import calling_as
from compliance.api.results_clients import Caller
from compliance.api.service import Compliance
from compliance.domain import reasons as rc
from compliance.errors import NotPermitted

T = TypeVar("T")

_BEARER = HTTPBearer(auto_error=False, description="An API key: cpl_<key id>_<secret>")


@dataclass(frozen=True)
class Service:
    compliance: Compliance
    pepper: bytes


def service(request: Request) -> Service:
    found = request.app.state.service
    assert isinstance(found, Service)
    return found


ServiceDep = Annotated[Service, Depends(service)]


def requires(scope: str | None) -> Callable[..., Caller]:
    """A dependency that authenticates the request and, if ``scope`` is given, requires it."""

    def authenticated(
        svc: ServiceDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
        x_acting_person: Annotated[
            str | None,
            Header(description="The pharmacist (a pharmacy terminal) or designee acting."),
        ] = None,
        x_on_behalf_of: Annotated[
            str | None, Header(description="For a designee: the prescriber acted for.")
        ] = None,
    ) -> Caller:
        key = credentials.credentials if credentials is not None else None
        caller = svc.compliance.authenticate(
            key, x_acting_person, x_on_behalf_of, pepper=svc.pepper
        )
        if scope is not None and scope not in caller.scopes:
            raise NotPermitted(
                f"the key of client {caller.client} lacks the scope {scope!r}",
                [rc.SCOPE_NOT_GRANTED],
            )
        return caller

    return authenticated


@contextmanager
def acting(caller: Caller) -> Iterator[None]:
    """Inside: every audit event the call writes names the client and key it came through."""
    with calling_as(caller):
        yield


def act(caller: Caller, call: Callable[[], T]) -> T:
    with acting(caller):
        return call()
