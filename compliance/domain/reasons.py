"""Reason codes of the public decision contract that this layer raises.

Codes are stable: add new ones, never rename. Each maps to the human message shown with it.
"""

from __future__ import annotations

from types import MappingProxyType

ACTOR_NOT_PERMITTED = "ACTOR_NOT_PERMITTED"
ACTOR_UNKNOWN = "ACTOR_UNKNOWN"
ACTOR_INACTIVE = "ACTOR_INACTIVE"
PRESCRIBER_NOT_CERTIFIED = "PRESCRIBER_NOT_CERTIFIED"
PHARMACY_NOT_CERTIFIED = "PHARMACY_NOT_CERTIFIED"
PHARMACY_ACTIVATION_EXPIRED = "PHARMACY_ACTIVATION_EXPIRED"
DESIGNEE_GRANT_MISSING = "DESIGNEE_GRANT_MISSING"
DESIGNEE_GRANT_EXPIRED = "DESIGNEE_GRANT_EXPIRED"
DESIGNEE_GRANT_SCOPE = "DESIGNEE_GRANT_SCOPE"
OUT_OF_SCOPE = "OUT_OF_SCOPE"

MESSAGES: MappingProxyType[str, str] = MappingProxyType(
    {
        ACTOR_NOT_PERMITTED: "the acting person's role may not perform this action",
        ACTOR_UNKNOWN: "no person with this id is registered",
        ACTOR_INACTIVE: "the acting person is not active",
        PRESCRIBER_NOT_CERTIFIED: "the prescriber is not registered, not activated, or deactivated",
        PHARMACY_NOT_CERTIFIED: "the pharmacy is not registered, not activated, or deactivated",
        PHARMACY_ACTIVATION_EXPIRED: "the pharmacy's annual activation has expired",
        DESIGNEE_GRANT_MISSING: "the designee holds no grant from this prescriber",
        DESIGNEE_GRANT_EXPIRED: "the designee's grant from this prescriber expired or was revoked",
        DESIGNEE_GRANT_SCOPE: "the designee's grant does not cover this action",
        OUT_OF_SCOPE: "the acting person may act only for themselves here",
    }
)
