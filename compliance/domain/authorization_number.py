"""Authorization numbers: 20 random decimal digits and a Damm check digit.

20 digits carry 66 bits of unpredictability from ``secrets``. The Damm check digit catches every
single-digit error and every swap of two adjacent digits, which is what happens when a number is
read over the phone or typed at a counter.
"""

from __future__ import annotations

import secrets

_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
RANDOM_DIGITS = 20


def check_digit(digits: str) -> str:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][int(ch)]
    return str(interim)


def is_valid(number: str) -> bool:
    """True for a well-formed number whose check digit matches (dashes and spaces ignored)."""
    digits = number.replace("-", "").replace(" ", "")
    if len(digits) != RANDOM_DIGITS + 1 or not (digits.isascii() and digits.isdigit()):
        return False
    return check_digit(digits) == "0"


def new_number() -> str:
    # One uniform draw below 10**20 is twenty uniform digits, at a tenth of the cost of 20 draws.
    body = f"{secrets.randbelow(10**RANDOM_DIGITS):0{RANDOM_DIGITS}d}"
    return body + check_digit(body)


def formatted(number: str) -> str:
    """Groups of four for reading aloud: 1234-5678-9012-3456-7890-1."""
    return "-".join(number[i : i + 4] for i in range(0, len(number), 4))


def normalise(number: str) -> str:
    return number.replace("-", "").replace(" ", "").strip()
