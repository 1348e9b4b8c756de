"""Build a large, valid compliance database fast: ``python -m benchmarks.generate``.

The parties (administrator, prescribers, pharmacies, pharmacists) are created through the public
API. Patients and their histories are then written directly with SQL (``executemany`` on SQLite,
``COPY`` on PostgreSQL), exactly as the engine writes them:

* each patient is registered, enrolled under ipledge/2026-mod in category ``cannot_get_pregnant``
  (``NO_UTERUS``), consented, counselled and has answered the comprehension questions, has been
  through ``k`` whole cycles (prescription, dispense authorization, dispense) and holds a
  prescription for cycle ``k + 1`` written on the benchmark day, so the course is ``qualified``
  and ready for an authorization at ``AS_OF``;
* every step is an audit event in the patient's own hash chain, built with
  ``compliance.audit.chain.AuditRecord`` and hashed with ``compute_hash``, with its subject-index
  row and the chain's head, and the PostgreSQL id sequence advanced past the last event, so
  ``compliance audit verify`` passes and the engine carries on where the generator stopped.

A patient has ``7 + 3 k`` events; ``k`` is chosen per patient (spread evenly) so the total reaches
``--events``. Rows are built in worker processes and written by this one, in id order.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import sqlite as sqlite_dialect

import compliance.db.models  # noqa: F401  (defines the tables on Base.metadata)
from benchmarks.common import (
    ADMIN_KEY,
    AS_OF,
    WORLD_AT,
    is_postgres,
    pg_create,
    pg_drop,
    pg_dsn,
    pg_exists,
    remove_sqlite,
    sqlite_path,
)
from compliance import Compliance, FixedClock
from compliance.audit.chain import GENESIS, AuditRecord, compute_hash
from compliance.db import models
from compliance.domain.authorization_number import new_number
from compliance.domain.ids import Kind, new_short_id
from compliance.domain.validate import name_key, npi_with_check_digit

RULESET = "ipledge/2026-mod"
CATEGORY = "cannot_get_pregnant"
CATEGORY_REASON = "NO_UTERUS"
CONSENT_FORM = "PATIENT_INFORMATION_CONSENT"
DAYS_SUPPLY = 30
SETUP_EVENTS = 7  # register, enrol, category, consent, counselling, comprehension, prescribe
CYCLE_EVENTS = 3  # authorize, dispense, prescribe the next cycle
COURSE_RECORDS = 4  # category, consent, counselling, comprehension: sequence numbers 1 to 4
CHUNK_PATIENTS = 1000
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")

# Tables in foreign-key order, as the worker fills them.
TABLES: tuple[Table, ...] = tuple(
    models.Patient.metadata.tables[name]
    for name in (
        "patients",
        "courses",
        "course_records",
        "prescriptions",
        "authorizations",
        "audit_events",
        "audit_event_subjects",
        "audit_chain_heads",
    )
)


def events_for(cycles: int) -> int:
    return SETUP_EVENTS + CYCLE_EVENTS * cycles


def plan_cycles(patients: int, events: int) -> list[int]:
    """Whole cycles per patient, spread evenly, so the events add up to at least ``events``."""
    if patients < 1:
        raise ValueError("at least one patient")
    extra = max(0, events - SETUP_EVENTS * patients)
    cycles_total = -(-extra // CYCLE_EVENTS)
    base, plus = divmod(cycles_total, patients)
    return [base + ((i + 1) * plus) // patients - (i * plus) // patients for i in range(patients)]


# --- the parties, through the API -------------------------------------------------------------


@dataclass(frozen=True)
class World:
    admin: str
    prescribers: tuple[tuple[uuid.UUID, str], ...]
    pharmacists: tuple[tuple[str, uuid.UUID, str], ...]  # (short id, pharmacy id, pharmacy short)


def build_world(url: str, prescribers: int, pharmacies: int) -> World:
    with Compliance.open(url, FixedClock(WORLD_AT)) as app:
        admin = app.initialize("Benchmark Administrator", training=True, remember_as=ADMIN_KEY).id
        doctors = []
        for i in range(prescribers):
            npi = npi_with_check_digit(str(100_000_000 + i))
            p = app.register_prescriber(admin, f"Dr Bench Prescriber {i:03d}", npi)
            app.activate_prescriber(admin, p.id)
            doctors.append((p.uuid, p.id))
        staff = []
        for i in range(pharmacies):
            zone = ZONES[i % len(ZONES)]
            ph = app.register_pharmacy(admin, f"Bench Pharmacy {i:03d}", f"{1_000_000 + i}", zone)
            app.activate_pharmacy(admin, ph.id)
            rph = app.register_pharmacist(admin, f"Bench Pharmacist {i:03d}", ph.id)
            staff.append((rph.id, ph.uuid, ph.id))
    return World(admin, tuple(doctors), tuple(staff))


# --- rows, built in worker processes ----------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    first_patient: int
    cycles: tuple[int, ...]
    first_event_id: int
    patient_ids: tuple[str, ...]
    rx_ids: tuple[tuple[str, ...], ...]
    world: World
    dialect: str


@dataclass
class Rows:
    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    events: int = 0
    last_event_id: int = 0


def _columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns)


def _converters(table: Table, dialect: str) -> list[Callable[[Any], Any] | None]:
    """Per column: how SQLAlchemy would hand the value to the driver (None: as it is)."""
    if dialect == "sqlite":
        d = sqlite_dialect.dialect()
        return [c.type.dialect_impl(d).bind_processor(d) for c in table.columns]
    return [json.dumps if isinstance(c.type, JSON) else None for c in table.columns]


class _Writer:
    """Collects one patient's rows, table by table, in column order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {t.name: [] for t in TABLES}
        self.order = {t.name: _columns(t) for t in TABLES}

    def add(self, table: str, **values: Any) -> None:
        self.rows[table].append(tuple(values.get(c) for c in self.order[table]))


def _decision(gate: str, at: datetime, today: date, cycle: int) -> dict[str, Any]:
    return {
        "gate": gate,
        "outcome": "ALLOW",
        "reasons": [],
        "ruleset": RULESET,
        "evaluated_at": at.isoformat(),
        "today": today.isoformat(),
        "cycle": cycle,
        "window": None,
        "test": None,
        "earliest": None,
    }


class _Chain:
    """One patient's audit chain: each event hashed on the previous one, with its index row."""

    def __init__(self, writer: _Writer, chain_id: str, first_id: int) -> None:
        self.w, self.chain_id = writer, chain_id
        self.next_id, self.seq, self.prev = first_id, 0, GENESIS

    def event(
        self,
        when: datetime,
        actor: str,
        action: str,
        before: str | None,
        after: str | None,
        payload: dict[str, Any],
        ruleset: str | None = RULESET,
    ) -> None:
        self.seq += 1
        fields: dict[str, Any] = {
            "id": self.next_id,
            "chain_id": self.chain_id,
            "chain_seq": self.seq,
            "occurred_at": when,
            "actor_id": actor,
            "on_behalf_of": None,
            "action": action,
            "outcome": "ok",
            "state_before": before,
            "state_after": after,
            "ruleset_id": ruleset,
            "payload": payload,
            "prev_hash": self.prev,
        }
        record = AuditRecord(**fields, subjects=(self.chain_id,), reason_codes=())
        digest = compute_hash(record)
        self.w.add("audit_events", **fields, subjects=[self.chain_id], reason_codes=[], hash=digest)
        self.w.add("audit_event_subjects", subject=self.chain_id, event_id=self.next_id)
        self.prev, self.next_id = digest, self.next_id + 1

    def head(self) -> None:
        self.w.add(
            "audit_chain_heads",
            chain_id=self.chain_id,
            last_seq=self.seq,
            last_hash=self.prev,
            last_event_id=self.next_id - 1,
            checkpointed_seq=0,
        )


@dataclass(frozen=True)
class _Story:
    """What one patient's rows share."""

    index: int
    cycles: int
    patient: str
    rx_ids: tuple[str, ...]
    prescriber: tuple[uuid.UUID, str]
    pharmacist: tuple[str, uuid.UUID, str]
    course: uuid.UUID
    days: tuple[date, ...]  # the day each cycle's prescription is written; the last is AS_OF's

    def at(self, day: date, hour: int, minute: int) -> datetime:
        shift = timedelta(seconds=(self.index * 37) % 3000)  # spread over the hour, in order
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) + shift


def _enrolment(w: _Writer, chain: _Chain, story: _Story, patient_uuid: uuid.UUID) -> None:
    """Registration, enrolment, category, consent, counselling, comprehension: day one."""
    prs, pat, course_ref, first = (
        story.prescriber[1],
        story.patient,
        str(story.course),
        story.days[0],
    )
    name = f"Bench Patient {story.index:07d}"
    born = date(1980, 1, 1) + timedelta(days=(story.index * 97) % 7000)
    registered = story.at(first, 13, 0)
    w.add(
        "patients",
        id=patient_uuid,
        short_id=pat,
        name=name,
        name_key=name_key(name),
        date_of_birth=born,
        created_at=registered,
        created_by=prs,
    )
    registration = {
        "name": name,
        "date_of_birth": born.isoformat(),
        "external_ids": {},
        "possible_duplicates": [],
    }
    chain.event(registered, prs, "patient.register", None, None, registration, ruleset=None)
    enrolment = {"enrolled_on": first.isoformat(), "programme": "ipledge"}
    chain.event(
        story.at(first, 13, 1),
        prs,
        "course.enrol",
        None,
        "enrolled",
        {"course": course_ref, "cycle": 1, **enrolment},
    )
    category = {"category": CATEGORY, "reason": CATEGORY_REASON}
    chain.event(
        story.at(first, 13, 2),
        prs,
        "course.category",
        "enrolled",
        "pre_treatment",
        {"course": course_ref, "cycle": 1, **category, "previous": [None, None]},
    )
    records = [
        ("category", prs, category, None),
        ("consent", prs, {"form": CONSENT_FORM}, "course.consent"),
        ("counselling", prs, {}, "course.counselling"),
        ("comprehension", pat, {}, "course.comprehension"),
    ]
    for seq, (kind, actor, body, action) in enumerate(records, start=1):
        when = story.at(first, 13, 1 + seq)
        w.add(
            "course_records",
            id=uuid.uuid4(),
            course_id=story.course,
            kind=kind,
            seq=seq,
            cycle=1,
            effective_on=first,
            payload=body,
            recorded_at=when,
            recorded_by=actor,
        )
        if action is not None:
            payload = {"course": course_ref, "cycle": 1, "kind": kind, "on": first.isoformat()}
            chain.event(when, actor, action, "pre_treatment", "pre_treatment", {**payload, **body})


def _cycle(w: _Writer, chain: _Chain, story: _Story, cycle: int, state: str) -> None:
    """Prescribe for ``cycle``; unless it is the last one, authorize and dispense it too."""
    (prescriber_uuid, prs), (rph, pharmacy_uuid, pha) = story.prescriber, story.pharmacist
    day, rx, course_ref = story.days[cycle - 1], story.rx_ids[cycle - 1], str(story.course)
    rx_uuid, written = uuid.uuid4(), story.at(day, 14, 0)
    w.add(
        "prescriptions",
        id=rx_uuid,
        short_id=rx,
        course_id=story.course,
        prescriber_id=prescriber_uuid,
        seq=COURSE_RECORDS + cycle,
        cycle=cycle,
        written_on=day,
        office_visit_on=day,
        days_supply=DAYS_SUPPLY,
        refills=0,
        created_at=written,
    )
    prescription = {"prescription": rx, "days_supply": DAYS_SUPPLY, "refills": 0}
    chain.event(
        written,
        prs,
        "course.prescribe",
        state,
        "qualified",
        {
            "course": course_ref,
            "cycle": cycle,
            **prescription,
            "written_on": day.isoformat(),
            "decision": _decision("prescribe", written, day, cycle),
        },
    )
    if cycle > story.cycles:
        return
    number = new_number()
    issued, dispensed = story.at(day, 14, 1), story.at(day, 14, 2)
    w.add(
        "authorizations",
        number=number,
        course_id=story.course,
        prescription_id=rx_uuid,
        pharmacy_id=pharmacy_uuid,
        cycle=cycle,
        issued_at=issued,
        issued_by=rph,
        days_supply=DAYS_SUPPLY,
        dispensed_at=dispensed,
        dispensed_by=rph,
    )
    chain.event(
        issued,
        rph,
        "dispense.authorize",
        "qualified",
        "authorized",
        {
            "course": course_ref,
            "cycle": cycle,
            "authorization": number,
            "prescription": rx,
            "pharmacy": pha,
            "do_not_dispense_after": None,
            "test": None,
            "days_supply": DAYS_SUPPLY,
            "idempotency_key": None,
            "decision": _decision("dispense", issued, day, cycle),
        },
    )
    chain.event(
        dispensed,
        rph,
        "dispense.record",
        "authorized",
        "dispensed",
        {
            "course": course_ref,
            "cycle": cycle + 1,
            "authorization": number,
            "dispensed_on": day.isoformat(),
            "days_supply": DAYS_SUPPLY,
            "supply_ends_on": (day + timedelta(days=DAYS_SUPPLY)).isoformat(),
        },
    )


def _patient(w: _Writer, chunk: Chunk, index: int, event_id: int) -> int:
    """Write one patient's whole story; returns the next free event id."""
    offset = index - chunk.first_patient
    cycles = chunk.cycles[offset]
    span = (AS_OF.date() - WORLD_AT.date()).days - 1
    spacing = min(DAYS_SUPPLY, span // (cycles + 1))
    story = _Story(
        index=index,
        cycles=cycles,
        patient=chunk.patient_ids[offset],
        rx_ids=chunk.rx_ids[offset],
        prescriber=chunk.world.prescribers[index % len(chunk.world.prescribers)],
        pharmacist=chunk.world.pharmacists[index % len(chunk.world.pharmacists)],
        course=uuid.uuid4(),
        days=tuple(
            AS_OF.date() - timedelta(days=spacing * (cycles + 1 - c)) for c in range(1, cycles + 2)
        ),
    )
    patient_uuid = uuid.uuid4()
    chain = _Chain(w, story.patient, event_id)
    _enrolment(w, chain, story, patient_uuid)
    for cycle in range(1, cycles + 2):
        _cycle(w, chain, story, cycle, "pre_treatment" if cycle == 1 else "dispensed")
    w.add(
        "courses",
        id=story.course,
        patient_id=patient_uuid,
        prescriber_id=story.prescriber[0],
        ruleset_id=RULESET,
        state="qualified",
        is_open=True,
        cycle=cycles + 1,
        enrolled_on=story.days[0],
        category=CATEGORY,
        category_reason=CATEGORY_REASON,
        first_dispensed_on=story.days[0] if cycles else None,
        last_dose_on=None,
        pregnancy_actions=False,
        last_seq=COURSE_RECORDS + cycles + 1,
        created_at=story.at(story.days[0], 13, 1),
        updated_at=story.at(story.days[-1], 14, 0),
    )
    chain.head()
    return chain.next_id


def build_chunk(chunk: Chunk) -> Rows:
    """Every row of a run of patients, converted for the target database (a worker's job)."""
    w = _Writer()
    event_id = chunk.first_event_id
    for i in range(len(chunk.cycles)):
        event_id = _patient(w, chunk, chunk.first_patient + i, event_id)
    out = Rows(events=event_id - chunk.first_event_id, last_event_id=event_id - 1)
    for table in TABLES:
        convert = _converters(table, chunk.dialect)
        out.tables[table.name] = [
            tuple(v if f is None or v is None else f(v) for f, v in zip(convert, row, strict=True))
            for row in w.rows[table.name]
        ]
    return out


# --- writing ----------------------------------------------------------------------------------


class _SqliteLoader:
    def __init__(self, path: Path) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode = WAL",
            "synchronous = OFF",  # a bulk load: durability comes from the final checkpoint
            "foreign_keys = ON",
            "cache_size = -1000000",
            "temp_store = MEMORY",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self.sql = {
            t.name: f"INSERT INTO {t.name} ({', '.join(_columns(t))}) "
            f"VALUES ({', '.join('?' for _ in t.columns)})"
            for t in TABLES
        }

    def max_event_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM audit_events").fetchone()[0])

    def write(self, rows: Rows) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        for table in TABLES:
            self.conn.executemany(self.sql[table.name], rows.tables[table.name])
        self.conn.execute("COMMIT")

    def finish(self, last_event_id: int) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


class _PostgresLoader:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(pg_dsn(url))
        self.conn.execute("SET synchronous_commit = off")  # the final CHECKPOINT makes it durable
        self.conn.commit()
        self.sql = {t.name: f"COPY {t.name} ({', '.join(_columns(t))}) FROM STDIN" for t in TABLES}

    def max_event_id(self) -> int:
        row = self.conn.execute("SELECT coalesce(max(id), 0) FROM audit_events").fetchone()
        self.conn.commit()
        assert row is not None
        return int(row[0])

    def write(self, rows: Rows) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            for table in TABLES:
                with cur.copy(self.sql[table.name]) as copy:
                    for row in rows.tables[table.name]:
                        copy.write_row(row)

    def finish(self, last_event_id: int) -> None:
        self.conn.execute("SELECT setval('audit_event_id_seq', %s)", (last_event_id,))
        self.conn.commit()
        self.conn.autocommit = True
        # What autovacuum would reach on a database that grew over time; then make it durable.
        self.conn.execute("VACUUM ANALYZE")
        self.conn.execute("CHECKPOINT")
        self.conn.close()


def _unique_ids(kind: Kind, count: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        candidate = new_short_id(kind)
        if candidate not in taken:
            taken.add(candidate)
            out.append(candidate)
    return out


def _chunks(
    world: World, cycles: Sequence[int], first_event_id: int, dialect: str
) -> Iterator[Chunk]:
    taken: set[str] = set()
    event_id = first_event_id
    for start in range(0, len(cycles), CHUNK_PATIENTS):
        part = tuple(cycles[start : start + CHUNK_PATIENTS])
        patients = _unique_ids(Kind.PATIENT, len(part), taken)
        rx_flat = _unique_ids(Kind.PRESCRIPTION, sum(k + 1 for k in part), taken)
        rx: list[tuple[str, ...]] = []
        for k in part:
            rx.append(tuple(rx_flat[: k + 1]))
            del rx_flat[: k + 1]
        yield Chunk(start, part, event_id, tuple(patients), tuple(rx), world, dialect)
        event_id += sum(events_for(k) for k in part)


@dataclass(frozen=True)
class Generated:
    url: str
    admin: str
    patients: int
    events: int
    cycles: dict[int, int]  # whole cycles -> how many patients
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "admin": self.admin,
            "patients": self.patients,
            "events": self.events,
            "cycles": {str(k): v for k, v in sorted(self.cycles.items())},
            "seconds": round(self.seconds, 3),
        }


def prepare_target(url: str, *, replace: bool) -> None:
    """An empty database at ``url``: a new SQLite file, or a new PostgreSQL database."""
    if is_postgres(url):
        if pg_exists(url):
            if not replace:
                raise SystemExit(f"{url} exists: pass --replace to drop and rebuild it")
            pg_drop(url)
        pg_create(url)
        return
    path = sqlite_path(url)
    if path.exists():
        if not replace:
            raise SystemExit(f"{path} exists: pass --replace to delete and rebuild it")
        remove_sqlite(path)
    path.parent.mkdir(parents=True, exist_ok=True)


def generate(
    url: str,
    patients: int,
    events: int,
    *,
    prescribers: int = 10,
    pharmacies: int = 5,
    workers: int | None = None,
    replace: bool = False,
    console: Console | None = None,
) -> Generated:
    """Create the database at ``url`` and fill it; see the module docstring."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    cycles = plan_cycles(patients, events)
    total_events = sum(events_for(k) for k in cycles)
    prepare_target(url, replace=replace)
    with console.status("creating the schema and the parties through the API"):
        world = build_world(url, prescribers, pharmacies)
    postgres = is_postgres(url)
    loader: _SqliteLoader | _PostgresLoader = (
        _PostgresLoader(url) if postgres else _SqliteLoader(sqlite_path(url))
    )
    first_event_id = loader.max_event_id() + 1
    last_event_id = first_event_id - 1
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    n_workers = workers or os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    with (
        Progress(*columns, console=console) as progress,
        ctx.Pool(n_workers) as pool,
    ):
        task = progress.add_task("audit events", total=total_events, rate="-")
        work = _chunks(world, cycles, first_event_id, "postgresql" if postgres else "sqlite")
        t0 = time.perf_counter()
        done = 0
        for rows in pool.imap(build_chunk, work):
            loader.write(rows)
            last_event_id = rows.last_event_id
            done += rows.events
            rate = f"{done / max(time.perf_counter() - t0, 1e-9):,.0f}"
            progress.update(task, advance=rows.events, rate=rate)
    with console.status("checkpointing" + (", vacuuming and analysing" if postgres else "")):
        loader.finish(last_event_id)
    # The rows were written directly: the engine works out its worklist index for them, as
    # it does on upgrading a database that predates the index.
    with console.status("indexing the worklist"), Compliance.open(url, FixedClock(AS_OF)) as app:
        app.migrate()
    histogram: dict[int, int] = {}
    for k in cycles:
        histogram[k] = histogram.get(k, 0) + 1
    return Generated(
        url, world.admin, patients, total_events, histogram, time.perf_counter() - started
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate",
        description="Build a large, valid compliance database (valid audit chains) fast.",
    )
    parser.add_argument("--db", required=True, metavar="URL", help="sqlite:///PATH or postgresql")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000, help="at least this many")
    parser.add_argument("--prescribers", type=int, default=10)
    parser.add_argument("--pharmacies", type=int, default=5, help="one pharmacist each")
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--replace", action="store_true", help="drop an existing database first")
    parser.add_argument("--verify", action="store_true", help="run the audit verification after")
    parser.add_argument("--manifest", type=Path, help="write what was generated here (JSON)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    result = generate(
        args.db,
        args.patients,
        args.events,
        prescribers=args.prescribers,
        pharmacies=args.pharmacies,
        workers=args.workers,
        replace=args.replace,
        console=console,
    )
    console.print(
        f"{result.patients:,} patients, {result.events:,} audit events in "
        f"{result.seconds:,.1f} s ({result.events / result.seconds:,.0f} events/s); "
        f"administrator {result.admin}"
    )
    summary = result.to_dict()
    if args.verify:
        with (
            console.status("verifying the audit trail"),
            Compliance.open(args.db, FixedClock(AS_OF)) as app,
        ):
            report = app.verify_audit(result.admin)
        console.print(f"audit verify: {'ok' if report.ok else 'BROKEN'} ({report.events:,} events)")
        summary["verify"] = report.to_dict()
        if not report.ok:
            return 1
    if args.manifest:
        args.manifest.write_text(json.dumps(summary, indent=2) + "\n")
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
