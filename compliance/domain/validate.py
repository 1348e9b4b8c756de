"""Input checks that name the field and the problem; every public entry point runs them first."""

from __future__ import annotations

import functools
import re
import unicodedata
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from compliance.errors import InvalidInput

MAX_NAME = 200
MAX_IDENT = 64
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")


def text(field: str, value: object, *, max_len: int = MAX_NAME) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    cleaned = unicodedata.normalize("NFC", value).strip()
    if not cleaned:
        raise InvalidInput(field, "must not be empty")
    if len(cleaned) > max_len:
        raise InvalidInput(field, f"must be at most {max_len} characters (got {len(cleaned)})")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in cleaned):
        raise InvalidInput(field, "must not contain control or unassigned characters")
    return cleaned


def identifier(field: str, value: object) -> str:
    cleaned = text(field, value, max_len=MAX_IDENT)
    if not _IDENT.match(cleaned):
        raise InvalidInput(
            field,
            "use letters, digits and . _ : / - only, starting with a letter or digit",
        )
    return cleaned


def calendar_date(field: str, value: object) -> date:
    if isinstance(value, datetime):
        raise InvalidInput(field, "must be a calendar date, not an instant")
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a valid date (YYYY-MM-DD)") from None


def birth_date(field: str, value: object, today: date) -> date:
    born = calendar_date(field, value)
    if born > today:
        raise InvalidInput(field, f"{born.isoformat()} is in the future")
    if born.year < 1900:
        raise InvalidInput(field, f"{born.isoformat()} is before 1900")
    return born


def time_zone(field: str, value: object) -> str:
    name = text(field, value, max_len=64)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a folder such as 'America' is OSError
        raise InvalidInput(field, f"{name!r} is not an IANA time zone name") from None
    return name


def npi(field: str, value: object) -> str:
    """A US National Provider Identifier: ten digits, Luhn-checked with the 80840 prefix."""
    digits = text(field, value, max_len=10)
    if not (len(digits) == 10 and digits.isascii() and digits.isdigit()):
        raise InvalidInput(field, "an NPI is exactly ten digits")
    if _luhn_check_digit("80840" + digits[:9]) != int(digits[9]):
        raise InvalidInput(field, f"{digits} fails the NPI check digit")
    return digits


def ncpdp(field: str, value: object) -> str:
    digits = text(field, value, max_len=7)
    if not (len(digits) == 7 and digits.isascii() and digits.isdigit()):
        raise InvalidInput(field, "an NCPDP provider id is exactly seven digits")
    return digits


def _luhn_check_digit(payload: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def npi_with_check_digit(first_nine: str) -> str:
    """Complete nine digits into a valid NPI (used by the demonstration and test factories)."""
    return first_nine + str(_luhn_check_digit("80840" + first_nine))


def external_id(field: str, system: str, value: object) -> str:
    if system == "NPI":
        return npi(field, value)
    if system == "NCPDP":
        return ncpdp(field, value)
    return identifier(field, value)


def scheme(field: str, value: object) -> str:
    return identifier(field, value).upper()


def uuid_value(field: str, value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a UUID") from None


def name_key(name: str) -> str:
    """A folding of a name used only to *warn* about possible duplicates, never to match.

    Case, compatibility forms and characters that look alike in another script (Cyrillic
    capital A, U+0410, for Latin "A") fold together, so a name retyped on a different keyboard
    still warns. Folding can lengthen a name (ß becomes ss): the key is cut to the column's
    width."""
    looks = _look_alikes()
    # Before and after case folding: capital and small forms have different look-alikes
    # (Cyrillic capital Ve, U+0412, looks like "B"; its small form like nothing Latin).
    decomposed = unicodedata.normalize("NFKD", name)
    folded = "".join(looks.get(ch, ch) for ch in decomposed).casefold()
    kept = "".join(looks.get(ch, ch) for ch in folded if ch.isalnum() or ch.isspace())
    return " ".join(kept.casefold().split())[:MAX_NAME]


@functools.cache
def _look_alikes() -> dict[str, str]:
    """Each character with homoglyphs, mapped to the ASCII one it is mistaken for (the lowest
    when several are), from the Unicode confusables data that ``confusable-homoglyphs`` ships.
    Loaded on first use: most commands never register or search a patient."""
    from confusable_homoglyphs.confusables import confusables_data

    table: dict[str, str] = {}
    for char, glyphs in confusables_data.items():
        ascii_forms = sorted(g["c"] for g in glyphs if g["c"].isascii() and g["c"].isalnum())
        if len(char) == 1 and ascii_forms and not (char.isascii() and char.isalnum()):
            table[char] = ascii_forms[0].casefold()
    return table


def whole_number(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be a whole number")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}, not {value}")
    return value


def flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def choice(field: str, value: object, options: Iterable[str]) -> str:
    allowed = list(options)
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(field, f"must be one of {', '.join(allowed)}")
    return value


def safe_ref(value: object) -> str | None:
    """A reference as it may be written into the audit trail: printable, at most 64 characters.
    Anything else (not text, control characters, invalid UTF-8) is kept as its ASCII escape."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().upper()
        printable = all(
            unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in text
        )
        if printable:
            return text[:64]
    return ascii(value)[:64]
