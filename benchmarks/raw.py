"""The physical limit of a dispense authorization: the same transaction, hand-written.

No ORM, no rule engine: the reads, writes and hashing ``request_authorization`` performs, in the
order it performs them, with the driver alone (``sqlite3`` or ``psycopg``):

``BEGIN IMMEDIATE`` (PostgreSQL: ``BEGIN``); read the acting pharmacist with their pharmacy (one
join); read the two settings that allow a simulated clock (the benchmark's clock is one: its
data is dated ``AS_OF``) and check them; read the prescription with its course (``FOR UPDATE
OF`` the course), the course's patient and prescriber with the prescriber's zone (one join);
read the course facts (records, tests, prescriptions with their prescriber's status,
authorizations); the minimal check (the course is ``qualified``, the prescription is the
cycle's, no live authorization this cycle); draw an authorization number (the primary key
refuses a collision); insert the authorization; update the course; read and lock the chain
head; take the next event id (``max(id) + 1`` on SQLite, ``nextval`` on PostgreSQL); build the
event, with the simulated and the real instant the engine records under a simulated clock, and
hash its canonical JSON (which includes the previous hash); insert the event and its subject
row; update the chain head; write the course's worklist index (``attention_*``; here the value
that makes the worklist always read the course, where the engine works out its flags);
``COMMIT`` (SQLite in WAL with ``synchronous=FULL``; PostgreSQL with ``synchronous_commit=on``).

The canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``:
for these events (ASCII keys, integers, strings) it is byte for byte the RFC 8785 form, which
``check_canonical_form`` confirms before a run. The rows written are the engine's own formats,
so ``compliance audit verify`` accepts a database the raw transaction wrote.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import rfc8785
from psycopg.types.json import Json

from benchmarks.common import pg_dsn
from compliance.audit.chain import AuditRecord, canonical_bytes, format_instant
from compliance.domain.authorization_number import new_number

RULESET = "ipledge/2026-mod"
BUSY_TIMEOUT_MS = 30_000

Authorize = Callable[[str, str, datetime], str]


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_body(
    event_id: int,
    chain: str,
    seq: int,
    at: datetime,
    actor: str,
    before: str,
    after: str,
    payload: dict[str, Any],
    prev: str,
) -> dict[str, Any]:
    """``AuditRecord.to_dict()`` without the hash, built directly."""
    return {
        "id": event_id,
        "chain": chain,
        "seq": seq,
        "at": format_instant(at),
        "actor": actor,
        "on_behalf_of": None,
        "action": "dispense.authorize",
        "outcome": "ok",
        "subjects": [chain],
        "state_before": before,
        "state_after": after,
        "reasons": [],
        "ruleset": RULESET,
        "payload": payload,
        "prev": prev,
    }


def authorize_payload(
    course: str,
    cycle: int,
    number: str,
    rx: str,
    pharmacy: str,
    days: int,
    now: datetime,
    real_now: datetime | None = None,
) -> dict[str, Any]:
    """The engine's payload; with ``real_now``, the notes of a simulated clock after it."""
    today = now.date().isoformat()  # the ruleset's zone; equal to UTC's date at AS_OF
    notes = {} if real_now is None else simulated_notes(now, real_now)
    return {
        "course": course,
        "cycle": cycle,
        "authorization": number,
        "prescription": rx,
        "pharmacy": pharmacy,
        "do_not_dispense_after": None,
        "test": None,
        "days_supply": days,
        "prescribed_days_supply": days,
        "idempotency_key": None,
        "decision": {
            "gate": "dispense",
            "outcome": "ALLOW",
            "reasons": [],
            "ruleset": RULESET,
            "evaluated_at": now.isoformat(),
            "today": today,
            "cycle": cycle,
            "window": None,
            "test": None,
            "earliest": None,
        },
        **notes,
    }


def simulated_notes(now: datetime, real_now: datetime) -> dict[str, str]:
    return {"simulated_now": now.isoformat(), "recorded_at": real_now.isoformat()}


MODE, OVERRIDE = "database.mode", "clock.override"


def clock_allowed(found: dict[str, Any], real_now: datetime) -> bool:
    """The engine's rule for a simulated clock, on the two settings' decoded values."""
    if (found.get(MODE) or {}).get("training"):
        return True
    override = found.get(OVERRIDE) or {}
    expires = override.get("expires_at")
    return (
        bool(override.get("enabled"))
        and expires is not None
        and (real_now < datetime.fromisoformat(str(expires)))
    )


class ClockNotAllowed(RuntimeError):
    """The database neither is for training nor has a clock override: the engine refuses too."""


def check_canonical_form() -> None:
    """The shortcut canonical form equals RFC 8785 for an event of this shape."""
    now = datetime(2027, 6, 1, 15, 0, tzinfo=UTC)
    payload = authorize_payload(
        "4f0c6a3e-0000-4000-8000-000000000000",
        3,
        "1" * 21,
        "RX-0000000",
        "PHA-0000000",
        30,
        now,
        datetime(2026, 12, 4, 1, 57, 2, 586237, tzinfo=UTC),
    )
    body = event_body(
        7, "PAT-0000000", 9, now, "RPH-0000000", "qualified", "authorized", payload, "0" * 64
    )
    record = AuditRecord(
        id=7,
        chain_id="PAT-0000000",
        chain_seq=9,
        occurred_at=now,
        actor_id="RPH-0000000",
        on_behalf_of=None,
        action="dispense.authorize",
        outcome="ok",
        subjects=("PAT-0000000",),
        state_before="qualified",
        state_after="authorized",
        reason_codes=(),
        ruleset_id=RULESET,
        payload=payload,
        prev_hash="0" * 64,
    )
    if canonical(body) != canonical_bytes(record) or canonical(body) != bytes(rfc8785.dumps(body)):
        raise AssertionError("the raw canonical form differs from RFC 8785 for this event")


class LiveAuthorizationExists(RuntimeError):
    """The minimal check refused: the benchmark handed over a prescription already used."""


def _stamp(value: datetime) -> str:
    """SQLAlchemy's SQLite storage format for a UTC instant."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class RawSqlite:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        self.conn.close()

    def authorize(self, pharmacist: str, rx_ref: str, now: datetime) -> str:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            number = self._authorize(c, pharmacist, rx_ref, now)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return number

    @staticmethod
    def _authorize(c: sqlite3.Connection, pharmacist: str, rx_ref: str, now: datetime) -> str:
        one = c.execute
        rph = one(
            "SELECT r.id, r.status, h.id, h.short_id, h.time_zone, h.status,"
            " h.activation_expires_on FROM pharmacists r JOIN pharmacies h ON h.id = r.pharmacy_id"
            " WHERE r.short_id = ?",
            (pharmacist,),
        ).fetchone()
        pharmacy = rph[2:]
        settings = one(
            "SELECT key, value FROM settings WHERE key = ? OR key = ?", (MODE, OVERRIDE)
        ).fetchall()
        real_now = datetime.now(UTC)
        if not clock_allowed({key: json.loads(value) for key, value in settings}, real_now):
            raise ClockNotAllowed(rx_ref)
        found = one(
            "SELECT x.id, x.short_id, x.cycle, x.days_supply, p.short_id, s.short_id,"
            " s.time_zone, c.id, c.state, c.cycle FROM prescriptions x"
            " JOIN courses c ON c.id = x.course_id JOIN patients p ON p.id = c.patient_id"
            " JOIN prescribers s ON s.id = c.prescriber_id WHERE x.short_id = ?",
            (rx_ref,),
        ).fetchone()
        rx, patient, course = found[0:4], found[4:5], found[7:10]
        one(
            "SELECT kind, cycle, payload, effective_on FROM course_records WHERE course_id = ?"
            " ORDER BY seq",
            (course[0],),
        ).fetchall()
        one(
            "SELECT id, kind, specimen_date, result, cycle FROM pregnancy_tests"
            " WHERE course_id = ? ORDER BY specimen_date, seq",
            (course[0],),
        ).fetchall()
        one(
            "SELECT p.short_id, p.cycle, p.written_on, p.days_supply, s.status"
            " FROM prescriptions p JOIN prescribers s ON s.id = p.prescriber_id"
            " WHERE p.course_id = ? ORDER BY p.seq",
            (course[0],),
        ).fetchall()
        auths = one(
            "SELECT a.number, a.cycle, a.reversed_at, p.short_id FROM authorizations a"
            " JOIN prescriptions p ON p.id = a.prescription_id WHERE a.course_id = ?"
            " ORDER BY a.issued_at",
            (course[0],),
        ).fetchall()
        cycle = course[2]
        if course[1] != "qualified" or rx[2] != cycle:
            raise LiveAuthorizationExists(rx_ref)
        if any(a[2] is None and (a[1] == cycle or a[3] == rx[1]) for a in auths):
            raise LiveAuthorizationExists(rx_ref)
        number = new_number()
        stamp = _stamp(now)
        one(
            "INSERT INTO authorizations (number, course_id, prescription_id, pharmacy_id, cycle,"
            " issued_at, issued_by, do_not_dispense_after, test_id, days_supply, reversed_at,"
            " reversed_by, reversal_reason, dispensed_at, dispensed_by, idempotency_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL, NULL, NULL, NULL, NULL, NULL)",
            (number, course[0], rx[0], pharmacy[0], cycle, stamp, pharmacist, rx[3]),
        )
        one(
            "UPDATE courses SET state = 'authorized', updated_at = ? WHERE id = ?",
            (stamp, course[0]),
        )
        chain = patient[0]
        head = one(
            "SELECT last_seq, last_hash FROM audit_chain_heads WHERE chain_id = ?", (chain,)
        ).fetchone()
        event_id = int(one("SELECT max(id) FROM audit_events").fetchone()[0] or 0) + 1
        payload = authorize_payload(
            str(uuid.UUID(course[0])), cycle, number, rx[1], pharmacy[1], rx[3], now, real_now
        )
        body = event_body(
            event_id,
            chain,
            head[0] + 1,
            now,
            pharmacist,
            "qualified",
            "authorized",
            payload,
            head[1],
        )
        digest = hashlib.sha256(canonical(body)).hexdigest()
        one(
            "INSERT INTO audit_events (id, chain_id, chain_seq, occurred_at, actor_id,"
            " on_behalf_of, action, outcome, subjects, state_before, state_after, reason_codes,"
            " ruleset_id, payload, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?, 'ok', ?, ?, ?, '[]', ?, ?, ?, ?)",
            (
                event_id,
                chain,
                head[0] + 1,
                stamp,
                pharmacist,
                "dispense.authorize",
                json.dumps([chain]),
                "qualified",
                "authorized",
                RULESET,
                json.dumps(payload),
                head[1],
                digest,
            ),
        )
        one(
            "INSERT INTO audit_event_subjects (subject, event_id) VALUES (?, ?)",
            (chain, event_id),
        )
        one(
            "UPDATE audit_chain_heads SET last_seq = ?, last_hash = ?, last_event_id = ?"
            " WHERE chain_id = ?",
            (head[0] + 1, digest, event_id, chain),
        )
        one(
            "UPDATE courses SET attention_from = NULL, attention_until = NULL,"
            " attention_checked = ? WHERE id = ?",
            (now.date().isoformat(), course[0]),
        )
        return number


class RawPostgres:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(pg_dsn(url))

    def close(self) -> None:
        self.conn.close()

    def authorize(self, pharmacist: str, rx_ref: str, now: datetime) -> str:
        with self.conn.transaction():
            return self._authorize(self.conn, pharmacist, rx_ref, now)

    @staticmethod
    def _authorize(c: psycopg.Connection[Any], pharmacist: str, rx_ref: str, now: datetime) -> str:
        def one(sql: str, params: tuple[Any, ...] = ()) -> Any:
            return c.execute(sql, params).fetchone()

        def rows(sql: str, params: tuple[Any, ...]) -> list[Any]:
            return c.execute(sql, params).fetchall()

        rph = one(
            "SELECT r.id, r.status, h.id, h.short_id, h.time_zone, h.status,"
            " h.activation_expires_on FROM pharmacists r JOIN pharmacies h ON h.id = r.pharmacy_id"
            " WHERE r.short_id = %s",
            (pharmacist,),
        )
        pharmacy = rph[2:]
        settings = rows(
            "SELECT key, value FROM settings WHERE key = %s OR key = %s", (MODE, OVERRIDE)
        )
        real_now = datetime.now(UTC)
        if not clock_allowed(dict(settings), real_now):
            raise ClockNotAllowed(rx_ref)
        found = one(
            "SELECT x.id, x.short_id, x.cycle, x.days_supply, p.short_id, s.short_id,"
            " s.time_zone, c.id, c.state, c.cycle FROM prescriptions x"
            " JOIN courses c ON c.id = x.course_id JOIN patients p ON p.id = c.patient_id"
            " JOIN prescribers s ON s.id = c.prescriber_id WHERE x.short_id = %s FOR UPDATE OF c",
            (rx_ref,),
        )
        rx, patient, course = found[0:4], found[4:5], found[7:10]
        rows(
            "SELECT kind, cycle, payload, effective_on FROM course_records WHERE course_id = %s"
            " ORDER BY seq",
            (course[0],),
        )
        rows(
            "SELECT id, kind, specimen_date, result, cycle FROM pregnancy_tests"
            " WHERE course_id = %s ORDER BY specimen_date, seq",
            (course[0],),
        )
        rows(
            "SELECT p.short_id, p.cycle, p.written_on, p.days_supply, s.status"
            " FROM prescriptions p JOIN prescribers s ON s.id = p.prescriber_id"
            " WHERE p.course_id = %s ORDER BY p.seq",
            (course[0],),
        )
        auths = rows(
            "SELECT a.number, a.cycle, a.reversed_at, p.short_id FROM authorizations a"
            " JOIN prescriptions p ON p.id = a.prescription_id WHERE a.course_id = %s"
            " ORDER BY a.issued_at",
            (course[0],),
        )
        cycle = course[2]
        if course[1] != "qualified" or rx[2] != cycle:
            raise LiveAuthorizationExists(rx_ref)
        if any(a[2] is None and (a[1] == cycle or a[3] == rx[1]) for a in auths):
            raise LiveAuthorizationExists(rx_ref)
        number = new_number()
        c.execute(
            "INSERT INTO authorizations (number, course_id, prescription_id, pharmacy_id, cycle,"
            " issued_at, issued_by, days_supply) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (number, course[0], rx[0], pharmacy[0], cycle, now, pharmacist, rx[3]),
        )
        c.execute(
            "UPDATE courses SET state = 'authorized', updated_at = %s WHERE id = %s",
            (now, course[0]),
        )
        chain = patient[0]
        head = one(
            "SELECT last_seq, last_hash FROM audit_chain_heads WHERE chain_id = %s FOR UPDATE",
            (chain,),
        )
        event_id = int(one("SELECT nextval('audit_event_id_seq')")[0])
        payload = authorize_payload(
            str(course[0]), cycle, number, rx[1], pharmacy[1], rx[3], now, real_now
        )
        body = event_body(
            event_id,
            chain,
            head[0] + 1,
            now,
            pharmacist,
            "qualified",
            "authorized",
            payload,
            head[1],
        )
        digest = hashlib.sha256(canonical(body)).hexdigest()
        c.execute(
            "INSERT INTO audit_events (id, chain_id, chain_seq, occurred_at, actor_id,"
            " action, outcome, subjects, state_before, state_after, reason_codes,"
            " ruleset_id, payload, prev_hash, hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'ok', %s, %s, %s, '[]', %s, %s, %s, %s)",
            (
                event_id,
                chain,
                head[0] + 1,
                now,
                pharmacist,
                "dispense.authorize",
                Json([chain]),
                "qualified",
                "authorized",
                RULESET,
                Json(payload),
                head[1],
                digest,
            ),
        )
        c.execute(
            "INSERT INTO audit_event_subjects (subject, event_id) VALUES (%s, %s)",
            (chain, event_id),
        )
        c.execute(
            "UPDATE audit_chain_heads SET last_seq = %s, last_hash = %s, last_event_id = %s"
            " WHERE chain_id = %s",
            (head[0] + 1, digest, event_id, chain),
        )
        c.execute(
            "UPDATE courses SET attention_from = NULL, attention_until = NULL,"
            " attention_checked = %s WHERE id = %s",
            (now.date(), course[0]),
        )
        return number
