"""What changes between two rulesets, parameter by parameter.

The walk knows nothing of the ruleset's shape: it follows dataclass fields, mappings and
sequences down to plain values, so a field added to the model shows up here without a change.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from compliance.programs.model import Ruleset

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Change:
    path: str
    change: str  # added | removed | changed
    old: Any  # None when added
    new: Any  # None when removed

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "change": self.change, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class RulesetDiff:
    old: str
    new: str
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.old,
            "to": self.new,
            "changes": [c.to_dict() for c in self.changes],
        }


def plain(value: Any) -> Any:
    """A JSON-ready copy: enums by value, dates as ISO text, tuples as lists."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v) for v in items]
    return value


def _key(key: Any) -> str:
    return str(key.value) if isinstance(key, enum.Enum) else str(key)


def _join(prefix: str, key: str) -> str:
    if not _PLAIN_KEY.match(key):
        return f"{prefix}[{key!r}]"
    return f"{prefix}.{key}" if prefix else key


def _scalar(value: Any) -> bool:
    return not (
        (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or isinstance(value, Mapping | list | tuple)
    )


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, plain value) for every leaf. A sequence of plain values is one leaf (a list
    of names reads better whole); a sequence holding structures is walked by position."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _leaves(getattr(value, f.name), _join(path, f.name))
    elif isinstance(value, Mapping) and value:
        for key, inner in value.items():
            yield from _leaves(inner, _join(path, _key(key)))
    elif isinstance(value, list | tuple) and value and not all(_scalar(v) for v in value):
        for i, inner in enumerate(value):
            yield from _leaves(inner, f"{path}[{i}]")
    else:
        yield path, plain(value)


def _placeholder(value: Any) -> bool:
    return value is None or value in ({}, [])


def _has_below(paths: Mapping[str, Any], path: str) -> bool:
    return any(p.startswith((path + ".", path + "[")) for p in paths)


def flatten(ruleset: Ruleset) -> dict[str, Any]:
    """Every parameter of ``ruleset`` as dotted path -> plain value, in the model's order."""
    return dict(_leaves(ruleset))


def diff(old: Ruleset, new: Ruleset) -> RulesetDiff:
    """Added, removed and changed parameters from ``old`` to ``new`` (any two rulesets).

    Where one side has no value at all (an absent window, an empty table) and the other has a
    structure, the structure's leaves are reported as added or removed, not the placeholder.
    """
    a, b = flatten(old), flatten(new)
    a = {p: v for p, v in a.items() if not (_placeholder(v) and _has_below(b, p))}
    b = {p: v for p, v in b.items() if not (_placeholder(v) and _has_below(a, p))}
    changes: list[Change] = []
    for path in _merged_order(list(a), list(b)):
        if path not in b:
            changes.append(Change(path, REMOVED, a[path], None))
        elif path not in a:
            changes.append(Change(path, ADDED, None, b[path]))
        elif a[path] != b[path]:
            changes.append(Change(path, CHANGED, a[path], b[path]))
    return RulesetDiff(old.id, new.id, tuple(changes))


def _merged_order(first: list[str], second: list[str]) -> list[str]:
    """Both path lists in one order: ``first`` as it is, each path only in ``second`` placed
    after the path that precedes it there."""
    merged = list(first)
    seen = set(first)
    anchor = -1
    for path in second:
        if path in seen:
            anchor = merged.index(path)
            continue
        anchor += 1
        merged.insert(anchor, path)
        seen.add(path)
    return merged
