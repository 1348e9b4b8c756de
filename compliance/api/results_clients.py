"""Result objects of API client administration. A key's secret appears only in ``IssuedKey``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from compliance.api.results import _Result


@dataclass(frozen=True)
class KeyInfo(_Result):
    """One key of an API client: when it was made, expires or was revoked (never its secret)."""

    key_id: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    live: bool


@dataclass(frozen=True)
class ClientInfo(_Result):
    """An API client (a pharmacy terminal, a prescriber's system, an administrator's tool):
    the party its keys are bound to, the scopes they narrow it to, and the keys."""

    id: str
    name: str
    kind: str
    party: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    keys: tuple[KeyInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["keys"] = [k.to_dict() for k in self.keys]
        return data


@dataclass(frozen=True)
class IssuedKey(_Result):
    """A new key: ``key`` is shown this once and never stored."""

    client: ClientInfo
    key_id: str
    key: str
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client.to_dict(),
            "key_id": self.key_id,
            "key": self.key,
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class Caller(_Result):
    """An authenticated request: the client and key, and the person it acts as."""

    client: str
    kind: str
    party: str
    key_id: str
    scopes: tuple[str, ...]
    actor: str
    on_behalf_of: str | None = None


class Credential(str):
    """An API key presented for one call, accepted wherever an operation takes its ``actor``.

    The operation resolves it inside its own transaction, before anything else: the key (unknown,
    expired or revoked is ``Unauthenticated``), the person it acts as (the key's own, or the
    ``acting_person`` checked against the key's party), a designee's prescriber
    (``on_behalf_of``, also checked against the key), and the ``scope`` the caller needs
    (``NotPermitted`` if the key lacks it). Only then does the engine authorize the action, in
    the same transaction, so a key revoked a moment before cannot act and a request is exactly
    one transaction. Identity comes from the key alone: an operation called with a credential
    refuses an ``on_behalf_of`` argument of its own.

    It is a ``str`` (whose text is the fixed ``"credential"``) so that every operation keeps the
    signature ``actor: str``; the secret and the pepper are attributes, never part of the text
    or the ``repr``. A credential that did not resolve is never written to the audit trail.
    """

    TEXT = "credential"

    key: str | None
    pepper: bytes
    acting_person: str | None
    on_behalf_of: str | None
    scope: str | None

    def __new__(
        cls,
        key: str | None,
        *,
        pepper: bytes,
        acting_person: str | None = None,
        on_behalf_of: str | None = None,
        scope: str | None = None,
    ) -> Credential:
        self = super().__new__(cls, cls.TEXT)
        self.key = key
        self.pepper = pepper
        self.acting_person = acting_person
        self.on_behalf_of = on_behalf_of
        self.scope = scope
        return self

    def __repr__(self) -> str:
        return f"Credential(acting_person={self.acting_person!r}, scope={self.scope!r})"

    # Two credentials are never the same caller because their text is: compare by identity.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = str.__hash__
