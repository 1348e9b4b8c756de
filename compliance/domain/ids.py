"""Short human-readable ids: a role prefix, seven Crockford base-32 symbols and a check symbol.

The check symbol (Luhn mod 32) catches every single-symbol typo and most adjacent swaps when an id
is read out over the phone or typed at a counter, and stays inside the same 32 shell-safe symbols.
"""

from __future__ import annotations

import enum
import secrets

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY_LEN = 7


class Kind(enum.StrEnum):
    ADMINISTRATOR = "ADM"
    PRESCRIBER = "PRS"
    DESIGNEE = "DSG"
    PHARMACY = "PHA"
    PHARMACIST = "RPH"
    PATIENT = "PAT"
    PRESCRIPTION = "RX"
    CLIENT = "CLI"


def _check_symbol(body: str) -> str:
    n = len(_ALPHABET)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = _ALPHABET.index(ch) * (2 if i % 2 == 0 else 1)
        total += d // n + d % n
    return _ALPHABET[(n - total % n) % n]


def new_short_id(kind: Kind) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LEN))
    return f"{kind.value}-{body}{_check_symbol(body)}"


def normalise(ref: str) -> str:
    """Upper-case and map Crockford's look-alikes (I, L -> 1; O -> 0) so typed ids still match."""
    ref = ref.strip().upper()
    if "-" not in ref:
        return ref
    prefix, _, rest = ref.partition("-")
    rest = rest.replace("I", "1").replace("L", "1").replace("O", "0")
    return f"{prefix}-{rest}"


def kind_of(ref: str) -> Kind | None:
    """The kind a well-formed short id names, or None when ``ref`` is not one."""
    prefix, sep, rest = ref.partition("-")
    if not sep or len(rest) != _BODY_LEN + 1:
        return None
    try:
        kind = Kind(prefix)
    except ValueError:
        return None
    body, check = rest[:-1], rest[-1]
    if any(ch not in _ALPHABET for ch in body) or _check_symbol(body) != check:
        return None
    return kind


def check_mismatch(ref: str) -> bool:
    """True when ``ref`` is shaped like a short id of a known kind but its check symbol is
    wrong: a typo, not a format error."""
    prefix, sep, rest = ref.partition("-")
    if not sep or len(rest) != _BODY_LEN + 1 or prefix not in {k.value for k in Kind}:
        return False
    if any(ch not in _ALPHABET for ch in rest):
        return False
    return _check_symbol(rest[:-1]) != rest[-1]


def near_misses(ref: str) -> list[str]:
    """The well-formed ids one typo from ``ref``: one symbol changed (the check symbol too) or
    two neighbours swapped. These are the ids a mistyped ``ref`` most likely meant."""
    prefix, _, rest = ref.partition("-")
    found: set[str] = set()

    def consider(symbols: str) -> None:
        if symbols != rest and _check_symbol(symbols[:-1]) == symbols[-1]:
            found.add(f"{prefix}-{symbols}")

    for i in range(len(rest)):
        for ch in _ALPHABET:
            consider(rest[:i] + ch + rest[i + 1 :])
        if i + 1 < len(rest):
            consider(rest[:i] + rest[i + 1] + rest[i] + rest[i + 2 :])
    return sorted(found)
