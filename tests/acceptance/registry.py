"""Every timeline, by name: each factory is written once and built for each ruleset it
applies to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

from tests.acceptance.model import EU, LEGACY, LENA, MOD, UK, Builder, Timeline

# A Monday in the era of each ruleset: a course is governed by the version in force on its
# enrolment date (2023-03 before the 2026-mod go-live, 2026-mod after it).
BASES: dict[str, date] = {
    LEGACY: date(2026, 6, 1),
    MOD: date(2027, 1, 4),
    EU: date(2026, 3, 2),
    UK: date(2026, 3, 2),
    LENA: date(2026, 4, 6),
}
CLINIC_ZONES: dict[str, str] = {
    LEGACY: "America/New_York",
    MOD: "America/New_York",
    EU: "Europe/Brussels",
    UK: "Europe/London",
    LENA: "America/New_York",
}
PROGRAMMES: dict[str, str] = {
    LEGACY: "ipledge",
    MOD: "ipledge",
    EU: "eu-iso",
    UK: "uk-iso",
    LENA: "lenalidomide",
}

Factory = Callable[[Builder], None]
_FACTORIES: list[tuple[Factory, tuple[str, ...], dict[str, date], dict[str, str]]] = []


def timeline(
    rulesets: Iterable[str],
    bases: dict[str, date] | None = None,
    zones: dict[str, str] | None = None,
) -> Callable[[Factory], Factory]:
    """Register a factory for ``rulesets``; its docstring is the timeline's description."""

    def register(fn: Factory) -> Factory:
        _FACTORIES.append((fn, tuple(rulesets), bases or {}, zones or {}))
        return fn

    return register


def build_all() -> list[Timeline]:
    out: list[Timeline] = []
    for fn, rulesets, bases, zones in _FACTORIES:
        for ruleset in rulesets:
            name = f"{fn.__name__}[{ruleset}]"
            base = bases.get(ruleset, BASES[ruleset])
            zone = zones.get(ruleset, CLINIC_ZONES[ruleset])
            b = Builder(name, ruleset, base, zone, (fn.__doc__ or "").strip())
            fn(b)
            out.append(b.build())
    names = [t.name for t in out]
    assert len(names) == len(set(names)), "duplicate timeline names"
    return out
