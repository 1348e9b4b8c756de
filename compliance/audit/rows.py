"""Audit events straight from their stored column values, for verifying and exporting at scale.

A verification reads every event: building an ``AuditRecord`` for each, decoding its JSON
columns through the column types and walking the decoded values to prove that the fast
canonical encoder applies cost more than the hash. Here the stored values become the hashed
bytes (and the exported dict) directly, and each shortcut is taken only where its result is
provably the one the record path gives:

- the JSON columns are decoded as ``json.loads`` decodes them (which is what the column type
  does), by a decoder that refuses floats, non-finite numbers and integers beyond 2**53 - 1
  while it reads, so the decoded value needs no second walk;
- their stored text is ASCII without a surrogate escape (``json.dumps`` writes it so), so no key
  can lie beyond the Basic Multilingual Plane: with the checks above, exactly what
  ``canonical`` sends to the C encoder;
- the other columns are text or NULL, the numbers integers within the safe range.

Anything else (a float, a huge integer, other text, a value of another type where tampering put
one) is answered by ``canonical`` itself or, when a value is not even of the stored kind, left to
the caller, which then builds the record as before (``None``). ``tests/test_audit_rows.py``
compares both paths over generated events and a generated trail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from compliance.audit.canonical import canonical

_SAFE = 2**53 - 1
# No circular check: a decoded JSON value cannot contain itself, and the bytes are the same.
_ENCODE = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
#: A ``\\uD800``-``\\uDFFF`` escape: half of a character beyond the plane, or a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LOADS = json.loads

#: Columns of ``audit_events`` in the order the rows here hold them.
COLUMNS = (
    "id",
    "chain_id",
    "chain_seq",
    "occurred_at",
    "actor_id",
    "on_behalf_of",
    "action",
    "outcome",
    "subjects",
    "state_before",
    "state_after",
    "reason_codes",
    "ruleset_id",
    "payload",
    "prev_hash",
    "hash",
)


class _NotPlain(Exception):
    """A number the fast encoder would not write as RFC 8785 does."""


def _refuse(_text: str) -> Any:
    raise _NotPlain


def _safe_int(text: str) -> int:
    value = int(text)
    if -_SAFE <= value <= _SAFE:
        return value
    raise _NotPlain


# The C scanner on its own: ``decode`` adds two whitespace matches per value, which stored text
# (as ``json.dumps`` writes it) never has; text that starts or ends otherwise takes ``decode``.
_PLAIN_DECODER = json.JSONDecoder(parse_float=_refuse, parse_int=_safe_int, parse_constant=_refuse)
_Scan = Callable[[str, int], tuple[Any, int]]
_SCAN_PLAIN: _Scan = _PLAIN_DECODER.scan_once  # type: ignore[attr-defined]
_DECODE_PLAIN = _PLAIN_DECODER.decode


def _plain_text(text: str) -> bool:
    """ASCII without a surrogate escape (the substring test spares the search nearly always)."""
    return text.isascii() and ("\\u" not in text or _SURROGATE_ESCAPE.search(text) is None)


def _load_plain(text: str) -> Any:
    """``json.loads(text)``, refusing what the fast encoder would not write (``_NotPlain``)."""
    try:
        value, end = _SCAN_PLAIN(text, 0)
    except StopIteration:
        return _DECODE_PLAIN(text)
    return value if end == len(text) else _DECODE_PLAIN(text)


_SCAN: _Scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _load(text: str) -> Any:
    """``json.loads(text)``, through the C scanner alone where the text is one value and nothing
    else (as stored text is); ``json.loads`` itself otherwise, errors included."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _LOADS(text)
    return value if end == len(text) else _LOADS(text)


_TEXT_TYPES = frozenset({str, type(None)})


def _body(row: Sequence[Any], at: str, subjects: Any, reasons: Any, payload: Any) -> dict[str, Any]:
    """The event as hashed (``AuditRecord`` field names), from a row in ``COLUMNS`` order and
    its decoded JSON columns."""
    return {
        "id": row[0],
        "chain": row[1],
        "seq": row[2],
        "at": at,
        "actor": row[4],
        "on_behalf_of": row[5],
        "action": row[6],
        "outcome": row[7],
        "subjects": subjects,
        "state_before": row[9],
        "state_after": row[10],
        "reasons": reasons,
        "ruleset": row[12],
        "payload": payload,
        "prev": row[14],
    }


def canonical_of(row: Sequence[Any], instant: Callable[[Any], str]) -> bytes | None:
    """The bytes the event's hash covers, from a row in ``COLUMNS`` order whose JSON columns
    hold their stored text; ``instant`` turns the stored time into ``format_instant`` text.
    None when a value is not of its column's kind (the record path then decides): never bytes
    that differ from ``AuditRecord.canonical()`` of the same row."""
    (
        event_id,
        chain_id,
        chain_seq,
        occurred_at,
        actor_id,
        on_behalf_of,
        action,
        outcome,
        subjects_text,
        state_before,
        state_after,
        reasons_text,
        ruleset_id,
        payload_text,
        prev_hash,
        _,
    ) = row
    if not (
        type(event_id) is int
        and type(chain_seq) is int
        and -_SAFE <= event_id <= _SAFE
        and -_SAFE <= chain_seq <= _SAFE
    ):
        return None
    if not _TEXT_TYPES.issuperset(
        map(
            type,
            (
                chain_id,
                actor_id,
                on_behalf_of,
                action,
                outcome,
                state_before,
                state_after,
                ruleset_id,
                prev_hash,
            ),
        )
    ):
        return None
    if type(subjects_text) is not str or type(reasons_text) is not str:
        return None
    if type(payload_text) is not str:
        return None
    try:
        at = instant(occurred_at)
        try:
            subjects = _load_plain(subjects_text)
            reasons = _load_plain(reasons_text)
            payload = _load_plain(payload_text)
            plain = _plain_text(subjects_text + reasons_text + payload_text)
        except _NotPlain:
            subjects, reasons, payload = map(_LOADS, (subjects_text, reasons_text, payload_text))
            plain = False
    except (TypeError, ValueError, AttributeError):
        return None
    if type(subjects) is not list or type(reasons) is not list or type(payload) is not dict:
        return None
    body = _body(row, at, subjects, reasons, payload)
    if plain:
        try:
            return _ENCODE(body).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate in a text column: the library decides
            pass
    try:
        return canonical(body)
    except (TypeError, ValueError):
        return None


def dict_of(row: Sequence[Any], instant: Callable[[Any], str]) -> dict[str, Any] | None:
    """``AuditRecord.to_dict()`` of the event, from a row as ``canonical_of`` takes it; None
    when a value is not of its column's kind (the caller builds the record instead)."""
    occurred_at, subjects_text, reasons_text, payload_text = (row[3], row[8], row[11], row[13])
    if type(subjects_text) is not str or type(reasons_text) is not str:
        return None
    if type(payload_text) is not str:
        return None
    try:
        at = instant(occurred_at)
        subjects = _load(subjects_text)
        reasons = _load(reasons_text)
        payload = _load(payload_text)
    except (TypeError, ValueError, AttributeError):
        return None
    if type(subjects) is not list or type(reasons) is not list or type(payload) is not dict:
        return None
    return {**_body(row, at, subjects, reasons, payload), "hash": row[-1]}
