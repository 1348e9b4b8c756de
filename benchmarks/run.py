"""Run every benchmark and write the report: ``python -m benchmarks.run [--quick]``.

``--quick`` uses small sizes (about two minutes); the full mode uses the sizes the targets are
stated for (100,000 patients and 2 million audit events for the history). Large databases are
generated into the work folder (or a ``bench_history_*`` PostgreSQL database) once and reused by
later runs while their manifest is there; ``--fresh`` rebuilds them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import dispense, history, machine, population, profile, report, startup, verify
from benchmarks import http as http_bench
from benchmarks.common import (
    Measurement,
    pg_drop,
    pg_exists,
    pg_reachable,
    pg_url,
    remove_sqlite,
    scratch_pg_url,
    sqlite_path,
    sqlite_url,
)
from benchmarks.generate import generate

ROOT = Path(__file__).resolve().parent
BENCHMARKS = ("dispense", "http", "profile", "history", "verify", "startup", "population")
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Sizes:
    sqlite_authorizations: int
    pg_authorizations_per_client: int
    pg_clients: tuple[int, ...]
    warmup: int
    rounds: int
    history_patients: int
    history_events: int
    history_samples: int
    verify_sample: int
    startup_repetitions: int
    profile_calls: int
    http_patients: int = 200  # half authorized over HTTP, half in process
    http_rounds: int = 4
    # (patients, events) of the two population databases; the larger is the history's size
    population_sizes: tuple[tuple[int, int], ...] = ((1_000, 20_000), (4_000, 80_000))
    single_patient_repetitions: int = 9


QUICK = Sizes(200, 100, (1, 4), 5, 4, 1_000, 20_000, 40, 2_000, 9, 100)
FULL = Sizes(
    2_000,
    1_000,
    (1, 4),
    20,
    10,
    100_000,
    2_000_000,
    300,
    20_000,
    41,
    300,
    http_patients=600,
    http_rounds=6,
    population_sizes=((10_000, 200_000), (100_000, 2_000_000)),
    single_patient_repetitions=21,
)


def _database(
    backend: str, patients: int, events: int, work: Path, fresh: bool, console: Console
) -> dict[str, Any]:
    """A generated database of this size: reused while its manifest is there, else built."""
    tag = f"history-{patients}-{events}"
    manifest = work / f"{tag}.{backend}.json"
    if backend == "sqlite":
        url = sqlite_url(work / f"{tag}.db")
        present = sqlite_path(url).exists()
    else:
        url = pg_url(f"bench_{tag.replace('-', '_')}")
        present = pg_exists(url)
    if manifest.exists() and present and not fresh:
        known: dict[str, Any] = json.loads(manifest.read_text())
        console.print(f"reusing {backend} database ({known['events']:,} events)")
        return known
    manifest.unlink(missing_ok=True)
    console.print(
        f"generating the {backend} database: {patients:,} patients, {events:,} audit events"
    )
    made = generate(url, patients, events, replace=True, console=console).to_dict()
    manifest.write_text(json.dumps(made, indent=2) + "\n")
    return made


def _large_database(
    backend: str, sizes: Sizes, work: Path, fresh: bool, console: Console
) -> dict[str, Any]:
    """The history database for ``backend``."""
    return _database(backend, sizes.history_patients, sizes.history_events, work, fresh, console)


def _notes(
    document: dict[str, Any], skipped: list[str], measured: Sequence[Measurement]
) -> list[str]:
    notes = list(skipped)
    machine = document["machine"]
    cpus = machine.get("logical_cpus") or 1
    # Busy is judged before the run: the load at its end counts the benchmarks' own processes.
    before = max(machine["load_average_at_start"], default=0)
    if before > 0.5 * cpus:
        notes.append(
            f"The machine was busy with other work before the run (load average {before:.1f} on "
            f"{cpus} logical CPUs): absolute figures are pessimistic and noisy; the ratios "
            "compare figures measured side by side in the same conditions."
        )
    # More than one client, and with the server more processes than CPUs.
    postgres = {
        int(m.details.get("clients", 1))
        for m in measured
        if m.group == "Dispense authorization, PostgreSQL"
    }
    shared = sorted(n for n in postgres if n > 1 and n + 1 > cpus)
    if shared:
        notes.append(
            f"With {', '.join(map(str, shared))} clients the PostgreSQL dispense rows run the "
            f"clients and the server on the same {cpus} logical CPUs, which together they "
            "saturate: those rows compare the engine with the raw transaction under that load, "
            "and are not a scaling figure."
        )
    return notes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="Run the benchmarks and write the report."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    parser.add_argument("--out", type=Path, default=ROOT / "latest", help="report folder")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "results" / "work", help="database folder"
    )
    parser.add_argument("--only", action="append", choices=BENCHMARKS, help="repeatable")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--history-patients", type=int)
    parser.add_argument("--history-events", type=int)
    parser.add_argument(
        "--history-backends",
        default=",".join(BACKENDS),
        help="comma-separated, of " + ", ".join(BACKENDS),
    )
    parser.add_argument(
        "--population-sizes",
        metavar="P:E,P:E",
        help="the population databases, patients:events (default 1000:20000,4000:80000 quick,"
        " 10000:200000,100000:2000000 full)",
    )
    parser.add_argument("--fresh", action="store_true", help="regenerate the history databases")
    return parser


@dataclass
class Plan:
    sizes: Sizes
    chosen: tuple[str, ...]
    history_backends: list[str]
    postgres: bool
    work: Path
    out: Path
    fresh: bool
    skipped: list[str]


def _plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan:
    sizes = QUICK if args.quick else FULL
    if args.history_patients:
        sizes = replace(sizes, history_patients=args.history_patients)
    if args.history_events:
        sizes = replace(sizes, history_events=args.history_events)
    if args.population_sizes:
        try:
            pairs = tuple(
                (int(p), int(e))
                for p, e in (item.split(":") for item in args.population_sizes.split(","))
            )
        except ValueError:
            parser.error("--population-sizes: patients:events pairs, comma-separated")
        sizes = replace(sizes, population_sizes=pairs)
    history_backends = [b.strip() for b in args.history_backends.split(",") if b.strip()]
    if unknown := set(history_backends) - set(BACKENDS):
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    skipped: list[str] = []
    postgres = not args.no_postgres
    if postgres and (problem := pg_reachable()):
        skipped.append(f"PostgreSQL skipped: not reachable ({problem}).")
        postgres = False
    if not postgres:
        history_backends = [b for b in history_backends if b != "postgresql"]
    return Plan(
        sizes,
        tuple(args.only or BENCHMARKS),
        history_backends,
        postgres,
        args.work,
        args.out,
        args.fresh,
        skipped,
    )


def _dispense(plan: Plan, console: Console) -> list[Measurement]:
    s = plan.sizes
    console.rule("dispense authorization")
    out = dispense.sqlite_benchmark(plan.work, s.sqlite_authorizations, s.warmup, s.rounds, console)
    if plan.postgres:
        out += dispense.postgres_benchmark(
            s.pg_clients, s.pg_authorizations_per_client, s.warmup, s.rounds, console
        )
    return out


def _history(plan: Plan, large: dict[str, dict[str, Any]], console: Console) -> list[Measurement]:
    out: list[Measurement] = []
    for backend in plan.history_backends:
        console.rule(f"history ({backend})")
        if backend not in large:
            large[backend] = _large_database(backend, plan.sizes, plan.work, plan.fresh, console)
        sqlite = backend == "sqlite"
        empty = sqlite_url(plan.work / "history-empty.db") if sqlite else scratch_pg_url("empty")
        try:
            out += history.history_benchmark(
                "SQLite" if sqlite else "PostgreSQL",
                large[backend]["url"],
                empty,
                large[backend]["events"],
                plan.sizes.history_samples,
                plan.sizes.warmup,
                console,
            )
        finally:
            if sqlite:
                remove_sqlite(sqlite_path(empty))
            else:
                pg_drop(empty)
    return out


def _population(
    plan: Plan, large: dict[str, dict[str, Any]], console: Console
) -> tuple[list[Measurement], dict[str, Any]]:
    """The population rows; databases of the history's size are the history's own."""
    made: dict[tuple[str, int, int], dict[str, Any]] = {
        (backend, plan.sizes.history_patients, plan.sizes.history_events): d
        for backend, d in large.items()
    }

    def provide(backend: str, patients: int, events: int) -> dict[str, Any]:
        key = (backend, patients, events)
        if key not in made:
            made[key] = _database(backend, patients, events, plan.work, plan.fresh, console)
        return made[key]

    console.rule("whole-population and single-patient commands")
    return population.population_benchmark(
        ["sqlite", "postgresql"] if plan.postgres else ["sqlite"],
        plan.sizes.population_sizes,
        plan.sizes.single_patient_repetitions,
        provide,
        plan.work,
        console,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    plan = _plan(args, parser)
    sizes, console = plan.sizes, Console(stderr=True)
    plan.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with console.status("describing the machine"):
        described = machine.describe(plan.work)
    measurements: list[Measurement] = []
    if "dispense" in plan.chosen:
        measurements += _dispense(plan, console)
    if "http" in plan.chosen:
        console.rule("dispense authorization over HTTP")
        measurements += http_bench.http_benchmark(
            ["sqlite", "postgresql"] if plan.postgres else ["sqlite"],
            sizes.http_patients,
            sizes.http_rounds,
            plan.work,
            console,
        )
    profiles: dict[str, Any] = {}
    if "profile" in plan.chosen:
        console.rule("where the time of an authorization goes")
        profiles = profile.profile_backends(
            ["sqlite", "postgresql"] if plan.postgres else ["sqlite"],
            plan.work,
            sizes.profile_calls,
            sizes.warmup,
            console,
            save=plan.out / "profiles",
        )
    large: dict[str, dict[str, Any]] = {}
    if "verify" in plan.chosen:
        console.rule("audit verification")
        large["sqlite"] = _large_database("sqlite", sizes, plan.work, plan.fresh, console)
        measurements += verify.verify_benchmark(
            large["sqlite"]["url"], large["sqlite"]["admin"], sizes.verify_sample, console
        )
    if "history" in plan.chosen:
        measurements += _history(plan, large, console)
    if "startup" in plan.chosen:
        console.rule("start-up")
        with console.status(f"start-up, {sizes.startup_repetitions} runs of each command"):
            measurements += startup.startup_benchmark(sizes.startup_repetitions, plan.work)
    populations: dict[str, Any] = {}
    if "population" in plan.chosen:
        rows, populations = _population(plan, large, console)
        measurements += rows

    described["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": shlex.join(["python", "-m", "benchmarks.run", *(argv or sys.argv[1:])]),
        "seconds": time.perf_counter() - started,
        "machine": described,
        "parameters": {
            **asdict(sizes),
            "benchmarks": list(plan.chosen),
            "history_backends": plan.history_backends if "history" in plan.chosen else [],
            "history_databases": dict(large),
        },
        "profiles": profiles,
        "population": populations,
    }
    document["notes"] = _notes(document, plan.skipped, measurements)
    written = report.write(plan.out, document, measurements)
    console.print(report.render_markdown(document, measurements))
    console.print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
