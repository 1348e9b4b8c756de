"""API client credentials as pure rules: the key format, its keyed hash, expiry and scopes.

A key is ``cpl_<key id>_<secret>``: the key id finds the stored row, the secret (256 random bits)
proves possession. Only ``HMAC-SHA-256(pepper, key id + secret)`` is stored. The secret is too
random to guess, so no slow hash is needed; the server pepper (kept outside the database) means
that someone who can write to the database still cannot mint a working key by inserting a hash.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import MappingProxyType

from compliance.domain.roles import PERMISSIONS, Action, Role

PREFIX = "cpl"
SECRET_BYTES = 32
KEY_ID_LEN = 16
LIFETIME = timedelta(days=365)  # matches the programme's yearly re-activation of a pharmacy
OVERLAP = timedelta(days=7)  # how long the old key keeps working after a rotation, by default
MAX_OVERLAP = timedelta(days=90)
MIN_PEPPER_BYTES = 32


class ClientKind(enum.StrEnum):
    """Who a client is; the key of each is bound to exactly one party of the matching kind."""

    PHARMACY_TERMINAL = "pharmacy-terminal"  # bound to a pharmacy; asserts its pharmacist
    PRESCRIBER_SYSTEM = "prescriber-system"  # bound to a prescriber; may assert their designee
    ADMINISTRATOR = "administrator"  # bound to one administrator


# The roles a client's calls may act in: scopes can only narrow what these roles allow.
ROLES_OF_KIND: MappingProxyType[ClientKind, frozenset[Role]] = MappingProxyType(
    {
        ClientKind.PHARMACY_TERMINAL: frozenset({Role.PHARMACIST}),
        ClientKind.PRESCRIBER_SYSTEM: frozenset({Role.PRESCRIBER, Role.DESIGNEE}),
        ClientKind.ADMINISTRATOR: frozenset({Role.ADMINISTRATOR}),
    }
)

# Each scope names the engine actions its endpoints perform.
SCOPES: MappingProxyType[str, frozenset[Action]] = MappingProxyType(
    {
        "dispense:check": frozenset({Action.COURSE_READ, Action.PRESCRIPTION_FIND}),
        "dispense:authorize": frozenset({Action.AUTHORIZATION_REQUEST}),
        "dispense:reverse": frozenset({Action.AUTHORIZATION_REVERSE}),
        "dispense:record": frozenset({Action.DISPENSE_RECORD}),
        "course:read": frozenset({Action.COURSE_READ, Action.PATIENT_READ}),
        "course:write": frozenset(
            {
                Action.COURSE_ENROL,
                Action.CATEGORY_ASSIGN,
                Action.CONSENT_RECORD,
                Action.COUNSELLING_RECORD,
                Action.CONTRACEPTION_RECORD,
                Action.TEST_RECORD,
                Action.PATIENT_CONFIRM,
                Action.TEST_SCHEDULE_SET,
                Action.TREATMENT_END,
                Action.PREGNANCY_REPORT,
                Action.COURSE_RESUME,
                Action.COURSE_WITHDRAW,
                Action.COURSE_LOST,
                Action.HOME_TESTING_SET,
                Action.PATIENT_REGISTER,
                Action.PATIENT_UPDATE,
                Action.PATIENT_CORRECT,
            }
        ),
        "prescribe": frozenset({Action.PRESCRIBE}),
        "worklist:read": frozenset({Action.COURSE_READ}),
        "designee:manage": frozenset(
            {Action.DESIGNEE_REGISTER, Action.GRANT_CREATE, Action.GRANT_AMEND, Action.GRANT_REVOKE}
        ),
        "audit:read": frozenset({Action.AUDIT_READ}),
        "admin": frozenset(
            {
                Action.CLIENT_ADD,
                Action.CLIENT_ROTATE,
                Action.CLIENT_REVOKE,
                Action.CLIENT_READ,
                Action.CLOCK_OVERRIDE_SET,
                Action.RULES_SCHEDULE,
                Action.PRESCRIBER_REGISTER,
                Action.PRESCRIBER_ACTIVATE,
                Action.PRESCRIBER_SUSPEND,
                Action.PRESCRIBER_REINSTATE,
                Action.PRESCRIBER_DEACTIVATE,
                Action.PRESCRIBER_ZONE_SET,
                Action.DESIGNEE_DEACTIVATE,
                Action.PHARMACY_REGISTER,
                Action.PHARMACY_ACTIVATE,
                Action.PHARMACY_DEACTIVATE,
                Action.PHARMACIST_REGISTER,
                Action.PHARMACIST_DEACTIVATE,
            }
        ),
    }
)


def grantable_scopes(kind: ClientKind) -> frozenset[str]:
    """The scopes whose actions the kind's roles may perform at all."""
    roles = ROLES_OF_KIND[kind]
    return frozenset(
        scope
        for scope, actions in SCOPES.items()
        if any(PERMISSIONS[action] & roles for action in actions)
    )


def ungrantable(kind: ClientKind, scopes: Iterable[str]) -> list[str]:
    """The requested scopes that are unknown or would widen what the kind's role allows."""
    allowed = grantable_scopes(kind)
    return sorted({s for s in scopes if s not in allowed})


def new_key_id() -> str:
    return secrets.token_hex(KEY_ID_LEN // 2)


def new_secret() -> str:
    raw = secrets.token_bytes(SECRET_BYTES)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def format_key(key_id: str, secret: str) -> str:
    return f"{PREFIX}_{key_id}_{secret}"


def parse_key(key: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, else None (never an exception)."""
    prefix, sep, rest = key.partition("_")
    if prefix != PREFIX or not sep:
        return None
    key_id, sep, secret = rest.partition("_")
    if not sep or len(key_id) != KEY_ID_LEN or not secret or len(secret) > 128:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


def digest(pepper: bytes, key_id: str, secret: str) -> str:
    return hmac.new(pepper, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def matches(pepper: bytes, key_id: str, secret: str, stored: str) -> bool:
    """Constant-time comparison of a presented secret with the stored digest."""
    return hmac.compare_digest(digest(pepper, key_id, secret), stored)


def pepper_id(pepper: bytes) -> str:
    """A fingerprint of the pepper, stored with each key so a wrong pepper is named, not
    mistaken for a wrong key."""
    return hmac.new(pepper, b"compliance pepper id", hashlib.sha256).hexdigest()[:16]


def live(expires_at: datetime, revoked_at: datetime | None, now: datetime) -> bool:
    return (revoked_at is None or revoked_at > now) and expires_at > now
