"""Appending to, reading and verifying the audit trail in the database.

An append runs inside the caller's transaction, so an event is stored exactly when the change it
describes is. The chain head row is locked (``FOR UPDATE`` on PostgreSQL; SQLite's single writer
already serialises), which orders appends within one chain and leaves other chains free.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy import Sequence as DbSequence
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from compliance.audit.canonical import canonical
from compliance.audit.chain import (
    GENESIS,
    SYSTEM_CHAIN,
    AuditRecord,
    Break,
    ChainWalk,
    Claim,
    Head,
    WalkPart,
    checkpoint_digest,
    combined,
    compute_hash,
    format_instant,
)
from compliance.audit.rows import COLUMNS, canonical_of, dict_of
from compliance.audit.signing import Signer, fingerprint, signature_valid
from compliance.db import snapshots, workers
from compliance.db.base import UTCDateTime, table_of
from compliance.db.direct import Direct
from compliance.db.models import AuditChainHead, AuditEvent, AuditSubject

CHECKPOINT_ACTION = "audit.checkpoint"
ANNOTATIONS = "compliance.audit_annotations"


@dataclass(frozen=True)
class EventDraft:
    """What a caller says happened; the store adds ids, sequence and hashes."""

    action: str
    outcome: str
    actor_id: str | None
    subjects: Sequence[str] = ()
    on_behalf_of: str | None = None
    state_before: str | None = None
    state_after: str | None = None
    reason_codes: Sequence[str] = ()
    ruleset_id: str | None = None
    payload: Mapping[str, Any] | None = None


def chain_for(subjects: Sequence[str]) -> str:
    """The chain an event belongs to: its first subject's, or the system chain."""
    return subjects[0] if subjects else SYSTEM_CHAIN


_EVENTS = table_of(AuditEvent)
_SUBJECTS = table_of(AuditSubject)
_HEADS = table_of(AuditChainHead)
# Appends run on every write: Core statements, built once, cost a fraction of ORM objects and a
# flush, and store exactly the same values through the same column types.
_HEAD = (
    select(_HEADS.c.last_seq, _HEADS.c.last_hash)
    .where(_HEADS.c.chain_id == bindparam("chain"))
    .with_for_update()
)
_ADD_HEAD = insert(_HEADS)
# The statements of every append, run on the driver's cursor (``Direct``): the same values
# through the same column types, without SQLAlchemy's per-statement execution cost.
_READ_HEAD = Direct(_HEAD)
_LAST_ID = Direct(select(func.max(_EVENTS.c.id)))
_NEXT_ID = Direct(select(DbSequence("audit_event_id_seq").next_value()))
_ADD_EVENT = Direct(insert(_EVENTS), [c.key for c in _EVENTS.c])
_ADD_SUBJECT = Direct(insert(_SUBJECTS), ["subject", "event_id"])
_MOVE_HEAD = Direct(
    update(_HEADS)
    .where(_HEADS.c.chain_id == bindparam("chain"))
    .values(
        last_seq=bindparam("seq"), last_hash=bindparam("digest"), last_event_id=bindparam("event")
    )
)


def _next_event_id(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        return int(_NEXT_ID.scalar(conn, {}))
    return int(_LAST_ID.scalar(conn, {}) or 0) + 1


def append(session: Session, draft: EventDraft, at: datetime) -> AuditRecord:
    # Pending ORM changes reach the database before the event that describes them.
    session.flush()
    conn = session.connection()
    chain_id = chain_for(draft.subjects)
    head = _READ_HEAD.first(conn, {"chain": chain_id})
    seq, prev = (head[0], head[1]) if head else (0, GENESIS)
    subjects = tuple(dict.fromkeys(draft.subjects))
    # A session may carry notes every event must record (e.g. a simulated clock).
    notes = session.info.get(ANNOTATIONS) or {}
    record = AuditRecord(
        id=_next_event_id(conn),
        chain_id=chain_id,
        chain_seq=seq + 1,
        occurred_at=at,
        actor_id=draft.actor_id,
        on_behalf_of=draft.on_behalf_of,
        action=draft.action,
        outcome=draft.outcome,
        subjects=subjects,
        state_before=draft.state_before,
        state_after=draft.state_after,
        reason_codes=tuple(draft.reason_codes),
        ruleset_id=draft.ruleset_id,
        payload={**(draft.payload or {}), **notes},
        prev_hash=prev,
    )
    digest = compute_hash(record)
    _ADD_EVENT.run(
        conn,
        {
            "id": record.id,
            "chain_id": chain_id,
            "chain_seq": record.chain_seq,
            "occurred_at": at,
            "actor_id": record.actor_id,
            "on_behalf_of": record.on_behalf_of,
            "action": record.action,
            "outcome": record.outcome,
            "subjects": list(subjects),
            "state_before": record.state_before,
            "state_after": record.state_after,
            "reason_codes": list(record.reason_codes),
            "ruleset_id": record.ruleset_id,
            "payload": dict(record.payload),
            "prev_hash": prev,
            "hash": digest,
        },
    )
    for subject in subjects:
        _ADD_SUBJECT.run(conn, {"subject": subject, "event_id": record.id})
    if head is None:
        conn.execute(
            _ADD_HEAD,
            {
                "chain_id": chain_id,
                "last_seq": record.chain_seq,
                "last_hash": digest,
                "last_event_id": record.id,
                "checkpointed_seq": 0,
            },
        )
    else:
        _MOVE_HEAD.run(
            conn,
            {"chain": chain_id, "seq": record.chain_seq, "digest": digest, "event": record.id},
        )
    return AuditRecord(**{**record.__dict__, "hash": digest})


def _as_tuple(value: object) -> tuple[Any, ...]:
    """Stored lists as tuples; a tampered non-list is kept whole so its hash simply fails."""
    return tuple(value) if isinstance(value, list) else (value,)


def to_record(row: Any) -> AuditRecord:
    """An event as hashed, from an ``AuditEvent`` or a Core row of its table (same names)."""
    return AuditRecord(
        id=row.id,
        chain_id=row.chain_id,
        chain_seq=row.chain_seq,
        occurred_at=row.occurred_at,
        actor_id=row.actor_id,
        on_behalf_of=row.on_behalf_of,
        action=row.action,
        outcome=row.outcome,
        subjects=_as_tuple(row.subjects),
        state_before=row.state_before,
        state_after=row.state_after,
        reason_codes=_as_tuple(row.reason_codes),
        ruleset_id=row.ruleset_id,
        payload=row.payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


@dataclass(frozen=True)
class Checkpoint:
    """A signed (or unsigned) statement of every chain's head at one instant: what a later
    verification compares the trail against to detect truncation or rewriting."""

    event_id: int
    chains: int
    digest: str
    occurred_at: datetime
    #: The signed statement, as published: ``{"statement", "signature", "public_key"}``.
    signed: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint as JSON data, as stored and as a verifier reads it."""
        statement = self.signed["statement"]
        return {
            "event_id": self.event_id,
            "chains": self.chains,
            "digest": self.digest,
            "at": self.occurred_at.isoformat(),
            "number": statement["number"],
            "events": statement["events"],
            "heads": statement["heads"],
            "key": statement["key"],
        }


SIGNED_FORMAT = "compliance-audit-checkpoint/1"
#: Key of the PostgreSQL advisory lock that lets one checkpoint run at a time.
CHECKPOINT_LOCK = 0x636F6D706C6961


def canonical_json(value: Mapping[str, Any]) -> bytes:
    return canonical(dict(value))


def signed_ref(doc: Mapping[str, Any]) -> str:
    """What the next signed checkpoint names as its predecessor."""
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def _binary(session: Session) -> str:
    """The collation that orders chain ids as Python's ``sorted`` does (by code point)."""
    return "C" if session.get_bind().dialect.name == "postgresql" else "BINARY"


def covered_heads(session: Session, batch: int = 2000) -> tuple[str, int, int]:
    """Digest over every chain's checkpointed (chain, sequence, hash), sorted by chain; with the
    number of events and chains covered. Streamed: memory does not grow with the chains."""
    joined = _HEADS.outerjoin(
        _EVENTS,
        and_(
            _EVENTS.c.chain_id == _HEADS.c.chain_id,
            _EVENTS.c.chain_seq == _HEADS.c.checkpointed_seq,
        ),
    )
    rows = session.execute(
        select(_HEADS.c.chain_id, _HEADS.c.checkpointed_seq, _EVENTS.c.hash)
        .select_from(joined)
        .where(_HEADS.c.checkpointed_seq > 0, _HEADS.c.chain_id != SYSTEM_CHAIN)
        .order_by(_HEADS.c.chain_id.collate(_binary(session))),
        execution_options={"yield_per": batch},
    )
    digest = hashlib.sha256(b"compliance-heads/1")
    events = chains = 0
    for chain, seq, event_hash in rows:
        digest.update(f"\n{chain}\t{seq}\t{event_hash or '-'}".encode())
        events += int(seq)
        chains += 1
    return digest.hexdigest(), events, chains


def _last_signed(session: Session) -> Mapping[str, Any] | None:
    payloads = session.execute(
        select(AuditEvent.payload)
        .where(AuditEvent.chain_id == SYSTEM_CHAIN, AuditEvent.action == CHECKPOINT_ACTION)
        .order_by(AuditEvent.chain_seq.desc())
    ).scalars()
    for payload in payloads:
        if isinstance(payload, dict) and isinstance(payload.get("signed"), dict):
            signed: Mapping[str, Any] = payload["signed"]
            return signed
    return None


def checkpoint(session: Session, actor_id: str, at: datetime, signer: Signer) -> Checkpoint:
    """Record the heads of every chain that moved since the previous checkpoint, and sign a
    statement committing to the head of every chain, the event count and the previous one."""
    if session.get_bind().dialect.name == "postgresql":
        # Two checkpoints at once would both extend the same predecessor: one at a time.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK})
    system = session.execute(_HEAD, {"chain": SYSTEM_CHAIN}).one_or_none()
    system_seq = int(system.last_seq) if system else 0
    system_head: list[object] = [system_seq, system.last_hash if system else GENESIS]
    moved = (
        session.execute(
            select(AuditChainHead)
            .where(AuditChainHead.last_seq != AuditChainHead.checkpointed_seq)
            .where(AuditChainHead.chain_id != SYSTEM_CHAIN)
            .order_by(AuditChainHead.chain_id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    last = session.execute(
        select(AuditEvent.payload)
        .where(AuditEvent.chain_id == SYSTEM_CHAIN, AuditEvent.action == CHECKPOINT_ACTION)
        .order_by(AuditEvent.chain_seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    previous = str(last["digest"]) if last else GENESIS
    heads = {h.chain_id: (h.last_seq, h.last_hash) for h in moved}
    digest = checkpoint_digest(((c, s, d) for c, (s, d) in heads.items()), previous)
    for h in moved:
        h.checkpointed_seq = h.last_seq
    session.flush()
    heads_digest, events, chains = covered_heads(session)
    prior = _last_signed(session)
    public_key = signer.public_key
    statement = {
        "format": SIGNED_FORMAT,
        "number": int(prior["statement"]["number"]) + 1 if prior else 1,
        "previous": signed_ref(prior) if prior else GENESIS,
        "at": format_instant(at),
        "heads": heads_digest,
        "chains": chains + (1 if system_seq else 0),
        "events": events + system_seq,
        "system": system_head,
        "key": fingerprint(public_key),
    }
    signed = {
        "statement": statement,
        "signature": base64.b64encode(signer.sign(canonical_json(statement))).decode(),
        "public_key": base64.b64encode(public_key).decode(),
    }
    record = append(
        session,
        EventDraft(
            action=CHECKPOINT_ACTION,
            outcome="ok",
            actor_id=actor_id,
            payload={
                "previous": previous,
                "digest": digest,
                "heads": {c: list(v) for c, v in heads.items()},
                "signed": signed,
            },
        ),
        at,
    )
    return Checkpoint(record.id, len(heads), digest, at, signed)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying the audit trail: whether every chain links and hashes, and each
    break found."""

    ok: bool
    events: int
    chains: int
    checkpoints: int
    first_break: Break | None
    signed_checkpoints: int = 0
    #: The fingerprint the signatures were checked against, and whether that key came from
    #: outside the database (``--public-key``, the configured signing key, a published file).
    key: str | None = None
    key_trusted: bool = False
    #: The number of the published checkpoint compared with the database, if one was given.
    against: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON data."""
        return {
            "ok": self.ok,
            "events": self.events,
            "chains": self.chains,
            "checkpoints": self.checkpoints,
            "signed_checkpoints": self.signed_checkpoints,
            "key": self.key,
            "key_trusted": self.key_trusted,
            "against": self.against,
            "first_break": self.first_break.to_dict() if self.first_break else None,
        }


@dataclass
class _SignedCheck:
    """State of the walk over the stored signed checkpoints, oldest first."""

    trusted: bytes | None
    against: Mapping[str, Any] | None
    count: int = 0
    key: bytes | None = None
    last: Mapping[str, Any] | None = None
    last_seq: int = 0
    problem: Break | None = None

    def fail(self, event_id: int | None, seq: int | None, problem: str) -> None:
        if self.problem is None:
            self.problem = Break(event_id, SYSTEM_CHAIN, seq, problem)

    def check(self, event_id: int, seq: int, doc: object) -> None:
        """One stored signed checkpoint: well formed, signed, next in line."""
        statement = _statement(doc)
        if statement is None or not isinstance(doc, dict):
            self.fail(event_id, seq, "signed checkpoint is malformed")
            return
        public = _b64(doc.get("public_key"))
        key = self.trusted or self.key or public
        if key is None or fingerprint(key) != statement.get("key"):
            self.fail(event_id, seq, "checkpoint is signed with another key")
            return
        self.key = key
        signature = _b64(doc.get("signature"))
        if signature is None or not signature_valid(key, canonical_json(statement), signature):
            self.fail(event_id, seq, "checkpoint signature is not valid")
            return
        expected_number = int(self.last["statement"]["number"]) + 1 if self.last else 1
        if statement.get("number") != expected_number:
            self.fail(event_id, seq, f"signed checkpoint {expected_number} is missing")
            return
        if statement.get("previous") != (signed_ref(self.last) if self.last else GENESIS):
            self.fail(event_id, seq, "signed checkpoint does not follow the previous one")
            return
        system = statement.get("system")
        if not isinstance(system, list) or len(system) != 2 or system[0] != seq - 1:
            self.fail(event_id, seq, "signed checkpoint names another system-chain position")
            return
        published = self.against
        if (
            published is not None
            and published["statement"]["number"] == expected_number
            and canonical_json(published) != canonical_json(doc)
        ):
            self.fail(event_id, seq, "stored checkpoint differs from the published one")
            return
        self.count += 1
        self.last, self.last_seq = doc, seq


def _statement(doc: object) -> dict[str, Any] | None:
    if not isinstance(doc, dict):
        return None
    statement = doc.get("statement")
    if not isinstance(statement, dict) or statement.get("format") != SIGNED_FORMAT:
        return None
    if not isinstance(statement.get("number"), int):
        return None
    return statement


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def check_published(doc: object, trusted: bytes | None) -> Mapping[str, Any]:
    """A published checkpoint read from a file: well formed and validly signed, or refused."""
    from compliance.errors import InvalidInput

    statement = _statement(doc)
    if statement is None or not isinstance(doc, dict):
        raise InvalidInput("--against", "is not a signed audit checkpoint")
    key = trusted or _b64(doc.get("public_key"))
    signature = _b64(doc.get("signature"))
    if key is None or fingerprint(key) != statement.get("key"):
        raise InvalidInput("--against", "is signed with another key than the one given")
    if signature is None or not signature_valid(key, canonical_json(statement), signature):
        raise InvalidInput("--against", "signature is not valid: the file was altered")
    return doc


def _signed_break(session: Session, check: _SignedCheck) -> Break | None:
    """Every stored signed checkpoint in order, then the latest one against today's chains."""
    rows = session.execute(
        # Only the signed part: the heads a checkpoint lists are checked by the walk.
        select(_EVENTS.c.id, _EVENTS.c.chain_seq, _EVENTS.c.payload["signed"])
        .where(_EVENTS.c.chain_id == SYSTEM_CHAIN, _EVENTS.c.action == CHECKPOINT_ACTION)
        .order_by(_EVENTS.c.chain_seq)
    )
    for event_id, seq, doc in rows:
        if doc is None:
            if check.last is not None:
                check.fail(event_id, seq, "unsigned checkpoint after signed ones")
            continue
        check.check(event_id, seq, doc)
        if check.problem is not None:
            return check.problem
    if check.against is not None:
        number = int(check.against["statement"]["number"])
        have = int(check.last["statement"]["number"]) if check.last else 0
        if number > have:
            return Break(
                None,
                SYSTEM_CHAIN,
                None,
                f"the database stops at signed checkpoint {have} but checkpoint {number} was "
                "published: it was restored from an older backup or checkpoints were removed",
            )
    if check.last is None:
        return None
    statement = check.last["statement"]
    digest, events, chains = covered_heads(session)
    system_seq, system_hash = statement["system"]
    if system_seq:
        found = session.execute(
            select(AuditEvent.hash).where(
                AuditEvent.chain_id == SYSTEM_CHAIN, AuditEvent.chain_seq == system_seq
            )
        ).scalar_one_or_none()
        if found != system_hash:
            return Break(
                None, SYSTEM_CHAIN, system_seq, "system chain differs from the signed head"
            )
        events, chains = events + int(system_seq), chains + 1
    if digest != statement.get("heads"):
        return Break(None, "*", None, "chain heads differ from the last signed checkpoint")
    if (events, chains) != (statement.get("events"), statement.get("chains")):
        return Break(None, "*", None, "event count differs from the last signed checkpoint")
    return None


def verify(
    session: Session,
    batch: int = 2000,
    *,
    trusted_key: bytes | None = None,
    against: Mapping[str, Any] | None = None,
    beside: bool = False,
) -> VerifyReport:
    """Walk every chain in order; check links, hashes, heads, checkpoints, their signatures and
    the subject index; with a published checkpoint, check the database has not fallen behind.

    With ``beside``, for a session that has written nothing (a read-only snapshot): the business
    tables are checked on a second connection to the same snapshot, beside the walk
    (``snapshots.pair``; on SQLite both are new read transactions, begun together), and from
    ``SPLIT_FROM`` events the later half of the chains is walked by a second process on that
    snapshot (``workers.beside``); the report is the one a single walk gives.

    Events, heads and the checkpoints' claims are three streams in the same chain order, merged
    as they are read: memory is bounded by the largest single event (a checkpoint lists every
    chain head), never by the number of chains or events."""
    if against is not None:
        against = check_published(against, trusted_key)
        trusted_key = trusted_key or _b64(against.get("public_key"))
    if beside and (split := _split_point(session)) is not None:
        args = {"batch": batch, "from": split}
        with workers.beside(session, _walked_elsewhere, args, sessions=2) as (mains, worker):
            if worker is not None:
                business = snapshots.Background(_business_break, mains[1])
                try:
                    return _verify(mains[0], batch, trusted_key, against, business, (split, worker))
                finally:
                    business.cancel()
    with snapshots.pair(session) if beside else nullcontext((session, None)) as (main, other):
        # The business tables' checks are SQL the database answers alone: on a second
        # connection to the same snapshot they run beside the walk.
        task = snapshots.Background(_business_break, other) if other is not None else None
        try:
            return _verify(main, batch, trusted_key, against, task, None)
        finally:
            if task is not None:
                task.cancel()


# From this many events, the chains from the middle one on are walked by a second process.
SPLIT_FROM = 100_000


def _split_point(session: Session) -> str | None:
    """The chain id half the chains sort before, for a trail worth walking in two parts."""
    events = session.execute(select(func.max(_EVENTS.c.id))).scalar_one_or_none()
    if events is None or events < SPLIT_FROM:
        return None
    chains = int(session.execute(select(func.count()).select_from(_HEADS)).scalar_one())
    middle = session.execute(
        select(_HEADS.c.chain_id)
        .order_by(_by_chain(session, _HEADS.c.chain_id))
        .offset(chains // 2)
        .limit(1)
    ).scalar_one_or_none()
    return None if middle is None else str(middle)


@workers.task
def _walked_elsewhere(session: Session, args: Mapping[str, Any]) -> Iterator[bytes]:
    """The second process's part of a verification: the chains from ``args["from"]`` on."""
    walk = _walk(session, int(args["batch"]), str(args["from"]), None)
    yield json.dumps(walk.part().to_dict()).encode()


def _walk(session: Session, batch: int, start: str | None, end: str | None) -> ChainWalk:
    """The chains from ``start`` (inclusive) to ``end`` (exclusive), None for no bound, walked
    until the first break of their events."""
    walk = ChainWalk(
        heads=_heads(session, batch, start, end), claims=_claims(session, batch, start, end)
    )
    # The stored values themselves, hashed without building a record (``rows``); a row they
    # cannot answer for is read again through the column types and hashed as a record.
    stream = _stored_rows(
        session,
        _in_range(
            session,
            select(*_stored_columns(session)).order_by(
                _by_chain(session, _EVENTS.c.chain_id), _EVENTS.c.chain_seq
            ),
            _EVENTS.c.chain_id,
            start,
            end,
        ),
        batch,
    )
    instant = _instant_reader(session)
    step, sha256 = walk.step, hashlib.sha256
    for row in stream:
        content = canonical_of(row, instant)
        if content is None:
            walk.feed((_record(session, row[0]),))
        else:
            step(row[0], row[1], row[2], row[14], row[15], sha256(content).hexdigest())
        if walk.first_break is not None:
            break
    return walk


def _in_range(
    session: Session, stmt: Select[Any], column: Any, start: str | None, end: str | None
) -> Select[Any]:
    """``stmt`` over the chains from ``start`` to ``end``, compared in code point order."""
    chain = _by_chain(session, column)
    if start is not None:
        stmt = stmt.where(chain >= start)
    if end is not None:
        stmt = stmt.where(chain < end)
    return stmt


def _verify(
    session: Session,
    batch: int,
    trusted_key: bytes | None,
    against: Mapping[str, Any] | None,
    beside: snapshots.Background[Break | None] | None,
    split: tuple[str, workers.Worker] | None,
) -> VerifyReport:
    checkpoints, checkpoint_break = _checkpoint_digests_break(session)
    parts = [_walk(session, batch, None, split[0] if split else None).part()]
    if split is not None:
        parts.append(WalkPart.from_dict(json.loads(split[1].next_frame())))
        split[1].finish()
    walked = combined(parts)
    signed = _SignedCheck(trusted_key, against)
    first = (
        walked.first_break
        or checkpoint_break
        or walked.mark_break
        or _signed_break(session, signed)
        or _subject_index_break(session, batch)
        or (beside.result() if beside is not None else _business_break(session))
    )
    return VerifyReport(
        first is None,
        walked.events,
        walked.chains,
        checkpoints,
        first,
        signed.count,
        fingerprint(signed.key) if signed.key else None,
        trusted_key is not None,
        int(against["statement"]["number"]) if against is not None else None,
    )


_JSON_COLUMNS = frozenset({"subjects", "reason_codes", "payload"})
_UTC = UTCDateTime()


def _stored_columns(session: Session) -> list[Any]:
    """Every column of ``audit_events`` in ``rows.COLUMNS`` order, as the driver returns it:
    JSON as its stored text, the instant as SQLite's text or psycopg's datetime."""
    postgres = _dialect(session) == "postgresql"
    columns: list[Any] = []
    for name in COLUMNS:
        column: Any = _EVENTS.c[name]
        if name in _JSON_COLUMNS:
            column = cast(column, Text) if postgres else type_coerce(column, Text)
        elif name == "occurred_at":
            column = type_coerce(column, DateTime(timezone=True) if postgres else Text)
        columns.append(column.label(name))
    return columns


def _stored_rows(session: Session, stmt: Select[Any], batch: int) -> Iterator[Sequence[Any]]:
    """The rows of ``stmt`` (columns without result processing on SQLite: ``_stored_columns``,
    integers, text), ``batch`` at a time. On SQLite a statement whose parameters need no
    conversion runs on the session's own DBAPI connection (same transaction): the driver's
    tuples are the values a Core row holds, without building a Core row per event (measured:
    3.3 against 4.8 us a row).
    Otherwise, and on PostgreSQL (whose server-side cursor SQLAlchemy already streams), Core
    rows."""
    if _dialect(session) == "sqlite":
        connection = session.connection()
        compiled = stmt.compile(dialect=connection.dialect)
        # Parameters whose types convert nothing (ids, chain ids) go to the driver as they are.
        names, dialect = compiled.positiontup or (), connection.dialect
        values = [compiled.params[name] for name in names]
        if all(
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) is None
            for n in names
        ):
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), values)
                while rows := cursor.fetchmany(batch):
                    yield from rows
            finally:
                cursor.close()
            return
    yield from session.execute(stmt, execution_options={"yield_per": batch})


def _instant_reader(session: Session) -> Any:
    """The stored instant to ``format_instant`` text, through the same conversions as the
    column type (SQLite's text through ``fromisoformat``, as the dialect parses it)."""
    dialect = session.get_bind().dialect
    to_utc = _UTC.process_result_value
    if dialect.name == "postgresql":
        return lambda value: format_instant(to_utc(value, dialect))  # type: ignore[arg-type]
    parse = datetime.fromisoformat

    def sqlite_instant(value: str) -> str:
        moment = parse(value)
        if moment.tzinfo is None and moment.year >= 1000:
            # As UTC, exactly these fields: what ``format_instant`` writes, in one C call.
            return moment.isoformat(timespec="microseconds") + "Z"
        return format_instant(to_utc(moment, dialect))  # type: ignore[arg-type]

    return sqlite_instant


def _record(session: Session, event_id: int) -> AuditRecord:
    """The event as the column types read it (the path a stored value's shortcut cannot take)."""
    return to_record(session.execute(select(_EVENTS).where(_EVENTS.c.id == event_id)).one())


def _by_chain(session: Session, column: Any) -> Any:
    """Chain ids in code point order on both backends (PostgreSQL's default collation may be a
    locale's), so that the streams merge in the order Python compares them."""
    return column.collate("C") if _dialect(session) == "postgresql" else column


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _heads(
    session: Session, batch: int, start: str | None = None, end: str | None = None
) -> Iterator[Head]:
    stmt = select(
        _HEADS.c.chain_id,
        _HEADS.c.last_seq,
        _HEADS.c.last_hash,
        _HEADS.c.last_event_id,
        _HEADS.c.checkpointed_seq,
    ).order_by(_by_chain(session, _HEADS.c.chain_id))
    rows = session.execute(
        _in_range(session, stmt, _HEADS.c.chain_id, start, end),
        execution_options={"yield_per": batch},
    )
    for chain, seq, digest, event_id, mark in rows:
        yield Head(str(chain), int(seq), str(digest), int(event_id), int(mark or 0))


# The chain heads a checkpoint lists, read out of its JSON by the database: (chain, seq, hash).
_LISTED = {
    "sqlite": (
        "SELECT j.key, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]')"
        " FROM audit_events AS e, json_each(e.payload, '$.heads') AS j"
        " WHERE e.chain_id = :system AND e.action = :action {where}"
        " ORDER BY j.key, 2"
    ),
    "postgresql": (
        "SELECT j.key, (j.value ->> 0)::bigint, j.value ->> 1"
        " FROM audit_events AS e, json_each(e.payload -> 'heads') AS j"
        " WHERE e.chain_id = :system AND e.action = :action {where}"
        ' ORDER BY j.key COLLATE "C", 2'
    ),
}
_KEY = {"sqlite": "j.key", "postgresql": 'j.key COLLATE "C"'}


def _listed(
    session: Session,
    batch: int,
    event_id: int | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Iterator[tuple[str, int, str]]:
    params: dict[str, Any] = {"system": SYSTEM_CHAIN, "action": CHECKPOINT_ACTION}
    where = []
    if event_id:
        where.append("AND e.id = :id")
        params["id"] = event_id
    key = _KEY[_dialect(session)]
    if start is not None:
        where.append(f"AND {key} >= :start")
        params["start"] = start
    if end is not None:
        where.append(f"AND {key} < :end")
        params["end"] = end
    sql = _LISTED[_dialect(session)].format(where=" ".join(where))
    rows = session.execute(text(sql), params, execution_options={"yield_per": batch})
    for chain, seq, digest in rows:
        yield str(chain), int(seq), str(digest)


def _claims(
    session: Session, batch: int, start: str | None = None, end: str | None = None
) -> Iterator[Claim]:
    for chain, seq, digest in _listed(session, batch, None, start, end):
        yield Claim(chain, seq, digest)


def _checkpoint_digests_break(session: Session, batch: int = 2000) -> tuple[int, Break | None]:
    """Each checkpoint's digest over the heads it lists, chained to the one before: the count of
    checkpoints and the first that is wrong."""
    rows = session.execute(
        select(
            _EVENTS.c.id,
            _EVENTS.c.chain_seq,
            _EVENTS.c.payload["previous"].as_string(),
            _EVENTS.c.payload["digest"].as_string(),
        )
        .where(_EVENTS.c.chain_id == SYSTEM_CHAIN, _EVENTS.c.action == CHECKPOINT_ACTION)
        .order_by(_EVENTS.c.chain_seq)
    ).all()
    previous, found = GENESIS, None
    for event_id, seq, claimed_previous, claimed in rows:
        if found is None:
            listed = _listed(session, batch, event_id)
            if claimed_previous != previous or claimed != checkpoint_digest(
                listed, previous, presorted=True
            ):
                found = Break(event_id, SYSTEM_CHAIN, seq, "checkpoint digest is wrong")
        previous = str(claimed)
    return len(rows), found


def _subject_index_break(session: Session, batch: int) -> Break | None:
    """The subject index must list exactly the subjects each hashed event names."""
    listed: Iterator[Any] = iter(
        _stored_rows(
            session,
            select(_SUBJECTS.c.event_id, _SUBJECTS.c.subject).order_by(
                _SUBJECTS.c.event_id, _SUBJECTS.c.subject
            ),
            batch,
        )
    )
    # The stored text, decoded as the column type decodes it (``json.loads``); a value that is
    # not text is read through the column type itself.
    subjects_column = dict(zip(COLUMNS, _stored_columns(session), strict=True))["subjects"]
    events = _stored_rows(
        session,
        select(_EVENTS.c.id, _EVENTS.c.chain_id, subjects_column).order_by(_EVENTS.c.id),
        batch,
    )
    loads = json.loads
    pending = next(listed, None)
    for event_id, chain_id, stored in events:
        found: list[str] = []
        if pending is not None and pending[0] < event_id:
            return Break(pending[0], str(pending[1]), None, "subject index names an unknown event")
        while pending is not None and pending[0] == event_id:
            found.append(pending[1])
            pending = next(listed, None)
        if len(found) == 1 and stored == f'["{found[0]}"]' and _verbatim(found[0]):
            continue  # the stored text is exactly the one subject the index lists
        subjects = loads(stored) if type(stored) is str else _stored_subjects(session, event_id)
        if sorted(found) != sorted(str(x) for x in _as_tuple(subjects)):
            return Break(event_id, chain_id, None, "subject index does not match the event")
    if pending is not None:
        return Break(pending[0], str(pending[1]), None, "subject index names an unknown event")
    return None


def _verbatim(subject: object) -> bool:
    """Whether JSON writes ``subject`` as it is between its quotes (so ``["subject"]`` decodes
    to exactly ``[subject]``): printable ASCII without a quote or a backslash."""
    return (
        type(subject) is str
        and subject.isascii()
        and subject.isprintable()
        and '"' not in subject
        and "\\" not in subject
    )


def _stored_subjects(session: Session, event_id: int) -> Any:
    return session.execute(select(_EVENTS.c.subjects).where(_EVENTS.c.id == event_id)).scalar_one()


@dataclass(frozen=True)
class LogFilter:
    """Which audit events to list: by subject, actor, action and time, at most ``limit``."""

    subject: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    newest_first: bool = False  # with ``limit``: the latest events rather than the earliest


def query(f: LogFilter, columns: Sequence[Any] = ()) -> Select[Any]:
    """The events ``f`` selects, as Core rows (every column of ``audit_events``, or
    ``columns``)."""
    stmt = select(*columns) if columns else select(_EVENTS)
    if f.subject is not None:
        stmt = stmt.join(AuditSubject, AuditSubject.event_id == AuditEvent.id).where(
            AuditSubject.subject == f.subject
        )
    if f.actor is not None:
        stmt = stmt.where(AuditEvent.actor_id == f.actor)
    if f.action is not None:
        stmt = stmt.where(AuditEvent.action == f.action)
    if f.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= f.since)
    if f.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < f.until)
    stmt = stmt.order_by(AuditEvent.id.desc() if f.newest_first else AuditEvent.id)
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    return stmt


def count(session: Session, f: LogFilter) -> int:
    inner = query(LogFilter(f.subject, f.actor, f.action, f.since, f.until)).subquery()
    return int(session.execute(select(func.count()).select_from(inner)).scalar_one())


def stream(session: Session, f: LogFilter, batch: int = 2000) -> Iterator[AuditRecord]:
    for row in session.execute(query(f), execution_options={"yield_per": batch}):
        yield to_record(row)


def stream_dicts(session: Session, f: LogFilter, batch: int = 2000) -> Iterator[dict[str, Any]]:
    """The events ``f`` selects as ``AuditRecord.to_dict()`` gives them, built from the stored
    values (``rows.dict_of``) without a record each; a row they cannot answer for is read again
    through the column types."""
    return _dicts(session, query(f, _stored_columns(session)), batch)


def _dicts(session: Session, stmt: Select[Any], batch: int) -> Iterator[dict[str, Any]]:
    instant = _instant_reader(session)
    for row in _stored_rows(session, stmt, batch):
        event = dict_of(row, instant)
        yield _record(session, row[0]).to_dict() if event is None else event


#: One JSON Lines record of an export: ``json.dumps(event, ensure_ascii=False, sort_keys=True)``,
#: its encoder built once. No circular check: an event is decoded JSON, which cannot hold itself.
json_line = json.JSONEncoder(ensure_ascii=False, sort_keys=True, check_circular=False).encode

# From this many event ids, an export's chunks of ``EXPORT_CHUNK`` ids alternate between this
# process and a second one on the same snapshot.
EXPORT_SPLIT_FROM = 100_000
EXPORT_CHUNK = 2_000  # about 1.5 MB of lines a frame


def export_lines(
    session: Session, f: LogFilter, batch: int = 2000, *, beside: bool = False
) -> Iterator[str]:
    """The events ``f`` selects, oldest first, each as its JSON Lines record (``json_line``).
    With ``beside`` (a read-only snapshot), an export of every event in a time span (no limit)
    over ``EXPORT_SPLIT_FROM`` ids is encoded in two processes, every other chunk of ids by the
    second; the lines are the same, in the same order."""
    span = _id_span(session) if beside and f.limit is None and not f.newest_first else None
    if span is not None and span[1] - span[0] >= EXPORT_SPLIT_FROM:
        chunk = EXPORT_CHUNK
        args = {"filter": _filter_args(f), "span": list(span), "batch": batch, "chunk": chunk}
        with workers.beside(session, _exported_elsewhere, args) as ((main, *_), worker):
            if worker is not None:
                for index, (low, high) in enumerate(_chunks(*span, chunk)):
                    if index % 2 == 0:
                        yield from map(json_line, _dicts(main, _between(main, f, low, high), batch))
                    elif text := worker.next_frame().decode():
                        yield from text.split("\n")
                worker.finish()
                return
    yield from map(json_line, stream_dicts(session, f, batch))


def _id_span(session: Session) -> tuple[int, int] | None:
    """The first and one past the last event id of the trail."""
    low, high = session.execute(select(func.min(_EVENTS.c.id), func.max(_EVENTS.c.id))).one()
    return None if low is None else (int(low), int(high) + 1)


def _chunks(low: int, high: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(low, high, size):
        yield start, min(start + size, high)


def _between(session: Session, f: LogFilter, low: int, high: int) -> Select[Any]:
    return query(f, _stored_columns(session)).where(_EVENTS.c.id >= low, _EVENTS.c.id < high)


def _filter_args(f: LogFilter) -> dict[str, Any]:
    return {
        "subject": f.subject,
        "actor": f.actor,
        "action": f.action,
        "since": f.since.isoformat() if f.since else None,
        "until": f.until.isoformat() if f.until else None,
    }


@workers.task
def _exported_elsewhere(session: Session, args: Mapping[str, Any]) -> Iterator[bytes]:
    """The second process's share of an export: each odd chunk's lines as one frame."""
    given = args["filter"]
    f = LogFilter(
        subject=given["subject"],
        actor=given["actor"],
        action=given["action"],
        since=datetime.fromisoformat(given["since"]) if given["since"] else None,
        until=datetime.fromisoformat(given["until"]) if given["until"] else None,
    )
    batch = int(args["batch"])
    low, high = map(int, args["span"])
    for index, (start, end) in enumerate(_chunks(low, high, int(args["chunk"]))):
        if index % 2 == 1:
            lines = map(json_line, _dicts(session, _between(session, f, start, end), batch))
            yield "\n".join(lines).encode()


# --- business tables against the trail ---------------------------------------------------------


def _uuid_text(session: Session, column: Any) -> Any:
    """A UUID column as the text ``str(uuid)`` gives, which is what event payloads record."""
    if session.get_bind().dialect.name == "postgresql":
        return func.cast(column, String)
    # SQLite stores a UUID as 32 hex digits.
    parts = [
        func.substr(column, start, size)
        for start, size in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    ]
    joined: Any = parts[0]
    for part in parts[1:]:
        joined = joined.op("||")("-").op("||")(part)
    return func.lower(joined)


def _events_about(patient_short_id: Any, action: str, key: str, value: Any) -> Any:
    """Successful ``action`` events filed under the patient whose payload ``key`` is ``value``;
    found through the subject index, so each look-up reads only that patient's events."""
    return (
        select(AuditEvent.id)
        .join(AuditSubject, AuditSubject.event_id == AuditEvent.id)
        .where(
            AuditSubject.subject == patient_short_id,
            AuditEvent.action == action,
            AuditEvent.outcome == "ok",
            AuditEvent.payload[key].as_string() == value,
        )
    )


def _events_at(patient_short_id: Any, instant: Any) -> Any:
    """Successful events filed under the patient at exactly ``instant``."""
    return (
        select(AuditEvent.id)
        .join(AuditSubject, AuditSubject.event_id == AuditEvent.id)
        .where(
            AuditSubject.subject == patient_short_id,
            AuditEvent.outcome == "ok",
            AuditEvent.occurred_at == instant,
        )
    )


def _first_only(session: Session, stmt: Any) -> Any:
    """``stmt`` for its first row. On PostgreSQL without ``LIMIT``: a limit makes the planner
    bet on finding a row early and probe every event of each patient, decoding each payload,
    where the whole anti-join by hash decodes each event's payload once (about half the time
    on a generated trail); the answer is normally no row at all, so nothing more is sent."""
    return stmt if _dialect(session) == "postgresql" else stmt.limit(1)


def _business_break(session: Session) -> Break | None:
    """Every authorization, reversal, dispense and prescription has its event, and every course's
    state is the one its latest event left it in: a row written around the service shows."""
    from compliance.db.models import Authorization, Course, Patient, Prescription

    auth = (
        select(
            Authorization.number,
            Patient.short_id,
            Authorization.reversed_at,
            Authorization.dispensed_at,
        )
        .join(Course, Course.id == Authorization.course_id)
        .join(Patient, Patient.id == Course.patient_id)
    )
    checks = [
        (
            "dispense.authorize",
            _events_about(
                Patient.short_id, "dispense.authorize", "authorization", Authorization.number
            ),
            None,
        ),
        (
            "dispense.record",
            _events_about(
                Patient.short_id, "dispense.record", "authorization", Authorization.number
            ),
            Authorization.dispensed_at,
        ),
        # A reversal is recorded by dispense.reverse, or by the course event (a positive test,
        # a pregnancy report, an ended course) that reversed it in the same transaction.
        (
            "reversal",
            _events_at(Patient.short_id, Authorization.reversed_at),
            Authorization.reversed_at,
        ),
    ]
    for what, events, when in checks:
        stmt = auth.where(~events.exists())
        if when is not None:
            stmt = stmt.where(when.is_not(None))
        found = session.execute(_first_only(session, stmt)).first()
        if found is not None:
            return Break(
                None, str(found.short_id), None, f"authorization {found.number} has no {what} event"
            )
    rx = session.execute(
        _first_only(
            session,
            select(Prescription.short_id, Patient.short_id.label("patient"))
            .join(Course, Course.id == Prescription.course_id)
            .join(Patient, Patient.id == Course.patient_id)
            .where(
                ~_events_about(
                    Patient.short_id, "course.prescribe", "prescription", Prescription.short_id
                ).exists()
            ),
        )
    ).first()
    if rx is not None:
        return Break(
            None, str(rx.patient), None, f"prescription {rx.short_id} has no course.prescribe event"
        )
    course_key = _uuid_text(session, Course.id)
    last_state = (
        select(AuditEvent.state_after)
        .join(AuditSubject, AuditSubject.event_id == AuditEvent.id)
        .where(
            AuditSubject.subject == Patient.short_id,
            AuditEvent.outcome == "ok",
            AuditEvent.payload["course"].as_string() == course_key,
        )
        # In the subject index's own order (the same ids): read newest first, stopping at the
        # first match, where ordering by the events' id sorts every event of the patient first
        # (SQLite, measured: 10 s against 1 s over 100,000 courses).
        .order_by(AuditSubject.event_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    # Each course's last audited state computed once: the OFFSET keeps both databases from
    # folding the derived table into the outer query, which would evaluate it once per use.
    courses = (
        select(
            Course.id.label("id"),
            Course.state.label("state"),
            Patient.short_id.label("short_id"),
            last_state.label("audited"),
        )
        .join(Patient, Patient.id == Course.patient_id)
        .offset(0)
        .subquery()
    )
    mismatch = session.execute(
        select(courses)
        .where(or_(courses.c.audited.is_(None), courses.c.audited != courses.c.state))
        .limit(1)
    ).first()
    if mismatch is not None:
        audited = mismatch.audited
        problem = (
            f"course {mismatch.id} has no audit event"
            if audited is None
            else f"course {mismatch.id} is {mismatch.state}; its last audit event left it {audited}"
        )
        return Break(None, str(mismatch.short_id), None, problem)
    return None
