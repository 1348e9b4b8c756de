"""Appending to, reading and verifying the audit trail in the database.

An append runs inside the caller's transaction, so an event is stored exactly when the change it
describes is. The chain head row is locked (``FOR UPDATE`` on PostgreSQL; SQLite's single writer
already serialises), which orders appends within one chain and leaves other chains free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from compliance.audit.chain import (
    GENESIS,
    SYSTEM_CHAIN,
    AuditRecord,
    Break,
    ChainWalk,
    checkpoint_digest,
    compute_hash,
    iter_heads,
)
from compliance.db.base import table_of
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
_LAST_ID = select(func.max(_EVENTS.c.id))
_NEXT_ID = text("SELECT nextval('audit_event_id_seq')")
_ADD_EVENT = insert(_EVENTS)
_ADD_SUBJECT = insert(_SUBJECTS)
_ADD_HEAD = insert(_HEADS)
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain_id == bindparam("chain"))
    .values(
        last_seq=bindparam("seq"), last_hash=bindparam("digest"), last_event_id=bindparam("event")
    )
)


def _next_event_id(session: Session) -> int:
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(_NEXT_ID).scalar_one())
    current = session.execute(_LAST_ID).scalar_one()
    return int(current or 0) + 1


def append(session: Session, draft: EventDraft, at: datetime) -> AuditRecord:
    # Pending ORM changes reach the database before the event that describes them.
    session.flush()
    chain_id = chain_for(draft.subjects)
    head = session.execute(_HEAD, {"chain": chain_id}).one_or_none()
    seq, prev = (head.last_seq, head.last_hash) if head else (0, GENESIS)
    subjects = tuple(dict.fromkeys(draft.subjects))
    # A session may carry notes every event must record (e.g. a simulated clock).
    notes = session.info.get(ANNOTATIONS) or {}
    record = AuditRecord(
        id=_next_event_id(session),
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
    session.execute(
        _ADD_EVENT,
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
    if subjects:
        session.execute(_ADD_SUBJECT, [{"subject": s, "event_id": record.id} for s in subjects])
    if head is None:
        session.execute(
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
        session.execute(
            _MOVE_HEAD,
            {"chain": chain_id, "seq": record.chain_seq, "digest": digest, "event": record.id},
        )
    return AuditRecord(**{**record.__dict__, "hash": digest})


def _as_tuple(value: object) -> tuple[Any, ...]:
    """Stored lists as tuples; a tampered non-list is kept whole so its hash simply fails."""
    return tuple(value) if isinstance(value, list) else (value,)


def to_record(row: AuditEvent) -> AuditRecord:
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
    event_id: int
    chains: int
    digest: str
    occurred_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "chains": self.chains,
            "digest": self.digest,
            "at": self.occurred_at.isoformat(),
        }


def checkpoint(session: Session, actor_id: str, at: datetime) -> Checkpoint:
    """Record the heads of every chain that moved since the previous checkpoint."""
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
            },
        ),
        at,
    )
    for h in moved:
        h.checkpointed_seq = h.last_seq
    session.flush()
    return Checkpoint(record.id, len(heads), digest, at)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events: int
    chains: int
    checkpoints: int
    first_break: Break | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "chains": self.chains,
            "checkpoints": self.checkpoints,
            "first_break": self.first_break.to_dict() if self.first_break else None,
        }


def verify(session: Session, batch: int = 2000) -> VerifyReport:
    """Walk every chain in order; check links, hashes, heads, checkpoints and the subject index."""
    head_rows = session.execute(select(AuditChainHead)).scalars().all()
    heads = {h.chain_id: (h.last_seq, h.last_hash) for h in head_rows}
    head_ids = {h.chain_id: h.last_event_id for h in head_rows}
    marks = {h.chain_id: h.checkpointed_seq for h in head_rows}
    expected: dict[tuple[str, int], str] = {}
    checkpoints = 0
    checkpoint_break: Break | None = None
    previous = GENESIS
    for row in session.execute(
        select(AuditEvent)
        .where(AuditEvent.chain_id == SYSTEM_CHAIN, AuditEvent.action == CHECKPOINT_ACTION)
        .order_by(AuditEvent.chain_seq)
    ).scalars():
        checkpoints += 1
        listed = list(iter_heads(row.payload))
        claimed = row.payload.get("digest")
        if checkpoint_break is None and (
            row.payload.get("previous") != previous
            or claimed != checkpoint_digest(listed, previous)
        ):
            checkpoint_break = Break(
                row.id, SYSTEM_CHAIN, row.chain_seq, "checkpoint digest is wrong"
            )
        previous = str(claimed)
        for chain, seq, digest in listed:
            expected[(chain, seq)] = digest
        session.expunge(row)

    walk = ChainWalk(heads=heads, expected=expected, head_ids=head_ids)
    stream = session.execute(
        select(AuditEvent).order_by(AuditEvent.chain_id, AuditEvent.chain_seq),
        execution_options={"yield_per": batch},
    ).scalars()
    for row in stream:
        walk.feed((to_record(row),))
        session.expunge(row)
        if walk.first_break is not None:
            break
    first = (
        walk.finish()
        or checkpoint_break
        or _checkpoint_marks_break(marks, expected)
        or _subject_index_break(session, batch)
    )
    return VerifyReport(first is None, walk.events, walk.chains, checkpoints, first)


def _checkpoint_marks_break(
    marks: Mapping[str, int], expected: Mapping[tuple[str, int], str]
) -> Break | None:
    """Each head's checkpoint mark must be the last sequence a checkpoint recorded for it."""
    recorded: dict[str, int] = {}
    for chain, seq in expected:
        recorded[chain] = max(seq, recorded.get(chain, 0))
    for chain, mark in sorted(marks.items()):
        if chain != SYSTEM_CHAIN and mark != recorded.get(chain, 0):
            return Break(None, chain, mark, "head's checkpoint mark disagrees with the checkpoints")
    return None


def _subject_index_break(session: Session, batch: int) -> Break | None:
    """The subject index must list exactly the subjects each hashed event names."""
    listed: Iterator[Any] = iter(
        session.execute(
            select(AuditSubject.event_id, AuditSubject.subject).order_by(
                AuditSubject.event_id, AuditSubject.subject
            ),
            execution_options={"yield_per": batch},
        )
    )
    events = session.execute(
        select(AuditEvent.id, AuditEvent.chain_id, AuditEvent.subjects).order_by(AuditEvent.id),
        execution_options={"yield_per": batch},
    )
    pending = next(listed, None)
    for event_id, chain_id, subjects in events:
        found: list[str] = []
        if pending is not None and pending[0] < event_id:
            return Break(pending[0], str(pending[1]), None, "subject index names an unknown event")
        while pending is not None and pending[0] == event_id:
            found.append(pending[1])
            pending = next(listed, None)
        if sorted(found) != sorted(str(x) for x in _as_tuple(subjects)):
            return Break(event_id, chain_id, None, "subject index does not match the event")
    if pending is not None:
        return Break(pending[0], str(pending[1]), None, "subject index names an unknown event")
    return None


@dataclass(frozen=True)
class LogFilter:
    subject: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    newest_first: bool = False  # with ``limit``: the latest events rather than the earliest


def query(f: LogFilter) -> Select[AuditEvent]:
    stmt = select(AuditEvent)
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
    for row in session.execute(query(f), execution_options={"yield_per": batch}).scalars():
        record = to_record(row)
        session.expunge(row)
        yield record
