"""The fast canonical JSON is byte for byte the RFC 8785 reference, and fails where it fails:
stored hashes depend on these bytes."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.audit.canonical import canonical

# Text from every plane, control characters, quotes, backslashes and lone surrogates included.
TEXT = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) - 5, max_value=2**53 + 5)
    | st.integers()
    | st.floats(allow_nan=False)
    | st.floats()
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner, inner)
        | st.dictionaries(TEXT, inner, max_size=6)
    ),
    max_leaves=40,
)


def _reference(value: Any) -> bytes | type[BaseException]:
    try:
        return bytes(rfc8785.dumps(value))
    except Exception as exc:  # the type of failure must match too
        return type(exc)


def _fast(value: Any) -> bytes | type[BaseException]:
    try:
        return canonical(value)
    except Exception as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(VALUES)
def test_equal_to_the_reference_on_any_json_value(value: Any) -> None:
    assert _fast(value) == _reference(value)


# What audit events hold: ids, codes, instants as text, decisions with nested reasons.
EVENTISH = st.dictionaries(
    st.sampled_from(["id", "chain", "seq", "at", "payload", "reasons", "subjects", "prev", "é"]),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=25,
    ),
)


@settings(max_examples=1000, deadline=None)
@given(EVENTISH)
def test_equal_on_event_shaped_values(value: dict[str, Any]) -> None:
    assert _fast(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\U0001f600": 1, "\uffff": 2, "a": 3},  # UTF-16 order differs from code point order
        {"b": 1.0, "a": 1e21, "c": 1e-7, "d": -0.0},  # ES6 number forms
        [2**53 - 1, -(2**53) + 1],
        {"text": '\x00\x1f\x7f\u2028"\\/\b\f\n\r\t'},
        {"nested": [{"z": None, "y": [True, False]}], "": ""},
    ],
)
def test_the_edges(value: Any) -> None:
    assert canonical(value) == bytes(rfc8785.dumps(value))


@pytest.mark.parametrize("value", [2**53, {"x": float("nan")}, "\ud800", {"k": object()}])
def test_what_the_reference_refuses_is_refused_alike(value: Any) -> None:
    assert _fast(value) == _reference(value)
    assert isinstance(_reference(value), type)
