"""The audit trail: append-only triggers, per-subject chains, checkpoints, the log filters, and
tamper detection (one property-based test over single tamperings, plus named multi-step cases).

Tampering goes around the triggers the way an intruder with database access would: on SQLite by
dropping the triggers (and foreign keys) inside the tampering transaction and recreating them, on
PostgreSQL with ``session_replication_role = replica``. Every example starts from a fresh copy
of an untampered trail.
"""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from compliance.api import Compliance
from compliance.audit.chain import GENESIS, SYSTEM_CHAIN, AuditRecord, compute_hash
from compliance.audit.store import CHECKPOINT_ACTION, LogFilter, chain_for
from compliance.clock import FixedClock
from compliance.db.engine import make_engine
from compliance.db.models import AuditChainHead, AuditEvent, AuditSubject
from compliance.domain import reasons as rc
from compliance.errors import NotPermitted
from tests.conftest import (
    T0,
    _pg_url,
    build_world,
    create_pg_database,
    drop_pg_database,
    next_npi,
)

EVENTS = AuditEvent.__table__
SUBJECTS = AuditSubject.__table__
HEADS = AuditChainHead.__table__
EVENT_COLUMNS = [c.name for c in EVENTS.columns]


# --- building and reading a trail --------------------------------------------------------------


@dataclass(frozen=True)
class Trail:
    """A snapshot of an untampered audit trail, and where to get a fresh copy of it."""

    source: str  # SQLite file path, or PostgreSQL template database name
    admin: str
    events: tuple[dict[str, Any], ...]
    subjects: tuple[tuple[str, int], ...]
    heads: dict[str, dict[str, Any]]

    @property
    def chains(self) -> list[str]:
        return sorted(self.heads)

    def chain(self, chain_id: str) -> list[dict[str, Any]]:
        return sorted(
            (e for e in self.events if e["chain_id"] == chain_id), key=lambda e: e["chain_seq"]
        )

    def event(self, event_id: int) -> dict[str, Any]:
        return next(e for e in self.events if e["id"] == event_id)


def build_trail(app: Compliance, clock: FixedClock) -> str:
    """Parties, patients, refusals and two checkpoints, with activity after each checkpoint.

    Returns the administrator's id. The clock moves a minute per call after the parties exist.
    Events: 8 (parties) + 3 patients + refusal + checkpoint + patient + update + suspension
    + refusal + checkpoint + reinstatement + patient = 20, in 11 chains.
    """
    minutes = iter(range(1, 10_000))

    def tick() -> None:
        clock.set(T0 + timedelta(minutes=next(minutes)))

    world = build_world(app)
    patients = []
    for i in range(3):
        tick()
        registration = app.register_patient(world.designee.id, f"Patient Number{i}", "1990-01-01")
        patients.append(registration.patient.id)
    tick()
    with pytest.raises(NotPermitted):
        app.register_prescriber(world.pharmacist.id, "Dr Not Allowed", next_npi())
    tick()
    app.checkpoint_audit(world.admin.id)
    tick()
    app.register_patient(world.designee.id, "Patient After Checkpoint", "1991-02-03")
    tick()
    app.add_patient_external_id(world.designee.id, patients[0], "MRN", "A-1234")
    tick()
    app.suspend_prescriber(world.admin.id, world.prescriber.id)
    tick()
    with pytest.raises(NotPermitted):
        app.checkpoint_audit(world.designee.id)
    tick()
    app.checkpoint_audit(world.admin.id)
    tick()
    app.reinstate_prescriber(world.admin.id, world.prescriber.id)
    tick()
    app.register_patient(world.designee.id, "Patient Late", "1985-05-05")
    return world.admin.id


def read_trail(engine: Engine, source: str, admin: str) -> Trail:
    with engine.connect() as conn:
        events = tuple(
            dict(row._mapping) for row in conn.execute(select(EVENTS).order_by(EVENTS.c.id))
        )
        subjects = tuple(
            (str(s), int(e))
            for s, e in conn.execute(select(SUBJECTS.c.subject, SUBJECTS.c.event_id))
        )
        heads = {str(r.chain_id): dict(r._mapping) for r in conn.execute(select(HEADS))}
    return Trail(source, admin, events, subjects, heads)


def clone_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy, WAL contents included."""
    with closing(sqlite3.connect(src)) as s, closing(sqlite3.connect(dst)) as d:
        s.backup(d)


def table_dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in (EVENTS, SUBJECTS, HEADS)
        }


# --- tampering ---------------------------------------------------------------------------------


def _foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = OFF")
    cursor.close()


@contextmanager
def tampering(url: str) -> Iterator[Connection]:
    """A transaction in which the append-only triggers and foreign keys do not apply."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        # Registered after make_engine's own listener, so it runs after it.
        event.listen(engine, "connect", _foreign_keys_off)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                yield conn
            else:
                triggers = conn.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
                ).all()
                assert len(triggers) >= 5, triggers
                for name, _ in triggers:
                    conn.execute(text(f'DROP TRIGGER "{name}"'))
                yield conn
                for _, sql in triggers:
                    conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def _changed(result: Any, expected: int = 1) -> None:
    assert result.rowcount == expected, f"tampering changed {result.rowcount} rows"


def _reinsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Replace events by id with the given contents (used for swaps)."""
    ids = [r["id"] for r in rows]
    _changed(conn.execute(delete(EVENTS).where(EVENTS.c.id.in_(ids))), len(ids))
    conn.execute(insert(EVENTS), rows)


def forged_event(
    source: dict[str, Any], event_id: int, chain_id: str, seq: int, prev: str, **changes: Any
) -> dict[str, Any]:
    """A copy of ``source`` placed at (chain_id, seq) with a hash that is correct for it."""
    subjects = [] if chain_id == SYSTEM_CHAIN else [chain_id]
    row = {
        **source,
        "id": event_id,
        "chain_id": chain_id,
        "chain_seq": seq,
        "subjects": subjects,
        "prev_hash": prev,
        **changes,
    }
    record = AuditRecord(
        **{
            **{k: row[k] for k in EVENT_COLUMNS if k != "hash"},
            "subjects": tuple(row["subjects"]),
            "reason_codes": tuple(row["reason_codes"]),
        }
    )
    row["hash"] = compute_hash(record)
    return row


@dataclass(frozen=True)
class Tamper:
    """One tampering: what it does, and the chains a verifier may blame (None: any chain)."""

    description: str
    apply: Callable[[Connection], None]
    chains: frozenset[str] | None


def modify_event(ev: dict[str, Any], column: str, value: Any) -> Tamper:
    def apply(conn: Connection) -> None:
        _changed(
            conn.execute(update(EVENTS).where(EVENTS.c.id == ev["id"]).values({column: value}))
        )

    chains = {ev["chain_id"]} | ({value} if column == "chain_id" else set())
    return Tamper(f"set {column}={value!r} on event {ev['id']}", apply, frozenset(chains))


def delete_event(ev: dict[str, Any]) -> Tamper:
    def apply(conn: Connection) -> None:
        conn.execute(delete(SUBJECTS).where(SUBJECTS.c.event_id == ev["id"]))
        _changed(conn.execute(delete(EVENTS).where(EVENTS.c.id == ev["id"])))

    where = f"{ev['chain_id']}#{ev['chain_seq']}"
    return Tamper(f"delete event {ev['id']} ({where})", apply, frozenset({ev["chain_id"]}))


def insert_event(row: dict[str, Any], what: str) -> Tamper:
    def apply(conn: Connection) -> None:
        conn.execute(insert(EVENTS).values(row))
        for subject in row["subjects"]:
            conn.execute(insert(SUBJECTS).values(subject=subject, event_id=row["id"]))

    where = f"{row['chain_id']}#{row['chain_seq']}"
    return Tamper(
        f"insert {what} as event {row['id']} ({where})", apply, frozenset({row["chain_id"]})
    )


def swap_contents(a: dict[str, Any], b: dict[str, Any], with_index: bool) -> Tamper:
    def apply(conn: Connection) -> None:
        _reinsert(conn, [{**b, "id": a["id"]}, {**a, "id": b["id"]}])
        if with_index:
            conn.execute(delete(SUBJECTS).where(SUBJECTS.c.event_id.in_([a["id"], b["id"]])))
            for target, content in ((a, b), (b, a)):
                for subject in content["subjects"]:
                    conn.execute(insert(SUBJECTS).values(subject=subject, event_id=target["id"]))

    also = " and their subject index" if with_index else ""
    return Tamper(
        f"swap contents of events {a['id']} and {b['id']}{also}",
        apply,
        frozenset({a["chain_id"], b["chain_id"]}),
    )


def swap_seq(a: dict[str, Any], b: dict[str, Any]) -> Tamper:
    def apply(conn: Connection) -> None:
        _reinsert(conn, [{**a, "chain_seq": b["chain_seq"]}, {**b, "chain_seq": a["chain_seq"]}])

    return Tamper(
        f"swap chain_seq of events {a['id']} and {b['id']} in {a['chain_id']}",
        apply,
        frozenset({a["chain_id"]}),
    )


def modify_head(chain_id: str, column: str, value: Any) -> Tamper:
    def apply(conn: Connection) -> None:
        _changed(
            conn.execute(update(HEADS).where(HEADS.c.chain_id == chain_id).values({column: value}))
        )

    return Tamper(f"set head {column}={value!r} of {chain_id}", apply, frozenset({chain_id}))


def delete_head(chain_id: str) -> Tamper:
    def apply(conn: Connection) -> None:
        _changed(conn.execute(delete(HEADS).where(HEADS.c.chain_id == chain_id)))

    return Tamper(f"delete head of {chain_id}", apply, frozenset({chain_id}))


def insert_head(chain_id: str, seq: int, digest: str, event_id: int) -> Tamper:
    def apply(conn: Connection) -> None:
        conn.execute(
            insert(HEADS).values(
                chain_id=chain_id,
                last_seq=seq,
                last_hash=digest,
                last_event_id=event_id,
                checkpointed_seq=0,
            )
        )

    return Tamper(f"insert head for {chain_id!r}", apply, frozenset({chain_id}))


def delete_subject_row(subject: str, event: dict[str, Any]) -> Tamper:
    def apply(conn: Connection) -> None:
        _changed(
            conn.execute(
                delete(SUBJECTS).where(
                    SUBJECTS.c.subject == subject, SUBJECTS.c.event_id == event["id"]
                )
            )
        )

    return Tamper(
        f"delete index row ({subject}, {event['id']})", apply, frozenset({event["chain_id"]})
    )


def insert_subject_row(subject: str, event_id: int, chains: frozenset[str] | None) -> Tamper:
    def apply(conn: Connection) -> None:
        conn.execute(insert(SUBJECTS).values(subject=subject, event_id=event_id))

    return Tamper(f"insert index row ({subject!r}, {event_id})", apply, chains)


def rename_subject_row(subject: str, event: dict[str, Any], new: str) -> Tamper:
    def apply(conn: Connection) -> None:
        _changed(
            conn.execute(
                update(SUBJECTS)
                .where(SUBJECTS.c.subject == subject, SUBJECTS.c.event_id == event["id"])
                .values(subject=new)
            )
        )

    return Tamper(
        f"rename index row ({subject}, {event['id']}) to {new!r}",
        apply,
        frozenset({event["chain_id"]}),
    )


# --- strategies --------------------------------------------------------------------------------

TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16
)
NONEMPTY_TEXT = TEXT.filter(bool)
CHAIN_NAMES = (
    st.from_regex(r"(PAT|PRS|DSG|ADM)-[0-9A-Z]{8}|system2?", fullmatch=True) | NONEMPTY_TEXT
)
HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def _json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values (True and 1 differ in JSON though Python calls them equal)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@st.composite
def new_payload(draw: st.DrawFn, old: dict[str, Any]) -> dict[str, Any]:
    how = draw(st.sampled_from(["replace", "set"] + (["drop"] if old else [])))
    if how == "replace":
        new = draw(st.dictionaries(TEXT, JSON_VALUES, max_size=4))
    elif how == "set":
        key = draw(st.sampled_from(sorted(old)) | TEXT) if old else draw(TEXT)
        new = {**old, key: draw(JSON_VALUES)}
    else:
        key = draw(st.sampled_from(sorted(old)))
        new = {k: v for k, v in old.items() if k != key}
    return new


@st.composite
def new_list(draw: st.DrawFn, old: list[str], known: list[str]) -> list[str]:
    element = TEXT | st.sampled_from(known)
    options = [st.lists(element, max_size=4)]
    if len(old) > 1:
        options.append(st.permutations(old).map(list))
    if old:
        options.append(st.just(old[:-1]))
        options.append(st.just([*old, old[0]]))
    options.append(st.builds(lambda extra: [*old, extra], element))
    return draw(st.one_of(options))


def new_value(column: str, ev: dict[str, Any], trail: Trail) -> st.SearchStrategy[Any]:
    """A value for ``column`` of ``ev`` that differs from the stored one and fits the schema."""
    old = ev[column]
    pairs = {(e["chain_id"], e["chain_seq"]) for e in trail.events}
    hashes = [e["hash"] for e in trail.events]
    actors = sorted({e["actor_id"] for e in trail.events if e["actor_id"]})
    strategy: st.SearchStrategy[Any]
    if column == "id":
        ids = {e["id"] for e in trail.events}
        strategy = st.integers(-5, 10_000).filter(lambda i: i not in ids)
    elif column == "chain_id":
        strategy = (st.sampled_from(trail.chains) | CHAIN_NAMES).filter(
            lambda c: (c, ev["chain_seq"]) not in pairs
        )
    elif column == "chain_seq":
        strategy = st.integers(-3, 60).filter(lambda s: (ev["chain_id"], s) not in pairs)
    elif column == "occurred_at":
        delta = st.integers(-(10**12), 10**12).filter(bool)
        strategy = delta.map(lambda us: old + timedelta(microseconds=us))
    elif column in {"actor_id", "on_behalf_of", "state_before", "state_after", "ruleset_id"}:
        strategy = st.none() | TEXT | st.sampled_from(actors)
    elif column == "action":
        known = sorted({e["action"] for e in trail.events})
        strategy = NONEMPTY_TEXT | st.sampled_from(known)
    elif column == "outcome":
        strategy = NONEMPTY_TEXT | st.sampled_from(["ok", "refused", "OK", "ok "])
    elif column == "subjects":
        strategy = new_list(old, trail.chains)
    elif column == "reason_codes":
        strategy = new_list(old, [rc.ACTOR_NOT_PERMITTED, rc.ACTOR_INACTIVE, rc.OUT_OF_SCOPE])
    elif column == "payload":
        strategy = new_payload(old)
    elif column == "prev_hash":
        strategy = HEX64 | st.sampled_from([*hashes, GENESIS])
    elif column == "hash":
        strategy = HEX64.filter(lambda h: h not in hashes)
    else:  # pragma: no cover - a new column must be given a strategy here
        raise AssertionError(f"no strategy for column {column}")
    return strategy.filter(lambda v: not _json_equal(v, old))


TAMPER_KINDS = [
    "modify",
    "modify",
    "modify",
    "delete",
    "forge",
    "swap_contents",
    "swap_seq",
    "head",
    "index",
]


@st.composite
def tampers(draw: st.DrawFn, trail: Trail) -> Tamper:
    kind = draw(st.sampled_from(TAMPER_KINDS))
    events = list(trail.events)
    max_id = max(e["id"] for e in events)
    if kind == "modify":
        ev = draw(st.sampled_from(events))
        column = draw(st.sampled_from(EVENT_COLUMNS))
        return modify_event(ev, column, draw(new_value(column, ev, trail)))
    if kind == "delete":
        return delete_event(draw(st.sampled_from(events)))
    if kind == "forge":
        source = draw(st.sampled_from(events))
        fresh = draw(st.booleans())
        if fresh:
            chain = draw(CHAIN_NAMES.filter(lambda c: c not in trail.heads))
            seq, prev = 1, GENESIS
        else:
            chain = draw(st.sampled_from(trail.chains))
            head = trail.heads[chain]
            seq = head["last_seq"] + draw(st.sampled_from([1, 1, 1, 2]))
            prev = head["last_hash"]
        event_id = max_id + draw(st.sampled_from([1, 1, 50]))
        change = draw(st.sampled_from(["none", "payload", "actor_id", "action"]))
        changes: dict[str, Any] = {}
        if change == "payload":
            changes["payload"] = draw(new_payload(source["payload"]))
        elif change != "none":
            changes[change] = draw(new_value(change, source, trail))
        row = forged_event(source, event_id, chain, seq, prev, **changes)
        if not draw(st.booleans()):
            row["hash"] = draw(HEX64.filter(lambda h: h not in {e["hash"] for e in events}))
        what = f"copy of event {source['id']} changing {change}"
        return insert_event(row, what)
    if kind == "swap_contents":
        a, b = draw(
            st.lists(st.sampled_from(events), min_size=2, max_size=2, unique_by=lambda e: e["id"])
        )
        return swap_contents(a, b, draw(st.booleans()))
    if kind == "swap_seq":
        long_chains = [c for c in trail.chains if len(trail.chain(c)) >= 2]
        chain = trail.chain(draw(st.sampled_from(long_chains)))
        a, b = draw(
            st.lists(st.sampled_from(chain), min_size=2, max_size=2, unique_by=lambda e: e["id"])
        )
        return swap_seq(a, b)
    if kind == "head":
        chain = draw(st.sampled_from(trail.chains))
        head = trail.heads[chain]
        what = draw(st.sampled_from(["last_seq", "last_hash", "delete", "insert"]))
        if what == "last_seq":
            return modify_head(
                chain, "last_seq", draw(st.integers(0, 60).filter(lambda s: s != head["last_seq"]))
            )
        if what == "last_hash":
            hashes = [e["hash"] for e in events] + [GENESIS]
            value = draw((HEX64 | st.sampled_from(hashes)).filter(lambda h: h != head["last_hash"]))
            return modify_head(chain, "last_hash", value)
        if what == "delete":
            return delete_head(chain)
        new_chain = draw(CHAIN_NAMES.filter(lambda c: c not in trail.heads))
        source = draw(st.sampled_from(events))
        return insert_head(new_chain, source["chain_seq"], source["hash"], source["id"])
    # index
    what = draw(st.sampled_from(["delete", "insert", "insert_unknown", "rename"]))
    if what in {"delete", "rename"}:
        subject, event_id = draw(st.sampled_from(sorted(trail.subjects)))
        ev = trail.event(event_id)
        if what == "delete":
            return delete_subject_row(subject, ev)
        new = draw(
            (NONEMPTY_TEXT | st.sampled_from(trail.chains)).filter(
                lambda s: s not in ev["subjects"]
            )
        )
        return rename_subject_row(subject, ev, new)
    if what == "insert":
        ev = draw(st.sampled_from(events))
        new = draw(
            (NONEMPTY_TEXT | st.sampled_from(trail.chains)).filter(
                lambda s: s not in ev["subjects"]
            )
        )
        return insert_subject_row(new, ev["id"], frozenset({ev["chain_id"]}))
    unknown = draw(
        st.integers(-5, max_id + 20).filter(lambda i: i not in {e["id"] for e in events})
    )
    return insert_subject_row(draw(st.sampled_from(trail.chains)), unknown, None)


def _note(message: str) -> None:
    if currently_in_test_context():
        note(message)


def assert_detected(url: str, admin: str, tamper: Tamper) -> None:
    _note(tamper.description)
    with Compliance.open(url, FixedClock(T0 + timedelta(days=1))) as app:
        before = app.verify_audit(admin)
        assert before.ok, before.first_break
        with tampering(url) as conn:
            tamper.apply(conn)
        report = app.verify_audit(admin)
    _note(f"report: {report.to_dict()}")
    assert not report.ok, f"not detected: {tamper.description}"
    assert report.first_break is not None
    assert report.first_break.problem
    if tamper.chains is not None:
        assert report.first_break.chain_id in tamper.chains, (tamper.description, report)


# --- fixtures: one untampered trail per backend, copied for every example ----------------------


@pytest.fixture(scope="module")
def sqlite_trail(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Trail:
    path = tmp_path_factory.mktemp("trail") / "trail.db"
    clone_sqlite(sqlite_template, path)
    clock = FixedClock(T0)
    with Compliance.open(f"sqlite:///{path}", clock) as app:
        admin = build_trail(app, clock)
        assert app.verify_audit(admin).ok
        return read_trail(app.engine, str(path), admin)


@pytest.fixture(scope="module")
def pg_trail(pg_template: str) -> Iterator[Trail]:
    name = create_pg_database(template=pg_template)
    try:
        clock = FixedClock(T0)
        with Compliance.open(_pg_url(name), clock) as app:
            admin = build_trail(app, clock)
            assert app.verify_audit(admin).ok
            trail = read_trail(app.engine, name, admin)
        yield trail
    finally:
        drop_pg_database(name)


@contextmanager
def sqlite_copy(trail: Trail) -> Iterator[str]:
    path = Path(trail.source).with_name(f"example-{uuid.uuid4().hex}.db")
    clone_sqlite(Path(trail.source), path)
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


@contextmanager
def pg_copy(trail: Trail) -> Iterator[str]:
    name = create_pg_database(template=trail.source)
    try:
        yield _pg_url(name)
    finally:
        drop_pg_database(name)


# --- property: any single tampering is detected -----------------------------------------------


def test_trail_shape(sqlite_trail: Trail) -> None:
    """The trail the property runs on has what the property needs to be meaningful."""
    actions = [e["action"] for e in sqlite_trail.events]
    assert len(sqlite_trail.events) == 20
    checkpoints = [e["id"] for e in sqlite_trail.chain(SYSTEM_CHAIN)]
    assert len(checkpoints) == 2
    assert actions.count(CHECKPOINT_ACTION) == 3  # two checkpoints and one refused attempt
    assert 1 < checkpoints[0] < checkpoints[1] < len(actions)
    assert sum(e["outcome"] == "refused" for e in sqlite_trail.events) == 2
    checkpointed = [h for h in sqlite_trail.heads.values() if h["checkpointed_seq"] > 0]
    moved_since = [h for h in checkpointed if h["checkpointed_seq"] < h["last_seq"]]
    assert checkpointed
    assert moved_since


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_any_single_tampering_is_detected_sqlite(sqlite_trail: Trail, data: st.DataObject) -> None:
    tamper = data.draw(tampers(sqlite_trail), label="tamper")
    with sqlite_copy(sqlite_trail) as url:
        assert_detected(url, sqlite_trail.admin, tamper)


@pytest.mark.postgres
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_any_single_tampering_is_detected_postgres(pg_trail: Trail, data: st.DataObject) -> None:
    tamper = data.draw(tampers(pg_trail), label="tamper")
    with pg_copy(pg_trail) as url:
        assert_detected(url, pg_trail.admin, tamper)


# --- named tamperings, on both backends --------------------------------------------------------


def _last_event_after_checkpoint(trail: Trail) -> dict[str, Any]:
    """The last event of a chain that has moved since its last checkpoint."""
    for chain, head in sorted(trail.heads.items()):
        if chain != SYSTEM_CHAIN and 0 < head["checkpointed_seq"] < head["last_seq"]:
            return trail.chain(chain)[-1]
    raise AssertionError("no chain moved after a checkpoint")


def _checkpointed_chain(trail: Trail) -> list[dict[str, Any]]:
    """A chain of two or more events, all of them behind a checkpoint."""
    for chain, head in sorted(trail.heads.items()):
        if chain != SYSTEM_CHAIN and head["checkpointed_seq"] == head["last_seq"] >= 2:
            return trail.chain(chain)
    raise AssertionError("no fully checkpointed chain of two events")


def _truncate_behind_checkpoint(trail: Trail) -> Tamper:
    """Delete a chain's checkpointed last event and rewind its head to match."""
    chain = _checkpointed_chain(trail)
    last, before = chain[-1], chain[-2]

    def apply(conn: Connection) -> None:
        delete_event(last).apply(conn)
        conn.execute(
            update(HEADS)
            .where(HEADS.c.chain_id == last["chain_id"])
            .values(
                last_seq=before["chain_seq"], last_hash=before["hash"], last_event_id=before["id"]
            )
        )

    return Tamper("truncate a checkpointed chain and rewind its head", apply, None)


def _rewrite_checkpointed_chain(trail: Trail) -> Tamper:
    """Alter a checkpointed event and recompute every hash after it, and the head: only the
    checkpoint's record of the chain can catch this."""
    chain = _checkpointed_chain(trail)

    def apply(conn: Connection) -> None:
        prev = GENESIS
        rewritten = []
        for ev in chain:
            changes = {"payload": {**ev["payload"], "altered": True}} if ev is chain[0] else {}
            row = forged_event(
                ev,
                ev["id"],
                ev["chain_id"],
                ev["chain_seq"],
                prev,
                subjects=ev["subjects"],
                **changes,
            )
            rewritten.append(row)
            prev = row["hash"]
        _reinsert(conn, rewritten)
        conn.execute(
            update(HEADS).where(HEADS.c.chain_id == chain[0]["chain_id"]).values(last_hash=prev)
        )

    return Tamper("rewrite a checkpointed chain with fresh hashes", apply, None)


def _forge_at_end(trail: Trail) -> Tamper:
    chain = _last_event_after_checkpoint(trail)["chain_id"]
    head = trail.heads[chain]
    source = trail.chain(chain)[-1]
    row = forged_event(
        source,
        max(e["id"] for e in trail.events) + 1,
        chain,
        head["last_seq"] + 1,
        head["last_hash"],
        payload={**source["payload"], "forged": True},
    )
    return insert_event(row, "a well-formed event with a correct hash")


def _swap_first_two(trail: Trail, *, contents: bool) -> Tamper:
    chain = next(trail.chain(c) for c in trail.chains if len(trail.chain(c)) >= 2)
    return swap_contents(chain[0], chain[1], True) if contents else swap_seq(chain[0], chain[1])


NAMED_TAMPERS: dict[str, Callable[[Trail], Tamper]] = {
    "delete the last event of a chain": lambda t: delete_event(_last_event_after_checkpoint(t)),
    "delete the only event of a chain": lambda t: delete_event(
        next(t.chain(c)[0] for c in t.chains if len(t.chain(c)) == 1)
    ),
    "delete an event before a checkpoint": lambda t: delete_event(_checkpointed_chain(t)[0]),
    "delete the last checkpoint": lambda t: delete_event(t.chain(SYSTEM_CHAIN)[-1]),
    "truncate behind a checkpoint, head rewound": _truncate_behind_checkpoint,
    "rewrite a checkpointed chain, hashes recomputed": _rewrite_checkpointed_chain,
    "append a forged event with a correct hash": _forge_at_end,
    "swap the contents of two events": lambda t: _swap_first_two(t, contents=True),
    "swap the chain_seq of two events": lambda t: _swap_first_two(t, contents=False),
    "change one payload value": lambda t: modify_event(
        t.events[8], "payload", {**t.events[8]["payload"], "name": "Another Name"}
    ),
    "drop a reason code from a refusal": lambda t: modify_event(
        next(e for e in t.events if e["outcome"] == "refused"), "reason_codes", []
    ),
}


@pytest.mark.parametrize("name", list(NAMED_TAMPERS))
def test_named_tampering_is_detected(db_url: str, name: str) -> None:
    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        admin = build_trail(app, clock)
        trail = read_trail(app.engine, db_url, admin)
    tamper = NAMED_TAMPERS[name](trail)
    assert_detected(db_url, admin, tamper)


# --- verification that cannot cope with malformed rows -----------------------------------------

MALFORMED = {
    "payload is a JSON array": ("payload", [1, 2]),
    "payload holds an integer beyond JSON's safe range": ("payload", {"n": 10**20}),
    "subjects is not a list": ("subjects", 5),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_tampering_is_reported_not_raised(db_url: str, name: str) -> None:
    column, value = MALFORMED[name]
    clock = FixedClock(T0)
    with Compliance.open(db_url, clock) as app:
        world = build_world(app)
        with tampering(db_url) as conn:
            conn.execute(update(EVENTS).where(EVENTS.c.id == 2).values({column: value}))
        report = app.verify_audit(world.admin.id)
    assert not report.ok
    assert report.first_break is not None
    assert report.first_break.event_id == 2


# --- the triggers ------------------------------------------------------------------------------

FORBIDDEN = [
    "UPDATE audit_events SET action = 'prescriber.delete' WHERE id = 2",
    "UPDATE audit_events SET payload = '{}' WHERE action = 'audit.checkpoint'",
    "UPDATE audit_events SET hash = prev_hash",
    "DELETE FROM audit_events WHERE action = 'audit.checkpoint'",
    "DELETE FROM audit_events WHERE id = (SELECT MAX(id) FROM audit_events)",
    "DELETE FROM audit_events",
    "UPDATE audit_event_subjects SET subject = 'PAT-00000000' WHERE event_id = 2",
    "DELETE FROM audit_event_subjects WHERE event_id = 2",
    "DELETE FROM audit_event_subjects",
    "DELETE FROM audit_chain_heads WHERE chain_id = 'system'",
    "DELETE FROM audit_chain_heads",
]


def test_triggers_reject_changes_to_audit_rows(app: Compliance) -> None:
    """Each statement is tried in its own transaction against the same trail; one database per
    backend keeps this fast, and the dump comparison shows nothing slipped through."""
    admin = build_world(app).admin.id
    app.checkpoint_audit(admin)
    before = table_dump(app.engine)
    for statement in FORBIDDEN:
        with pytest.raises(DBAPIError, match="append-only"), app.engine.begin() as conn:
            conn.execute(text(statement))
        assert table_dump(app.engine) == before, statement
    assert app.verify_audit(admin).ok


def test_appends_still_work_under_the_triggers(app: Compliance) -> None:
    """The triggers leave inserts and chain-head updates alone."""
    world = build_world(app)
    app.register_patient(world.designee.id, "Patient Under Triggers", "1990-01-01")
    app.suspend_prescriber(world.admin.id, world.prescriber.id)
    report = app.verify_audit(world.admin.id)
    assert report.ok, report.first_break
    assert report.events == 10


TRUNCATES = [
    "TRUNCATE audit_events CASCADE",
    "TRUNCATE audit_event_subjects",
    "TRUNCATE audit_events, audit_event_subjects",
    "TRUNCATE audit_event_subjects, audit_chain_heads",
]


@pytest.mark.postgres
def test_truncate_rejected_on_postgres(pg_url: str) -> None:
    with Compliance.open(pg_url, FixedClock(T0)) as app:
        admin = build_world(app).admin.id
        before = table_dump(app.engine)
        for statement in TRUNCATES:
            with pytest.raises(DBAPIError, match="append-only"), app.engine.begin() as conn:
                conn.execute(text(statement))
            assert table_dump(app.engine) == before, statement
        assert app.verify_audit(admin).ok


@pytest.mark.postgres
def test_truncate_of_chain_heads_rejected_on_postgres(pg_url: str) -> None:
    with Compliance.open(pg_url, FixedClock(T0)) as app:
        admin = build_world(app).admin.id
        before = table_dump(app.engine)
        with pytest.raises(DBAPIError, match="append-only"), app.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_chain_heads"))
        assert table_dump(app.engine) == before
        assert app.verify_audit(admin).ok


# --- verification, checkpoints, chains and the log on an untampered trail ---------------------


def test_untampered_trail_verifies_with_correct_counts(app: Compliance, clock: FixedClock) -> None:
    admin = build_trail(app, clock)
    report = app.verify_audit(admin)
    assert report.ok, report.first_break
    assert report.first_break is None
    assert (report.events, report.chains, report.checkpoints) == (20, 11, 2)
    with app.engine.connect() as conn:
        stored = conn.execute(select(EVENTS.c.chain_id)).scalars().all()
    assert report.events == len(stored) == app.audit_count(admin)
    assert report.chains == len(set(stored))
    # Verification reads only: it adds no event.
    assert app.verify_audit(admin).events == 20
    assert app.audit_count(admin) == 20


def test_empty_trail_after_initialize_verifies(app: Compliance) -> None:
    admin = app.initialize("Ada Alone", training=True)
    report = app.verify_audit(admin.id)
    assert report.ok
    assert (report.events, report.chains, report.checkpoints) == (1, 1, 0)


def _checkpoint_events(app: Compliance, admin: str) -> list[AuditRecord]:
    return app.audit_log(admin, LogFilter(action=CHECKPOINT_ACTION))


def test_checkpoint_records_only_chains_that_moved(app: Compliance, clock: FixedClock) -> None:
    world = build_world(app)
    admin = world.admin.id
    app.register_patient(world.designee.id, "Patient One", "1990-01-01")
    app.register_patient(world.designee.id, "Patient Two", "1990-01-01")
    with app.engine.connect() as conn:
        chains_now = set(conn.execute(select(HEADS.c.chain_id)).scalars())

    first = app.checkpoint_audit(admin)
    assert first.chains == len(chains_now) == 7
    second = app.checkpoint_audit(admin)
    assert second.chains == 0
    assert second.digest != first.digest

    clock.set(T0 + timedelta(hours=1))
    patient = app.register_patient(world.designee.id, "Patient Three", "1990-01-01").patient.id
    app.suspend_prescriber(admin, world.prescriber.id)
    third = app.checkpoint_audit(admin)
    assert third.chains == 2

    with pytest.raises(NotPermitted):
        app.deactivate_pharmacy(world.pharmacist.id, world.pharmacy.id)
    fourth = app.checkpoint_audit(admin)
    assert fourth.chains == 1

    checkpoints = _checkpoint_events(app, admin)
    assert [c.id for c in checkpoints] == [
        first.event_id,
        second.event_id,
        third.event_id,
        fourth.event_id,
    ]
    assert all(c.chain_id == SYSTEM_CHAIN and c.subjects == () for c in checkpoints)
    assert [c.chain_seq for c in checkpoints] == [1, 2, 3, 4]
    # Each checkpoint names the previous digest; the digests form their own chain.
    assert checkpoints[0].payload["previous"] == GENESIS
    for earlier, later in itertools.pairwise(checkpoints):
        assert later.payload["previous"] == earlier.payload["digest"]
    assert [c.payload["digest"] for c in checkpoints] == [
        first.digest,
        second.digest,
        third.digest,
        fourth.digest,
    ]
    # The third recorded exactly the two moved chains at their current heads.
    with app.engine.connect() as conn:
        heads = {
            r.chain_id: [r.last_seq, r.last_hash]
            for r in conn.execute(
                select(HEADS).where(HEADS.c.chain_id.in_([patient, world.prescriber.id]))
            )
        }
    assert checkpoints[2].payload["heads"] == heads
    assert set(checkpoints[3].payload["heads"]) == {world.pharmacy.id}
    assert set(checkpoints[0].payload["heads"]) == chains_now
    report = app.verify_audit(admin)
    assert report.ok, report.first_break
    assert report.checkpoints == 4


def test_refusals_are_recorded_with_their_reasons(app: Compliance) -> None:
    world = build_world(app)
    admin = world.admin.id
    prescribers_before = len(app.list_people(admin, "prescriber"))

    with pytest.raises(NotPermitted) as by_pharmacist:
        app.register_prescriber(world.pharmacist.id, "Dr Sneaky", next_npi())
    with pytest.raises(NotPermitted) as by_prescriber:
        app.deactivate_designee(world.prescriber.id, world.designee.id)

    assert len(app.list_people(admin, "prescriber")) == prescribers_before
    refused = app.audit_log(admin)
    refused = [e for e in refused if e.outcome == "refused"]
    assert len(refused) == 2
    first, second = refused

    assert first.action == "prescriber.register"
    assert first.actor_id == world.pharmacist.id
    assert first.reason_codes == by_pharmacist.value.reasons
    assert rc.ACTOR_NOT_PERMITTED in first.reason_codes
    assert first.subjects == (world.pharmacist.id,)
    assert first.chain_id == world.pharmacist.id
    assert first.payload["message"] == by_pharmacist.value.message

    assert second.action == "designee.deactivate"
    assert second.actor_id == world.prescriber.id
    assert second.reason_codes == by_prescriber.value.reasons
    assert rc.ACTOR_NOT_PERMITTED in second.reason_codes
    assert second.subjects == (world.designee.id,)
    assert second.chain_id == world.designee.id

    assert app.audit_log(admin, LogFilter(subject=world.designee.id))[-1].id == second.id
    assert app.verify_audit(admin).ok


def test_audit_log_filters(app: Compliance, clock: FixedClock) -> None:
    world = build_world(app)  # everything at T0
    admin = world.admin.id
    clock.set(T0 + timedelta(hours=1))
    a = app.register_patient(world.designee.id, "Patient Alpha", "1990-01-01").patient.id
    clock.set(T0 + timedelta(hours=2))
    b = app.register_patient(world.designee.id, "Patient Beta", "1990-01-01").patient.id
    with pytest.raises(NotPermitted):
        app.register_patient(world.pharmacist.id, "Patient Gamma", "1990-01-01")
    clock.set(T0 + timedelta(hours=3))
    app.add_patient_external_id(world.designee.id, a, "MRN", "A-77")

    def log(**kw: Any) -> list[AuditRecord]:
        f = LogFilter(**kw)
        records = app.audit_log(admin, f)
        if f.limit is None:
            assert app.audit_count(admin, f) == len(records)
        assert [r.id for r in records] == sorted(r.id for r in records)
        return records

    everything = log()
    assert len(everything) == 12

    assert [(e.action, e.chain_id) for e in log(subject=a)] == [
        ("patient.register", a),
        ("patient.update", a),
    ]
    assert [e.action for e in log(subject=b)] == ["patient.register"]
    # The subject index covers every subject an event names, not just the chain's.
    assert [e.action for e in log(subject=world.prescriber.id)] == [
        "prescriber.register",
        "prescriber.activate",
        "grant.create",
    ]
    assert [e.action for e in log(subject=world.pharmacy.id)] == [
        "pharmacy.register",
        "pharmacy.activate",
        "pharmacist.register",
    ]
    assert log(subject="PAT-NOBODY00") == []

    by_designee = log(actor=world.designee.id)
    assert [e.action for e in by_designee] == [
        "patient.register",
        "patient.register",
        "patient.update",
    ]
    assert all(e.actor_id == world.designee.id for e in by_designee)
    assert [e.outcome for e in log(actor=world.pharmacist.id)] == ["refused"]

    registrations = log(action="patient.register")
    assert [e.subjects for e in registrations] == [(a,), (b,), (world.pharmacist.id,)]
    assert [e.outcome for e in registrations] == ["ok", "ok", "refused"]

    assert [
        e.subjects for e in log(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2))
    ] == [(a,)]
    late = log(since=T0 + timedelta(hours=2))
    assert [e.action for e in late] == ["patient.register", "patient.register", "patient.update"]
    assert all(e.occurred_at >= T0 + timedelta(hours=2) for e in late)
    assert len(log(until=T0 + timedelta(hours=1))) == 8
    assert log(since=T0 + timedelta(hours=4)) == []

    assert [e.subjects for e in log(actor=world.designee.id, subject=b)] == [(b,)]
    assert [e.id for e in log(limit=3)] == [e.id for e in everything[:3]]


def test_writes_for_different_subjects_use_different_chains(app: Compliance) -> None:
    world = build_world(app)
    admin = world.admin.id
    a = app.register_patient(world.designee.id, "Patient Alpha", "1990-01-01").patient.id
    b = app.register_patient(world.designee.id, "Patient Beta", "1990-01-01").patient.id
    app.add_patient_external_id(world.designee.id, a, "MRN", "A-1")
    app.checkpoint_audit(admin)

    events = app.audit_log(admin)
    for e in events:
        assert e.chain_id == chain_for(e.subjects)
    a_chain = [e for e in events if e.chain_id == a]
    b_chain = [e for e in events if e.chain_id == b]
    assert [(e.chain_seq, e.action) for e in a_chain] == [
        (1, "patient.register"),
        (2, "patient.update"),
    ]
    assert [(e.chain_seq, e.action) for e in b_chain] == [(1, "patient.register")]
    assert a_chain[0].prev_hash == b_chain[0].prev_hash == GENESIS
    assert a_chain[1].prev_hash == a_chain[0].hash
    # B's event sits between A's two in global order, yet A's chain links past it.
    assert a_chain[0].id < b_chain[0].id < a_chain[1].id

    grant = next(e for e in events if e.action == "grant.create")
    assert grant.chain_id == world.designee.id
    assert grant.subjects == (world.designee.id, world.prescriber.id)
    checkpoint = events[-1]
    assert (checkpoint.chain_id, checkpoint.chain_seq) == (SYSTEM_CHAIN, 1)

    # Every chain numbers from 1 without gaps, and its head is its last event.
    chains: dict[str, list[AuditRecord]] = {}
    for e in events:
        chains.setdefault(e.chain_id, []).append(e)
    with app.engine.connect() as conn:
        heads = {r.chain_id: r for r in conn.execute(select(HEADS))}
    assert set(heads) == set(chains)
    for chain_id, chain in chains.items():
        assert [e.chain_seq for e in chain] == list(range(1, len(chain) + 1))
        assert (heads[chain_id].last_seq, heads[chain_id].last_hash) == (
            chain[-1].chain_seq,
            chain[-1].hash,
        )
        assert heads[chain_id].last_event_id == chain[-1].id
    assert app.verify_audit(admin).ok


def test_hash_covers_the_stored_content(app: Compliance) -> None:
    """Each stored hash is the digest of the stored event, recomputed independently."""
    world = build_world(app)
    for e in app.audit_log(world.admin.id):
        assert compute_hash(replace(e, hash="")) == e.hash
        assert len(e.hash) == 64
