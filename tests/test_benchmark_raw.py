"""The dispense benchmark's limit is the engine's own transaction, hand-written: on two copies
of one generated population, the engine and the raw transaction authorize the same
prescription and write the same rows (the authorization, the course's state, an audit event
with the same fields and payload, its subject row, the chain head, the worklist index's check
day), and the audit trail the raw transaction extends verifies. A limit that did less than the
engine would make the benchmark's ratio flatter the engine."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from benchmarks import raw
from benchmarks.common import ADMIN_KEY, AS_OF
from benchmarks.dispense import pharmacists, ready_patients
from benchmarks.generate import events_for, generate
from compliance import Compliance, FixedClock

PATIENTS = 6


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("raw-limit")
    template = folder / "template.db"
    generate(
        f"sqlite:///{template}",
        PATIENTS,
        events_for(0) * PATIENTS,
        workers=1,
        replace=True,
        console=Console(quiet=True),
    )
    out = {}
    for kind in ("engine", "raw"):
        out[kind] = folder / f"{kind}.db"
        shutil.copyfile(template, out[kind])
    return out


def _written(path: Path, rx: str) -> dict[str, Any]:
    c = sqlite3.connect(path)
    try:
        auth = c.execute(
            "SELECT a.cycle, a.issued_at, a.issued_by, a.do_not_dispense_after, a.test_id,"
            " a.days_supply, a.reversed_at, a.dispensed_at, a.idempotency_key, a.pharmacy_id"
            " FROM authorizations a JOIN prescriptions p ON p.id = a.prescription_id"
            " WHERE p.short_id = ?",
            (rx,),
        ).fetchall()
        course = c.execute(
            "SELECT c.state, c.updated_at, c.attention_checked FROM courses c"
            " JOIN prescriptions p ON p.course_id = c.id WHERE p.short_id = ?",
            (rx,),
        ).fetchall()
        event = c.execute(
            "SELECT chain_id, chain_seq, occurred_at, actor_id, on_behalf_of, action, outcome,"
            " subjects, state_before, state_after, reason_codes, ruleset_id, payload, id"
            " FROM audit_events ORDER BY id DESC LIMIT 1"
        ).fetchone()
        subjects = c.execute(
            "SELECT subject FROM audit_event_subjects WHERE event_id = ?", (event[-1],)
        ).fetchall()
        head = c.execute(
            "SELECT last_seq, last_event_id FROM audit_chain_heads WHERE chain_id = ?",
            (event[0],),
        ).fetchone()
    finally:
        c.close()
    payload = json.loads(event[-2])
    payload.pop("authorization")  # a random number each
    payload.pop("recorded_at")  # the real instant of each write
    return {
        "authorization": auth,
        "course": course,
        "event": event[:-2],
        "payload": payload,
        "subjects": subjects,
        "head": head,
        "event_id": event[-1],
    }


def test_the_raw_transaction_writes_what_the_engine_writes(copies: dict[str, Path]) -> None:
    url = {kind: f"sqlite:///{path}" for kind, path in copies.items()}
    rx = ready_patients(url["engine"], 1)[0].prescription
    staff = pharmacists(url["engine"])[0]
    app = Compliance.open(url["engine"], FixedClock(AS_OF))
    try:
        app.request_authorization(staff, rx)
    finally:
        app.close()
    lite = raw.RawSqlite(copies["raw"])
    try:
        lite.authorize(staff, rx, AS_OF)
    finally:
        lite.close()
    engine, limit = _written(copies["engine"], rx), _written(copies["raw"], rx)
    assert limit == engine
    assert engine["course"][0][0] == "authorized" and engine["course"][0][2] is not None
    assert {"simulated_now", "prescribed_days_supply"} <= engine["payload"].keys()
    checker = Compliance.open(url["raw"], FixedClock(AS_OF))
    try:
        admin = checker.remembered(ADMIN_KEY)
        assert admin is not None
        report = checker.verify_audit(admin)
    finally:
        checker.close()
    assert report.ok, report


def test_the_raw_transaction_refuses_a_clock_the_engine_refuses(
    copies: dict[str, Path], tmp_path: Path
) -> None:
    """Neither training nor an override: the limit refuses, as the engine would, and writes
    nothing."""
    path = tmp_path / "production.db"
    shutil.copyfile(copies["raw"], path)
    c = sqlite3.connect(path)
    c.execute("UPDATE settings SET value = '{\"training\": false}' WHERE key = 'database.mode'")
    c.commit()
    before = c.execute("SELECT count(*) FROM audit_events").fetchone()
    c.close()
    rx = ready_patients(f"sqlite:///{path}", 1)[0].prescription
    lite = raw.RawSqlite(path)
    try:
        with pytest.raises(raw.ClockNotAllowed):
            lite.authorize(pharmacists(f"sqlite:///{path}")[0], rx, AS_OF)
    finally:
        lite.close()
    c = sqlite3.connect(path)
    assert c.execute("SELECT count(*) FROM audit_events").fetchone() == before
    c.close()
