"""Canonical form, hashing and link-by-link verification of audit chains. Pure: no database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import rfc8785

GENESIS = "0" * 64
SYSTEM_CHAIN = "system"


@dataclass(frozen=True)
class AuditRecord:
    """One audit event as hashed. ``id`` is the global sequence number across all chains."""

    id: int
    chain_id: str
    chain_seq: int
    occurred_at: datetime
    actor_id: str | None
    on_behalf_of: str | None
    action: str
    outcome: str
    subjects: tuple[str, ...]
    state_before: str | None
    state_after: str | None
    reason_codes: tuple[str, ...]
    ruleset_id: str | None
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str = ""

    def canonical(self) -> bytes:
        return canonical_bytes(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chain": self.chain_id,
            "seq": self.chain_seq,
            "at": format_instant(self.occurred_at),
            "actor": self.actor_id,
            "on_behalf_of": self.on_behalf_of,
            "action": self.action,
            "outcome": self.outcome,
            "subjects": list(self.subjects),
            "state_before": self.state_before,
            "state_after": self.state_after,
            "reasons": list(self.reason_codes),
            "ruleset": self.ruleset_id,
            "payload": dict(self.payload),
            "prev": self.prev_hash,
            "hash": self.hash,
        }


def format_instant(instant: datetime) -> str:
    """Fixed-width UTC text, so the hashed form never depends on how a driver renders time."""
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(record: AuditRecord) -> bytes:
    body = record.to_dict()
    del body["hash"]
    return bytes(rfc8785.dumps(body))


def compute_hash(record: AuditRecord) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


@dataclass(frozen=True)
class Break:
    """The first place a chain fails to verify."""

    event_id: int | None
    chain_id: str
    chain_seq: int | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "chain": self.chain_id,
            "seq": self.chain_seq,
            "problem": self.problem,
        }


@dataclass
class ChainWalk:
    """Consumes events ordered by (chain_id, chain_seq) and records the first break found."""

    heads: Mapping[str, tuple[int, str]]
    expected: Mapping[tuple[str, int], str] = field(default_factory=dict)
    head_ids: Mapping[str, int] = field(default_factory=dict)
    events: int = 0
    chains: int = 0
    first_break: Break | None = None
    _chain: str | None = None
    _seq: int = 0
    _hash: str = GENESIS
    _last_id: int = 0
    _seen: set[str] = field(default_factory=set)

    def feed(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            if self.first_break is not None:
                return
            self._step(record)

    def _fail(self, record: AuditRecord | None, chain: str, problem: str) -> None:
        if self.first_break is None:
            self.first_break = Break(
                record.id if record else None,
                chain,
                record.chain_seq if record else None,
                problem,
            )

    def _step(self, r: AuditRecord) -> None:
        self.events += 1
        if r.chain_id != self._chain:
            self._close_chain()
            if self.first_break is not None:
                return
            if r.chain_id in self._seen:
                self._fail(r, r.chain_id, "chain events are not contiguous")
                return
            self._seen.add(r.chain_id)
            self._chain, self._seq, self._hash, self._last_id = r.chain_id, 0, GENESIS, 0
            self.chains += 1
        if r.chain_seq != self._seq + 1:
            self._fail(r, r.chain_id, f"expected sequence {self._seq + 1}, found {r.chain_seq}")
        elif r.prev_hash != self._hash:
            self._fail(r, r.chain_id, "previous-hash link does not match the preceding event")
        elif r.id <= self._last_id:
            self._fail(r, r.chain_id, "global sequence goes backwards within the chain")
        elif _safe_hash(r) != r.hash:
            self._fail(r, r.chain_id, "event content does not match its hash")
        elif self.expected.get((r.chain_id, r.chain_seq), r.hash) != r.hash:
            self._fail(r, r.chain_id, "event differs from the one a checkpoint recorded")
        self._seq, self._hash, self._last_id = r.chain_seq, r.hash, r.id

    def _close_chain(self) -> None:
        if self._chain is None:
            return
        head = self.heads.get(self._chain)
        if head is None:
            self._fail(None, self._chain, "chain has events but no head record")
        elif head != (self._seq, self._hash):
            self._fail(
                None,
                self._chain,
                f"head records sequence {head[0]} but the chain ends at {self._seq}",
            )
        elif self.head_ids.get(self._chain, self._last_id) != self._last_id:
            self._fail(None, self._chain, "head names another event as the chain's last")

    def finish(self) -> Break | None:
        if self.first_break is None:
            self._close_chain()
        if self.first_break is None:
            for chain in sorted(set(self.heads) - self._seen):
                self._fail(None, chain, "head record names a chain with no events")
                break
        if self.first_break is None:
            for (chain, seq), _ in sorted(self.expected.items()):
                if chain not in self._seen:
                    self._fail(None, chain, f"checkpointed event {seq} is missing")
                    break
                head = self.heads.get(chain)
                if head is not None and seq > head[0]:
                    self._fail(None, chain, f"checkpointed event {seq} is missing")
                    break
        return self.first_break


def _safe_hash(record: AuditRecord) -> str | None:
    """The hash, or None when tampering left content that has no canonical form at all."""
    try:
        return compute_hash(record)
    except (TypeError, ValueError, AttributeError):
        return None


def checkpoint_digest(heads: Iterable[tuple[str, int, str]], previous: str) -> str:
    h = hashlib.sha256(previous.encode())
    for chain, seq, digest in sorted(heads):
        h.update(f"\n{chain}\t{seq}\t{digest}".encode())
    return h.hexdigest()


def iter_heads(payload: Mapping[str, Any]) -> Iterator[tuple[str, int, str]]:
    for chain, (seq, digest) in payload.get("heads", {}).items():
        yield str(chain), int(seq), str(digest)
