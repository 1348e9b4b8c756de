"""Crash safety: SIGKILL a real worker process mid-stream and lose nothing it acknowledged.

On a SQLite file and on PostgreSQL, the test prepares 100 patients who can be prescribed (category
cannot_get_pregnant / NO_UTERUS under ipledge/2026-mod: consent, counselling and comprehension at
enrolment only). A worker, a separate Python process using the public ``Compliance`` API on the
same database URL, walks each patient through ``CYCLES`` cycles of prescribe, request an
authorization and record the dispense, and prints one line per call only after the call returned
("acknowledged"). The parent reads those lines and SIGKILLs the worker at a random point: right
after a random number of acknowledged lines (the next call has usually begun), after a short random
delay past one (inside a transaction or its commit), or a random 0.2-1.2 s after it started
(start-up, the resume reads, or any call). Then it restarts the worker, which resumes from what
the database says (``status``), at least ``MIN_KILLS`` times per backend, and lets the last run
finish.

After every kill: the database is intact (SQLite ``integrity_check`` and ``foreign_key_check``;
PostgreSQL accepts new connections and the killed session's transaction is gone), the audit chain
verifies, every acknowledged prescription, authorization and dispense is in the database with its
patient and cycle, no course has more than one live authorization per cycle, each course's state
and cycle agree with its prescriptions and authorizations, and every such row has its audit event
and every audit event its row (the two commit together or not at all). At the end the engine still
works: the worker completed every patient and the test runs one more whole cycle itself.

Set ``CRASH_SEED`` to replay the kill points of a failing run (the seed is in every message).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from compliance import Compliance, FixedClock
from compliance.audit.store import LogFilter
from compliance.db import models as m
from tests.conftest import build_world

pytestmark = pytest.mark.slow

START = datetime(2027, 1, 4, 15, 0, tzinfo=UTC)  # ipledge/2026-mod is in force
PATIENTS = 100  # enough work that a fast worker is still busy at the eighth kill
CYCLES = 2  # dispenses per patient: 100 * 2 * 3 = 600 acknowledged calls in all
KILLS = 8  # kills attempted per backend
MIN_KILLS = 5
RUN_TIMEOUT = 60.0  # seconds a single worker run may take before the test gives up

WORKER = r"""
import json
import sys
from datetime import datetime

from compliance import Compliance, FixedClock

cfg = json.loads(sys.argv[1])


def ack(*parts):
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


app = Compliance.open(cfg["url"], FixedClock(datetime.fromisoformat(cfg["now"])))
prs, rph = cfg["prescriber"], cfg["pharmacist"]
for pat in cfg["patients"]:
    st = app.status(prs, pat)
    cycle, state = st.course.cycle, st.course.state
    rx = st.current_prescription.id if state == "qualified" else None
    number = st.open_authorization.number if state == "authorized" else None
    while cycle <= cfg["cycles"]:
        if number is None and rx is None:
            out = app.prescribe(prs, pat, 30)
            rx = out.prescription.id
            ack("RX", pat, out.prescription.cycle, rx)
        if number is None:
            out = app.request_authorization(rph, rx)
            number = out.authorization.number
            ack("AUTH", pat, out.authorization.cycle, number)
        out = app.record_dispense(rph, number)
        ack("DISP", pat, out.authorization.cycle, number)
        cycle, rx, number = out.course.cycle, None, None
app.close()
ack("DONE")
"""


@dataclass
class Ward:
    url: str
    admin: str
    prescriber: str
    pharmacist: str
    patients: list[str]


@dataclass
class Acks:
    """What the parent saw acknowledged: id -> (patient, cycle)."""

    rx: dict[str, tuple[str, int]] = field(default_factory=dict)
    auth: dict[str, tuple[str, int]] = field(default_factory=dict)
    disp: dict[str, tuple[str, int]] = field(default_factory=dict)
    done: bool = False

    def take(self, line: str) -> None:
        kind, *rest = line.split()
        if kind == "DONE":
            self.done = True
            return
        patient, cycle, ref = rest
        book = {"RX": self.rx, "AUTH": self.auth, "DISP": self.disp}[kind]
        assert ref not in book, f"acknowledged twice: {line!r}"
        book[ref] = (patient, int(cycle))

    @property
    def count(self) -> int:
        return len(self.rx) + len(self.auth) + len(self.disp)


def prepare(url: str) -> Ward:
    with Compliance.open(url, FixedClock(START)) as app:
        world = build_world(app)
        prs = world.prescriber.id
        patients = []
        for i in range(PATIENTS):
            pat = app.register_patient(prs, f"Crash Patient {i}", "1990-05-05").patient.id
            app.enrol(prs, pat)
            app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
            app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
            app.record_counselling(prs, pat)
            app.record_comprehension(pat, pat)
            patients.append(pat)
        return Ward(url, world.admin.id, prs, world.pharmacist.id, patients)


def _reader(stream: Iterator[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_worker(ward: Ward, acks: Acks, rng: random.Random | None, log: Path) -> str:
    """One worker run; with ``rng``, SIGKILLed at a random point. Returns how it ended."""
    config = {
        "url": ward.url,
        "now": START.isoformat(),
        "prescriber": ward.prescriber,
        "pharmacist": ward.pharmacist,
        "patients": ward.patients,
        "cycles": CYCLES,
    }
    with log.open("a") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    deadline = time.monotonic() + RUN_TIMEOUT
    plan = "run to completion"
    eof = False

    def next_line() -> str | None:
        nonlocal eof
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if line is None:
            eof = True
        elif line.endswith("\n"):  # a line cut short by the kill was never acknowledged
            acks.take(line)
        return line

    try:
        if rng is not None:
            mode = rng.choice(["after lines", "after lines", "mid-transaction", "timed"])
            if mode == "timed":  # from the start: in start-up, the resume reads, or a call
                delay = rng.uniform(0.2, 1.2)
                plan = f"kill {delay:.3f}s after start"
                time.sleep(delay)
            else:
                wanted = rng.randint(1, 12)
                delay = rng.uniform(0.0, 0.03) if mode == "mid-transaction" else 0.0
                plan = f"kill {delay * 1000:.1f}ms after {wanted} acknowledged lines"
                seen = 0
                while seen < wanted and not eof:
                    if next_line() is not None:
                        seen += 1
                if delay:
                    time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        while not eof:  # what was written before the kill is acknowledged too
            next_line()
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (queue.Empty, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
        raise AssertionError(f"worker run ({plan}) timed out; stderr in {log}") from None
    finally:
        proc.stdout.close()
    if code == -signal.SIGKILL:
        return plan
    assert code == 0, f"worker ({plan}) failed with {code}:\n{log.read_text()[-3000:]}"
    assert acks.done, f"worker exited 0 without finishing ({plan})"
    return f"{plan}: finished first"


def wait_for_killed_sessions(url: str) -> None:
    """PostgreSQL takes new connections, and the killed worker's transaction has gone."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        deadline = time.monotonic() + 10
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " AND state <> 'idle'"
            ).fetchone()
            assert row is not None
            if row[0] == 0:
                return
            assert time.monotonic() < deadline, "a killed session still holds a transaction"
            time.sleep(0.05)


def check_sqlite_file(url: str) -> None:
    path = make_url(url).database
    assert path
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def _audited(app: Compliance, admin: str, action: str, key: str) -> Counter[str]:
    events = app.audit_log(admin, LogFilter(action=action))
    assert [e for e in events if e.outcome != "ok"] == [], f"refused {action}"
    return Counter(str(e.payload[key]) for e in events)


def check_database(ward: Ward, acks: Acks, backend: str, where: str) -> int:
    """Every check after a kill; returns how many committed calls were never acknowledged."""
    if backend == "sqlite":
        check_sqlite_file(ward.url)
    else:
        wait_for_killed_sessions(ward.url)
    with Compliance.open(ward.url, FixedClock(START)) as app:
        report = app.verify_audit(ward.admin)
        assert report.ok, f"{where}: audit chain broken: {report}"
        audited_rx = _audited(app, ward.admin, "course.prescribe", "prescription")
        audited_auth = _audited(app, ward.admin, "dispense.authorize", "authorization")
        audited_disp = _audited(app, ward.admin, "dispense.record", "authorization")
        with Session(app.engine) as session:
            patient_of = dict(session.execute(select(m.Patient.id, m.Patient.short_id)).all())
            courses = {c.id: c for c in session.scalars(select(m.Course))}
            rxs = {r.id: r for r in session.scalars(select(m.Prescription))}
            auths = list(session.scalars(select(m.Authorization)))

    def who(course_id: object) -> str:
        return str(patient_of[courses[course_id].patient_id])  # type: ignore[index]

    rx_by_short = {r.short_id: (who(r.course_id), r.cycle) for r in rxs.values()}
    auth_by_number = {a.number: (who(a.course_id), a.cycle) for a in auths}
    dispensed = {a.number for a in auths if a.dispensed_at is not None}

    # nothing acknowledged is lost, and it is what was acknowledged
    lost_rx = {k: v for k, v in acks.rx.items() if rx_by_short.get(k) != v}
    lost_auth = {k: v for k, v in acks.auth.items() if auth_by_number.get(k) != v}
    lost_disp = {k: v for k, v in acks.disp.items() if k not in dispensed or auth_by_number[k] != v}
    assert not lost_rx, f"{where}: acknowledged prescriptions lost: {lost_rx}"
    assert not lost_auth, f"{where}: acknowledged authorizations lost: {lost_auth}"
    assert not lost_disp, f"{where}: acknowledged dispenses lost: {lost_disp}"

    # rows and their audit events committed together (exactly one event per row)
    assert audited_rx == Counter(rx_by_short.keys()), f"{where}: prescriptions vs audit"
    assert audited_auth == Counter(auth_by_number.keys()), f"{where}: authorizations vs audit"
    assert audited_disp == Counter(dispensed), f"{where}: dispenses vs audit"

    # one authorization per course cycle (the worker never reverses), each on that cycle's Rx
    per_cycle = Counter((a.course_id, a.cycle) for a in auths if a.reversed_at is None)
    assert max(per_cycle.values(), default=1) == 1, f"{where}: two live authorizations"
    assert all(a.reversed_at is None for a in auths), f"{where}: reversed authorization"
    for a in auths:
        rx = rxs[a.prescription_id]
        assert (rx.course_id, rx.cycle) == (a.course_id, a.cycle), f"{where}: {a.number}"
        if a.dispensed_at is None:
            assert a.cycle == courses[a.course_id].cycle, f"{where}: stale live {a.number}"

    # each course's state and cycle agree with its prescriptions and authorizations
    for course in courses.values():
        mine = [a for a in auths if a.course_id == course.id]
        done_cycles = sorted(a.cycle for a in mine if a.dispensed_at is not None)
        live = [a for a in mine if a.dispensed_at is None]
        rx_now = [r for r in rxs.values() if r.course_id == course.id and r.cycle == course.cycle]
        label = f"{where}: course of {who(course.id)} ({course.state}, cycle {course.cycle})"
        assert done_cycles == list(range(1, course.cycle)), label
        assert len(rx_now) <= 1, label  # the worker never writes a second Rx in a cycle
        expected = {
            "authorized": (1, 1),
            "qualified": (1, 0),
            "dispensed": (0, 0),
            "pre_treatment": (0, 0),
        }
        assert course.state in expected, label
        assert (len(rx_now), len(live)) == expected[course.state], label
        if course.state == "pre_treatment":
            assert course.cycle == 1, label
    return len(rx_by_short) + len(auth_by_number) + len(dispensed) - acks.count


def whole_cycle_by_hand(ward: Ward) -> None:
    """The engine still works after all that: one more patient from registration to pickup."""
    with Compliance.open(ward.url, FixedClock(START)) as app:
        prs, rph = ward.prescriber, ward.pharmacist
        pat = app.register_patient(prs, "After The Crashes", "1991-01-01").patient.id
        app.enrol(prs, pat)
        app.assign_category(prs, pat, "cannot_get_pregnant", "NO_UTERUS")
        app.record_consent(prs, pat, "PATIENT_INFORMATION_CONSENT")
        app.record_counselling(prs, pat)
        app.record_comprehension(pat, pat)
        rx = app.prescribe(prs, pat, 30).prescription
        assert rx is not None
        auth = app.request_authorization(rph, rx.id).authorization
        assert auth is not None
        done = app.record_dispense(rph, auth.number).course
        assert (done.state, done.cycle) == ("dispensed", 2)
        assert app.verify_audit(ward.admin).ok


def test_sigkill_loses_nothing_acknowledged(backend: str, db_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    started = time.monotonic()
    ward = prepare(db_url)
    acks = Acks()
    log = tmp_path / "worker-stderr.log"
    plans: list[str] = []
    for i in range(KILLS):
        before = acks.count
        plan = run_worker(ward, acks, rng, log)
        where = f"seed {seed}, {backend}, after kill {i + 1}: {plan}"
        unacknowledged = check_database(ward, acks, backend, where)
        plans.append(f"{plan} (+{acks.count - before}, {unacknowledged} unacknowledged so far)")
        if acks.done:
            break
    kills = sum("finished first" not in p for p in plans)
    assert kills >= MIN_KILLS, f"seed {seed}: only {kills} kills landed: {plans}"
    run_worker(ward, acks, None, log)
    check_database(ward, acks, backend, f"seed {seed}, {backend}, after the last run")
    assert acks.done
    assert max(len(acks.auth), len(acks.disp)) <= PATIENTS * CYCLES
    with Compliance.open(ward.url, FixedClock(START)) as app:
        for pat in ward.patients:
            course = app.status(ward.prescriber, pat).course
            assert (course.state, course.cycle) == ("dispensed", CYCLES + 1), pat
    whole_cycle_by_hand(ward)
    elapsed = time.monotonic() - started
    print(f"\n[{backend}] seed {seed}: {kills} kills in {elapsed:.1f}s; " + "; ".join(plans))
