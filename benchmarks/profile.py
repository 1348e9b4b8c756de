"""Where the time of one dispense authorization goes: ``python -m benchmarks.profile``.

Two passes over prescriptions waiting for an authorization, through the public API:

1. unprofiled, with SQLAlchemy cursor events: wall time per call, SQL statements per call and the
   time spent inside ``cursor.execute`` (the database's own work plus, on PostgreSQL, the round
   trip);
2. under ``cProfile``: the share of each layer (SQLAlchemy, the driver, the state-machine library,
   RFC 8785, the engine's own code) and the cumulative share of each step of the request.

cProfile inflates Python-heavy code more than C calls, so its shares are read as proportions,
beside the unprofiled figures of pass 1.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import event

from benchmarks.common import (
    AS_OF,
    Stats,
    is_postgres,
    pg_drop,
    remove_sqlite,
    scratch_pg_url,
    sqlite_path,
    sqlite_url,
)
from benchmarks.dispense import pharmacists, ready_patients
from benchmarks.generate import events_for, generate
from compliance import Compliance, FixedClock

# (file suffix, function) -> what the step is; cumulative time, steps nest (see the listing).
STEPS: tuple[tuple[str, str, str], ...] = (
    ("compliance/api/service.py", "_call", "the whole call (transaction, retries, commit)"),
    ("compliance/api/authz.py", "authorize", "  resolve and check the acting pharmacist"),
    ("compliance/api/dispensing.py", "request_authorization", "  the operation itself"),
    (
        "compliance/api/dispensing.py",
        "_prescription",
        "    load prescription with its course, patient, prescriber",
    ),
    ("compliance/db/course_facts.py", "load", "    load the course facts (4 queries)"),
    ("compliance/domain/gates.py", "dispense_gate", "    evaluate the dispense gate (rules)"),
    (
        "compliance/domain/authorization_number.py",
        "new_number",
        "    draw an authorization number",
    ),
    ("compliance/api/courses.py", "fire", "    state machine transition"),
    ("compliance/audit/store.py", "append", "    append the audit event"),
    ("compliance/audit/chain.py", "compute_hash", "      RFC 8785 canonical JSON + SHA-256"),
    ("compliance/api/courses.py", "course_info_of", "    build the returned course"),
    ("sqlalchemy/orm/session.py", "_flush", "  ORM flushes (inside the steps above)"),
    ("sqlalchemy/orm/session.py", "commit", "  session commit (flush + COMMIT)"),
)


def _layer(file: str, name: str) -> str:
    if "sqlalchemy" in file:
        return "SQLAlchemy (ORM and Core)"
    if "psycopg" in file or "sqlite3" in name or "psycopg" in name:
        return "database driver (incl. waiting for the server / disk)"
    if "transitions" in file:
        return "transitions (state machine library)"
    if "rfc8785" in file:
        return "rfc8785 (canonical JSON)"
    if "/compliance/" in file:
        return "compliance (the engine's own code)"
    return "Python standard library and builtins"


def _cumulative(stats: pstats.Stats, suffix: str, function: str) -> float:
    found = [
        ct
        for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items()  # type: ignore[attr-defined]
        if name == function and file.endswith(suffix)
    ]
    return max(found, default=0.0)


def profile_authorizations(
    url: str, calls: int, warmup: int, save: Path | None = None
) -> dict[str, Any]:
    """Profile ``calls`` authorizations (twice ``calls``, for the two passes) on ``url``."""
    ready = [p.prescription for p in ready_patients(url, 1)]
    if len(ready) < warmup + 2 * calls:
        raise RuntimeError(f"{warmup + 2 * calls} ready prescriptions needed, {len(ready)} found")
    staff = pharmacists(url)[0]
    app = Compliance.open(url, FixedClock(AS_OF))
    statements = 0
    in_execute = 0.0
    started: list[float] = []

    def before(*_: Any) -> None:
        started.append(time.perf_counter())

    def after(*_: Any) -> None:
        nonlocal statements, in_execute
        statements += 1
        in_execute += time.perf_counter() - started.pop()

    try:
        for rx in ready[:warmup]:
            app.request_authorization(staff, rx)
        event.listen(app.engine, "before_cursor_execute", before)
        event.listen(app.engine, "after_cursor_execute", after)
        walls = []
        for rx in ready[warmup : warmup + calls]:
            t0 = time.perf_counter()
            app.request_authorization(staff, rx)
            walls.append(time.perf_counter() - t0)
        event.remove(app.engine, "before_cursor_execute", before)
        event.remove(app.engine, "after_cursor_execute", after)
        profiler = cProfile.Profile()
        profiler.enable()
        for rx in ready[warmup + calls : warmup + 2 * calls]:
            app.request_authorization(staff, rx)
        profiler.disable()
    finally:
        app.close()
    if save is not None:
        profiler.dump_stats(save)
    stats = pstats.Stats(profiler)
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    layers: Counter[str] = Counter()
    for (file, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw_stats.items():
        layers[_layer(file, name)] += tottime
    total = sum(layers.values())
    whole = Stats.of(walls)
    return {
        "calls": calls,
        "wall": whole.to_dict(),
        "statements_per_call": statements / calls,
        "execute_seconds_per_call": in_execute / calls,
        "execute_share_of_wall": in_execute / sum(walls),
        "profiled_seconds_per_call": total / calls,
        "layers": {k: v / total for k, v in layers.most_common()},
        "steps": [
            {"step": label, "share": _cumulative(stats, suffix, fn) / total}
            for suffix, fn, label in STEPS
        ],
    }


def prepare_copy(backend: str, work: Path, patients: int, console: Console) -> str:
    """A new database of ``patients`` waiting for their first authorization."""
    if backend == "sqlite":
        url = sqlite_url(work / "profile.db")
        generate(url, patients, events_for(0) * patients, replace=True, console=console)
        return url
    url = scratch_pg_url("profile")
    generate(url, patients, events_for(0) * patients, console=console)
    return url


def discard(url: str) -> None:
    if is_postgres(url):
        pg_drop(url)
    else:
        remove_sqlite(sqlite_path(url))


def profile_backends(
    backends: Sequence[str],
    work: Path,
    calls: int,
    warmup: int,
    console: Console,
    save: Path | None = None,
) -> dict[str, Any]:
    """Profile each backend on a database of its own; with ``save``, keep BACKEND.prof there."""
    out: dict[str, Any] = {}
    for backend in backends:
        url = prepare_copy(backend, work, warmup + 2 * calls, console)
        dump = None
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            dump = save / f"{backend}.prof"
        try:
            with console.status(f"profiling {2 * calls} authorizations on {backend}"):
                out[backend] = profile_authorizations(url, calls, warmup, dump)
        finally:
            discard(url)
    return out


def render(profiles: dict[str, Any]) -> list[str]:
    """Markdown lines for the report."""
    lines: list[str] = []
    for backend, p in profiles.items():
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        lines += [
            f"### request_authorization on {name}",
            "",
            f"Unprofiled, {p['calls']} calls: median {p['wall']['p50'] * 1e3:.2f} ms per call, "
            f"{p['statements_per_call']:.1f} SQL statements per call, "
            f"{p['execute_seconds_per_call'] * 1e3:.2f} ms per call inside `cursor.execute` "
            f"({p['execute_share_of_wall']:.0%} of the wall time; the rest is Python).",
            "",
            "| layer (cProfile, own time) | share |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {v:.1%} |" for k, v in p["layers"].items() if v >= 0.005]
        lines += ["", "| step (cProfile, cumulative) | share |", "|---|---:|"]
        lines += [
            f"| {s['step'].strip()} | {s['share']:.1%} |"
            if not s["step"].startswith(" ")
            else f"| {'&nbsp;' * (len(s['step']) - len(s['step'].lstrip()))}"
            f"{s['step'].strip()} | {s['share']:.1%} |"
            for s in p["steps"]
        ]
        lines.append("")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile",
        description="Where the time of a dispense authorization goes, per layer and per step.",
    )
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql"))
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "results" / "work")
    parser.add_argument("--save", type=Path, help="folder for the cProfile data (BACKEND.prof)")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    profiles = profile_backends(
        args.backend or ["sqlite"], args.work, args.calls, args.warmup, console, args.save
    )
    console.print("\n".join(render(profiles)))
    print(json.dumps(profiles, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
