"""API clients and keys: issue, list, rotate, revoke, and authenticate a presented key.

Every key event is an audit event in the caller's transaction. Authentication reads only; the
person a client asserts is checked against the party its key is bound to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from compliance.api.authz import Actor
from compliance.api.parties import checked_ref, load, record
from compliance.api.results_clients import Caller, ClientInfo, IssuedKey, KeyInfo
from compliance.db import models as m
from compliance.db.base import table_of
from compliance.domain import credentials as cred
from compliance.domain import reasons as rc
from compliance.domain import validate as v
from compliance.domain.ids import Kind, kind_of, new_short_id, normalise
from compliance.domain.roles import Action
from compliance.errors import InvalidInput, NotFound, NotPermitted, Unauthenticated

PEPPER_ENV = "COMPLIANCE_API_PEPPER"
PEPPER_FILE_ENV = "COMPLIANCE_API_PEPPER_FILE"

_PARTY_KIND = {
    cred.ClientKind.PHARMACY_TERMINAL: Kind.PHARMACY,
    cred.ClientKind.PRESCRIBER_SYSTEM: Kind.PRESCRIBER,
    cred.ClientKind.ADMINISTRATOR: Kind.ADMINISTRATOR,
}

# The client of the request in progress: written into every audit event its call produces.
_CALLER: ContextVar[Caller | None] = ContextVar("compliance_api_caller", default=None)


@contextmanager
def calling_as(caller: Caller) -> Iterator[None]:
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


def audit_notes() -> dict[str, Any]:
    caller = _CALLER.get()
    if caller is None:
        return {}
    return notes_of(caller)


def notes_of(caller: Caller) -> dict[str, Any]:
    """What every audit event of a call through an API client records about it."""
    return {"client": caller.client, "key_id": caller.key_id}


def recheck(session: Session, now: datetime) -> None:
    """Inside every transaction of a request through the service: its key is still live, so a
    key revoked after the request was authenticated cannot commit anything."""
    caller = _CALLER.get()
    if caller is None:
        return
    row = session.execute(
        select(m.ApiKey.expires_at, m.ApiKey.revoked_at, m.ApiClient.revoked_at)
        .join(m.ApiClient, m.ApiClient.id == m.ApiKey.client_id)
        .where(m.ApiKey.key_id == caller.key_id)
    ).one_or_none()
    if row is None or row[2] is not None or (row[1] is not None and row[1] <= now):
        raise _unauthenticated(rc.CREDENTIAL_REVOKED)
    if row[0] <= now:
        raise _unauthenticated(rc.CREDENTIAL_EXPIRED)


def load_pepper(value: bytes | None = None) -> bytes:
    """The server pepper: given, else from ``COMPLIANCE_API_PEPPER`` or the file named by
    ``COMPLIANCE_API_PEPPER_FILE``. It is never stored in the database."""
    if value is None:
        raw = os.environ.get(PEPPER_ENV)
        path = os.environ.get(PEPPER_FILE_ENV)
        if raw is None and path:
            try:
                raw = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise InvalidInput(PEPPER_FILE_ENV, f"cannot read {path}: {exc.strerror}") from None
        if raw is None:
            raise InvalidInput(
                PEPPER_ENV,
                f"set it (or {PEPPER_FILE_ENV}) to a secret of at least "
                f"{cred.MIN_PEPPER_BYTES} bytes, e.g. the output of "
                "'python -c \"import secrets; print(secrets.token_hex(32))\"'",
            )
        value = raw.encode()
    if len(value) < cred.MIN_PEPPER_BYTES:
        raise InvalidInput(PEPPER_ENV, f"must be at least {cred.MIN_PEPPER_BYTES} bytes")
    return value


def _kind(value: object) -> cred.ClientKind:
    try:
        return cred.ClientKind(v.text("kind", value, max_len=32))
    except ValueError:
        choices = ", ".join(k.value for k in cred.ClientKind)
        raise InvalidInput("kind", f"must be one of {choices}") from None


def _days(field: str, value: object, low: int, high: int) -> timedelta:
    return timedelta(days=v.whole_number(field, value, low, high))


def _scopes(kind: cred.ClientKind, scopes: object) -> list[str]:
    if scopes is None:
        return sorted(cred.grantable_scopes(kind))
    if not isinstance(scopes, list | tuple) or not scopes:
        raise InvalidInput("scopes", "must be a non-empty list of scopes")
    names = [v.text("scopes", s, max_len=32) for s in scopes]
    wrong = cred.ungrantable(kind, names)
    if wrong:
        allowed = ", ".join(sorted(cred.grantable_scopes(kind)))
        raise InvalidInput(
            "scopes", f"{', '.join(wrong)} not grantable to a {kind.value} (allowed: {allowed})"
        )
    return sorted(set(names))


def _key_info(key: m.ApiKey, now: datetime) -> KeyInfo:
    return KeyInfo(
        key.key_id,
        key.created_at,
        key.expires_at,
        key.revoked_at,
        cred.live(key.expires_at, key.revoked_at, now),
    )


def _info(session: Session, client: m.ApiClient, now: datetime) -> ClientInfo:
    keys = session.scalars(
        select(m.ApiKey).where(m.ApiKey.client_id == client.id).order_by(m.ApiKey.created_at)
    ).all()
    return ClientInfo(
        client.short_id,
        client.name,
        client.kind,
        client.party,
        tuple(client.scopes),
        client.created_at,
        client.created_by,
        client.revoked_at,
        tuple(_key_info(k, now) for k in keys),
    )


def _issue(
    session: Session, client: m.ApiClient, now: datetime, pepper: bytes, lifetime: timedelta
) -> tuple[m.ApiKey, str]:
    key_id, secret = cred.new_key_id(), cred.new_secret()
    key = m.ApiKey(
        key_id=key_id,
        client_id=client.id,
        secret_hash=cred.digest(pepper, key_id, secret),
        pepper_id=cred.pepper_id(pepper),
        created_at=now,
        expires_at=now + lifetime,
        revoked_at=None,
    )
    session.add(key)
    session.flush()
    return key, cred.format_key(key_id, secret)


def _client(session: Session, ref: object, *, lock: bool = False) -> m.ApiClient:
    short = checked_ref(Kind.CLIENT, ref, "client")
    stmt = select(m.ApiClient).where(m.ApiClient.short_id == short)
    if lock:
        stmt = stmt.with_for_update()
    found = session.scalars(stmt).one_or_none()
    if found is None:
        raise NotFound("client", short)
    return found


def add_client(
    session: Session,
    actor: Actor,
    now: datetime,
    pepper: bytes,
    name: object,
    kind: object,
    party: object,
    scopes: object,
    lifetime_days: object,
) -> IssuedKey:
    label = v.text("name", name, max_len=200)
    client_kind = _kind(kind)
    bound = load(session, _PARTY_KIND[client_kind], party, "party")
    granted = _scopes(client_kind, scopes)
    lifetime = _days("lifetime_days", lifetime_days, 1, 3 * 366)
    client = m.ApiClient(
        short_id=new_short_id(Kind.CLIENT),
        name=label,
        kind=client_kind.value,
        party=bound.short_id,
        scopes=granted,
        created_at=now,
        created_by=actor.short_id,
        revoked_at=None,
    )
    session.add(client)
    session.flush()
    key, secret = _issue(session, client, now, pepper, lifetime)
    record(
        session,
        actor,
        now,
        Action.CLIENT_ADD,
        subjects=[client.short_id, bound.short_id],
        payload={
            "kind": client_kind.value,
            "name": label,
            "scopes": granted,
            "key_id": key.key_id,
            "expires_at": key.expires_at.isoformat(),
        },
    )
    return IssuedKey(_info(session, client, now), key.key_id, secret, key.expires_at)


def list_clients(session: Session, now: datetime) -> list[ClientInfo]:
    clients = session.scalars(select(m.ApiClient).order_by(m.ApiClient.created_at)).all()
    return [_info(session, c, now) for c in clients]


def show_client(session: Session, now: datetime, ref: object) -> ClientInfo:
    return _info(session, _client(session, ref), now)


def rotate(
    session: Session,
    actor: Actor,
    now: datetime,
    pepper: bytes,
    ref: object,
    overlap_days: object,
    lifetime_days: object,
) -> IssuedKey:
    """A new key; the newest old key keeps working for the overlap, any older one stops now,
    so a client never holds more than two live keys."""
    overlap = _days("overlap_days", overlap_days, 0, cred.MAX_OVERLAP.days)
    lifetime = _days("lifetime_days", lifetime_days, 1, 3 * 366)
    client = _client(session, ref, lock=True)
    if client.revoked_at is not None:
        raise NotPermitted(f"client {client.short_id} is revoked", [rc.CREDENTIAL_REVOKED])
    old = [
        k
        for k in session.scalars(
            select(m.ApiKey).where(m.ApiKey.client_id == client.id).order_by(m.ApiKey.created_at)
        ).all()
        if cred.live(k.expires_at, k.revoked_at, now)
    ]
    ends: dict[str, str] = {}
    for i, k in enumerate(old):
        keep = i == len(old) - 1
        until = min(now + overlap, k.expires_at) if keep else now
        k.revoked_at = until if k.revoked_at is None else min(k.revoked_at, until)
        ends[k.key_id] = k.revoked_at.isoformat()
    key, secret = _issue(session, client, now, pepper, lifetime)
    record(
        session,
        actor,
        now,
        Action.CLIENT_ROTATE,
        subjects=[client.short_id],
        payload={
            "key_id": key.key_id,
            "expires_at": key.expires_at.isoformat(),
            "old_keys_end": ends,
        },
    )
    return IssuedKey(_info(session, client, now), key.key_id, secret, key.expires_at)


def revoke(
    session: Session, actor: Actor, now: datetime, ref: object, key_id: object
) -> ClientInfo:
    """One key (``key_id``) or the whole client and every key, from this instant."""
    client = _client(session, ref, lock=True)
    keys = session.scalars(select(m.ApiKey).where(m.ApiKey.client_id == client.id)).all()
    if key_id is not None:
        wanted = v.text("key_id", key_id, max_len=32)
        keys = [k for k in keys if k.key_id == wanted]
        if not keys:
            raise NotFound("key", wanted)
    else:
        client.revoked_at = client.revoked_at or now
    ended = []
    for k in keys:
        if k.revoked_at is None or k.revoked_at > now:
            k.revoked_at = now
            ended.append(k.key_id)
    session.flush()
    record(
        session,
        actor,
        now,
        Action.CLIENT_REVOKE,
        subjects=[client.short_id],
        payload={"key_id": key_id, "client_revoked": key_id is None, "keys_ended": ended},
    )
    return _info(session, client, now)


def _unauthenticated(code: str) -> Unauthenticated:
    return Unauthenticated(rc.MESSAGES[code], [code])


def authenticate(
    session: Session,
    now: datetime,
    pepper: bytes,
    presented: str | None,
    acting_person: str | None,
    on_behalf_of: str | None,
) -> Caller:
    """The caller a presented key stands for, and the person it acts as.

    Every request through the service starts here, so it is one statement built once: the key,
    its client, and the pharmacy of the person asserted (for a pharmacy terminal's check). The
    key's revocation and expiry are read in the caller's transaction every time; nothing is
    remembered between calls."""
    if not presented:
        raise _unauthenticated(rc.CREDENTIAL_MISSING)
    parsed = cred.parse_key(presented)
    if parsed is None:
        raise _unauthenticated(rc.CREDENTIAL_INVALID)
    key_id, secret = parsed
    row = session.execute(
        _KEY_OF_ID, {"key_id": key_id, "person": _person_or_none(acting_person)}
    ).one_or_none()
    if row is None:
        cred.matches(pepper, key_id, secret, "0" * 64)  # the same work as for a known key id
        raise _unauthenticated(rc.CREDENTIAL_INVALID)
    if not cred.matches(pepper, key_id, secret, row.secret_hash):
        raise _unauthenticated(rc.CREDENTIAL_INVALID)
    if row.client_revoked_at is not None or (row.revoked_at is not None and row.revoked_at <= now):
        raise _unauthenticated(rc.CREDENTIAL_REVOKED)
    if row.expires_at <= now:
        raise _unauthenticated(rc.CREDENTIAL_EXPIRED)
    client = _Bound(row.short_id, row.kind, row.party)
    actor, behalf = _acting(client, row.person_pharmacy, acting_person, on_behalf_of)
    return Caller(
        client.short_id,
        client.kind,
        client.party,
        key_id,
        tuple(row.scopes),
        actor,
        behalf,
    )


_KEYS = table_of(m.ApiKey)
_CLIENTS = table_of(m.ApiClient)
_PHARMACISTS = table_of(m.Pharmacist)
_PHARMACIES = table_of(m.Pharmacy)
_KEY_OF_ID = (
    select(
        _KEYS.c.secret_hash,
        _KEYS.c.expires_at,
        _KEYS.c.revoked_at,
        _CLIENTS.c.short_id,
        _CLIENTS.c.kind,
        _CLIENTS.c.party,
        _CLIENTS.c.scopes,
        _CLIENTS.c.revoked_at.label("client_revoked_at"),
        select(_PHARMACIES.c.short_id)
        .join_from(_PHARMACISTS, _PHARMACIES, _PHARMACIES.c.id == _PHARMACISTS.c.pharmacy_id)
        .where(_PHARMACISTS.c.short_id == bindparam("person"))
        .scalar_subquery()
        .label("person_pharmacy"),
    )
    .join_from(_KEYS, _CLIENTS, _CLIENTS.c.id == _KEYS.c.client_id)
    .where(_KEYS.c.key_id == bindparam("key_id"))
)


@dataclass(frozen=True)
class _Bound:
    """The client a key belongs to, as far as choosing who acts needs it."""

    short_id: str
    kind: str
    party: str


def _person_or_none(person: str | None) -> str | None:
    """The asserted person as ``_acting`` will read it, or None where it will refuse the text."""
    try:
        return normalise(v.text("X-Acting-Person", person, max_len=32)) if person else None
    except InvalidInput:
        return None


def require_scope(caller: Caller, scope: str | None) -> None:
    """The key must carry ``scope`` (scopes only narrow what the party's role allows)."""
    if scope is not None and scope not in caller.scopes:
        raise NotPermitted(
            f"the key of client {caller.client} lacks the scope {scope!r}",
            [rc.SCOPE_NOT_GRANTED],
        )


def _not_of_client(client: _Bound, person: str) -> NotPermitted:
    return NotPermitted(
        f"{person} does not act for {client.kind} {client.short_id} ({client.party})",
        [rc.ACTING_PERSON_NOT_OF_CLIENT],
        subjects=(client.short_id,),
    )


def _acting(
    client: _Bound, person_pharmacy: str | None, person: str | None, on_behalf_of: str | None
) -> tuple[str, str | None]:
    """Who acts: the key's own person, or the one it asserts, who must belong to its party
    (``person_pharmacy``: the asserted person's pharmacy, read with the key)."""
    kind = cred.ClientKind(client.kind)
    asserted = normalise(v.text("X-Acting-Person", person, max_len=32)) if person else None
    behalf = normalise(v.text("X-On-Behalf-Of", on_behalf_of, max_len=32)) if on_behalf_of else None
    if kind is cred.ClientKind.PHARMACY_TERMINAL:
        if asserted is None:
            raise InvalidInput("X-Acting-Person", "a pharmacy terminal names its pharmacist")
        if kind_of(asserted) is not Kind.PHARMACIST or behalf is not None:
            raise _not_of_client(client, asserted)
        if person_pharmacy != client.party:
            raise _not_of_client(client, asserted)
        return asserted, None
    if asserted is None or asserted == client.party:
        if behalf is not None:
            raise InvalidInput("X-On-Behalf-Of", "only an asserted designee acts on behalf")
        return client.party, None
    if kind is cred.ClientKind.PRESCRIBER_SYSTEM and kind_of(asserted) is Kind.DESIGNEE:
        # A prescriber's system speaks for that prescriber's designees only: the engine then
        # checks the designee's live grant from this prescriber on every call.
        if behalf is not None and behalf != client.party:
            raise _not_of_client(client, asserted)
        return asserted, client.party
    raise _not_of_client(client, asserted)
