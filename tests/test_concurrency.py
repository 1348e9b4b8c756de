"""Concurrency: real processes racing for one prescription, one authorization, one request key.

On a SQLite file and on PostgreSQL, a pool of ``WORKERS`` long-lived Python processes (each with
its own ``Compliance`` engine on the test's database) is told what to do, warms up (schema check,
a pooled connection) and reports ready; the parent then releases them all at once through their
stdin (the barrier: each blocks on reading ``go``) and collects one JSON result per process.

Checked: exactly one authorization per prescription and cycle however many pharmacists of two
pharmacies ask at once, every loser refused with exactly ``AUTHORIZATION_ALREADY_ISSUED`` and every
attempt in the audit trail; one dispense per authorization; a reversal racing a dispense leaves
one winner and a consistent state; concurrent requests sharing an idempotency key get one
authorization. PostgreSQL only: a transaction held open on one patient blocks neither another
patient's authorization nor the audit trail, while a request for that patient waits, and with a
short ``COMPLIANCE_LOCK_TIMEOUT_MS`` is retried and reported busy (CLI exit 9) instead of hanging.

Two of these cases guard fixed PostgreSQL races (SQLite's single writer serialises whole calls):
racing requests sharing an idempotency key are all replayed the one authorization, and racing
refusals filed under a chain not yet started are all recorded.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance import Compliance, FixedClock
from compliance.api import dispensing, service
from compliance.api.service import UNKNOWN_ACTOR
from compliance.audit import store as audit
from compliance.audit.store import LogFilter
from compliance.db import models as m
from compliance.db.engine import parse_url
from compliance.domain.authorization_number import new_number
from compliance.domain.ids import Kind, new_short_id
from compliance.errors import Busy, Conflict
from tests.conftest import build_world

pytestmark = pytest.mark.slow

START = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)  # ipledge/2026-mod is in force
WORKERS = 8
ROUNDS = 3  # authorization races per backend
SHORT_ROUNDS = 2  # for the other races
CALL_TIMEOUT = 60.0  # seconds one racing call may take before the test gives up
ALREADY = ("AUTHORIZATION_ALREADY_ISSUED",)
REVERSED = ("AUTHORIZATION_REVERSED",)
REPO = Path(__file__).resolve().parent.parent

WORKER = r"""
import json
import sys
import time
import traceback
from datetime import datetime

from compliance import Compliance, FixedClock
from compliance.errors import ComplianceError

apps = {}


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def close_all():
    for app in apps.values():
        app.close()
    apps.clear()


def app_for(url, now):
    if url not in apps:
        close_all()
        app = Compliance.open(url, FixedClock(datetime.fromisoformat(now)))
        app.remembered("concurrency-warm-up")  # schema check and a pooled connection
        apps[url] = app
    return apps[url]


def call(app, cmd):
    op = cmd["op"]
    if op == "authorize":
        return app.request_authorization(cmd["actor"], cmd["rx"], cmd.get("key"))
    if op == "dispense":
        return app.record_dispense(cmd["actor"], cmd["number"])
    if op == "reverse":
        return app.reverse_authorization(cmd["actor"], cmd["number"], "race test")
    raise ValueError(op)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = json.loads(line)
    if cmd["op"] == "reset":
        close_all()
        say({"reset": True})
        continue
    try:
        app = app_for(cmd["url"], cmd["now"])
    except Exception:
        say({"ready": False, "message": traceback.format_exc()})
        continue
    say({"ready": True})
    if sys.stdin.readline().strip() != "go":  # the barrier: all released together
        break
    started = time.monotonic()
    try:
        out = call(app, cmd)
    except ComplianceError as exc:
        result = {
            "error": exc.code,
            "type": type(exc).__name__,
            "message": exc.message,
            "reasons": list(getattr(exc, "reasons", ())),
        }
    except Exception:
        result = {"error": "UNEXPECTED", "type": "?", "message": traceback.format_exc()}
    else:
        auth = out.authorization
        result = {
            "ok": True,
            "number": auth.number if auth else None,
            "auth_cycle": auth.cycle if auth else None,
            "reversed": bool(auth and auth.reversed_at),
            "dispensed": bool(auth and auth.dispensed_at),
            "replayed": bool(out.record.get("replayed")),
            "state": out.course.state,
            "cycle": out.course.cycle,
        }
    result["actor"] = cmd.get("actor")
    result["op"] = cmd["op"]
    result["started"] = started
    result["elapsed"] = time.monotonic() - started
    say(result)
close_all()
"""


# --- the worker pool --------------------------------------------------------------------------


class Pool:
    """``WORKERS`` worker processes, started once per module and reused by every race."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.spreads: list[float] = []  # how far apart the racers of each race started
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: list[queue.Queue[str | None]] = []
        self.readers: list[threading.Thread] = []
        env = {k: v for k, v in os.environ.items() if k != "COMPLIANCE_LOCK_TIMEOUT_MS"}
        with log.open("a") as stderr:
            for _ in range(WORKERS):
                proc = subprocess.Popen(
                    [sys.executable, "-c", WORKER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    bufsize=1,
                    cwd=REPO,
                    env=env,  # the default lock timeout
                )
                lines: queue.Queue[str | None] = queue.Queue()
                reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
                reader.start()
                self.procs.append(proc)
                self.lines.append(lines)
                self.readers.append(reader)

    def _send(self, i: int, text: str) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        stdin.write(text)
        stdin.flush()

    def _receive(self, i: int, deadline: float) -> dict[str, Any]:
        try:
            line = self.lines[i].get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"worker {i} gave no answer in time; stderr in {self.log}"
            ) from None
        if line is None:
            tail = self.log.read_text()[-3000:]
            raise AssertionError(f"worker {i} exited ({self.procs[i].poll()}):\n{tail}")
        return dict(json.loads(line))

    def race(self, url: str, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run one command per worker, all released at the same instant; their results."""
        assert len(commands) == WORKERS
        deadline = time.monotonic() + CALL_TIMEOUT
        for i, command in enumerate(commands):
            self._send(i, json.dumps({**command, "url": url, "now": START.isoformat()}) + "\n")
        for i in range(WORKERS):
            ready = self._receive(i, deadline)
            assert ready.get("ready") is True, f"worker {i} could not start: {ready}"
        for i in range(WORKERS):  # everyone is waiting on its stdin: release them together
            self._send(i, "go\n")
        results = [self._receive(i, deadline) for i in range(WORKERS)]
        self.spreads.append(spread(results))
        unexpected = [r for r in results if r.get("error") in {"UNEXPECTED", "BUSY"}]
        assert not unexpected, f"database errors or busy in a race: {unexpected}"
        return results

    def reset(self) -> None:
        """Every worker closes its engine (before the test's database is dropped)."""
        deadline = time.monotonic() + CALL_TIMEOUT
        for i in range(WORKERS):
            self._send(i, json.dumps({"op": "reset"}) + "\n")
        for i in range(WORKERS):
            assert self._receive(i, deadline) == {"reset": True}

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proc, reader in zip(self.procs, self.readers, strict=True):
            reader.join(timeout=5)
            if proc.stdout is not None and not reader.is_alive():
                proc.stdout.close()


def _reader(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    workers = Pool(tmp_path_factory.mktemp("concurrency") / "workers-stderr.log")
    try:
        yield workers
    finally:
        workers.close()
        if workers.spreads:
            ms = sorted(x * 1000 for x in workers.spreads)
            print(f"\n{len(ms)} races; start spread {ms[0]:.1f}-{ms[-1]:.1f} ms")


@pytest.fixture
def workers(pool: Pool, db_url: str) -> Iterator[Pool]:
    yield pool
    pool.reset()


# --- the ward: two pharmacies, four pharmacists, patients ready for a prescription ------------


@dataclass
class Ward:
    url: str
    admin: str
    prescriber: str
    pharmacists: list[str]  # alternating between the two pharmacies
    pharmacy_of: dict[str, str]
    patients: list[str]

    def colleagues(self, pharmacist: str) -> list[str]:
        """The pharmacists of ``pharmacist``'s pharmacy (the ones who may dispense its RMAs)."""
        home = self.pharmacy_of[pharmacist]
        return [p for p in self.pharmacists if self.pharmacy_of[p] == home]


def ready_patient(app: Compliance, prescriber: str, name: str) -> str:
    pat = app.register_patient(prescriber, name, "1990-05-05").patient.id
    app.enrol(prescriber, pat)
    app.assign_category(prescriber, pat, "cannot_get_pregnant", "NO_UTERUS")
    app.record_consent(prescriber, pat, "PATIENT_INFORMATION_CONSENT")
    app.record_counselling(prescriber, pat)
    app.record_comprehension(pat, pat)
    return pat


def prepare(app: Compliance, patients: int = 1) -> Ward:
    world = build_world(app)
    admin, prs = world.admin.id, world.prescriber.id
    second = app.register_pharmacy(admin, "Harbour Pharmacy", "7654321", "America/New_York")
    second = app.activate_pharmacy(admin, second.id)
    first_staff = [world.pharmacist.id]
    first_staff.append(app.register_pharmacist(admin, "Sam Second", world.pharmacy.id).id)
    second_staff = [app.register_pharmacist(admin, f"Harbour {n}", second.id).id for n in "AB"]
    pharmacists = [p for pair in zip(first_staff, second_staff, strict=True) for p in pair]
    pharmacy_of = dict.fromkeys(first_staff, world.pharmacy.id)
    pharmacy_of.update(dict.fromkeys(second_staff, second.id))
    pats = [ready_patient(app, prs, f"Race Patient {i}") for i in range(patients)]
    url = app.engine.url.render_as_string(hide_password=False)
    return Ward(url, admin, prs, pharmacists, pharmacy_of, pats)


@pytest.fixture
def ward_app(db_url: str) -> Iterator[tuple[Compliance, Ward]]:
    with Compliance.open(db_url, FixedClock(START)) as app:
        yield app, prepare(app, patients=2)


def authorizations(app: Compliance, **where: Any) -> list[m.Authorization]:
    with Session(app.engine) as session:
        stmt = select(m.Authorization).filter_by(**where).order_by(m.Authorization.issued_at)
        return list(session.scalars(stmt))


def events(app: Compliance, admin: str, patient: str, action: str) -> Counter[str]:
    found = app.audit_log(admin, LogFilter(subject=patient, action=action))
    return Counter(e.outcome for e in found)


def refused_reasons(
    app: Compliance, admin: str, patient: str, action: str
) -> Counter[tuple[str, ...]]:
    found = app.audit_log(admin, LogFilter(subject=patient, action=action))
    return Counter(tuple(e.reason_codes) for e in found if e.outcome != "ok")


def assert_audit_verifies(app: Compliance, admin: str) -> None:
    report = app.verify_audit(admin)
    assert report.ok, f"audit trail broken: {report.to_dict()}"


def split(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [r for r in results if r.get("ok")], [r for r in results if not r.get("ok")]


def spread(results: list[dict[str, Any]]) -> float:
    """How far apart the racers actually started (one system-wide monotonic clock)."""
    starts = [float(r["started"]) for r in results]
    return max(starts) - min(starts)


# --- 1. many pharmacists, one prescription ----------------------------------------------------


def test_one_authorization_per_prescription_and_cycle(
    workers: Pool, ward_app: tuple[Compliance, Ward]
) -> None:
    app, ward = ward_app
    pat = ward.patients[0]
    for rnd in range(1, ROUNDS + 1):
        rx = app.prescribe(ward.prescriber, pat, 30).prescription
        assert rx is not None and rx.cycle == rnd
        racers = [ward.pharmacists[i % len(ward.pharmacists)] for i in range(WORKERS)]
        results = workers.race(
            ward.url, [{"op": "authorize", "actor": a, "rx": rx.id} for a in racers]
        )
        where = f"round {rnd} (start spread {spread(results) * 1000:.1f} ms): {results}"
        won, lost = split(results)
        assert len(won) == 1, where
        assert won[0]["auth_cycle"] == rnd and won[0]["state"] == "authorized", where
        assert all(r["error"] == "REFUSED" for r in lost), where
        assert all(tuple(r["reasons"]) == ALREADY for r in lost), where

        live = authorizations(app, prescription_id=_rx_uuid(app, rx.id))
        assert [a.number for a in live] == [won[0]["number"]], where
        assert live[0].cycle == rnd and live[0].issued_by == won[0]["actor"], where
        assert events(app, ward.admin, pat, "dispense.authorize") == Counter(
            ok=rnd, refused=(WORKERS - 1) * rnd
        ), where
        assert refused_reasons(app, ward.admin, pat, "dispense.authorize") == Counter(
            {ALREADY: (WORKERS - 1) * rnd}
        ), where
        assert_audit_verifies(app, ward.admin)
        done = app.record_dispense(won[0]["actor"], won[0]["number"]).course
        assert (done.state, done.cycle) == ("dispensed", rnd + 1)
    assert_audit_verifies(app, ward.admin)


def _rx_uuid(app: Compliance, short_id: str) -> object:
    with Session(app.engine) as session:
        return session.execute(
            select(m.Prescription.id).where(m.Prescription.short_id == short_id)
        ).scalar_one()


# --- 2. one authorization, many pickups; reversal against pickup ------------------------------


def _authorize(app: Compliance, ward: Ward, pat: str, pharmacist: str) -> str:
    course = app.status(ward.prescriber, pat).course
    if course.state != "qualified":
        app.prescribe(ward.prescriber, pat, 30)
    rx = app.status(ward.prescriber, pat).current_prescription
    assert rx is not None
    auth = app.request_authorization(pharmacist, rx.id).authorization
    assert auth is not None
    return auth.number


def test_one_dispense_per_authorization(workers: Pool, ward_app: tuple[Compliance, Ward]) -> None:
    app, ward = ward_app
    pat = ward.patients[0]
    for rnd in range(1, SHORT_ROUNDS + 1):
        issuer = ward.pharmacists[rnd % len(ward.pharmacists)]
        staff = ward.colleagues(issuer)
        number = _authorize(app, ward, pat, issuer)
        results = workers.race(
            ward.url,
            [
                {"op": "dispense", "actor": staff[i % len(staff)], "number": number}
                for i in range(WORKERS)
            ],
        )
        where = f"round {rnd} (start spread {spread(results) * 1000:.1f} ms): {results}"
        won, lost = split(results)
        assert len(won) == 1, where
        assert (won[0]["state"], won[0]["cycle"], won[0]["dispensed"]) == (
            "dispensed",
            rnd + 1,
            True,
        ), where
        for r in lost:  # a conflict (already dispensed) or a refusal, never anything else
            conflict = r["type"] == "Conflict" and "already dispensed" in r["message"]
            assert conflict or r["error"] == "REFUSED", where
        course = app.status(ward.prescriber, pat).course
        assert (course.state, course.cycle) == ("dispensed", rnd + 1), where  # advanced once
        [row] = authorizations(app, number=number)
        assert row.dispensed_at is not None and row.dispensed_by == won[0]["actor"], where
        assert row.reversed_at is None, where
        assert events(app, ward.admin, pat, "dispense.record")["ok"] == rnd, where
    assert_audit_verifies(app, ward.admin)


def test_reversal_races_dispense(workers: Pool, ward_app: tuple[Compliance, Ward]) -> None:
    app, ward = ward_app
    pat = ward.patients[0]
    winners: Counter[str] = Counter()
    for rnd in range(1, 2 * SHORT_ROUNDS + 1):
        issuer = ward.pharmacists[rnd % len(ward.pharmacists)]
        staff = ward.colleagues(issuer)
        number = _authorize(app, ward, pat, issuer)
        cycle = app.status(ward.prescriber, pat).course.cycle
        ops = ["reverse", "dispense"] if rnd % 2 else ["dispense", "reverse"]
        results = workers.race(
            ward.url,
            [
                {"op": ops[i % 2], "actor": staff[i % len(staff)], "number": number}
                for i in range(WORKERS)
            ],
        )
        where = f"round {rnd} (start spread {spread(results) * 1000:.1f} ms): {results}"
        won, lost = split(results)
        assert len(won) == 1, where
        winner = won[0]["op"]
        winners[winner] += 1
        [row] = authorizations(app, number=number)
        course = app.status(ward.prescriber, pat).course
        if winner == "dispense":
            assert row.dispensed_at is not None and row.reversed_at is None, where
            assert (course.state, course.cycle) == ("dispensed", cycle + 1), where
            assert all(r["type"] == "Conflict" for r in lost), where  # not a leaked _Race
        else:
            assert row.reversed_at is not None and row.dispensed_at is None, where
            assert (course.state, course.cycle) == ("qualified", cycle), where
            assert all(r["error"] == "REFUSED" for r in lost), where
            assert all(tuple(r["reasons"]) == REVERSED for r in lost), where
        assert_audit_verifies(app, ward.admin)
    dispensed = events(app, ward.admin, pat, "dispense.record")["ok"]
    reversed_ = events(app, ward.admin, pat, "dispense.reverse")["ok"]
    assert (dispensed, reversed_) == (winners["dispense"], winners["reverse"])
    print(f"\nreverse vs dispense winners: {dict(winners)}")


# --- 3. idempotency keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[pytest.mark.postgres],
        ),
    ],
)
def test_same_idempotency_key_races_to_one_authorization(
    workers: Pool, ward_app: tuple[Compliance, Ward]
) -> None:
    app, ward = ward_app
    first = ward.patients[0]
    home = ward.colleagues(ward.pharmacists[0])
    for rnd in range(1, SHORT_ROUNDS + 1):
        rx = app.prescribe(ward.prescriber, first, 30).prescription
        assert rx is not None
        key = f"pos-request-{rnd:04d}"
        results = workers.race(
            ward.url,
            [
                {"op": "authorize", "actor": home[i % len(home)], "rx": rx.id, "key": key}
                for i in range(WORKERS)
            ],
        )
        where = f"round {rnd} (start spread {spread(results) * 1000:.1f} ms): {results}"
        won, lost = split(results)
        assert not lost, where
        assert len({r["number"] for r in won}) == 1, where
        assert sum(not r["replayed"] for r in won) == 1, where
        number = won[0]["number"]
        rows = authorizations(app, idempotency_key=key)
        assert [a.number for a in rows] == [number], where
        assert events(app, ward.admin, first, "dispense.authorize") == Counter(ok=rnd), where

        again = app.request_authorization(home[1], rx.id, key)
        assert again.authorization is not None and again.authorization.number == number
        assert again.record == {"replayed": True}
        app.record_dispense(home[0], number)

    assert_audit_verifies(app, ward.admin)


def test_idempotency_key_replays_and_is_bound_to_its_prescription(
    ward_app: tuple[Compliance, Ward],
) -> None:
    """Sequentially: a retry returns the same authorization; the key on another Rx conflicts."""
    app, ward = ward_app
    first, other = ward.patients
    rph = ward.pharmacists[0]
    rx = app.prescribe(ward.prescriber, first, 30).prescription
    rx_other = app.prescribe(ward.prescriber, other, 30).prescription
    assert rx is not None and rx_other is not None
    issued = app.request_authorization(rph, rx.id, "pos-request-1").authorization
    assert issued is not None
    colleague = ward.colleagues(rph)[1]
    for who in (rph, colleague):  # the key belongs to the pharmacy, not the terminal
        again = app.request_authorization(who, rx.id, "pos-request-1")
        assert again.authorization is not None
        assert again.authorization.number == issued.number
        assert again.record == {"replayed": True}
    with pytest.raises(Conflict, match="another prescription"):
        app.request_authorization(rph, rx_other.id, "pos-request-1")
    assert [a.number for a in authorizations(app, idempotency_key="pos-request-1")] == [
        issued.number
    ]
    assert authorizations(app, prescription_id=_rx_uuid(app, rx_other.id)) == []
    assert events(app, ward.admin, first, "dispense.authorize") == Counter(ok=1)
    assert_audit_verifies(app, ward.admin)


def test_authorization_number_collision_is_retried_with_a_fresh_number(
    ward_app: tuple[Compliance, Ward], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drawn number that is already issued is refused by the primary key (no look-up first):
    the whole call is rolled back and retried with a fresh number; when every draw collides the
    call ends in a conflict and writes nothing."""
    app, ward = ward_app
    first, second = ward.patients
    rph = ward.pharmacists[0]
    rx_first = app.prescribe(ward.prescriber, first, 30).prescription
    rx_second = app.prescribe(ward.prescriber, second, 30).prescription
    assert rx_first is not None and rx_second is not None
    taken = app.request_authorization(rph, rx_first.id).authorization
    assert taken is not None

    monkeypatch.setattr(dispensing, "new_number", lambda: taken.number)
    with pytest.raises(Conflict):
        app.request_authorization(rph, rx_second.id)
    assert authorizations(app, prescription_id=_rx_uuid(app, rx_second.id)) == []
    assert app.status(ward.prescriber, second).course.state == "qualified"
    assert events(app, ward.admin, second, "dispense.authorize") == Counter()

    fresh = new_number()
    drawn = iter([taken.number, taken.number, fresh])
    monkeypatch.setattr(dispensing, "new_number", lambda: next(drawn))
    issued = app.request_authorization(rph, rx_second.id).authorization
    assert issued is not None and issued.number == fresh
    assert next(drawn, None) is None  # two collisions, then the fresh number
    assert [a.number for a in authorizations(app, prescription_id=_rx_uuid(app, rx_second.id))] == [
        fresh
    ]
    assert [a.number for a in authorizations(app, prescription_id=_rx_uuid(app, rx_first.id))] == [
        taken.number
    ]
    assert events(app, ward.admin, second, "dispense.authorize") == Counter(ok=1)
    assert_audit_verifies(app, ward.admin)


# --- concurrent refusals of an unknown actor, all appended to the system chain ------------------


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[pytest.mark.postgres],
        ),
    ],
)
def test_concurrent_refusals_of_an_unknown_actor_are_all_recorded(
    workers: Pool, ward_app: tuple[Compliance, Ward]
) -> None:
    app, ward = ward_app
    rx = app.prescribe(ward.prescriber, ward.patients[0], 30).prescription
    assert rx is not None
    for rnd in range(1, SHORT_ROUNDS + 1):
        ghost = new_short_id(Kind.PHARMACIST)  # well formed, registered nowhere
        results = workers.race(
            ward.url, [{"op": "authorize", "actor": ghost, "rx": rx.id}] * WORKERS
        )
        where = f"round {rnd}: {results}"
        assert all(r.get("error") == "NOT_PERMITTED" for r in results), where
        # recorded as UNKNOWN_ACTOR, never as the id typed, all in the one system chain
        assert app.audit_count(ward.admin, LogFilter(subject=ghost)) == 0, where
        refused = app.audit_count(ward.admin, LogFilter(actor=UNKNOWN_ACTOR))
        assert refused == rnd * WORKERS, where
    assert authorizations(app, prescription_id=_rx_uuid(app, rx.id)) == []
    assert_audit_verifies(app, ward.admin)


# --- 4. PostgreSQL: one patient's lock holds up that patient only ------------------------------


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _cli(url: str, actor: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "compliance", "--db", url, "--as", actor]
    command += ["--now", START.isoformat(), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


@pytest.mark.postgres
def test_postgres_lock_on_one_patient_blocks_only_that_patient(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPLIANCE_LOCK_TIMEOUT_MS", raising=False)
    with Compliance.open(pg_url, FixedClock(START)) as app:
        ward = prepare(app, patients=3)
        a, b, c = ward.patients
        rph = ward.pharmacists[0]
        app.set_clock_override(ward.admin, True)  # the CLI below runs at the same --now
        rx = {p: app.prescribe(ward.prescriber, p, 30).prescription for p in ward.patients}
        assert all(rx.values())
        a_events = app.audit_count(ward.admin, LogFilter(subject=a))

        # Phase 1: a transaction appends an audit event for A and stays open (A's chain head).
        holder = Session(app.engine)
        holder.begin()
        try:
            audit.append(
                holder,
                audit.EventDraft("test.hold", "ok", ward.admin, subjects=[a]),
                START,
            )
            thread, box = _in_thread(lambda: app.request_authorization(rph, rx[b].id))
            thread.join(3.0)
            assert not thread.is_alive(), "B's authorization waited behind A's transaction"
            assert "error" not in box, box
            assert box["value"].authorization is not None and box["elapsed"] < 3.0

            # With a 200 ms lock timeout A's request is retried RETRIES times, then is Busy.
            monkeypatch.setenv("COMPLIANCE_LOCK_TIMEOUT_MS", "200")
            short = Compliance.open(pg_url, FixedClock(START))
            monkeypatch.delenv("COMPLIANCE_LOCK_TIMEOUT_MS")
            naps: list[float] = []

            def nap(seconds: float) -> None:
                naps.append(seconds)
                time.sleep(seconds)

            try:
                with monkeypatch.context() as patch:
                    patch.setattr(service, "time", types.SimpleNamespace(sleep=nap))
                    started = time.monotonic()
                    with pytest.raises(Busy, match="lock timeout"):
                        short.request_authorization(rph, rx[a].id)
                    took = time.monotonic() - started
            finally:
                short.close()
            assert len(naps) == service.RETRIES - 1, naps  # every attempt met the lock
            assert service.RETRIES * 0.2 <= took < 10.0, took

            env = {
                k: v
                for k, v in os.environ.items()
                if k not in {"COMPLIANCE_DATABASE_URL", "COMPLIANCE_ACTOR"}
            }
            env["COMPLIANCE_LOCK_TIMEOUT_MS"] = "200"
            started = time.monotonic()
            done = _cli(pg_url, rph, "dispense", "authorize", rx[a].id, env=env)
            took = time.monotonic() - started
            assert done.returncode == Busy.exit_code, (done.returncode, done.stdout, done.stderr)
            assert "busy" in done.stderr.lower(), done.stderr
            assert "Traceback" not in done.stderr
            assert service.RETRIES * 0.2 <= took < 30.0, took  # retried, and did not hang
        finally:
            holder.rollback()
            holder.close()
        assert authorizations(app, prescription_id=_rx_uuid(app, rx[a].id)) == []
        assert app.audit_count(ward.admin, LogFilter(subject=a)) == a_events  # nothing written

        # Phase 2: a raw connection locks A's course row; C goes ahead, A waits, then succeeds.
        with psycopg.connect(_libpq(pg_url)) as raw:
            raw.execute(
                "SELECT c.id FROM courses c JOIN patients p ON p.id = c.patient_id"
                " WHERE p.short_id = %s FOR UPDATE",
                (a,),
            ).fetchall()
            thread_c, box_c = _in_thread(lambda: app.request_authorization(rph, rx[c].id))
            thread_c.join(3.0)
            assert not thread_c.is_alive(), "C's authorization waited behind A's course lock"
            assert "error" not in box_c, box_c
            thread_a, box_a = _in_thread(lambda: app.request_authorization(rph, rx[a].id))
            thread_a.join(1.0)
            assert thread_a.is_alive(), f"A's request did not wait for A's course lock: {box_a}"
            raw.rollback()
        thread_a.join(10.0)
        assert not thread_a.is_alive()
        assert "error" not in box_a, box_a
        assert box_a["value"].authorization is not None
        assert len(authorizations(app, prescription_id=_rx_uuid(app, rx[a].id))) == 1
        assert_audit_verifies(app, ward.admin)


def _libpq(url: str) -> str:
    return parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
