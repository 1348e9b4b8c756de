"""Dispense authorization throughput and latency: the engine beside the raw transaction.

The engine and the raw transaction (``benchmarks.raw``) each get a copy of one generated database
(patients whose course is ``qualified`` with a prescription waiting). Worker processes, one per
client, each hold both: they authorize their own patients' prescriptions one after another, on
the engine's copy and on the raw copy in turn, in rounds (every client on the same kind at once),
so both see the same patients and the same machine. Each first authorizes a few prescriptions
untimed on each (connections, statement caches). Throughput is the timed authorizations over the
kind's time (per round, from the first client's start to the last client's end); latency is each
call's own time.
"""

from __future__ import annotations

import multiprocessing
import queue
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import text

from benchmarks import raw
from benchmarks.common import (
    AS_OF,
    Measurement,
    Stats,
    is_postgres,
    pg_create,
    pg_drop,
    remove_sqlite,
    scratch_pg_url,
    sqlite_path,
    sqlite_url,
)
from benchmarks.generate import events_for, generate
from compliance import Compliance, FixedClock
from compliance.db.engine import make_engine

TARGET = (">=", 0.25)
# The engine's client CPU per authorization against the raw transaction's (SQLite).
CPU_TARGET = ("<=", 2.5)
KINDS = ("raw", "engine")
BARRIER_TIMEOUT = 600.0


@dataclass(frozen=True)
class ReadyPatient:
    patient: str
    prescription: str
    prescriber: str


def ready_patients(url: str, cycle: int) -> list[ReadyPatient]:
    """Patients whose course waits at ``cycle`` for an authorization, in generation order."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT p.short_id, rx.short_id, s.short_id FROM courses c"
                    " JOIN patients p ON p.id = c.patient_id"
                    " JOIN prescriptions rx ON rx.course_id = c.id AND rx.cycle = c.cycle"
                    " JOIN prescribers s ON s.id = c.prescriber_id"
                    " WHERE c.state = 'qualified' AND c.cycle = :cycle ORDER BY p.name"
                ),
                {"cycle": cycle},
            ).all()
    finally:
        engine.dispose()
    return [ReadyPatient(str(a), str(b), str(c)) for a, b, c in rows]


def pharmacists(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT short_id FROM pharmacists ORDER BY name")).scalars()
            return [str(x) for x in found]
    finally:
        engine.dispose()


# --- the worker processes ---------------------------------------------------------------------


def _authorizer(kind: str, url: str) -> tuple[Callable[[str, str], object], Callable[[], None]]:
    if kind == "engine":
        app = Compliance.open(url, FixedClock(AS_OF))
        return app.request_authorization, app.close
    if is_postgres(url):
        pg = raw.RawPostgres(url)
        return (lambda rph, rx: pg.authorize(rph, rx, AS_OF)), pg.close
    lite = raw.RawSqlite(sqlite_path(url))
    return (lambda rph, rx: lite.authorize(rph, rx, AS_OF)), lite.close


def _worker(
    urls: dict[str, str],
    pharmacist: str,
    prescriptions: Sequence[str],
    warmup: int,
    rounds: int,
    barrier: Any,
    results: Any,
) -> None:
    """Authorize the same prescriptions on each kind's own copy, kind after kind, in rounds."""
    try:
        callers = {kind: _authorizer(kind, url) for kind, url in urls.items()}
        for authorize, _ in callers.values():
            for rx in prescriptions[:warmup]:
                authorize(pharmacist, rx)
        timed = prescriptions[warmup:]
        size = len(timed) // rounds
        spans: dict[str, list[tuple[float, float]]] = {kind: [] for kind in urls}
        latencies: dict[str, list[float]] = {kind: [] for kind in urls}
        cpu: dict[str, float] = dict.fromkeys(urls, 0.0)
        clock = time.perf_counter
        for r in range(rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            block = timed[r * size : (r + 1) * size]
            for kind in order:
                authorize, _ = callers[kind]
                barrier.wait(BARRIER_TIMEOUT)
                start, cpu_start = clock(), time.process_time()
                for rx in block:
                    t0 = clock()
                    authorize(pharmacist, rx)
                    latencies[kind].append(clock() - t0)
                spans[kind].append((start, clock()))
                cpu[kind] += time.process_time() - cpu_start
        for _, close in callers.values():
            close()
        results.put(("ok", spans, latencies, cpu))
    except BaseException:
        barrier.abort()
        results.put(("error", traceback.format_exc()))


@dataclass(frozen=True)
class Run:
    kind: str
    clients: int
    ops: int
    seconds: float
    stats: Stats
    client_cpu_seconds: float  # CPU time of the client processes (not the database server's)

    @property
    def throughput(self) -> float:
        return self.ops / self.seconds


def run_clients(
    urls: dict[str, str],
    staff: Sequence[str],
    prescriptions: Sequence[str],
    clients: int,
    per_client: int,
    warmup: int,
    rounds: int,
) -> dict[str, Run]:
    """``clients`` processes, each authorizing ``per_client`` prescriptions of its own per kind.

    The kinds (engine, raw) take turns in ``rounds`` blocks, every client on the same kind at
    once, so a change in the machine's load falls on both alike. A kind's time is the sum over
    its blocks of first start to last end.
    """
    need = clients * (warmup + per_client)
    if len(prescriptions) < need:
        raise RuntimeError(f"{need} ready prescriptions needed, {len(prescriptions)} available")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    procs = []
    span = warmup + per_client
    for i in range(clients):
        mine = list(prescriptions[i * span : (i + 1) * span])
        proc = ctx.Process(
            target=_worker,
            args=(urls, staff[i % len(staff)], mine, warmup, rounds, barrier, results),
        )
        proc.start()
        procs.append(proc)
    outcomes = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=BARRIER_TIMEOUT * 2))
    except queue.Empty:
        raise RuntimeError("the benchmark workers did not report") from None
    finally:
        for proc in procs:
            proc.join(timeout=30)
    errors = [o[1] for o in outcomes if o[0] == "error"]
    if errors:
        raise RuntimeError(f"a benchmark worker failed:\n{errors[0]}")
    runs = {}
    for kind in urls:
        seconds = sum(
            max(o[1][kind][r][1] for o in outcomes) - min(o[1][kind][r][0] for o in outcomes)
            for r in range(rounds)
        )
        latencies = [x for o in outcomes for x in o[2][kind]]
        cpu = sum(o[3][kind] for o in outcomes)
        runs[kind] = Run(kind, clients, len(latencies), seconds, Stats.of(latencies), cpu)
    return runs


def _verify(url: str) -> bool:
    with Compliance.open(url, FixedClock(AS_OF)) as app:
        admin = app.remembered("benchmarks.admin")
        assert admin is not None
        return app.verify_audit(admin).ok


def _rows(
    backend: str, clients: int, engine: Run, limit: Run, verified: bool, rounds: int
) -> list[Measurement]:
    label = "raw psycopg transaction" if backend == "PostgreSQL" else "raw sqlite3 transaction"
    who = f"{clients} client{'s' if clients > 1 else ''}"
    details: dict[str, Any] = {
        "clients": clients,
        "authorizations": engine.ops,
        "engine_seconds": round(engine.seconds, 3),
        "raw_seconds": round(limit.seconds, 3),
        "engine_latency": engine.stats.to_dict(),
        "raw_latency": limit.stats.to_dict(),
        "rounds": rounds,
        "engine_client_cpu_per_authorization_s": round(engine.client_cpu_seconds / engine.ops, 6),
        "raw_client_cpu_per_authorization_s": round(limit.client_cpu_seconds / limit.ops, 6),
        "both_databases_verify": verified,
    }
    group = f"Dispense authorization, {backend}"
    return [
        # The headline: the client's own work, which the disk's fsync time does not move (the
        # throughput ratio beside it does). The goal is stated for SQLite and one client.
        Measurement(
            group,
            f"client CPU per authorization, {who}",
            "s",
            engine.client_cpu_seconds / engine.ops,
            limit.client_cpu_seconds / limit.ops,
            label,
            False,
            CPU_TARGET if backend == "SQLite" and clients == 1 else None,
            details,
        ),
        Measurement(
            group,
            f"throughput, {who}",
            "authorizations/s",
            engine.throughput,
            limit.throughput,
            label,
            True,
            TARGET,
            details,
        ),
        Measurement(
            group,
            f"latency p50, {who}",
            "s",
            engine.stats.p50,
            limit.stats.p50,
            label,
            False,
        ),
        Measurement(
            group,
            f"latency p99, {who}",
            "s",
            engine.stats.p99,
            limit.stats.p99,
            label,
            False,
        ),
    ]


def sqlite_benchmark(
    work: Path, per_client: int, warmup: int, rounds: int, console: Console
) -> list[Measurement]:
    raw.check_canonical_form()
    template = work / "dispense-template.db"
    patients = per_client + warmup
    generate(
        sqlite_url(template), patients, events_for(0) * patients, replace=True, console=console
    )
    staff = pharmacists(sqlite_url(template))
    rx = [p.prescription for p in ready_patients(sqlite_url(template), 1)]
    copies = {kind: work / f"dispense-{kind}.db" for kind in KINDS}
    for copy in copies.values():
        remove_sqlite(copy)
        shutil.copyfile(template, copy)
    try:
        with console.status(f"SQLite: engine and raw, 1 client, {per_client} authorizations each"):
            runs = run_clients(
                {k: sqlite_url(p) for k, p in copies.items()},
                staff,
                rx,
                1,
                per_client,
                warmup,
                rounds,
            )
            verified = all(_verify(sqlite_url(p)) for p in copies.values())
    finally:
        for copy in [*copies.values(), template]:
            remove_sqlite(copy)
    return _rows("SQLite", 1, runs["engine"], runs["raw"], verified, rounds)


def postgres_benchmark(
    clients_list: Sequence[int], per_client: int, warmup: int, rounds: int, console: Console
) -> list[Measurement]:
    raw.check_canonical_form()
    template = scratch_pg_url("dispense_tpl")
    patients = max(clients_list) * (per_client + warmup)
    out: list[Measurement] = []
    try:
        generate(template, patients, events_for(0) * patients, console=console)
        staff = pharmacists(template)
        rx = [p.prescription for p in ready_patients(template, 1)]
        for clients in clients_list:
            copies = {kind: scratch_pg_url(f"dispense_{kind}") for kind in KINDS}
            try:
                for copy in copies.values():
                    pg_create(copy, template=template)
                status = (
                    f"PostgreSQL: engine and raw, {clients} client(s) x {per_client} "
                    "authorizations each"
                )
                with console.status(status):
                    runs = run_clients(copies, staff, rx, clients, per_client, warmup, rounds)
                    verified = all(_verify(copy) for copy in copies.values())
            finally:
                for copy in copies.values():
                    pg_drop(copy)
            out += _rows("PostgreSQL", clients, runs["engine"], runs["raw"], verified, rounds)
    finally:
        pg_drop(template)
    return out
