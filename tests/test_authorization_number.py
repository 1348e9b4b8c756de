"""Authorization numbers: 20 random digits plus a Damm check digit that catches every single-digit
error and every transposition of adjacent (different) digits."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from compliance.domain.authorization_number import (
    RANDOM_DIGITS,
    check_digit,
    formatted,
    is_valid,
    new_number,
    normalise,
)

LENGTH = RANDOM_DIGITS + 1


def _body(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("0123456789") for _ in range(RANDOM_DIGITS))


SAMPLE = [_body(seed) + check_digit(_body(seed)) for seed in range(300)]


@pytest.fixture(scope="module")
def generated() -> list[str]:
    return [new_number() for _ in range(10_000)]


def test_known_damm_values() -> None:
    # the worked example of the Damm algorithm: 572 -> check digit 4
    assert check_digit("572") == "4"
    assert check_digit("5724") == "0"
    assert check_digit("") == "0"
    assert is_valid("0" * LENGTH)


def test_new_number_is_21_valid_digits() -> None:
    number = new_number()
    assert RANDOM_DIGITS == 20
    assert len(number) == 21
    assert re.fullmatch(r"[0-9]{21}", number)
    assert is_valid(number)


def test_sample_is_varied() -> None:
    assert len(set(SAMPLE)) == len(SAMPLE)
    assert all(is_valid(n) for n in SAMPLE)


@pytest.mark.parametrize("number", [*SAMPLE[:3], "000000000000000000000"])
def test_check_digit_is_the_only_valid_last_digit(number: str) -> None:
    endings = [d for d in "0123456789" if is_valid(number[:-1] + d)]
    assert endings == [number[-1]]


def test_every_single_digit_substitution_is_caught() -> None:
    missed = [
        (number, i, d)
        for number in SAMPLE
        for i in range(LENGTH)
        for d in "0123456789"
        if d != number[i] and is_valid(number[:i] + d + number[i + 1 :])
    ]
    assert missed == []


def test_every_adjacent_transposition_is_caught() -> None:
    checked = 0
    missed = []
    for number in SAMPLE:
        for i in range(LENGTH - 1):
            a, b = number[i], number[i + 1]
            if a == b:
                continue
            checked += 1
            if is_valid(number[:i] + b + a + number[i + 2 :]):
                missed.append((number, i))
    assert missed == []
    assert checked > 300 * 15  # most neighbours differ: the check really ran


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0" * (LENGTH - 1),
        "0" * (LENGTH + 1),
        "00000000000000000000a",
        "0000000000000000000-0",  # 20 digits once the dash is dropped
        "\u0660" * LENGTH,  # Arabic-Indic zeros are digits to str.isdigit, not to us
        "\uff10" * LENGTH,  # full-width zeros
        "+00000000000000000000",
        "00000000000000000000\n0",
    ],
)
def test_malformed_numbers_are_invalid(bad: str) -> None:
    assert not is_valid(bad)


def test_formatting_round_trip() -> None:
    for number in SAMPLE:
        shown = formatted(number)
        assert re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{4}-\d{4}-\d", shown)
        assert shown.replace("-", "") == number
        assert normalise(shown) == number
        assert is_valid(shown)
        spaced = shown.replace("-", " ")
        assert normalise(spaced) == number
        assert is_valid(spaced)
        assert normalise(f"  {shown}\n") == number
    assert formatted("123456789012345678901") == "1234-5678-9012-3456-7890-1"


def test_formatting_does_not_hide_errors() -> None:
    number = SAMPLE[0]
    wrong = number[:5] + str((int(number[5]) + 1) % 10) + number[6:]
    assert not is_valid(formatted(wrong))


def test_ten_thousand_numbers_are_unique_and_valid(generated: list[str]) -> None:
    assert len(set(generated)) == len(generated) == 10_000
    assert all(len(n) == LENGTH and is_valid(n) for n in generated)


def test_every_position_uses_every_digit(generated: list[str]) -> None:
    for position in range(LENGTH):
        counts = Counter(n[position] for n in generated)
        assert set(counts) == set("0123456789"), position
        # 1,000 expected per digit; 200 is more than six standard deviations
        assert all(800 <= c <= 1200 for c in counts.values()), (position, counts)
