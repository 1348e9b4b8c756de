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
