"""RFC 8785 canonical JSON, fast for the values audit events hold.

Stored hashes depend on these bytes, so they must never change. The ``rfc8785`` library is the
reference; it is written in Python and was most of the time a verification took. For the values
the engine stores (objects with keys in the Basic Multilingual Plane, arrays, strings, integers
within the safe range, booleans, null) the standard library's C encoder with sorted keys and no
whitespace writes the very same bytes: both escape exactly ``"``, ``\\`` and the control
characters (``\\b \\f \\n \\r \\t``, else ``\\u00xx`` in lower case), write everything else as
UTF-8, and order keys by code point, which equals the UTF-16 order RFC 8785 asks for while no
key leaves the Basic Multilingual Plane. Anything else (a float, which Python and ECMAScript
write differently, an integer beyond 2**53 - 1, a key beyond the plane, a lone surrogate, any
other type) goes to the library, so its answer and its errors are unchanged.
``tests/test_canonical_json.py`` proves the two equal over generated values.

Checking the value first costs less than a third of encoding it (measured on generated trails:
about 69,000 events a second for check and encoding together, against 12,000 for the library).
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_SAFE = 2**53 - 1
_PLANE_END = "\U00010000"
_ENCODE = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only what the fast path writes exactly as RFC 8785 does (a loop
    over an explicit stack: it runs for every stored value of every event a verification
    reads)."""
    pending = [value]
    pop, push, extend = pending.pop, pending.append, pending.extend
    while pending:
        item = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -_SAFE <= item <= _SAFE:
                return False
        elif kind is dict:
            for key, inner in item.items():
                if type(key) is not str or not (key.isascii() or max(key) < _PLANE_END):
                    return False
                push(inner)
        elif kind is list or kind is tuple:
            extend(item)
        else:
            return False
    return True


def canonical(value: Any) -> bytes:
    """The RFC 8785 bytes of ``value``."""
    if _plain(value):
        try:
            return _ENCODE(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the library says what is wrong
            pass
    return bytes(rfc8785.dumps(value))
