"""Decision latency with a long history beside the same decisions on an empty database.

Both databases come from the generator with the same parties; the measured patients have the same
shape in both (the same number of past cycles, a prescription waiting), so only the volume around
them differs: the large one holds every other patient and their audit events as well. On each
measured patient, in turn on the empty and on the large database (alternating which goes first),
the benchmark times ``check_prescribe``, ``check_dispense`` and ``request_authorization`` through
the public API. The ratio large / empty of the median should stay under 1.3: no query may scan
something that grows with history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from rich.console import Console
from sqlalchemy import text

from benchmarks.common import AS_OF, Measurement, Stats, is_postgres, pg_dsn
from benchmarks.dispense import ReadyPatient, pharmacists, ready_patients
from benchmarks.generate import events_for, generate
from compliance import Compliance, FixedClock
from compliance.db.engine import make_engine

TARGET = ("<", 1.3)
OPERATIONS = ("check_prescribe", "check_dispense", "request_authorization")


def common_cycle(url: str) -> tuple[int, int]:
    """The cycle most waiting courses are at, and how many courses wait at it."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT cycle, count(*) FROM courses WHERE state = 'qualified'"
                    " GROUP BY cycle ORDER BY count(*) DESC, cycle LIMIT 1"
                )
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), int(row[1])


def spread(items: list[ReadyPatient], count: int) -> list[ReadyPatient]:
    """``count`` items evenly spaced through ``items`` (old and new patients alike)."""
    if len(items) < count:
        raise RuntimeError(f"{count} waiting patients needed, {len(items)} available")
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


@dataclass
class _Side:
    app: Compliance
    pharmacist: str
    patients: list[ReadyPatient]
    times: dict[str, list[float]]

    def call(self, op: str, p: ReadyPatient) -> Callable[[], Any]:
        if op == "check_prescribe":
            return lambda: self.app.check_prescribe(p.prescriber, p.patient)
        if op == "check_dispense":
            return lambda: self.app.check_dispense(self.pharmacist, p.prescription)
        return lambda: self.app.request_authorization(self.pharmacist, p.prescription)


def refresh_statistics(url: str) -> None:
    """Earlier runs changed the large database since it was generated. A live PostgreSQL
    server's autovacuum keeps the planner's statistics current; where autovacuum is off (as on
    some benchmark machines) the measurement would otherwise judge stale plans, not history."""
    if is_postgres(url):
        with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
            conn.execute("ANALYZE")


def history_benchmark(
    backend: str,
    large_url: str,
    empty_url: str,
    large_events: int,
    samples: int,
    warmup: int,
    console: Console,
) -> list[Measurement]:
    """Measure on ``large_url`` (already generated) beside a new database at ``empty_url``."""
    cycle, waiting = common_cycle(large_url)
    measured = warmup + samples
    generate(empty_url, measured, measured * events_for(cycle - 1), replace=True, console=console)
    refresh_statistics(large_url)
    large_pool = ready_patients(large_url, cycle)
    sides = {
        "empty": _Side(
            Compliance.open(empty_url, FixedClock(AS_OF)),
            pharmacists(empty_url)[0],
            ready_patients(empty_url, cycle)[:measured],
            {op: [] for op in OPERATIONS},
        ),
        "large": _Side(
            Compliance.open(large_url, FixedClock(AS_OF)),
            pharmacists(large_url)[0],
            spread(large_pool, measured),
            {op: [] for op in OPERATIONS},
        ),
    }
    clock = time.perf_counter
    try:
        with console.status(f"{backend}: history, {samples} patients x {len(OPERATIONS)} calls"):
            for i in range(measured):
                order = ("empty", "large") if i % 2 == 0 else ("large", "empty")
                for op in OPERATIONS:
                    for name in order:
                        side = sides[name]
                        call = side.call(op, side.patients[i])
                        t0 = clock()
                        call()
                        elapsed = clock() - t0
                        if i >= warmup:
                            side.times[op].append(elapsed)
    finally:
        for side in sides.values():
            side.app.close()
    out = []
    group = f"History, {backend}"
    shape = f"{cycle - 1} past cycles, {events_for(cycle - 1)} events per measured patient"
    for op in OPERATIONS:
        large, empty = Stats.of(sides["large"].times[op]), Stats.of(sides["empty"].times[op])
        details = {
            "large_events": large_events,
            "large_waiting_courses": waiting,
            "samples": samples,
            "measured_patients": shape,
            "large": large.to_dict(),
            "empty": empty.to_dict(),
            "postgres": is_postgres(large_url),
        }
        out.append(
            Measurement(
                group,
                f"{op} p50",
                "s",
                large.p50,
                empty.p50,
                "same call, empty database",
                False,
                TARGET,
                details,
            )
        )
        out.append(
            Measurement(
                group,
                f"{op} p99",
                "s",
                large.p99,
                empty.p99,
                "same call, empty database",
                False,
            )
        )
    return out
